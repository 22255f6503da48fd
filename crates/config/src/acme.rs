//! Automatic HTTPS settings: `[proxy.acme]` (the CA, the account, the challenges, DNS-01
//! providers), the HTTPS defaults of `[proxy]` (`https_redirect`, `hsts`) and their
//! per-route overrides, and the pure rule of where a host's certificate comes from
//! ([`host_kind`]), which `dockhand check` and the agent share.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml_edit::{Item, Value};

use crate::interpolate::SecretMode;
use crate::model::{EnvValue, ProxySettings};
use crate::parse::{key_span, value_span, Field, Fields, Parser};

/// Let's Encrypt's production directory, the default CA.
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// ZeroSSL's directory (needs external account binding).
pub const ZEROSSL: &str = "https://acme.zerossl.com/v2/DV90";
/// Cloudflare's API, as documented.
pub const CLOUDFLARE_API: &str = "https://api.cloudflare.com/client/v4";
/// One year, the HSTS max-age when `hsts` is not set.
pub const DEFAULT_HSTS: Duration = Duration::from_secs(365 * 86_400);

const ACME_KEYS: &[&str] = &[
    "enabled",
    "directory",
    "email",
    "ca",
    "challenge",
    "eab",
    "domains",
    "dns",
];
const EAB_KEYS: &[&str] = &["kid", "hmac_key"];
const DNS_KEYS: &[&str] = &[
    "provider",
    "command",
    "api_token",
    "zone_id",
    "api",
    "nameservers",
    "propagation_timeout",
];

/// An ACME challenge type.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    #[serde(rename = "dns-01")]
    Dns01,
}

impl ChallengeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
            ChallengeKind::Dns01 => "dns-01",
        }
    }

    fn parse(text: &str) -> Option<ChallengeKind> {
        match text.to_ascii_lowercase().as_str() {
            "http-01" => Some(ChallengeKind::Http01),
            "tls-alpn-01" => Some(ChallengeKind::TlsAlpn01),
            "dns-01" => Some(ChallengeKind::Dns01),
            _ => None,
        }
    }
}

/// `[proxy.acme]`: where automatic certificates come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AcmeSettings {
    /// Off: only `certificates` files (and the local CA for local hosts) are served.
    pub enabled: bool,
    /// The CA's RFC 8555 directory URL.
    pub directory: String,
    /// The account's contact address.
    pub email: Option<String>,
    /// PEM root certificates to trust for the directory's own HTTPS (a private ACME server).
    pub ca: Option<PathBuf>,
    /// The challenge types tried for a host, in order.
    pub challenges: Vec<ChallengeKind>,
    /// External account binding (ZeroSSL and other commercial CAs).
    pub eab: Option<ExternalAccount>,
    /// Names to get certificates for besides the route hosts (a wildcard needs DNS-01).
    pub domains: Vec<String>,
    /// The DNS-01 provider.
    pub dns: Option<DnsSettings>,
}

impl Default for AcmeSettings {
    fn default() -> AcmeSettings {
        AcmeSettings {
            enabled: true,
            directory: LETSENCRYPT.into(),
            email: None,
            ca: None,
            challenges: vec![ChallengeKind::Http01, ChallengeKind::TlsAlpn01],
            eab: None,
            domains: Vec::new(),
            dns: None,
        }
    }
}

/// An external account binding: the key id and the MAC key (a secret reference).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExternalAccount {
    pub kid: String,
    /// base64url, as the CA shows it; a `${secret.NAME}` template.
    pub hmac_key: EnvValue,
}

/// `[proxy.acme.dns]`: how DNS-01 records are set and checked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DnsSettings {
    pub provider: DnsProvider,
    /// Nameservers asked whether a record is visible; empty: the zone's authoritative ones.
    pub nameservers: Vec<SocketAddr>,
    /// How long to wait for a record to be visible before giving up.
    pub propagation_timeout: Duration,
}

/// A DNS-01 provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum DnsProvider {
    /// A command run as `COMMAND set|unset RECORD VALUE` (acme.sh's and lego's `exec`
    /// convention, in the project directory, through `/bin/sh -c`).
    Command { command: String },
    /// Cloudflare's API with a token (a `${secret.NAME}` template).
    Cloudflare {
        api_token: EnvValue,
        zone_id: Option<String>,
        api: String,
    },
}

/// A route's HSTS setting.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Hsts {
    Off,
    MaxAge(Duration),
}

