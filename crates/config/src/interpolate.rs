//! Variable interpolation in string values: `${VAR}`, `${VAR:-default}` (unset or empty),
//! `${VAR-default}` (unset), `${VAR?message}` / `${VAR:?message}` (required), `$$` for a
//! literal `$`, and `${secret.NAME}`. Secret references are never expanded here: in `env`
//! values they are kept in the `EnvValue` template, everywhere else they are an error. A `$`
//! not followed by `{` or `$` is left alone so the shell can expand `$HOME` in a command.

use std::collections::BTreeMap;
use std::path::Path;

use crate::container::LINK_FIELDS;
use crate::dotenv::is_valid_name;
use crate::model::EnvValue;

/// Where variables come from: the process environment first, then the project's `.env`.
pub(crate) struct Vars<'a> {
    pub process: &'a BTreeMap<String, String>,
    pub dotenv: &'a BTreeMap<String, String>,
    pub dotenv_path: &'a Path,
}

impl Vars<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.process
            .get(name)
            .or_else(|| self.dotenv.get(name))
            .map(String::as_str)
    }
}

/// The connection values `${databases.NAME.FIELD}` can refer to, as seen by one kind of
/// service (container or native process): per database, its values or why there are none.
#[derive(Debug, Default)]
pub(crate) struct Links {
    pub values: BTreeMap<String, Result<BTreeMap<&'static str, EnvValue>, String>>,
}

/// Whether `${secret.NAME}` is allowed in the value being interpolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretMode {
    /// An `env` value: produce an `EnvValue` template (`$$` for `$`, secrets kept).
    Keep,
    /// Anything else: produce the plain value; a secret reference is an error.
    Forbid,
}

/// A secret reference found in a value, at a byte offset of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretRef {
    pub name: String,
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interpolated {
    pub value: String,
    pub secrets: Vec<SecretRef>,
}

/// A problem at a byte offset of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterpError {
    pub offset: usize,
    pub message: String,
    pub help: Option<String>,
}

/// Interpolates `text`, reporting every problem in it.
pub(crate) fn interpolate(
    text: &str,
    vars: &Vars<'_>,
    mode: SecretMode,
    links: &Links,
) -> Result<Interpolated, Vec<InterpError>> {
    let mut expander = Expander {
        vars,
        mode,
        links,
        out: Interpolated {
            value: String::with_capacity(text.len()),
            secrets: Vec::new(),
        },
        errors: Vec::new(),
    };
    expander.expand(text, 0);
    if expander.errors.is_empty() {
        Ok(expander.out)
    } else {
        Err(expander.errors)
    }
}

const FORMS_HELP: &str =
    "supported forms are ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR?message}, ${secret.NAME} and $$ for a literal $";

struct Expander<'v, 'a> {
    vars: &'v Vars<'a>,
    mode: SecretMode,
    links: &'v Links,
    out: Interpolated,
    errors: Vec<InterpError>,
}

impl Expander<'_, '_> {
    fn error(&mut self, offset: usize, message: String, help: Option<String>) {
        self.errors.push(InterpError {
            offset,
            message,
            help,
        });
    }

    /// Appends literal text from the file or from a variable's value.
    fn push_literal(&mut self, text: &str) {
        match self.mode {
            SecretMode::Keep => self.out.value.push_str(&text.replace('$', "$$")),
            SecretMode::Forbid => self.out.value.push_str(text),
        }
    }

    /// Expands `text`, which starts at byte `base` of the original value.
    fn expand(&mut self, text: &str, base: usize) {
        let mut i = 0;
        while let Some(found) = text[i..].find('$') {
            let dollar = i + found;
            self.push_literal(&text[i..dollar]);
            let rest = &text[dollar..];
            if rest.starts_with("$$") {
                self.push_literal("$");
                i = dollar + 2;
            } else if let Some(inside) = rest.strip_prefix("${") {
                match matching_brace(inside) {
                    Some(len) => {
                        self.reference(&inside[..len], base + dollar);
                        i = dollar + 2 + len + 1;
                    }
                    None => {
                        self.error(
                            base + dollar,
                            "unterminated `${` in value".into(),
                            Some(
                                "close the reference with `}`, or write `$$` for a literal `$`"
                                    .into(),
                            ),
                        );
                        return;
                    }
                }
            } else {
                self.push_literal("$");
                i = dollar + 1;
            }
        }
        self.push_literal(&text[i..]);
    }

