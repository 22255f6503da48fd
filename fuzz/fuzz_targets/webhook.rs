//! The update webhook (`[update] webhook`): GitHub, GitLab and Gitea push requests, checked
//! by `verify` and read by `pushed_ref`. The input is a secret line, header lines
//! (`name: value`), an empty line, then the body; the first byte also asks the harness to
//! sign the body itself. Properties: a request is accepted only when its signature is an
//! HMAC-SHA256 of that body with that secret (GitHub, Gitea) or its token is that non-empty
//! secret (GitLab), as a reference computed here says; a correctly signed request is accepted
//! and the same signature over another body, or under another secret, is not.
#![no_main]

use dockhand_agent::fuzzing::{pushed_ref, verify, Forge};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether the header holds hex of exactly the HMAC (case and surrounding space aside).
fn signs(value: Option<&str>, secret: &str, body: &[u8]) -> bool {
    value.is_some_and(|v| hex::decode(v.trim()).ok() == hex::decode(hmac_hex(secret, body)).ok())
}

fn accepted_by_reference(forge: Forge, headers: &HeaderMap, body: &[u8], secret: &str) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match forge {
        Forge::GitHub => signs(
            header("x-hub-signature-256").and_then(|s| s.strip_prefix("sha256=")),
            secret,
            body,
        ),
        Forge::Gitea => signs(header("x-gitea-signature"), secret, body),
        Forge::GitLab => {
            !secret.is_empty()
                && headers.get("x-gitlab-token").map(|v| v.as_bytes()) == Some(secret.as_bytes())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let mut lines = head.split('\n');
    let secret = lines.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_bytes(value.trim().as_bytes()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    // Sign the body as the forge the mode names would.
    let signed_by = match mode % 4 {
        1 => {
            headers.insert("x-github-event", HeaderValue::from_static("push"));
            let sig = format!("sha256={}", hmac_hex(secret, body));
            headers.insert("x-hub-signature-256", sig.parse().unwrap());
            headers.remove("x-gitea-event");
            Some(Forge::GitHub)
        }
        2 => {
            headers.insert("x-gitea-event", HeaderValue::from_static("push"));
            headers.insert("x-gitea-signature", hmac_hex(secret, body).parse().unwrap());
            Some(Forge::Gitea)
        }
        3 if !secret.is_empty() => match HeaderValue::from_str(secret) {
            Ok(token) => {
                headers.insert("x-gitlab-event", HeaderValue::from_static("Push Hook"));
                headers.insert("x-gitlab-token", token);
                headers.remove("x-gitea-event");
                headers.remove("x-github-event");
                Some(Forge::GitLab)
            }
            Err(_) => None,
        },
        _ => None,
    };

    let verdict = verify(&headers, body, secret);
    if let Ok(v) = &verdict {
        assert!(
            accepted_by_reference(v.forge, &headers, body, secret),
            "accepted without a valid {:?} signature: {headers:?}",
            v.forge
        );
        assert!(!v.delivery.is_empty());
        // The same headers under another secret: refused.
        let other = format!("{secret}x");
        assert!(
            verify(&headers, body, &other).is_err(),
            "accepted under another secret"
        );
        // The same signature over another body: refused (GitLab's token signs no body).
        if v.forge != Forge::GitLab {
            let mut changed = body.to_vec();
            match changed.first_mut() {
                Some(b) => *b ^= 1,
                None => changed.push(b'x'),
            }
            assert!(
                verify(&headers, &changed, secret).is_err(),
                "accepted another body"
            );
        }
    }
    if let Some(forge) = signed_by {
        let v = verdict.expect("a correctly signed request is accepted");
        assert_eq!(v.forge, forge);
    }
    let _ = pushed_ref(body);
});
