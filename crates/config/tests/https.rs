//! `[proxy] https_listen` and `certificates`: real PEM files generated with rcgen, and
//! each problem reported at the file:line:column of the key it is about.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use dockhand_config::{ConfigError, Diagnostic, Severity};
use support::{render, Project};

/// A self-signed certificate for `names` valid from `from` to `until` (years), written
/// as `certs/NAME.pem` and `certs/NAME.key` (mode 0600). Returns the key's PEM text.
fn write_cert(p: &Project, name: &str, names: &[&str], from: i32, until: i32) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    p.write(&format!("certs/{name}.pem"), &cert.pem());
    let key_pem = key.serialize_pem();
    let path = p.write(&format!("certs/{name}.key"), &key_pem);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    key_pem
}

fn valid(p: &Project, name: &str, names: &[&str]) -> String {
    write_cert(p, name, names, 2020, 2100)
}

fn toml(proxy: &str, route_host: &str) -> String {
    format!(
        "app = \"shop\"\n[proxy]\n{proxy}\n[services.web]\ncommand = \"x\"\nport = 8000\nhealth = {{ path = \"/health\" }}\nroute = {{ host = \"{route_host}\" }}\n"
    )
}

const HTTPS: &str = "https_listen = \"127.0.0.1:8443\"";
const SITE: &str = "certificates = [{ cert = \"certs/site.pem\", key = \"certs/site.key\" }]";

fn error_at(error: &ConfigError, line: usize, column: usize, text: &str) -> Diagnostic {
    let found = error
        .errors()
        .find(|d| d.message.contains(text) || d.help.as_deref().unwrap_or("").contains(text));
    let Some(d) = found else {
        panic!("no error containing {text:?} in:\n{error}");
    };
    assert_eq!((d.line, d.column), (line, column), "{d}");
    d.clone()
}

#[test]
fn a_valid_certificate_loads_with_absolute_paths_and_no_warnings() {
    let p = Project::new();
    valid(&p, "site", &["shop.example.org"]);
    let loaded = p
        .load(&toml(&format!("{HTTPS}\n{SITE}"), "shop.example.org"))
        .unwrap();
    assert!(loaded.warnings.is_empty(), "{}", render(&loaded.warnings));
    let proxy = &loaded.config.proxy;
    assert_eq!(proxy.https_listen, Some("127.0.0.1:8443".parse().unwrap()));
    assert_eq!(proxy.certificates.len(), 1);
    assert_eq!(proxy.certificates[0].cert, p.dir().join("certs/site.pem"));
    assert_eq!(proxy.certificates[0].key, p.dir().join("certs/site.key"));
    let cert =
        dockhand_config::load_certificate(&proxy.certificates[0], std::time::SystemTime::now())
            .unwrap();
    assert_eq!(cert.names, ["shop.example.org"]);
    assert!(!format!("{cert:?}").contains("PRIVATE"));
}

#[test]
fn array_of_tables_form_is_accepted_too() {
    let p = Project::new();
    valid(&p, "site", &["shop.example.org"]);
    let text = format!(
        "app = \"shop\"\n[proxy]\n{HTTPS}\n[[proxy.certificates]]\ncert = \"certs/site.pem\"\nkey = \"certs/site.key\"\n[services.web]\ncommand = \"x\"\n"
    );
    let loaded = p.load(&text).unwrap();
    assert_eq!(loaded.config.proxy.certificates.len(), 1);
}

#[test]
fn https_listen_without_certificates_gets_automatic_ones() {
    let p = Project::new();
    let loaded = p.load(&toml(HTTPS, "shop.example.org")).unwrap();
    assert!(loaded.warnings.is_empty(), "{}", render(&loaded.warnings));
    let acme = &loaded.config.proxy.acme;
    assert!(acme.enabled);
    assert_eq!(acme.directory, dockhand_config::LETSENCRYPT);
}

#[test]
fn certificates_without_https_listen_is_an_error() {
    let p = Project::new();
    valid(&p, "site", &["shop.example.org"]);
    let error = p.load(&toml(SITE, "shop.example.org")).unwrap_err();
    let d = error_at(&error, 3, 1, "`https_listen` is not set");
    assert_eq!(d.key.as_deref(), Some("proxy.certificates"));
}

#[test]
fn unknown_key_in_a_certificate_gets_a_suggestion() {
    let p = Project::new();
    valid(&p, "site", &["shop.example.org"]);
    let proxy = format!(
        "{HTTPS}\ncertificates = [{{ cert = \"certs/site.pem\", kye = \"certs/site.key\" }}]"
    );
    let error = p.load(&toml(&proxy, "shop.example.org")).unwrap_err();
    let d = error_at(&error, 4, 44, "did you mean `key`?");
    assert_eq!(d.key.as_deref(), Some("proxy.certificates[0].kye"));
    error_at(&error, 4, 17, "a certificate needs `key`");
}

#[test]
fn missing_certificate_file_is_reported_at_cert() {
    let p = Project::new();
    let error = p
        .load(&toml(&format!("{HTTPS}\n{SITE}"), "shop.example.org"))
        .unwrap_err();
    let d = error_at(&error, 4, 26, "certs/site.pem does not exist");
    assert_eq!(d.key.as_deref(), Some("proxy.certificates[0].cert"));
}

