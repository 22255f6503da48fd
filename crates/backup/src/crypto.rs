//! Encryption in the age format (<https://age-encryption.org/v1>), so that any backup can be
//! decrypted by hand with the `age` command: to one or more X25519 recipients (`age1…`, the
//! identity kept by the user), or with a passphrase (scrypt). age refuses to mix the two.

use std::fmt;
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::str::FromStr;

pub use age::secrecy::{ExposeSecret, SecretString};

use crate::error::{io, BackupError, ErrorKind, Result};

/// How backups are encrypted.
#[derive(Clone)]
pub enum Encryption {
    Recipients(Vec<age::x25519::Recipient>),
    Passphrase(SecretString),
}

impl fmt::Debug for Encryption {
    /// Recipients are public; a passphrase is never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encryption::Recipients(r) => f
                .debug_tuple("Recipients")
                .field(&r.iter().map(|r| r.to_string()).collect::<Vec<_>>())
                .finish(),
            Encryption::Passphrase(_) => f.write_str("Passphrase(******)"),
        }
    }
}

/// Parses an `age1…` recipient; the error says what is wrong without echoing a secret.
pub fn parse_recipient(text: &str) -> std::result::Result<age::x25519::Recipient, String> {
    let text = text.trim();
    if text.starts_with("AGE-SECRET-KEY-") {
        return Err("this is an identity (a private key), not a recipient: put the public key (`age1…`, printed by `dockhand backup keygen` or `age-keygen -y`) here and keep the identity off the config".into());
    }
    age::x25519::Recipient::from_str(text)
        .map_err(|e| format!("not an age X25519 recipient (`age1…`): {e}"))
}

impl Encryption {
    /// Wraps `out` so that what is written to it is encrypted; `finish` the returned writer.
    pub fn wrap<W: Write>(&self, out: W) -> Result<age::stream::StreamWriter<W>> {
        let encryptor = match self {
            Encryption::Recipients(recipients) => {
                age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                    .map_err(|e| BackupError::usage(format!("cannot encrypt: {e}")))?
            }
            Encryption::Passphrase(p) => age::Encryptor::with_user_passphrase(p.clone()),
        };
        encryptor
            .wrap_output(out)
            .map_err(|e| io("failed to write the encrypted stream", e))
    }
}

/// What decrypts backups: identities (from an identity file) or the passphrase.
#[derive(Clone)]
pub enum Decryption {
    Identities(Vec<age::x25519::Identity>),
    Passphrase(SecretString),
}

impl fmt::Debug for Decryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decryption::Identities(i) => write!(f, "Identities({} key(s))", i.len()),
            Decryption::Passphrase(_) => f.write_str("Passphrase(******)"),
        }
    }
}

