//! The deploy lock: one deploy, rollback or reload at a time, and a refusal that says who
//! holds the lock and since when.

use std::sync::{Arc, Mutex};

use dockhand_api::LockInfo;

use crate::error::{AgentError, ErrorKind, Result};

/// Cheap to clone: clones share the one lock.
#[derive(Clone, Default)]
pub struct DeployLock {
    holder: Arc<Mutex<Option<LockInfo>>>,
}

/// Releases the lock when dropped.
pub struct LockGuard {
    holder: Arc<Mutex<Option<LockInfo>>>,
}

impl DeployLock {
    pub fn acquire(&self, operation: &str, holder: &str) -> Result<LockGuard> {
        let mut slot = self.holder.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(info) = slot.as_ref() {
            return Err(AgentError::new(
                ErrorKind::Conflict,
                format!(
                    "another {} is in progress (by {}, since {}); wait for it to finish",
                    info.operation, info.holder, info.since
                ),
            )
            .with_details(info));
        }
        *slot = Some(LockInfo {
            holder: holder.to_string(),
            operation: operation.to_string(),
            since: dockhand_state::now(),
        });
        Ok(LockGuard {
            holder: self.holder.clone(),
        })
    }

    pub fn holder(&self) -> Option<LockInfo> {
        self.holder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        *self.holder.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_is_refused_with_the_holder() {
        let lock = DeployLock::default();
        let g = lock.acquire("deploy", "alice@host").unwrap();
        let err = lock.acquire("rollback", "bob").err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(err.message().contains("alice@host"), "{err}");
        assert!(err.message().contains("deploy"), "{err}");
        drop(g);
        assert!(lock.acquire("rollback", "bob").is_ok());
    }
}