/// Where a host's certificate can come from, by its name alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKind {
    /// `localhost`, `*.localhost` or an IP address: the local CA.
    Local,
    /// A name a public CA can validate.
    Public,
    /// A name no public CA issues for (`.local`, `.internal`, a single label…), and why.
    Private(&'static str),
}

/// Where `host`'s certificate comes from when no file covers it.
pub fn host_kind(host: &str) -> HostKind {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") || host.parse::<IpAddr>().is_ok() {
        return HostKind::Local;
    }
    let tld = host.rsplit('.').next().unwrap_or("");
    if !host.contains('.') {
        return HostKind::Private("a single-label name");
    }
    match tld {
        "local" => HostKind::Private("a `.local` (mDNS) name"),
        "internal" | "lan" | "home" | "corp" | "intranet" => {
            HostKind::Private("a private-network name")
        }
        "test" | "example" | "invalid" => HostKind::Private("a reserved name (RFC 2606)"),
        _ => HostKind::Public,
    }
}

impl Parser<'_> {
    /// `https_redirect`, `hsts` and `[proxy.acme]` of `[proxy]`.
    pub(crate) fn https_defaults(&mut self, fields: &Fields<'_>, proxy: &mut ProxySettings) {
        if let Some(f) = fields.get("https_redirect") {
            if let Some(b) = self.boolean(f) {
                proxy.https_redirect = b;
            }
        }
        if let Some(f) = fields.get("hsts") {
            if let Some(h) = self.hsts(f) {
                proxy.hsts = h;
            }
        }
        if let Some(f) = fields.get("acme") {
            if let Some(table) = self.table(f) {
                proxy.acme = self.acme(table, f);
                if proxy.https_listen.is_none() {
                    self.error(
                        key_span(f),
                        Some(&f.path),
                        "[proxy.acme] is configured but `https_listen` is not set, so no certificate would be served".into(),
                        Some("add https_listen = \"0.0.0.0:443\" to [proxy]".into()),
                    );
                }
            }
        }
    }

    /// `hsts = "365d"` or `hsts = false`.
    pub(crate) fn hsts(&mut self, f: &Field<'_>) -> Option<Hsts> {
        match f.item.as_value() {
            Some(Value::Boolean(b)) if !*b.value() => Some(Hsts::Off),
            Some(Value::Boolean(_)) => Some(Hsts::MaxAge(DEFAULT_HSTS)),
            Some(Value::String(_)) => self.duration(f, false).map(Hsts::MaxAge),
            _ => {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    "expected a duration such as \"365d\", or false".into(),
                    Some(
                        "write hsts = \"365d\" (the max-age browsers remember), or hsts = false"
                            .into(),
                    ),
                );
                None
            }
        }
    }

    /// A challenge type or an array of them, in order of preference.
    pub(crate) fn challenges(&mut self, f: &Field<'_>) -> Option<Vec<ChallengeKind>> {
        let values: Vec<(&Value, std::ops::Range<usize>)> = match f.item.as_value() {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| (v, v.span().unwrap_or_else(|| value_span(f))))
                .collect(),
            Some(v) => vec![(v, value_span(f))],
            None => Vec::new(),
        };
        let mut out = Vec::new();
        for (value, span) in values {
            match value.as_str().and_then(ChallengeKind::parse) {
                Some(kind) if !out.contains(&kind) => out.push(kind),
                Some(_) => {}
                None => self.error(
                    span,
                    Some(&f.path),
                    format!(
                        "unknown challenge type {}",
                        value.to_string().trim()
                    ),
                    Some("use \"http-01\", \"tls-alpn-01\" or \"dns-01\" (or an array of them, in order)".into()),
                ),
            }
        }
        (!out.is_empty()).then_some(out)
    }

    fn acme(&mut self, table: &dyn toml_edit::TableLike, at: &Field<'_>) -> AcmeSettings {
        let fields = self.fields(table, &at.path, ACME_KEYS, "in [proxy.acme]");
        let mut acme = AcmeSettings::default();
        if let Some(f) = fields.get("enabled") {
            acme.enabled = self.boolean(f).unwrap_or(true);
        }
        if let Some(f) = fields.get("directory") {
            if let Some(text) = self.string(f) {
                match text.as_str() {
                    "letsencrypt" => acme.directory = LETSENCRYPT.into(),
                    "letsencrypt-staging" => acme.directory = LETSENCRYPT_STAGING.into(),
                    "zerossl" => acme.directory = ZEROSSL.into(),
                    url if url.starts_with("https://") || url.starts_with("http://") => {
                        acme.directory = url.into()
                    }
                    other => self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("unknown ACME directory `{other}`"),
                        Some("use \"letsencrypt\", \"letsencrypt-staging\", \"zerossl\" or the CA's directory URL (https://…)".into()),
                    ),
                }
            }
        }
        if let Some(f) = fields.get("email") {
            if let Some(email) = self.string(f) {
                if email.contains('@') && !email.contains(char::is_whitespace) {
                    acme.email = Some(email);
                } else {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("`{email}` is not an e-mail address"),
                        Some("write email = \"ops@example.org\" (the CA writes to it about expiring certificates), or leave it out".into()),
                    );
                }
            }
        }
        if let Some(f) = fields.get("ca") {
            if let Some(path) = self.path(f) {
                if path.is_file() {
                    acme.ca = Some(path);
                } else {
                    self.error(
                        value_span(f),
                        Some(&f.path),
                        format!("{} does not exist", path.display()),
                        Some("`ca` is a PEM file of the root certificates that signed the ACME server's HTTPS certificate (paths are relative to dockhand.toml)".into()),
                    );
                }
            }
        }
        if let Some(f) = fields.get("challenge") {
            if let Some(list) = self.challenges(f) {
                acme.challenges = list;
            }
        }
        if let Some(f) = fields.get("eab") {
            if let Some(t) = self.table(f) {
                let eab_fields = self.fields(t, &f.path, EAB_KEYS, "in `eab`");
                let kid = eab_fields.get("kid").and_then(|k| self.string(k));
                let hmac = eab_fields.get("hmac_key").and_then(|k| {
                    let raw = self.raw_str(k)?;
                    let out = self.interpolate(k, raw, SecretMode::Keep)?;
                    Some(EnvValue::from_template(out.value))
                });
                match (kid, hmac) {
                    (Some(kid), Some(hmac_key)) => acme.eab = Some(ExternalAccount { kid, hmac_key }),
                    _ => self.error(
                        key_span(f),
                        Some(&f.path),
                        "`eab` needs `kid` and `hmac_key`".into(),
                        Some("write eab = { kid = \"…\", hmac_key = \"${secret.ACME_EAB_HMAC}\" } with the values your CA shows".into()),
                    ),
                }
            }
        }
        if let Some(f) = fields.get("dns") {
            if let Some(t) = self.table(f) {
                acme.dns = self.dns(t, f);
            }
        }
        if let Some(f) = fields.get("domains") {
            acme.domains = self.domains(f, acme.dns.is_some());
        }
        if acme.challenges.contains(&ChallengeKind::Dns01) && acme.dns.is_none() {
            let f = fields.get("challenge").unwrap_or(at);
            self.error(
                key_span(f),
                Some(&f.path),
                "the dns-01 challenge needs a DNS provider".into(),
                Some("add [proxy.acme.dns] with provider = \"command\" and command = \"…\", or provider = \"cloudflare\"".into()),
            );
        }
        acme
    }

    fn domains(&mut self, f: &Field<'_>, has_dns: bool) -> Vec<String> {
        let Some(Value::Array(array)) = f.item.as_value() else {
            self.error(
                value_span(f),
                Some(&f.path),
                "expected an array of host names".into(),
                Some("write domains = [\"*.example.org\"]".into()),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for value in array.iter() {
            let span = value.span().unwrap_or_else(|| value_span(f));
            let Some(name) = value.as_str().map(|s| s.to_ascii_lowercase()) else {
                self.error(
                    span,
                    Some(&f.path),
                    "expected a host name string".into(),
                    None,
                );
                continue;
            };
            let bare = name.strip_prefix("*.").unwrap_or(&name);
            if bare.is_empty()
                || bare.contains('*')
                || !bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                self.error(
                    span,
                    Some(&f.path),
                    format!("`{name}` is not a host name"),
                    Some("write a name such as \"example.org\" or a wildcard \"*.example.org\" (one label)".into()),
                );
                continue;
            }
            if name.starts_with("*.") && !has_dns {
                self.error(
                    span,
                    Some(&f.path),
                    format!("the wildcard `{name}` needs the dns-01 challenge, and no DNS provider is configured"),
                    Some("add [proxy.acme.dns] (CAs validate wildcards only through DNS-01)".into()),
                );
                continue;
            }
            out.push(name);
        }
        out
    }

    fn dns(&mut self, table: &dyn toml_edit::TableLike, at: &Field<'_>) -> Option<DnsSettings> {
        let fields = self.fields(table, &at.path, DNS_KEYS, "in [proxy.acme.dns]");
        let mut nameservers = Vec::new();
        if let Some(f) = fields.get("nameservers") {
            match f.item {
                Item::Value(Value::Array(a)) => {
                    for v in a.iter() {
                        let span = v.span().unwrap_or_else(|| value_span(f));
                        let parsed = v.as_str().and_then(|s| {
                            s.parse::<SocketAddr>().ok().or_else(|| {
                                s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
                            })
                        });
                        match parsed {
                            Some(addr) => nameservers.push(addr),
                            None => self.error(
                                span,
                                Some(&f.path),
                                format!("invalid nameserver {}", v.to_string().trim()),
                                Some("write an IP address, with a port when it is not 53: \"203.0.113.53\" or \"127.0.0.1:8053\"".into()),
                            ),
                        }
                    }
                }
                _ => self.error(
                    value_span(f),
                    Some(&f.path),
                    "expected an array of nameserver addresses".into(),
                    Some("write nameservers = [\"203.0.113.53\"]".into()),
                ),
            }
        }
        let propagation_timeout = fields
            .get("propagation_timeout")
            .and_then(|f| self.duration(f, false))
            .unwrap_or(Duration::from_secs(120));
        let provider_field = fields.get("provider");
        let provider = provider_field.and_then(|f| self.string(f));
        let provider = match provider.as_deref() {
            Some("command") => match fields.get("command").and_then(|f| self.string(f)) {
                Some(command) => DnsProvider::Command { command },
                None => {
                    self.error(
                        key_span(at),
                        Some(&at.path),
                        "the command DNS provider needs `command`".into(),
                        Some("write command = \"./dns-hook.sh\": it is run as `COMMAND set RECORD VALUE` and `COMMAND unset RECORD VALUE`".into()),
                    );
                    return None;
                }
            },
            Some("cloudflare") => {
                let token = fields.get("api_token").and_then(|f| {
                    let raw = self.raw_str(f)?;
                    let out = self.interpolate(f, raw, SecretMode::Keep)?;
                    let value = EnvValue::from_template(out.value);
                    if !value.has_secrets() {
                        self.error(
                            value_span(f),
                            Some(&f.path),
                            "the API token must come from the secrets file".into(),
                            Some("write api_token = \"${secret.CLOUDFLARE_API_TOKEN}\" and put the token in the secrets file".into()),
                        );
                        return None;
                    }
                    Some(value)
                });
                let Some(api_token) = token else {
                    if fields.get("api_token").is_none() {
                        self.error(
                            key_span(at),
                            Some(&at.path),
                            "the cloudflare DNS provider needs `api_token`".into(),
                            Some("write api_token = \"${secret.CLOUDFLARE_API_TOKEN}\" (a token with Zone.DNS edit permission)".into()),
                        );
                    }
                    return None;
                };
                let zone_id = fields.get("zone_id").and_then(|f| self.string(f));
                let api = fields
                    .get("api")
                    .and_then(|f| self.string(f))
                    .unwrap_or_else(|| CLOUDFLARE_API.into());
                DnsProvider::Cloudflare {
                    api_token,
                    zone_id,
                    api,
                }
            }
            Some(other) => {
                let f = provider_field.unwrap_or(at);
                self.error(
                    value_span(f),
                    Some(&f.path),
                    format!("unknown DNS provider `{other}`"),
                    Some("use \"command\" (your own script) or \"cloudflare\"".into()),
                );
                return None;
            }
            None => {
                if provider_field.is_none() {
                    self.error(
                        key_span(at),
                        Some(&at.path),
                        "[proxy.acme.dns] needs `provider`".into(),
                        Some("write provider = \"command\" or provider = \"cloudflare\"".into()),
                    );
                }
                return None;
            }
        };
        Some(DnsSettings {
            provider,
            nameservers,
            propagation_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_classified_by_name() {
        assert_eq!(host_kind("localhost"), HostKind::Local);
        assert_eq!(host_kind("shop.localhost"), HostKind::Local);
        assert_eq!(host_kind("127.0.0.1"), HostKind::Local);
        assert_eq!(host_kind("::1"), HostKind::Local);
        assert_eq!(host_kind("shop.example.org"), HostKind::Public);
        assert!(matches!(host_kind("printer.local"), HostKind::Private(_)));
        assert!(matches!(host_kind("intranet"), HostKind::Private(_)));
        assert!(matches!(host_kind("a.test"), HostKind::Private(_)));
    }
}
