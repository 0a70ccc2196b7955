//! Accounts and sessions: register, log in, authenticate, refresh, log out, "me".

use chrono::Duration;
use maas_core::identity::{Membership, Tenant, User};
use maas_core::validate;
use maas_store::{NewUser, StoreError};

use super::IdentityService;
use crate::key_cache::VerifiedKey;
use crate::principal::{Caller, Principal};
use crate::session::Session;
use crate::throttle::LoginThrottle;
use crate::{AuthError, password, token};

/// Result of a refresh: the session to keep using, and whether its id changed.
#[derive(Debug, Clone)]
pub struct Refreshed {
    pub user: User,
    pub session: Session,
    pub rotated: bool,
}

impl IdentityService {
    fn throttle(&self) -> LoginThrottle<'_> {
        LoginThrottle { counter: self.counter.as_ref(), config: &self.config.login_throttle }
    }

    fn new_session(&self, user: &User) -> Session {
        let now = maas_core::now();
        let ttl = i64::try_from(self.config.session_ttl_secs).unwrap_or(i64::MAX / 1000);
        Session {
            id: token::random_secret(),
            user_id: user.id,
            created_at: now,
            expires_at: now + Duration::seconds(ttl),
        }
    }

    /// Creates a user and their personal tenant. The first user becomes platform admin.
    pub async fn register(
        &self,
        username: &str,
        email: &str,
        password: &str,
        client_ip: Option<String>,
    ) -> Result<(User, Tenant), AuthError> {
        validate::slug("username", username)?;
        validate::email(email)?;
        validate::password(password)?;
        let password_hash = password::hash(password.to_owned()).await?;
        let (user, tenant) = self
            .store
            .register_user(NewUser { username: username.to_owned(), email: email.to_lowercase(), password_hash })
            .await?;
        let caller = Caller {
            principal: Principal::Session { user: user.clone(), session: self.new_session(&user) },
            client_ip,
        };
        let store = self.store.scoped(tenant.id);
        self.record(&caller, store.as_ref(), "user.register", &user.username, serde_json::json!({})).await?;
        Ok((user, tenant))
    }

    /// Checks the password (throttled per account and per IP) and opens a session.
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        client_ip: Option<String>,
    ) -> Result<(User, Session), AuthError> {
        let login = login.trim().to_lowercase();
        let ip = client_ip.as_deref();
        self.throttle().check(&login, ip).await?;
        let (hash, user) = match self.store.credentials(&login).await {
            Ok(c) => (c.password_hash, Some(c.user)),
            Err(StoreError::NotFound(_)) => (password::DUMMY_HASH.to_owned(), None),
            Err(e) => return Err(e.into()),
        };
        let verified = password::verify(password.to_owned(), hash).await?;
        let Some(user) = user.filter(|_| verified) else {
            self.throttle().failed(&login, ip).await?;
            return Err(AuthError::InvalidCredentials);
        };
        self.throttle().succeeded(&login).await?;
        let session = self.new_session(&user);
        self.sessions.put(&session).await?;
        let tenant = self.store.tenant_by_slug(&user.username).await?;
        let caller =
            Caller { principal: Principal::Session { user: user.clone(), session: session.clone() }, client_ip };
        let store = self.store.scoped(tenant.id);
        self.record(&caller, store.as_ref(), "session.login", &user.username, serde_json::json!({})).await?;
        Ok((user, session))
    }

    /// The caller behind a session id.
    pub async fn authenticate_session(&self, id: &str, client_ip: Option<String>) -> Result<Caller, AuthError> {
        let session = self.sessions.get(id).await?.ok_or(AuthError::SessionExpired)?;
        let user = match self.store.user(session.user_id).await {
            Ok(user) => user,
            Err(StoreError::NotFound(_)) => return Err(AuthError::SessionExpired),
            Err(e) => return Err(e.into()),
        };
        Ok(Caller { principal: Principal::Session { user, session }, client_ip })
    }

    /// The caller behind an API key secret. Revocation and expiry are checked on every call;
    /// `last_used_at` is updated at most once a minute.
    pub async fn authenticate_key(&self, secret: &str, client_ip: Option<String>) -> Result<Caller, AuthError> {
        if !secret.starts_with(token::API_KEY_PREFIX) {
            return Err(AuthError::InvalidApiKey);
        }
        let digest = token::digest(secret);
        let verified = match self.keys.get(&digest) {
            Some(verified) => verified,
            None => {
                let (key, user) = match self.store.api_key_with_creator(&digest).await {
                    Ok(found) => found,
                    Err(StoreError::NotFound(_)) => return Err(AuthError::InvalidApiKey),
                    Err(e) => return Err(e.into()),
                };
                let role = self.store.role(user.id, key.tenant_id).await?;
                let verified = VerifiedKey { key, user, role };
                self.keys.put(&digest, verified.clone());
                verified
            }
        };
        let VerifiedKey { mut key, user, role } = verified;
        let now = maas_core::now();
        if key.revoked_at.is_some() {
            return Err(AuthError::ApiKeyRevoked);
        }
        if key.is_expired(now) {
            return Err(AuthError::ApiKeyExpired);
        }
        if key.last_used_at.is_none_or(|t| now - t >= Duration::minutes(1)) {
            self.store.scoped(key.tenant_id).touch_api_key(key.id, now).await?;
            key.last_used_at = Some(now);
            self.keys.touched(&digest, &key);
        }
        Ok(Caller { principal: Principal::ApiKey { user, key, role }, client_ip })
    }

    /// Forgets every verified key, here and (with Redis) on every other instance, after a
    /// change that may alter what verifying one finds.
    pub(crate) async fn forget_keys(&self) {
        self.keys.clear();
        if let Some(events) = &self.key_events {
            events.publish().await;
        }
    }

    /// The pre-login call: the session's user, with a new session id (the old one deleted)
    /// when the session is within the refresh window of its expiry.
    pub async fn refresh(&self, id: &str) -> Result<Refreshed, AuthError> {
        let session = self.sessions.get(id).await?.ok_or(AuthError::SessionExpired)?;
        let user = self.store.user(session.user_id).await.map_err(|e| match e {
            StoreError::NotFound(_) => AuthError::SessionExpired,
            e => e.into(),
        })?;
        let window = i64::try_from(self.config.refresh_window_secs).unwrap_or(i64::MAX / 1000);
        if session.expires_at - maas_core::now() > Duration::seconds(window) {
            return Ok(Refreshed { user, session, rotated: false });
        }
        let fresh = self.new_session(&user);
        self.sessions.put(&fresh).await?;
        self.sessions.delete(id).await?;
        Ok(Refreshed { user, session: fresh, rotated: true })
    }

    /// Destroys the session (idempotent).
    pub async fn logout(&self, id: &str) -> Result<(), AuthError> {
        self.sessions.delete(id).await
    }

    /// The tenants the caller belongs to. A key sees only its own tenant.
    pub async fn memberships(&self, caller: &Caller) -> Result<Vec<Membership>, AuthError> {
        let mut all = self.store.memberships(caller.user().id).await?;
        if let Some(key) = caller.api_key() {
            all.retain(|m| m.tenant.id == key.tenant_id);
        }
        Ok(all)
    }
}
