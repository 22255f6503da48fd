//! The HTTPS keys of `[proxy]`: `https_listen` and `certificates` (an array of
//! `{ cert = "…", key = "…" }` tables, paths relative to dockhand.toml). Each
//! certificate is loaded and checked here (see `certs.rs`), every problem at the
//! `cert` or `key` value it is about; once the services are parsed, a route host no
//! certificate covers is a warning.

use std::ops::Range;
use std::time::{Duration, SystemTime};

use toml_edit::{Item, TableLike, Value};

use crate::acme::{host_kind, HostKind, LETSENCRYPT, LETSENCRYPT_STAGING, ZEROSSL};
use crate::certs::{covers, load_certificate, CertificateFile};
use crate::model::{CertificateFiles, ProxySettings};
use crate::parse::{key_span, value_span, Field, Fields, Parser};

const CERTIFICATE_KEYS: &[&str] = &["cert", "key"];

/// A certificate expiring sooner than this is reported (a warning, not an error).
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

const CERTIFICATES_EXAMPLE: &str =
    "certificates = [{ cert = \"certs/site.pem\", key = \"certs/site.key\" }]";

/// Where one certificate entry is in the file.
struct CertificateSite {
    files: CertificateFiles,
    cert: (Range<usize>, String),
    key: (Range<usize>, String),
}

