//! Secrets inside the agent: loaded once per operation, and redacted from everything the
//! agent reports.
//!
//! [`load`] is the one place the redaction set grows: whatever loads secret values teaches
//! them to the [`Redactor`] at the same time, so no value can be handed to a process without
//! also being hidden from events, progress, errors and log output. The set only grows while
//! the agent runs: an old release may still print a secret that was rotated since.

use std::sync::{Arc, RwLock};

use dockhand_config::{AppConfig, Secrets};

use crate::error::{AgentError, Result};

/// Replaces every secret value the agent has loaded with `******`. Cheap to clone.
#[derive(Clone, Default)]
pub struct Redactor {
    values: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    pub fn redact(&self, text: &str) -> String {
        let values = self.values.read().unwrap_or_else(|p| p.into_inner());
        redact_with(text, &values)
    }

    fn learn(&self, secrets: &Secrets) {
        let mut values = self.values.write().unwrap_or_else(|p| p.into_inner());
        for v in secrets.values() {
            if !values.iter().any(|known| known == v) {
                values.push(v.to_string());
            }
        }
        // Longest first, so a secret that contains another is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// The secrets `config` refers to (empty when it refers to none, without reading the file),
/// their values taught to `redactor`.
pub fn load(config: &AppConfig, redactor: &Redactor) -> Result<Secrets> {
    let needed = config
        .services
        .values()
        .any(|s| !s.secret_names().is_empty())
        || config
            .databases
            .values()
            .any(|d| d.container_env().values().any(|v| v.has_secrets()))
        || acme_uses_secrets(config)
        || config.backups.as_ref().is_some_and(|b| b.has_secrets())
        || config.alerts.has_secrets()
        || config.monitor.metrics_route.is_some()
        || !config.secret_sources.is_empty()
        || config
            .update
            .as_ref()
            .and_then(|u| u.webhook.as_ref())
            .is_some_and(|w| w.secret.has_secrets());
    if !needed {
        return Ok(Secrets::empty());
    }
    let mut secrets = match Secrets::load(&config.secrets_file) {
        Ok(s) => s,
        // Every secret may come from a password manager.
        Err(dockhand_config::SecretsError::NotFound { .. })
            if !config.secret_sources.is_empty() =>
        {
            Secrets::at(&config.secrets_file)
        }
        Err(e) => return Err(AgentError::runtime(e.to_string()).with_source(e)),
    };
    for (name, source) in &config.secret_sources {
        let value = crate::secret_tools::fetch(name, source)?;
        secrets.insert(name, value);
    }
    redactor.learn(&secrets);
    Ok(secrets)
}

/// Teaches `redactor` the values of the secrets file at `path`, when it can be read: a
/// watch-only agent's configuration refers to no secret, but the Swarm jobs it starts hold
/// the app's, and their output must not show them.
pub(crate) fn learn_file(path: &std::path::Path, redactor: &Redactor) {
    if let Ok(secrets) = Secrets::load(path) {
        redactor.learn(&secrets);
    }
}

/// Whether `[proxy.acme]` refers to secrets (the EAB key, a DNS provider's token).
fn acme_uses_secrets(config: &AppConfig) -> bool {
    let acme = &config.proxy.acme;
    acme.eab.as_ref().is_some_and(|e| e.hmac_key.has_secrets())
        || matches!(
            acme.dns.as_ref().map(|d| &d.provider),
            Some(dockhand_config::DnsProvider::Cloudflare { api_token, .. }) if api_token.has_secrets()
        )
}

fn redact_with(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "******");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_replaces_every_secret() {
        let s = vec!["hunter2".to_string(), "ab".to_string()];
        assert_eq!(
            redact_with("pw=hunter2 hunter2 ab", &s),
            "pw=****** ****** ab"
        );
    }

    #[test]
    fn loading_teaches_the_redactor_and_it_remembers() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets.env");
        std::fs::write(&file, "PW=hunter2\nLONG=hunter2-and-more\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let toml = format!(
            "app = \"a\"\nsecrets_file = \"{}\"\n[services.web]\ncommand = \"x\"\nenv = {{ A = \"${{secret.PW}}\", B = \"${{secret.LONG}}\" }}\n",
            file.display()
        );
        let config = dockhand_config::load_str(
            &dir.path().join("dockhand.toml"),
            &toml,
            &dockhand_config::LoadOptions::default(),
        )
        .unwrap()
        .config;
        let r = Redactor::default();
        assert_eq!(r.redact("hunter2"), "hunter2");
        let secrets = load(&config, &r).unwrap();
        assert_eq!(secrets.get("PW"), Some("hunter2"));
        assert_eq!(
            r.redact("a hunter2-and-more b hunter2"),
            "a ****** b ******"
        );
        // A later load without that secret does not make it visible again.
        std::fs::write(&file, "PW=rotated\nLONG=x\n").unwrap();
        load(&config, &r).unwrap();
        assert_eq!(r.redact("hunter2 rotated"), "****** ******");
    }
}