    /// Handles the inside of `${...}`, which starts at byte `at` (the `$`).
    fn reference(&mut self, inner: &str, at: usize) {
        if let Some(link) = inner.strip_prefix("databases.") {
            return self.link(link, at);
        }
        let name_len = inner
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(inner.len());
        let (name, rest) = inner.split_at(name_len);
        if let Some(secret) = name.strip_prefix("secret.") {
            return self.secret(secret, rest, at);
        }
        if name.is_empty() || !is_valid_name(name) {
            return self.error(
                at,
                format!("invalid variable reference `${{{inner}}}`"),
                Some(format!(
                    "variable names use letters, digits and `_` and do not start with a digit; {FORMS_HELP}"
                )),
            );
        }
        let value = self.vars.get(name);
        let (op, arg) = if let Some(arg) = rest.strip_prefix(":-") {
            (":-", arg)
        } else if let Some(arg) = rest.strip_prefix(":?") {
            (":?", arg)
        } else if let Some(arg) = rest.strip_prefix('-') {
            ("-", arg)
        } else if let Some(arg) = rest.strip_prefix('?') {
            ("?", arg)
        } else if rest.is_empty() {
            ("", "")
        } else {
            return self.error(
                at,
                format!("unsupported variable reference `${{{inner}}}`"),
                Some(FORMS_HELP.into()),
            );
        };
        let missing = match op {
            ":-" | ":?" => value.is_none_or(str::is_empty),
            _ => value.is_none(),
        };
        if !missing {
            self.push_literal(value.unwrap_or_default());
            return;
        }
        let set_it = format!(
            "set it in the environment or in {}",
            self.vars.dotenv_path.display()
        );
        match op {
            ":-" | "-" => {
                let arg_base = at + 2 + name.len() + op.len();
                self.expand(arg, arg_base);
            }
            ":?" | "?" => {
                let message = if arg.is_empty() {
                    format!("required variable `{name}` is not set")
                } else {
                    format!("required variable `{name}` is not set: {arg}")
                };
                self.error(at, message, Some(set_it));
            }
            _ => self.error(
                at,
                format!("variable `{name}` is not set"),
                Some(format!(
                    "{set_it}, or give a default with `${{{name}:-default}}`"
                )),
            ),
        }
    }

    /// `${databases.NAME.FIELD}`: a connection value of a database.
    fn link(&mut self, link: &str, at: usize) {
        let Some((db, field)) = link.rsplit_once('.') else {
            return self.error(
                at,
                format!("invalid database reference `${{databases.{link}}}`"),
                Some(format!(
                    "write ${{databases.NAME.FIELD}} with FIELD one of {}",
                    LINK_FIELDS.join(", ")
                )),
            );
        };
        if !LINK_FIELDS.contains(&field) {
            return self.error(
                at,
                format!("unknown connection value `{field}` of database `{db}`"),
                Some(format!("use one of {}", LINK_FIELDS.join(", "))),
            );
        }
        let values = match self.links.values.get(db) {
            Some(Ok(values)) => values,
            Some(Err(problem)) => {
                let problem = problem.clone();
                return self.error(
                    at,
                    problem,
                    Some(format!(
                        "add publish = \"127.0.0.1:PORT\" to [databases.{db}], or run the service as a container (image or build)"
                    )),
                );
            }
            None => {
                let known: Vec<&str> = self.links.values.keys().map(String::as_str).collect();
                let help = if known.is_empty() {
                    format!("define it in a [databases.{db}] table")
                } else {
                    format!("defined databases: {}", known.join(", "))
                };
                return self.error(at, format!("unknown database `{db}`"), Some(help));
            }
        };
        let Some(value) = values.get(field) else {
            return self.error(
                at,
                format!("database `{db}` has no `{field}`"),
                Some(format!("set {field} in [databases.{db}]")),
            );
        };
        match self.mode {
            SecretMode::Keep => {
                self.out.value.push_str(value.template());
                for name in value.secret_names() {
                    self.out.secrets.push(SecretRef { name, offset: at });
                }
            }
            SecretMode::Forbid if value.has_secrets() => self.error(
                at,
                format!("`${{databases.{db}.{field}}}` contains the database password, a secret, so it may only be used in `env` values"),
                Some("put it in the service's env and read the variable from there".into()),
            ),
            SecretMode::Forbid => {
                let plain = value
                    .resolve(&crate::Secrets::empty())
                    .unwrap_or_default();
                self.out.value.push_str(&plain);
            }
        }
    }

