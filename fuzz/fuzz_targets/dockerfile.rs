//! The Dockerfile stage reader: any text, no panic; stage names are non-empty.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for stage in dockhand_config::dockerfile_stages(text) {
        assert!(!stage.trim().is_empty());
    }
});