#[test]
fn missing_key_file_is_reported_at_key() {
    let p = Project::new();
    valid(&p, "site", &["shop.example.org"]);
    fs::remove_file(p.dir().join("certs/site.key")).unwrap();
    let error = p
        .load(&toml(&format!("{HTTPS}\n{SITE}"), "shop.example.org"))
        .unwrap_err();
    let d = error_at(&error, 4, 50, "private key file");
    assert!(d.message.contains("certs/site.key does not exist"), "{d}");
    assert_eq!(d.key.as_deref(), Some("proxy.certificates[0].key"));
}

#[test]
fn pem_without_a_certificate_or_without_a_key() {
    let p = Project::new();
    let key_pem = valid(&p, "site", &["shop.example.org"]);
    // The key where the certificate should be.
    p.write("certs/site.pem", &key_pem);
    let error = p
        .load(&toml(&format!("{HTTPS}\n{SITE}"), "shop.example.org"))
        .unwrap_err();
    error_at(&error, 4, 26, "holds no PEM certificate");

    let p = Project::new();
    valid(&p, "site", &["shop.example.org"]);
    let cert_pem = fs::read_to_string(p.dir().join("certs/site.pem")).unwrap();
    p.write("certs/site.key", &cert_pem);
    fs::set_permissions(
        p.dir().join("certs/site.key"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let error = p
        .load(&toml(&format!("{HTTPS}\n{SITE}"), "shop.example.org"))
        .unwrap_err();
    let d = error_at(&error, 4, 50, "holds no PEM private key");
    assert_eq!(d.key.as_deref(), Some("proxy.certificates[0].key"));
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_reported_at_key() {
    let p = Project::new();
    valid(&p, "site", &["shop.example.org"]);
    valid(&p, "other", &["shop.example.org"]);
    let proxy = format!(
        "{HTTPS}\ncertificates = [{{ cert = \"certs/site.pem\", key = \"certs/other.key\" }}]"
    );
    let error = p.load(&toml(&proxy, "shop.example.org")).unwrap_err();
    let d = error_at(&error, 4, 50, "does not belong to the certificate");
    assert_eq!(d.key.as_deref(), Some("proxy.certificates[0].key"));
}

#[test]
fn expired_and_not_yet_valid_certificates_are_errors() {
    let p = Project::new();
    write_cert(&p, "site", &["shop.example.org"], 2001, 2002);
    let error = p
        .load(&toml(&format!("{HTTPS}\n{SITE}"), "shop.example.org"))
        .unwrap_err();
    let d = error_at(&error, 4, 26, "expired on");
    assert!(d.message.contains("2002"), "{d}");
    assert!(d.help.as_deref().unwrap().contains("renew"), "{d}");

    let p = Project::new();
    write_cert(&p, "site", &["shop.example.org"], 2200, 2201);
    let error = p
        .load(&toml(&format!("{HTTPS}\n{SITE}"), "shop.example.org"))
        .unwrap_err();
    error_at(&error, 4, 26, "is not valid before");
}

#[test]
fn a_key_readable_by_others_needs_chmod_600() {
    let p = Project::new();
    let key_pem = valid(&p, "site", &["shop.example.org"]);
    let key_path = p.dir().join("certs/site.key");
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o640)).unwrap();
    let error = p
        .load(&toml(&format!("{HTTPS}\n{SITE}"), "shop.example.org"))
        .unwrap_err();
    let d = error_at(&error, 4, 50, "accessible to other users (mode 0640)");
    assert_eq!(
        d.help.as_deref(),
        Some(format!("run `chmod 600 {}`", key_path.display()).as_str())
    );
    // No key material in anything reported.
    let body: String = key_pem.lines().nth(1).unwrap().to_string();
    assert!(!error.to_string().contains(&body));
}

#[test]
fn https_listen_must_differ_from_listen() {
    let p = Project::new();
    valid(&p, "site", &["shop.example.org"]);
    let proxy = format!("listen = \"127.0.0.1:8443\"\n{HTTPS}\n{SITE}");
    let error = p.load(&toml(&proxy, "shop.example.org")).unwrap_err();
    error_at(&error, 4, 16, "same address as `listen`");
}

#[test]
fn a_route_host_no_certificate_covers_is_a_warning() {
    let p = Project::new();
    valid(&p, "site", &["example.org", "*.example.org"]);
    let covered = p
        .load(&toml(&format!("{HTTPS}\n{SITE}"), "shop.example.org"))
        .unwrap();
    assert!(covered.warnings.is_empty(), "{}", render(&covered.warnings));

    // With ACME on, an uncovered public host gets an automatic certificate.
    let automatic = p
        .load(&toml(&format!("{HTTPS}\n{SITE}"), "a.shop.example.org"))
        .unwrap();
    assert!(
        automatic.warnings.is_empty(),
        "{}",
        render(&automatic.warnings)
    );

    let loaded = p
        .load(&toml(
            &format!("{HTTPS}\n{SITE}\n[proxy.acme]\nenabled = false"),
            "a.shop.example.org",
        ))
        .unwrap();
    let w = loaded
        .warnings
        .iter()
        .find(|d| d.message.contains("not covered by any certificate"))
        .unwrap_or_else(|| panic!("no coverage warning: {}", render(&loaded.warnings)));
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!((w.line, w.column), (11, 1), "{w}");
    assert!(w.message.contains("a.shop.example.org"), "{w}");
}