    fn secret(&mut self, name: &str, rest: &str, at: usize) {
        if !rest.is_empty() {
            return self.error(
                at,
                format!("secret reference `${{secret.{name}{rest}}}` cannot have a default or a message"),
                Some(format!("write `${{secret.{name}}}` and define `{name}` in the secrets file")),
            );
        }
        if !is_valid_name(name) {
            return self.error(
                at,
                format!("invalid secret name `{name}`"),
                Some(
                    "secret names use letters, digits and `_` and do not start with a digit".into(),
                ),
            );
        }
        match self.mode {
            SecretMode::Keep => {
                self.out.value.push_str(&format!("${{secret.{name}}}"));
                self.out.secrets.push(SecretRef {
                    name: name.to_string(),
                    offset: at,
                });
            }
            SecretMode::Forbid => self.error(
                at,
                "secrets may only be used in `env` values".into(),
                Some(format!(
                    "this field can end up in process arguments or logs; put the secret in the service's env (e.g. env = {{ {name} = \"${{secret.{name}}}\" }}) and read ${name} from there"
                )),
            ),
        }
    }
}

/// The length of the text before the `}` that closes a `${` whose inside starts `text`.
fn matching_brace(text: &str) -> Option<usize> {
    let mut depth = 1usize;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, mode: SecretMode) -> Result<Interpolated, Vec<InterpError>> {
        let process: BTreeMap<String, String> =
            [("HOME_DIR", "/home/x"), ("EMPTY", ""), ("DOLLAR", "a$b")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let dotenv: BTreeMap<String, String> = [("FROM_DOTENV", "yes"), ("HOME_DIR", "ignored")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let vars = Vars {
            process: &process,
            dotenv: &dotenv,
            dotenv_path: Path::new("/p/.env"),
        };
        interpolate(text, &vars, mode, &Links::default())
    }

    fn plain(text: &str) -> String {
        run(text, SecretMode::Forbid).unwrap().value
    }

    fn first_error(text: &str, mode: SecretMode) -> InterpError {
        run(text, mode).unwrap_err().remove(0)
    }

    #[test]
    fn expands_every_form() {
        assert_eq!(plain("${HOME_DIR}/db"), "/home/x/db");
        assert_eq!(plain("${FROM_DOTENV}"), "yes");
        assert_eq!(
            plain("${NOPE:-d}|${EMPTY:-d}|${NOPE-d}|${EMPTY-d}"),
            "d|d|d|"
        );
        assert_eq!(plain("${NOPE:-${HOME_DIR}/x}"), "/home/x/x");
        assert_eq!(
            plain("$$HOME $HOME ${HOME_DIR?need it} $"),
            "$HOME $HOME /home/x $"
        );
        assert_eq!(plain("${DOLLAR}"), "a$b");
    }

    #[test]
    fn env_values_keep_secrets_and_escape_dollars() {
        let out = run("${DOLLAR}:$$:${secret.API_TOKEN}", SecretMode::Keep).unwrap();
        assert_eq!(out.value, "a$$b:$$:${secret.API_TOKEN}");
        assert_eq!(
            out.secrets,
            vec![SecretRef {
                name: "API_TOKEN".into(),
                offset: 13
            }]
        );
    }

    #[test]
    fn reports_problems_at_their_offset() {
        let e = first_error("x ${NOPE}", SecretMode::Forbid);
        assert_eq!(
            (e.offset, e.message.as_str()),
            (2, "variable `NOPE` is not set")
        );
        assert!(e.help.unwrap().contains("/p/.env"));
        let e = first_error("${NOPE?set the db url}", SecretMode::Forbid);
        assert_eq!(
            e.message,
            "required variable `NOPE` is not set: set the db url"
        );
        let e = first_error("${EMPTY:?}", SecretMode::Forbid);
        assert_eq!(e.message, "required variable `EMPTY` is not set");
        let e = first_error("run ${secret.T}", SecretMode::Forbid);
        assert_eq!(
            (e.offset, e.message.as_str()),
            (4, "secrets may only be used in `env` values")
        );
        assert!(first_error("${secret.T:-x}", SecretMode::Keep)
            .message
            .contains("cannot have a default"));
        assert!(first_error("${1X}", SecretMode::Forbid)
            .message
            .contains("invalid variable"));
        assert!(first_error("${A:+x}", SecretMode::Forbid)
            .message
            .contains("unsupported"));
        assert!(first_error("a ${A", SecretMode::Forbid)
            .message
            .contains("unterminated"));
        assert_eq!(run("${A} ${B}", SecretMode::Forbid).unwrap_err().len(), 2);
    }
}
