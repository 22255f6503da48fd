//! Traefik labels (one `key=value` a line) and router rules, as `dockhand import compose`
//! reads them: a rule that is accepted is alternatives of plain hosts and `/` paths, and
//! the routes made of any labels are of the labelled service with such hosts and paths.
#![no_main]

use dockhand_compose::edge::traefik::{parse_rule, read, Container};
use libfuzzer_sys::fuzz_target;

fn plain_host(h: &str) -> bool {
    !h.is_empty() && h.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(alts) = parse_rule(text) {
        assert!(!alts.is_empty() && alts.len() <= 64);
        for a in alts {
            assert!(a.host.as_deref().is_none_or(plain_host), "{a:?}");
            assert!(a.path.as_deref().is_none_or(|p| p.starts_with('/')), "{a:?}");
        }
    }
    let labels: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let containers = [Container {
        service: "app".into(),
        labels,
        ports: vec![8080],
    }];
    let out = read(&containers, &[], "traefik");
    for r in &out.routes {
        assert_eq!(r.service, "app");
        assert!(r.host.as_deref().is_none_or(plain_host), "{r:?}");
        assert!(r.path.as_deref().is_none_or(|p| p.starts_with('/')), "{r:?}");
    }
});