impl Decryption {
    /// Reads an age identity file (`AGE-SECRET-KEY-1…` lines, `#` comments), which must be
    /// readable by its owner only.
    pub fn from_identity_file(path: &Path) -> Result<Decryption> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| {
            BackupError::usage(format!(
                "cannot read the backup identity {}: {e}; pass the file `dockhand backup keygen` wrote (or `age-keygen` made)",
                path.display()
            ))
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(BackupError::usage(format!(
                "the backup identity {} is readable by others (mode {:o}); run `chmod 600 {}`",
                path.display(),
                meta.permissions().mode() & 0o777,
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| io(format_args!("failed to read {}", path.display()), e))?;
        Decryption::from_identities(&text).map_err(|e| e.context(path.display()))
    }

    /// Parses identities from the text of an identity file.
    pub fn from_identities(text: &str) -> Result<Decryption> {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match age::x25519::Identity::from_str(line) {
                Ok(i) => out.push(i),
                // Never echo the line: it may be a key with a typo.
                Err(_) => {
                    return Err(BackupError::usage(format!(
                        "line {} is not an age identity (`AGE-SECRET-KEY-1…`)",
                        n + 1
                    )))
                }
            }
        }
        if out.is_empty() {
            return Err(BackupError::usage("no age identity in it"));
        }
        Ok(Decryption::Identities(out))
    }

    /// The public keys (`age1…`) of the identities: what they decrypt.
    pub fn recipients(&self) -> Vec<String> {
        match self {
            Decryption::Identities(ids) => ids.iter().map(|i| i.to_public().to_string()).collect(),
            Decryption::Passphrase(_) => Vec::new(),
        }
    }

    /// Wraps `input` (an age file) so that reading it yields the plaintext. Fails at once
    /// when no identity opens the file.
    pub fn wrap<R: Read>(&self, input: R) -> Result<age::stream::StreamReader<R>> {
        let decryptor = age::Decryptor::new(input).map_err(decrypt_error)?;
        let read = match self {
            Decryption::Identities(ids) => {
                decryptor.decrypt(ids.iter().map(|i| i as &dyn age::Identity))
            }
            Decryption::Passphrase(p) => {
                let mut id = age::scrypt::Identity::new(p.clone());
                id.set_max_work_factor(22);
                decryptor.decrypt(std::iter::once(&id as &dyn age::Identity))
            }
        };
        read.map_err(decrypt_error)
    }
}

/// Makes a new identity; returns (identity file text, recipient).
pub fn generate() -> (SecretString, String) {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let text = format!(
        "# created by dockhand backup keygen; keep this file safe and off the server\n# public key: {recipient}\n{}\n",
        id.to_string().expose_secret()
    );
    (SecretString::from(text), recipient)
}

fn decrypt_error(e: age::DecryptError) -> BackupError {
    let message = match e {
        age::DecryptError::NoMatchingKeys => {
            "no identity given can decrypt this backup: use the identity whose public key is in `[backups] recipients`".to_string()
        }
        age::DecryptError::DecryptionFailed | age::DecryptError::InvalidMac => {
            "the backup does not decrypt (it is damaged or was changed)".to_string()
        }
        age::DecryptError::Io(e) => format!("the backup could not be read: {e}"),
        other => format!("the backup does not decrypt: {other}"),
    };
    BackupError::new(ErrorKind::Decrypt, message)
}

/// Opens an age file on disk for decryption, buffered.
pub fn open_file(
    path: &Path,
    d: &Decryption,
) -> Result<age::stream::StreamReader<BufReader<std::fs::File>>> {
    let file = std::fs::File::open(path)
        .map_err(|e| io(format_args!("failed to open {}", path.display()), e))?;
    d.wrap(BufReader::with_capacity(1 << 16, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipient_encrypts_what_its_identity_decrypts() {
        let (id_text, recipient) = generate();
        let enc = Encryption::Recipients(vec![parse_recipient(&recipient).unwrap()]);
        let mut w = enc.wrap(Vec::new()).unwrap();
        w.write_all(b"hello").unwrap();
        let sealed = w.finish().unwrap();
        let dec = Decryption::from_identities(id_text.expose_secret()).unwrap();
        let mut plain = String::new();
        dec.wrap(&sealed[..])
            .unwrap()
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, "hello");
        // Another identity cannot.
        let (other, _) = generate();
        let other = Decryption::from_identities(other.expose_secret()).unwrap();
        let e = other.wrap(&sealed[..]).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Decrypt);
        assert!(e.message.contains("no identity"), "{e}");
    }

    #[test]
    fn an_identity_is_refused_as_a_recipient_without_being_echoed() {
        let (id_text, _) = generate();
        let line = id_text
            .expose_secret()
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .unwrap()
            .to_string();
        let e = parse_recipient(&line).unwrap_err();
        assert!(e.contains("not a recipient") && !e.contains(&line), "{e}");
        let e = Decryption::from_identities("AGE-SECRET-KEY-1NOPE").unwrap_err();
        assert!(!e.message.contains("NOPE"), "{e}");
        assert!(format!(
            "{:?}",
            Encryption::Passphrase(SecretString::from("pw".to_string()))
        )
        .contains("******"));
    }
}
