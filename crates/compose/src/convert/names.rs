//! Dockhand names for compose names: services become valid dockhand names (unique, with a
//! note when renamed), and env values that name a renamed service as a host follow it, so
//! the services still find each other on the app network.

use std::collections::BTreeMap;

use super::Notes;
use crate::value::Value;
use crate::NoteKind;

/// A name under dockhand's rules: lowercase letters, digits and `-`, starting with a letter,
/// at most 63 characters.
pub fn sanitise_name(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_start_matches(|c: char| !c.is_ascii_lowercase());
    let mut name: String = trimmed.trim_end_matches('-').chars().take(63).collect();
    while name.ends_with('-') {
        name.pop();
    }
    if name.is_empty() {
        "app".into()
    } else {
        name
    }
}

/// Compose service name → dockhand name, for every imported service.
#[derive(Default)]
pub(super) struct Names(BTreeMap<String, String>);

impl Names {
    /// Gives each of `services` (in order) its dockhand name: sanitised, and numbered when
    /// an earlier service already has it.
    pub(super) fn assign(&mut self, notes: &mut Notes, services: &[(String, Value)]) {
        let mut taken: Vec<String> = Vec::new();
        for (name, _) in services {
            let mut new = sanitise_name(name);
            let base = new.clone();
            let mut n = 2;
            while taken.contains(&new) {
                new = format!("{base}-{n}");
                n += 1;
            }
            taken.push(new.clone());
            if new != *name {
                notes.add(
                    Some(name),
                    "name",
                    NoteKind::Assumed,
                    format!("renamed to `{new}` (dockhand names use lowercase letters, digits and `-`); it is reachable on the app network by that name, and env values naming `{name}` as a host were changed to match"),
                );
            }
            self.0.insert(name.clone(), new);
        }
    }

    /// The dockhand name of an imported compose service.
    ///
    /// Panics when `compose` was not imported: callers only ask for imported services.
    pub(super) fn dockhand(&self, compose: &str) -> &str {
        &self.0[compose]
    }

    /// The dockhand name of `compose`, if that service was imported.
    pub(super) fn get(&self, compose: &str) -> Option<&str> {
        self.0.get(compose).map(String::as_str)
    }

    /// Rewrites host names of renamed services inside a value.
    pub(super) fn rename_hosts(&self, value: &str) -> String {
        let mut out = value.to_owned();
        for (old, new) in &self.0 {
            if old == new || !out.contains(old.as_str()) {
                continue;
            }
            let mut result = String::new();
            let mut rest = out.as_str();
            while let Some(i) = rest.find(old.as_str()) {
                // The character before the match in the original value.
                let before = if i > 0 {
                    rest[..i].chars().last()
                } else {
                    result.chars().last()
                };
                let after = rest[i + old.len()..].chars().next();
                let boundary = |c: Option<char>| {
                    c.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                };
                result.push_str(&rest[..i]);
                if boundary(before) && boundary(after) {
                    result.push_str(new);
                } else {
                    result.push_str(old);
                }
                rest = &rest[i + old.len()..];
            }
            result.push_str(rest);
            out = result;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockhand_rules() {
        assert_eq!(sanitise_name("plausible_db"), "plausible-db");
        assert_eq!(sanitise_name("My App!"), "my-app");
        assert_eq!(sanitise_name("1st-app"), "st-app");
        assert_eq!(sanitise_name("__"), "app");
    }
}
