//! The user-stream decoder must return a message or an error for any frame, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = kalshi_riskd::kalshi::ws::decode(text);
    }
});
