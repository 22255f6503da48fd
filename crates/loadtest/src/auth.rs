//! Finding the token in a login answer.
//!
//! A login step answers with a token in a JSON field (`token`, `data.access_token`) or in a
//! header; every request of the run then carries it as `Authorization: Bearer <token>`. The
//! token is a secret: it is never part of an error or a report.

use http::HeaderMap;

use crate::TokenSource;

/// The token from a login answer's `headers` and `body`, or why there is none (without the
/// body's text, which may hold secrets).
pub fn extract_token(
    source: &TokenSource,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, String> {
    let token = match source {
        TokenSource::Header(name) => headers
            .get(name)
            .ok_or_else(|| format!("the answer has no {name} header"))?
            .to_str()
            .map_err(|_| format!("the {name} header is not text"))?
            .trim()
            .to_string(),
        TokenSource::JsonField(path) => {
            let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
                format!("the answer is not JSON ({e}), so field {path:?} cannot be read")
            })?;
            let mut at = &value;
            for key in path.split('.') {
                at = match at {
                    serde_json::Value::Object(map) => map.get(key),
                    serde_json::Value::Array(items) => {
                        key.parse::<usize>().ok().and_then(|i| items.get(i))
                    }
                    _ => None,
                }
                .ok_or_else(|| {
                    format!("the JSON answer has no field {path:?} (missing {key:?})")
                })?;
            }
            at.as_str()
                .ok_or_else(|| format!("field {path:?} of the JSON answer is not a string"))?
                .trim()
                .to_string()
        }
    };
    let token = token.strip_prefix("Bearer ").unwrap_or(&token).to_string();
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_json_field_is_found() {
        let body = br#"{"data":{"access_token":"abc.def.ghi","items":[{"t":"x"}]}}"#;
        let h = HeaderMap::new();
        let field = |p: &str| extract_token(&TokenSource::JsonField(p.into()), &h, body);
        assert_eq!(field("data.access_token").unwrap(), "abc.def.ghi");
        assert_eq!(field("data.items.0.t").unwrap(), "x");
        let missing = field("data.token").unwrap_err();
        assert_eq!(
            missing,
            "the JSON answer has no field \"data.token\" (missing \"token\")"
        );
        assert!(field("data").unwrap_err().contains("not a string"));
    }

    #[test]
    fn a_header_token_loses_its_bearer_prefix() {
        let mut h = HeaderMap::new();
        h.insert("x-auth-token", "Bearer s3cret".parse().unwrap());
        let src = TokenSource::Header("x-auth-token".parse().unwrap());
        assert_eq!(extract_token(&src, &h, b"").unwrap(), "s3cret");
        let other = TokenSource::Header("x-other".parse().unwrap());
        assert_eq!(
            extract_token(&other, &h, b"").unwrap_err(),
            "the answer has no x-other header"
        );
    }

    #[test]
    fn errors_never_quote_the_body() {
        let err = extract_token(
            &TokenSource::JsonField("token".into()),
            &HeaderMap::new(),
            b"password=hunter2",
        )
        .unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
