//! `[proxy.acme]`, `https_redirect`, `hsts` and the per-route overrides: what loads, and
//! each bad value reported at its file:line:column with what to write instead.

mod support;

use std::time::Duration;

use dockhand_config::{ChallengeKind, ConfigError, DnsProvider, Hsts};
use support::{render, Project};

fn toml(proxy: &str, route: &str) -> String {
    format!(
        "app = \"shop\"\n[proxy]\nhttps_listen = \"127.0.0.1:8443\"\n{proxy}\n[services.web]\ncommand = \"x\"\nport = 8000\nhealth = {{ path = \"/health\" }}\nroute = {{ {route} }}\n"
    )
}

fn error_at(error: &ConfigError, line: usize, column: usize, text: &str) -> String {
    let found = error
        .errors()
        .find(|d| d.message.contains(text) || d.help.as_deref().unwrap_or("").contains(text));
    let Some(d) = found else {
        panic!("no error containing {text:?} in:\n{error}");
    };
    assert_eq!((d.line, d.column), (line, column), "{d}");
    d.to_string()
}

#[test]
fn acme_settings_load_with_their_defaults_and_overrides() {
    let p = Project::new();
    p.secrets("CF_TOKEN=abc\nEAB=def\n", 0o600);
    let loaded = p
        .load(&toml(
            "hsts = \"30d\"\nhttps_redirect = false\n[proxy.acme]\ndirectory = \"letsencrypt-staging\"\nemail = \"ops@example.org\"\nchallenge = [\"tls-alpn-01\", \"http-01\"]\neab = { kid = \"k1\", hmac_key = \"${secret.EAB}\" }\ndomains = [\"*.example.org\"]\n[proxy.acme.dns]\nprovider = \"cloudflare\"\napi_token = \"${secret.CF_TOKEN}\"\nnameservers = [\"127.0.0.1:8053\", \"192.0.2.53\"]\n",
            "host = \"shop.example.org\", hsts = false, https_redirect = true, challenge = \"dns-01\"",
        ))
        .unwrap();
    assert!(loaded.warnings.is_empty(), "{}", render(&loaded.warnings));
    let proxy = &loaded.config.proxy;
    assert_eq!(proxy.hsts, Hsts::MaxAge(Duration::from_secs(30 * 86_400)));
    assert!(!proxy.https_redirect);
    let acme = &proxy.acme;
    assert_eq!(acme.directory, dockhand_config::LETSENCRYPT_STAGING);
    assert_eq!(acme.email.as_deref(), Some("ops@example.org"));
    assert_eq!(
        acme.challenges,
        [ChallengeKind::TlsAlpn01, ChallengeKind::Http01]
    );
    assert_eq!(acme.domains, ["*.example.org"]);
    let eab = acme.eab.as_ref().unwrap();
    assert_eq!(eab.kid, "k1");
    // The secret stays a reference: the config never holds its value.
    assert_eq!(eab.hmac_key.template(), "${secret.EAB}");
    let dns = acme.dns.as_ref().unwrap();
    assert_eq!(dns.nameservers.len(), 2);
    assert_eq!(dns.nameservers[1], "192.0.2.53:53".parse().unwrap());
    match &dns.provider {
        DnsProvider::Cloudflare { api_token, api, .. } => {
            assert_eq!(api_token.template(), "${secret.CF_TOKEN}");
            assert_eq!(api, dockhand_config::CLOUDFLARE_API);
        }
        other => panic!("{other:?}"),
    }
    let route = loaded.config.services["web"].routes[0].clone();
    assert_eq!(route.hsts, Some(Hsts::Off));
    assert_eq!(route.https_redirect, Some(true));
    assert_eq!(route.challenge, Some(vec![ChallengeKind::Dns01]));
    let json = serde_json::to_string(&loaded.config).unwrap();
    assert!(!json.contains("abc") && !json.contains("def\""), "{json}");
}

#[test]
fn bad_acme_values_point_at_the_key_and_say_what_to_write() {
    let p = Project::new();
    let cases: &[(&str, usize, usize, &str)] = &[
        (
            "[proxy.acme]\ndirectory = \"lets-encrypt\"\n",
            5,
            13,
            "unknown ACME directory `lets-encrypt`",
        ),
        (
            "[proxy.acme]\nemail = \"ops\"\n",
            5,
            9,
            "is not an e-mail address",
        ),
        (
            "[proxy.acme]\nchallenge = \"http-02\"\n",
            5,
            13,
            "unknown challenge type",
        ),
        (
            "[proxy.acme]\ndomains = [\"*.example.org\"]\n",
            5,
            12,
            "needs the dns-01 challenge",
        ),
        (
            "[proxy.acme]\nchallenge = \"dns-01\"\n",
            5,
            1,
            "needs a DNS provider",
        ),
        (
            "[proxy.acme]\ndirectroy = \"letsencrypt\"\n",
            5,
            1,
            "directory",
        ),
        (
            "[proxy.acme]\nca = \"missing.pem\"\n",
            5,
            6,
            "missing.pem does not exist",
        ),
        (
            "[proxy.acme.dns]\nprovider = \"route99\"\n",
            5,
            12,
            "unknown DNS provider `route99`",
        ),
        (
            "[proxy.acme.dns]\nprovider = \"command\"\n",
            4,
            13,
            "needs `command`",
        ),
        (
            "[proxy.acme.dns]\nprovider = \"cloudflare\"\napi_token = \"plain\"\n",
            6,
            13,
            "must come from the secrets file",
        ),
        (
            "[proxy.acme.dns]\nprovider = \"command\"\ncommand = \"x\"\nnameservers = [\"ns1\"]\n",
            7,
            16,
            "invalid nameserver",
        ),
        ("hsts = 5\n", 4, 8, "expected a duration"),
    ];
    for (proxy, line, column, text) in cases {
        let error = p
            .load(&toml(proxy, "host = \"shop.example.org\""))
            .expect_err(proxy);
        error_at(&error, *line, *column, text);
    }
}

#[test]
fn check_warns_about_route_hosts_that_cannot_get_a_certificate() {
    let p = Project::new();
    for (host, text) in [
        (
            "printer.local",
            "cannot get a certificate from a public CA: it is a `.local`",
        ),
        ("203.0.113.7", "is an IP address"),
    ] {
        let loaded = p.load(&toml("", &format!("host = \"{host}\""))).unwrap();
        let all = render(&loaded.warnings);
        assert!(all.contains(text), "{host}: {all}");
    }
    // localhost gets the local CA's certificate: nothing to warn about.
    let loaded = p.load(&toml("", "host = \"shop.localhost\"")).unwrap();
    assert!(loaded.warnings.is_empty(), "{}", render(&loaded.warnings));
    // A private ACME server may well issue for `.internal` names.
    let loaded = p
        .load(&toml(
            "[proxy.acme]\ndirectory = \"https://ca.internal/acme/directory\"\n",
            "host = \"app.internal\"",
        ))
        .unwrap();
    assert!(loaded.warnings.is_empty(), "{}", render(&loaded.warnings));
}

#[test]
fn acme_without_https_listen_is_an_error() {
    let p = Project::new();
    let error = p
        .load("app = \"shop\"\n[proxy.acme]\nemail = \"ops@example.org\"\n[services.web]\ncommand = \"x\"\n")
        .unwrap_err();
    error_at(&error, 2, 8, "`https_listen` is not set");
}
