//! Config parsing must accept a config or name every error in it, for any text, never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match kalshi_riskd::config::parse_daemon(Path::new("/etc/kalshi-riskd/fuzz.toml"), text) {
            Ok(_) => {}
            Err(errors) => {
                assert!(!errors.0.is_empty(), "a refusal always says why");
                let _ = errors.to_string();
            }
        }
    }
});
