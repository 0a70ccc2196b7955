//! Sessions in Redis: shared by every gateway instance, expired by Redis itself (`PX`).

use async_trait::async_trait;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;

use super::{Session, SessionStore};
use crate::AuthError;
use crate::token::digest;

/// Session records as JSON under `{prefix}session:{sha256(id)}`.
#[derive(Clone)]
pub struct RedisSessions {
    conn: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisSessions {
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self { conn, prefix: prefix.into() }
    }

    fn key(&self, id: &str) -> String {
        format!("{}session:{}", self.prefix, digest(id))
    }
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn put(&self, session: &Session) -> Result<(), AuthError> {
        let ttl_ms = (session.expires_at - maas_core::now()).num_milliseconds();
        if ttl_ms <= 0 {
            return Ok(());
        }
        let json = serde_json::json!({
            "user_id": session.user_id,
            "created_at": session.created_at,
            "expires_at": session.expires_at,
        })
        .to_string();
        let mut conn = self.conn.clone();
        let _: () = conn.pset_ex(self.key(&session.id), json, ttl_ms.unsigned_abs()).await?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Session>, AuthError> {
        let mut conn = self.conn.clone();
        let json: Option<String> = conn.get(self.key(id)).await?;
        let now = maas_core::now();
        Ok(json
            .and_then(|j| serde_json::from_str::<Session>(&j).ok())
            .filter(|s| !s.is_expired(now))
            .map(|s| Session { id: id.to_owned(), ..s }))
    }

    async fn delete(&self, id: &str) -> Result<(), AuthError> {
        let mut conn = self.conn.clone();
        let _: () = conn.del(self.key(id)).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), AuthError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn contract() {
        let (conn, prefix) = crate::test_redis().await;
        let store = super::RedisSessions::new(conn, prefix);
        super::super::contract::put_get_delete(&store).await;
        super::super::contract::expired_sessions_vanish(&store).await;
    }
}
