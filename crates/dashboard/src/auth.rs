//! Who may use the dashboard: one-time login tokens (made for `dockhand dashboard`), the
//! sessions they turn into, each session's CSRF token, and the limit on failed logins.
//!
//! Pure over an explicit clock (`now` in seconds): the tests drive it with plain numbers.
//! Tokens and session ids are 256 random bits from the operating system; only their
//! SHA-256 is kept, so neither a memory dump nor a log line of this state opens a session.

use std::collections::HashMap;

use dockhand_api::DashboardRole;
use sha2::{Digest, Sha256};

/// How long a login link stays valid.
pub const LOGIN_TTL_SECS: u64 = 600;
/// At most this many unused login links are kept (the oldest go first).
const MAX_LOGINS: usize = 32;
/// At most this many sessions are kept (the oldest go first).
const MAX_SESSIONS: usize = 64;
/// Failed logins allowed in one [`FAILURE_WINDOW_SECS`] before every login is refused for
/// the rest of it.
pub const MAX_FAILURES: u32 = 5;
pub const FAILURE_WINDOW_SECS: u64 = 60;

/// A logged-in browser.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub role: DashboardRole,
    /// Who asked for the login link (recorded with every action).
    pub who: String,
    /// The token every form of this session carries.
    pub csrf: String,
    pub expires: u64,
    /// A message shown once on the next page (the outcome of an action).
    pub flash: Option<Flash>,
}

/// The outcome of an action, shown once.
#[derive(Debug, Clone, PartialEq)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

struct Login {
    role: DashboardRole,
    who: String,
    expires: u64,
}

/// Why a login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// Unknown, used or expired.
    Invalid,
    /// Too many failures lately: wait.
    RateLimited { retry_after: u64 },
}

/// Login links, sessions and the failure count.
#[derive(Default)]
pub struct Auth {
    logins: HashMap<[u8; 32], Login>,
    sessions: HashMap<[u8; 32], Session>,
    failures: u32,
    window_start: u64,
}

impl Auth {
    /// A new one-time login token for `role`, valid for [`LOGIN_TTL_SECS`].
    pub fn issue(&mut self, role: DashboardRole, who: &str, now: u64) -> String {
        self.logins.retain(|_, l| l.expires > now);
        if self.logins.len() >= MAX_LOGINS {
            if let Some(oldest) = self
                .logins
                .iter()
                .min_by_key(|(_, l)| l.expires)
                .map(|(k, _)| *k)
            {
                self.logins.remove(&oldest);
            }
        }
        let token = random_token();
        self.logins.insert(
            digest(&token),
            Login {
                role,
                who: who.to_string(),
                expires: now + LOGIN_TTL_SECS,
            },
        );
        token
    }

    /// Uses a login token: a new session id (for the cookie), or why not. Every failure
    /// counts toward the limit, so tokens cannot be guessed at speed.
    pub fn login(
        &mut self,
        token: &str,
        session_secs: u64,
        now: u64,
    ) -> Result<String, LoginRefused> {
        if now >= self.window_start + FAILURE_WINDOW_SECS {
            self.window_start = now;
            self.failures = 0;
        }
        if self.failures >= MAX_FAILURES {
            return Err(LoginRefused::RateLimited {
                retry_after: (self.window_start + FAILURE_WINDOW_SECS).saturating_sub(now),
            });
        }
        let login = match self.logins.remove(&digest(token)) {
            Some(l) if l.expires > now => l,
            _ => {
                self.failures += 1;
                return Err(LoginRefused::Invalid);
            }
        };
        self.sessions.retain(|_, s| s.expires > now);
        if self.sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
            {
                self.sessions.remove(&oldest);
            }
        }
        let id = random_token();
        self.sessions.insert(
            digest(&id),
            Session {
                role: login.role,
                who: login.who,
                csrf: random_token(),
                expires: now + session_secs,
                flash: None,
            },
        );
        Ok(id)
    }

    /// The live session of a cookie's id.
    pub fn session(&mut self, id: &str, now: u64) -> Option<&mut Session> {
        let key = digest(id);
        if self.sessions.get(&key).is_some_and(|s| s.expires <= now) {
            self.sessions.remove(&key);
        }
        self.sessions.get_mut(&key)
    }

    /// Ends a session (log out).
    pub fn end(&mut self, id: &str) {
        self.sessions.remove(&digest(id));
    }
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// 256 bits from the operating system, as hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The OS's random source failing is not something the dashboard can work around; a
    // token made of zeros would be guessable, so this is a bug-level stop.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_token_opens_one_session_once() {
        let mut auth = Auth::default();
        let token = auth.issue(DashboardRole::Operator, "ana", 100);
        let id = auth.login(&token, 3600, 110).unwrap();
        let s = auth.session(&id, 120).unwrap();
        assert_eq!(s.role, DashboardRole::Operator);
        assert_eq!(s.who, "ana");
        assert_eq!(s.csrf.len(), 64);
        assert_eq!(auth.login(&token, 3600, 130), Err(LoginRefused::Invalid));
    }

    #[test]
    fn expired_tokens_and_sessions_are_refused() {
        let mut auth = Auth::default();
        let token = auth.issue(DashboardRole::Viewer, "ana", 0);
        assert_eq!(
            auth.login(&token, 60, LOGIN_TTL_SECS),
            Err(LoginRefused::Invalid)
        );
        let token = auth.issue(DashboardRole::Viewer, "ana", 1000);
        let id = auth.login(&token, 60, 1000).unwrap();
        assert!(auth.session(&id, 1059).is_some());
        assert!(auth.session(&id, 1060).is_none());
    }

    #[test]
    fn failed_logins_are_limited_per_window_even_for_a_good_token() {
        let mut auth = Auth::default();
        let good = auth.issue(DashboardRole::Viewer, "ana", 1000);
        for _ in 0..MAX_FAILURES {
            assert_eq!(auth.login("nope", 60, 1000), Err(LoginRefused::Invalid));
        }
        assert_eq!(
            auth.login(&good, 60, 1010),
            Err(LoginRefused::RateLimited { retry_after: 50 })
        );
        // The next window: the good token still works.
        assert!(auth.login(&good, 60, 1060).is_ok());
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }
}
