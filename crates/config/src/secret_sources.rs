//! `[secrets]`: secrets kept in a password manager instead of the secrets file, fetched by the
//! agent from the manager's own CLI each time it loads secrets (every deploy, restart and
//! task), as Kamal's secrets adapters do:
//!
//! ```toml
//! [secrets]
//! DB_PASSWORD = { pass = "shop/db" }                          # pass show shop/db (first line)
//! STRIPE_KEY = { op = "op://Production/Stripe/credential" }   # op read
//! SMTP_PASSWORD = { bw = "smtp-login" }                       # bw get password
//! ```
//!
//! A name here is a `${secret.NAME}` like one of the secrets file (and wins over it). The
//! configuration holds only where each secret is, never its value; `check` runs no CLI.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml_edit::TableLike;

use crate::parse::{key_span, value_span, Parser};

/// A password manager's CLI.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SecretTool {
    /// `pass show NAME`: the first line of the decrypted entry.
    Pass,
    /// 1Password's `op read --no-newline REFERENCE` (`op://vault/item/field`).
    Op,
    /// Bitwarden's `bw get password ITEM` (needs `BW_SESSION` in the agent's environment).
    Bw,
}

impl SecretTool {
    pub fn program(self) -> &'static str {
        match self {
            SecretTool::Pass => "pass",
            SecretTool::Op => "op",
            SecretTool::Bw => "bw",
        }
    }
}

/// Where one secret is kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecretSource {
    pub tool: SecretTool,
    /// The entry's name (pass), secret reference (op) or item name or id (bw).
    pub reference: String,
}

const TOOLS: &[&str] = &["pass", "op", "bw"];

impl Parser<'_> {
    pub(crate) fn secret_sources(
        &mut self,
        table: &dyn TableLike,
    ) -> BTreeMap<String, SecretSource> {
        let mut out = BTreeMap::new();
        for (name, _) in table.iter() {
            let Some((key, item)) = table.get_key_value(name) else {
                continue;
            };
            let f = crate::parse::Field {
                name,
                key,
                item,
                path: format!("secrets.{name}"),
            };
            if !crate::valid_secret_name(name) {
                self.error(
                    key_span(&f),
                    Some(&f.path),
                    format!("`{name}` is not a valid secret name"),
                    Some("use letters, digits and `_`, not starting with a digit".into()),
                );
                continue;
            }
            let Some(t) = self.table(&f) else { continue };
            let fields = self.fields(t, &f.path, TOOLS, "in a [secrets] entry");
            let given: Vec<_> = TOOLS
                .iter()
                .filter_map(|tool| Some((*tool, fields.get(tool)?)))
                .collect();
            let (tool, at) = match given.as_slice() {
                [one] => *one,
                [] => {
                    self.error(
                        value_span(&f),
                        Some(&f.path),
                        format!("secret `{name}` says no password manager"),
                        Some(format!("write {name} = {{ pass = \"entry\" }}, {{ op = \"op://vault/item/field\" }} or {{ bw = \"item\" }}")),
                    );
                    continue;
                }
                [_, (_, second), ..] => {
                    self.error(
                        key_span(second),
                        Some(&second.path),
                        format!("secret `{name}` names more than one password manager"),
                        Some("keep one of `pass`, `op` and `bw`".into()),
                    );
                    continue;
                }
            };
            let Some(reference) = self.string(at) else {
                continue;
            };
            let tool = match tool {
                "pass" => SecretTool::Pass,
                "op" => SecretTool::Op,
                _ => SecretTool::Bw,
            };
            if reference.trim().is_empty() || reference.starts_with('-') {
                self.error(
                    value_span(at),
                    Some(&at.path),
                    format!("`{reference}` is not a {} reference", tool.program()),
                    Some("write the entry's name, e.g. pass = \"shop/db\"".into()),
                );
                continue;
            }
            if tool == SecretTool::Op && !reference.starts_with("op://") {
                self.error(
                    value_span(at),
                    Some(&at.path),
                    format!("`{reference}` is not a 1Password secret reference"),
                    Some("write op = \"op://vault/item/field\" (1Password's \"Copy Secret Reference\")".into()),
                );
                continue;
            }
            out.insert(name.to_string(), SecretSource { tool, reference });
        }
        out
    }
}
