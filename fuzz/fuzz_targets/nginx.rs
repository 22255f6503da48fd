//! nginx configuration files, as `dockhand import compose` reads them from a project: the
//! parser places every directive on a line of the text, and what the translation makes of
//! a file mounted into an nginx service is routes dockhand accepts (a path starting with
//! `/`, a plain lowercase host) to the one imported service.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();
    if let Ok(directives) = dockhand_compose::edge::nginx::parse(text) {
        let mut stack: Vec<&dockhand_compose::edge::nginx::Directive> = directives.iter().collect();
        while let Some(d) = stack.pop() {
            assert!(d.line >= 1 && d.line <= lines, "{d:?} outside the text");
            assert!(!d.name.is_empty());
            stack.extend(d.block.iter().flatten());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("default.conf");
    std::fs::write(&conf, text).unwrap();
    let read = dockhand_compose::edge::nginx::read_mounted(
        "proxy",
        &[(conf, "/etc/nginx/conf.d/default.conf".into())],
        &[],
        &["backend".into()],
        dir.path(),
    );
    for r in &read.routes {
        assert_eq!(r.service, "backend");
        if let Some(p) = &r.path {
            assert!(p.starts_with('/'), "{r:?}");
        }
        if let Some(h) = &r.host {
            assert!(!h.is_empty() && h.chars().all(|c| !c.is_ascii_uppercase() && c != '*'), "{r:?}");
        }
    }
});
