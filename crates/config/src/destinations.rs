//! `[destinations.NAME]`: the servers the CLI works on with `-d NAME` (`host =
//! "ssh://deploy@203.0.113.10"`). The agent never reads them; `dockhand check` validates them
//! with the rest of the file, and the client commands read only this table
//! ([`crate::load_destinations`]), so a missing secret does not stop `status -d production`.

use std::collections::BTreeMap;

use dockhand_remote::{Destination, DESTINATION_HELP};
use serde::{Deserialize, Serialize};
use toml_edit::TableLike;

use crate::parse::{key_span, name_problem, value_span, Parser, NAME_HELP};

const DESTINATION_KEYS: &[&str] = &["host"];

/// One named server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationConfig {
    pub name: String,
    pub host: Destination,
}

impl Parser<'_> {
    /// The `[destinations]` table.
    pub(crate) fn destinations(
        &mut self,
        table: &dyn TableLike,
    ) -> BTreeMap<String, DestinationConfig> {
        let mut out = BTreeMap::new();
        for (name, item) in table.iter() {
            let Some((key, _)) = table.get_key_value(name) else {
                continue;
            };
            let path = format!("destinations.{name}");
            let span = key.span().unwrap_or(0..0);
            self.sites.insert(path.clone(), span.clone());
            if let Some(problem) = name_problem(name) {
                self.error(
                    span.clone(),
                    Some(&path),
                    format!("invalid destination name `{name}`: {problem}"),
                    Some(NAME_HELP.into()),
                );
            }
            let Some(inner) = item.as_table_like() else {
                self.error(
                    span,
                    Some(&path),
                    format!("`destinations.{name}` must be a table"),
                    Some(format!(
                        "write [destinations.{name}] with host = \"ssh://USER@HOST\""
                    )),
                );
                continue;
            };
            let context = format!("in [destinations.{name}]");
            let fields = self.fields(inner, &path, DESTINATION_KEYS, &context);
            let Some(f) = fields.get("host") else {
                self.error(
                    span,
                    Some(&path),
                    format!("[destinations.{name}] has no `host`"),
                    Some("add host = \"ssh://USER@HOST\" (e.g. ssh://deploy@203.0.113.10)".into()),
                );
                continue;
            };
            let Some(text) = self.string(f) else {
                continue;
            };
            match Destination::parse(&text) {
                Ok(host) => {
                    out.insert(
                        name.to_string(),
                        DestinationConfig {
                            name: name.to_string(),
                            host,
                        },
                    );
                }
                Err(e) => self.error(
                    value_span(f),
                    Some(&f.path),
                    format!("invalid host `{text}`: {}", e.problem),
                    Some(DESTINATION_HELP.into()),
                ),
            }
            let _ = key_span(f);
        }
        out
    }
}
