//! The provisioning files: cloud-init user-data validated by Debian's `cloud-init schema`,
//! Terraform parsed as HCL (every variable used is declared, secrets are `sensitive`) and
//! compared with snapshots in tests/snapshots/ (`UPDATE_EXPECT=1` rewrites them).
//! `terraform validate` needs the providers from the Terraform registry, which tests cannot
//! reach; parsing and the checks below are what runs here.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use dockhand_remote::provision::{self, BinarySource, CloudInit, Provider};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHt3K2x1Yq7vGm0u8H5r8tJ8kz3Qn1cWm2p9f0aQeXyZ deploy@laptop";

fn init(docker: bool) -> CloudInit {
    CloudInit {
        deploy_user: "deploy".into(),
        ssh_keys: vec![KEY.into()],
        ssh_from: vec!["198.51.100.0/24".into()],
        docker,
        binary: Some(BinarySource {
            url: "https://downloads.example.org/dockhand/0.1.0/dockhand-x86_64-linux".into(),
            sha256: "0f".repeat(32),
        }),
    }
}

/// Runs Debian's `cloud-init schema` on `text`; panics with its report when invalid.
fn cloud_init_schema(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("user-data.yaml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run cloud-init ({e}): this test needs Debian's cloud-init: apt-get install cloud-init (scripts/test installs it)")
        });
    assert!(
        out.status.success(),
        "cloud-init schema rejects the user-data:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cloud_init_user_data_is_valid_for_cloud_init() {
    for docker in [true, false] {
        cloud_init_schema(&provision::user_data(&init(docker)));
    }
    let without_binary = CloudInit {
        binary: None,
        ..init(true)
    };
    cloud_init_schema(&provision::user_data(&without_binary));
}

/// Compares `actual` with the snapshot `name`, or rewrites it when `UPDATE_EXPECT=1`.
fn expect_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "snapshot {} is missing; run with UPDATE_EXPECT=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "snapshot {} differs from line {}:\n--- expected\n{}\n--- actual\n{}\n(run with UPDATE_EXPECT=1 to accept the new output)",
            path.display(),
            first + 1,
            expected.lines().skip(first).take(5).collect::<Vec<_>>().join("\n"),
            actual.lines().skip(first).take(5).collect::<Vec<_>>().join("\n"),
        );
    }
}

/// Every `var.NAME` in `text`.
fn used_variables(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("var.") {
        let before = rest[..i].chars().last();
        let tail = &rest[i + 4..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty() {
            out.insert(name);
        }
        rest = tail;
    }
    out
}

#[test]
fn terraform_modules_parse_declare_what_they_use_and_match_their_snapshots() {
    for provider in [Provider::Ovh, Provider::DigitalOcean, Provider::Aws] {
        let files = provision::module(provider, "shop", &init(true));
        let names: Vec<&str> = files.iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                "versions.tf",
                "variables.tf",
                "main.tf",
                "outputs.tf",
                "user-data.yaml.tftpl",
                "README.md"
            ]
        );
        let mut declared = BTreeSet::new();
        let mut sensitive = BTreeSet::new();
        let mut used = BTreeSet::new();
        for f in &files {
            expect_snapshot(&format!("terraform/{provider}/{}", f.name), &f.content);
            if !f.name.ends_with(".tf") {
                continue;
            }
            let body: hcl::Body = hcl::from_str(&f.content).unwrap_or_else(|e| {
                panic!("{provider}/{} is not valid HCL: {e}\n{}", f.name, f.content)
            });
            for block in body.blocks() {
                if block.identifier() == "variable" {
                    let name = block.labels()[0].as_str().to_string();
                    let is_sensitive = block.body().attributes().any(|a| {
                        a.key() == "sensitive" && a.expr() == &hcl::Expression::Bool(true)
                    });
                    if is_sensitive {
                        sensitive.insert(name.clone());
                    }
                    declared.insert(name);
                }
            }
            used.extend(used_variables(&f.content));
        }
        let undeclared: Vec<_> = used.difference(&declared).collect();
        assert!(
            undeclared.is_empty(),
            "{provider}: used but not declared: {undeclared:?}"
        );
        let unused: Vec<_> = declared.difference(&used).collect();
        assert!(
            unused.is_empty(),
            "{provider}: declared but not used: {unused:?}"
        );
        for secret in declared.iter().filter(|v| {
            v.contains("token")
                || v.contains("password")
                || v.contains("secret")
                || v.contains("consumer_key")
        }) {
            assert!(
                sensitive.contains(secret),
                "{provider}: {secret} is not marked sensitive"
            );
        }
        // The template, filled in as templatefile() would, is valid user-data.
        let template = &files
            .iter()
            .find(|f| f.name == "user-data.yaml.tftpl")
            .unwrap()
            .content;
        assert!(template.contains("${ssh_public_key}"));
        let filled = template
            .replace("${ssh_public_key}", KEY)
            .replace("$${", "${")
            .replace("%%{", "%{");
        assert_eq!(
            filled,
            provision::user_data(&init(true)),
            "{provider}: the template is the cloud-init output"
        );
        cloud_init_schema(&filled);
    }
}

#[test]
fn public_keys_are_checked() {
    assert!(provision::check_public_key(KEY).is_ok());
    assert!(
        provision::check_public_key("-----BEGIN OPENSSH PRIVATE KEY-----")
            .unwrap_err()
            .contains("not an SSH public key")
    );
    assert!(provision::check_public_key("ssh-ed25519 !!").is_err());
    assert!(provision::check_public_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHt3 a\"b").is_err());
}
