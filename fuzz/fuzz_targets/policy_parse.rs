//! Policy parsing must accept a policy or name what is wrong with it, for any text, never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let mut errors = Vec::new();
        let policy =
            kalshi_riskd::config::policy::parse_policy(Path::new("fuzz.toml"), text, &mut errors);
        // Never both silent and empty-handed: a refusal always says why.
        assert!(policy.is_some() || !errors.is_empty());
        for e in &errors {
            let _ = e.to_string();
        }
    }
});
