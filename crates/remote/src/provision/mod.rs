//! Provisioning files, not cloud API clients: cloud-init user-data that turns a fresh server
//! into what `dockhand setup` makes of one (the same files, from `server.rs`), and a minimal
//! Terraform module per provider (one instance of the reference size, a firewall for
//! 22/80/443, optional DNS records, that user-data attached). Pure: text in, text out.

pub mod cloudinit;
pub mod terraform;

pub use cloudinit::{user_data, BinarySource, CloudInit};
pub use terraform::{module, Provider, TerraformFile};

/// Checks that `key` looks like one OpenSSH public key line.
pub fn check_public_key(key: &str) -> Result<(), String> {
    let key = key.trim();
    let kinds = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    let mut parts = key.split_whitespace();
    let kind = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("");
    if key.contains('\n') {
        return Err("a public key is one line".into());
    }
    if !kinds.contains(&kind) {
        return Err(format!(
            "`{}` is not an SSH public key type (expected ssh-ed25519, ssh-rsa, ecdsa-…)",
            kind.chars().take(30).collect::<String>()
        ));
    }
    if body.len() < 16
        || !body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
    {
        return Err("the key's base64 part is missing or malformed".into());
    }
    if key.contains('"') || key.contains('\\') {
        return Err("a public key has no quotes or backslashes".into());
    }
    Ok(())
}
