//! dotenv files: every entry and error is placed on a line of the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();
    let parsed = dockhand_dotenv::parse(text);
    for entry in &parsed.entries {
        assert!(entry.line >= 1 && entry.line <= lines, "{entry:?} outside the text");
        assert!(!entry.name.is_empty(), "an entry without a name: {entry:?}");
    }
});
