//! Just enough of the Dockerfile format to check a `build.target` before anything is built:
//! the names of the build stages (`FROM image AS name`), with line continuations, comments,
//! parser directives, `--platform` flags and any letter case handled as BuildKit does.

/// The stage names a Dockerfile defines, in order (lowercased, as BuildKit compares them).
pub fn stages(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in logical_lines(text) {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            continue;
        }
        let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
        if let [_image, as_kw, name, ..] = rest.as_slice() {
            if as_kw.eq_ignore_ascii_case("AS") {
                names.push(name.to_ascii_lowercase());
            }
        }
    }
    names
}

/// Instruction lines with `\` continuations joined and comments dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let escape = escape_char(text);
    let mut out = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix(escape) {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        if !current.trim().is_empty() {
            out.push(std::mem::take(&mut current));
        }
        current.clear();
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// The escape character from a leading `# escape=` parser directive (default `\`).
fn escape_char(text: &str) -> char {
    for line in text.lines() {
        let Some(directive) = line.trim().strip_prefix('#') else {
            break;
        };
        if let Some((key, value)) = directive.split_once('=') {
            if key.trim().eq_ignore_ascii_case("escape") && value.trim() == "`" {
                return '`';
            }
        }
    }
    '\\'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_stage_names() {
        let text = "# syntax=docker/dockerfile:1\nFROM python:3.12 AS Builder\nRUN pip install \\\n  x\nfrom --platform=$BUILDPLATFORM alpine as dev-envs\nFROM builder\n  # FROM fake AS nope\nFROM scratch AS final\n";
        assert_eq!(stages(text), vec!["builder", "dev-envs", "final"]);
        assert!(stages("FROM alpine\n").is_empty());
    }

    #[test]
    fn honours_the_escape_directive() {
        let text = "# escape=`\nFROM mcr/windows `\n  AS win\n";
        assert_eq!(stages(text), vec!["win"]);
    }
}
