//! The `Date` header value for responses the proxy writes itself (and upstream
//! responses that lack one, RFC 9110 §6.6.1), formatted once per second per
//! worker thread from the coarse wall clock.

use std::cell::RefCell;
use std::time::UNIX_EPOCH;

thread_local! {
    static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Calls `f` with the current IMF-fixdate, e.g. `Wed, 02 Dec 2026 06:30:00 GMT`.
pub(crate) fn with<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    let now = crate::clock::wall();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            *cache = (secs, httpdate::fmt_http_date(now));
        }
        f(cache.1.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_an_http_date() {
        let date = super::with(|d| String::from_utf8(d.to_vec()).unwrap());
        assert_eq!(date.len(), 29, "{date}");
        assert!(date.ends_with(" GMT"), "{date}");
        assert!(httpdate::parse_http_date(&date).is_ok(), "{date}");
    }
}
