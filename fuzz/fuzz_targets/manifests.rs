//! `tollgate evaluate` manifest parsing: multi-document YAML into gates and
//! pauses. No input may panic; errors name the file and the document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::cli::evaluate::parse_manifests;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = parse_manifests("fuzz.yaml", text) {
        assert!(e.to_string().starts_with("fuzz.yaml: "), "{e}");
    }
});
