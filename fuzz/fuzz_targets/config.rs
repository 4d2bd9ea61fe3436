//! The operator's configuration file: any text parses or is refused with a
//! message naming the file or the field. No input may panic (deep nesting
//! included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::config::OperatorConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match OperatorConfig::parse(text) {
        Ok(config) => {
            for p in &config.policies {
                if let Some(ns) = &p.namespace {
                    assert!(!ns.is_empty() && ns.len() <= 63, "{ns:?}");
                }
            }
        }
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.starts_with("the configuration file <config> is not valid: ")
                    || e.starts_with("configuration "),
                "{e}"
            );
        }
    }
});
