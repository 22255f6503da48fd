//! Caddyfiles, as `dockhand import compose` reads a Caddyfile mounted into a caddy service:
//! any text gives routes, redirects and notes, never a panic or a hang; the routes are of the
//! services the import knows, with paths starting with `/` and hosts dockhand can route
//! (lowercase, no space, no placeholder).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let services = ["app".to_string(), "web".to_string()];
    let read = dockhand_compose::edge::caddy::read("caddy", text, &services);
    for r in &read.routes {
        assert!(services.contains(&r.service), "{r:?}");
        if let Some(p) = &r.path {
            assert!(p.starts_with('/'), "a route path that is not a path: {r:?}");
        }
        if let Some(h) = &r.host {
            assert!(
                !h.is_empty()
                    && h.chars()
                        .all(|c| !c.is_ascii_uppercase() && !c.is_whitespace())
                    && !h.contains(['{', '}', '/']),
                "a route host dockhand cannot route: {r:?}"
            );
        }
    }
});
