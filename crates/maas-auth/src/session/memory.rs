//! In-process sessions: the embedded default (lost on restart, not shared between instances).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Session, SessionStore};
use crate::AuthError;
use crate::token::digest;

#[derive(Debug, Default)]
pub struct MemorySessions {
    sessions: Mutex<HashMap<String, Session>>,
}

impl MemorySessions {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn put(&self, session: &Session) -> Result<(), AuthError> {
        let now = maas_core::now();
        let mut sessions = self.lock();
        sessions.retain(|_, s| !s.is_expired(now));
        sessions.insert(digest(&session.id), session.clone());
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Session>, AuthError> {
        let now = maas_core::now();
        Ok(self
            .lock()
            .get(&digest(id))
            .filter(|s| !s.is_expired(now))
            .map(|s| Session { id: id.to_owned(), ..s.clone() }))
    }

    async fn delete(&self, id: &str) -> Result<(), AuthError> {
        self.lock().remove(&digest(id));
        Ok(())
    }

    async fn ping(&self) -> Result<(), AuthError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn contract() {
        let store = MemorySessions::new();
        super::super::contract::put_get_delete(&store).await;
        super::super::contract::expired_sessions_vanish(&store).await;
    }
}
