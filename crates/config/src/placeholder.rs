//! Placeholder values that must never reach production: `change_me`, `your-api-key-here`,
//! `xxx`, `TODO`… — found in `.env.example` files copied as they are. Refused (with the
//! variable's name, never its value) by `check` and so before any deploy starts.

/// Why `value` looks like a placeholder, if it does.
pub fn placeholder(value: &str) -> Option<&'static str> {
    let v = value.trim().to_ascii_lowercase();
    let squashed: String = v.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    const WORDS: &[&str] = &[
        "changeme",
        "changethis",
        "replaceme",
        "todo",
        "fixme",
        "tbd",
        "placeholder",
        "secret",
        "password",
        "yoursecret",
        "yourpassword",
    ];
    if WORDS.contains(&squashed.as_str()) && squashed.len() == v.len() - separators(&v) {
        return Some("a placeholder word");
    }
    if squashed.contains("changeme") || squashed.contains("replaceme") {
        return Some("a `change me` placeholder");
    }
    if (v.starts_with("your") || v.starts_with("<your") || v.starts_with("[your"))
        && (v.ends_with("here") || v.ends_with("here>") || v.ends_with("here]"))
    {
        return Some("a `your-…-here` placeholder");
    }
    if v.len() >= 3 && v.chars().all(|c| c == 'x' || c == '*' || c == '.') {
        return Some("only x's");
    }
    if v.starts_with('<') && v.ends_with('>') && v.len() > 2 && !v.contains(' ') {
        return Some("a `<…>` placeholder");
    }
    None
}

fn separators(v: &str) -> usize {
    v.chars().filter(|c| !c.is_ascii_alphanumeric()).count()
}

#[cfg(test)]
mod tests {
    use super::placeholder;

    #[test]
    fn placeholders_are_found_and_real_values_pass() {
        for p in [
            "change_me",
            "CHANGEME",
            "change-me",
            "changeme123",
            "your-api-key-here",
            "your_secret_here",
            "<your-token-here>",
            "xxx",
            "XXXXXXXX",
            "TODO",
            "todo",
            "<password>",
            "replace_me",
        ] {
            assert!(placeholder(p).is_some(), "{p}");
        }
        for real in [
            "postgres://shop:pw@db/shop",
            "info",
            "8a7f0c2e9b",
            "true",
            "3",
            "exchange",
            "todo-app",
            "https://example.org/your-account-here/x",
            "",
        ] {
            assert!(placeholder(real).is_none(), "{real}");
        }
    }
}
