//! The FIX decoder must return a message, Incomplete or an error for any bytes, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = kalshi_riskd::kalshi::fix::codec::decode(data);
});