impl Parser<'_> {
    /// Parses `https_listen` and `certificates` of `[proxy]` into `proxy` and checks
    /// them together and against the files.
    pub(crate) fn https(&mut self, fields: &Fields<'_>, proxy: &mut ProxySettings) {
        let listen = fields.get("https_listen");
        if let Some(f) = listen {
            proxy.https_listen = self.socket_addr(f, "443");
            if proxy.https_listen == Some(proxy.listen) && proxy.listen.port() != 0 {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    format!(
                        "`https_listen` is the same address as `listen` ({})",
                        proxy.listen
                    ),
                    Some("give HTTPS its own port, e.g. https_listen = \"0.0.0.0:443\"".into()),
                );
            }
        }
        let sites = match fields.get("certificates") {
            Some(f) => self.certificate_sites(f),
            None => Vec::new(),
        };
        proxy.certificates = sites.iter().map(|s| s.files.clone()).collect();
        match (listen, fields.get("certificates")) {
            // Every route host gets an automatic certificate (ACME, or the local CA).
            (Some(_), _) if sites.is_empty() => {
                self.certificate_names = Some(Vec::new());
                return;
            }
            (None, Some(f)) => {
                self.error(
                    key_span(f),
                    Some(&f.path),
                    "`certificates` are configured but `https_listen` is not set, so nothing would serve them".into(),
                    Some("add https_listen = \"0.0.0.0:443\" to [proxy], or remove `certificates`".into()),
                );
                return;
            }
            (None, None) => return,
            (Some(_), _) => {}
        }
        let now = SystemTime::now();
        let mut names = Some(Vec::new());
        for site in &sites {
            match load_certificate(&site.files, now) {
                Ok(loaded) => {
                    self.certificate_warnings(site, &loaded.names, loaded.not_after, now);
                    if let Some(all) = names.as_mut() {
                        all.push(loaded.names);
                    }
                }
                Err(error) => {
                    let (span, key) = match error.file() {
                        CertificateFile::Cert => &site.cert,
                        CertificateFile::Key => &site.key,
                    };
                    self.error(span.clone(), Some(key), error.problem(), Some(error.help()));
                    names = None;
                }
            }
        }
        self.certificate_names = names;
    }

    /// Warns about each route host that no certificate file names and that cannot get an
    /// automatic one (HTTPS clients asking for it would get the default certificate and a
    /// name mismatch, or a certificate from the local CA only this machine trusts).
    pub(crate) fn check_certificate_hosts(&mut self) {
        let Some(names) = self.certificate_names.take() else {
            return;
        };
        let Some(acme) = self.acme.clone() else {
            return;
        };
        let uncovered: Vec<(String, Range<usize>, String)> = self
            .routes
            .iter()
            .filter_map(|r| {
                let host = r.host.as_ref()?;
                (!names.iter().any(|n| covers(n, host)))
                    .then(|| (host.clone(), r.span.clone(), r.key.clone()))
            })
            .collect();
        let public_ca =
            [LETSENCRYPT, LETSENCRYPT_STAGING, ZEROSSL].contains(&acme.directory.as_str());
        for (host, span, key) in uncovered {
            match host_kind(&host) {
                HostKind::Local if host.parse::<std::net::IpAddr>().is_ok() => {
                    self.warning(
                        span,
                        Some(&key),
                        format!("route host `{host}` is an IP address: public CAs do not issue certificates for it"),
                        Some("it gets a certificate from dockhand's local CA, which only machines that trust it accept (`dockhand certs trust`); use a DNS name for a public site".into()),
                    );
                    continue;
                }
                HostKind::Local => continue,
                HostKind::Private(why) if acme.enabled && public_ca => {
                    self.warning(
                        span,
                        Some(&key),
                        format!("route host `{host}` cannot get a certificate from a public CA: it is {why}"),
                        Some("use a public DNS name pointing at this server, a certificate file in [proxy] certificates, or a private ACME server ([proxy.acme] directory)".into()),
                    );
                    continue;
                }
                _ if acme.enabled => continue,
                _ => {}
            }
            let default = names
                .first()
                .map(|n| n.join(", "))
                .unwrap_or_else(|| "no names".into());
            self.warning(
                span,
                Some(&key),
                format!("route host `{host}` is not covered by any certificate in [proxy] certificates, and [proxy.acme] is disabled"),
                Some(format!(
                    "HTTPS clients asking for it get the first certificate ({default}) and a name mismatch; add a certificate whose names include {host}"
                )),
            );
        }
    }

    fn certificate_warnings(
        &mut self,
        site: &CertificateSite,
        names: &[String],
        not_after: i64,
        now: SystemTime,
    ) {
        let (span, key) = &site.cert;
        if names.is_empty() {
            self.warning(
                span.clone(),
                Some(key),
                format!(
                    "certificate {} has no DNS names (subject alternative names)",
                    site.files.cert.display()
                ),
                Some("clients match host names against the subject alternative names only; it can serve only as the default certificate".into()),
            );
        }
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let left = not_after.saturating_sub(now);
        if left < EXPIRY_WARNING.as_secs() as i64 {
            self.warning(
                span.clone(),
                Some(key),
                format!(
                    "certificate {} expires in {} day(s)",
                    site.files.cert.display(),
                    left / 86_400
                ),
                Some("renew it soon; the proxy reads certificates when the agent starts".into()),
            );
        }
    }

    /// The entries of `certificates`: an array of inline tables (or `[[proxy.certificates]]`).
    fn certificate_sites(&mut self, f: &Field<'_>) -> Vec<CertificateSite> {
        let mut tables: Vec<(&dyn TableLike, Range<usize>)> = Vec::new();
        match f.item {
            Item::Value(Value::Array(array)) => {
                for value in array.iter() {
                    let span = value.span().unwrap_or_else(|| value_span(f));
                    match value {
                        Value::InlineTable(t) => tables.push((t, span)),
                        _ => self.error(
                            span,
                            Some(&f.path),
                            "each certificate is a table with `cert` and `key`".into(),
                            Some(format!("write {CERTIFICATES_EXAMPLE}")),
                        ),
                    }
                }
            }
            Item::ArrayOfTables(array) => {
                for table in array.iter() {
                    tables.push((table, table.span().unwrap_or_else(|| key_span(f))));
                }
            }
            _ => {
                self.error(
                    value_span(f),
                    Some(&f.path),
                    "expected an array of tables for `certificates`".into(),
                    Some(format!("write {CERTIFICATES_EXAMPLE}")),
                );
                return Vec::new();
            }
        }
        let mut sites = Vec::new();
        for (i, (table, span)) in tables.into_iter().enumerate() {
            let path = format!("{}[{i}]", f.path);
            let fields = self.fields(table, &path, CERTIFICATE_KEYS, "in a certificate");
            let cert = fields
                .get("cert")
                .and_then(|f| Some((self.path(f)?, value_span(f), f.path.clone())));
            let key = fields
                .get("key")
                .and_then(|f| Some((self.path(f)?, value_span(f), f.path.clone())));
            match (cert, key) {
                (Some((cert, cert_span, cert_key)), Some((key, key_span, key_key))) => {
                    sites.push(CertificateSite {
                        files: CertificateFiles { cert, key },
                        cert: (cert_span, cert_key),
                        key: (key_span, key_key),
                    });
                }
                _ => {
                    // A bad value was reported already; report the keys left out.
                    let absent: Vec<String> = CERTIFICATE_KEYS
                        .iter()
                        .filter(|k| fields.get(k).is_none())
                        .map(|k| format!("`{k}`"))
                        .collect();
                    if !absent.is_empty() {
                        self.error(
                            span,
                            Some(&path),
                            format!("a certificate needs {}", absent.join(" and ")),
                            Some(
                                "write { cert = \"certs/site.pem\", key = \"certs/site.key\" }"
                                    .into(),
                            ),
                        );
                    }
                }
            }
        }
        sites
    }
}
