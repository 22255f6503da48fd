//! The load tester's scenario files (TOML): a scenario or an error, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = dockhand_loadtest::scenario::parse(text, Path::new("scenario.toml"));
});
