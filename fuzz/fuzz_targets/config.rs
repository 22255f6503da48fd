//! `dockhand.toml` loading and checking: any text gives a config or diagnostics, never a
//! panic; a refused file names at least one error, and every position is inside the text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A project directory that does not exist: loading must not depend on one.
    let path = Path::new("/nonexistent-dockhand-fuzz/dockhand.toml");
    let opts = dockhand_config::LoadOptions::default();
    let lines = text.split('\n').count();
    let diagnostics = match dockhand_config::load_str(path, text, &opts) {
        Ok(loaded) => loaded.warnings,
        Err(error) => {
            assert!(error.errors().next().is_some(), "a refused config names an error");
            error.diagnostics
        }
    };
    for d in diagnostics.iter().filter(|d| d.file == path && d.line > 0) {
        assert!(d.line <= lines, "line {} of a {lines}-line file: {d:?}", d.line);
    }
});
