//! The store contract, run against both backends: every test runs once on a fresh SQLite
//! file and once on a fresh PostgreSQL database.

use std::sync::Arc;

use maas_core::identity::{Role, TenantKind};
use maas_core::keys::Scope;
use maas_core::{ApiKeyId, UserId};
use maas_store::{Conflict, Entity, NewApiKey, NewAuditEvent, NewUser, SqliteStore, Store, StoreError};

/// A store on a fresh database, plus whatever must live as long as it (the temp dir).
struct Backend {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("maas.db").display());
    Backend { store: maas_store::open(&url).await.unwrap(), _dir: Some(dir) }
}

async fn postgres() -> Backend {
    let url = maas_testkit::fresh_postgres_db().await.unwrap();
    Backend { store: maas_store::open(&url).await.unwrap(), _dir: None }
}

/// Declares `mod $name { sqlite, postgres }`, each running `$body(store)`.
macro_rules! on_both_backends {
    ($($name:ident => $body:ident;)*) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let b = super::sqlite().await;
                super::$body(b.store.clone()).await;
            }
            #[tokio::test]
            async fn postgres() {
                let b = super::postgres().await;
                super::$body(b.store.clone()).await;
            }
        }
    )*};
}

on_both_backends! {
    registration_creates_personal_tenant_and_first_admin => registration;
    uniqueness_is_enforced_with_named_conflicts => conflicts;
    tenant_handles_cannot_reach_other_tenants_rows => isolation;
    members_roles_and_owner_count => membership;
    api_keys_revoke_and_touch => keys;
    audit_log_pages_newest_first => audit;
}

fn new_user(name: &str) -> NewUser {
    NewUser { username: name.into(), email: format!("{name}@example.com"), password_hash: "$argon2id$x".into() }
}

fn new_key(by: UserId, secret_hash: &str) -> NewApiKey {
    NewApiKey {
        created_by: by,
        name: "ci".into(),
        prefix: "maas_abcdefg".into(),
        secret_hash: secret_hash.into(),
        scopes: vec![Scope::Read, Scope::Infer],
        expires_at: None,
    }
}

fn event(action: &str) -> NewAuditEvent {
    NewAuditEvent {
        actor_user_id: None,
        actor: "tester".into(),
        actor_key_id: None,
        action: action.into(),
        target: "t".into(),
        client_ip: Some("127.0.0.1".into()),
        details: serde_json::json!({ "n": action }),
    }
}

async fn registration(store: Arc<dyn Store>) {
    let (alice, tenant) = store.register_user(new_user("alice")).await.unwrap();
    assert!(alice.is_admin, "the first user is platform admin");
    assert_eq!(tenant.slug, "alice");
    assert_eq!(tenant.kind, TenantKind::Personal);
    let (bob, _) = store.register_user(new_user("bob")).await.unwrap();
    assert!(!bob.is_admin);
    assert_eq!(store.role(alice.id, tenant.id).await.unwrap(), Some(Role::Owner));
    assert_eq!(store.role(bob.id, tenant.id).await.unwrap(), None);
    let creds = store.credentials("alice@example.com").await.unwrap();
    assert_eq!(creds.user, alice);
    assert_eq!(creds.password_hash, "$argon2id$x");
    assert_eq!(store.credentials("alice").await.unwrap().user.id, alice.id);
    assert_eq!(store.user(alice.id).await.unwrap(), alice);
    assert!(matches!(store.user(UserId::new()).await, Err(StoreError::NotFound(Entity::User))));
    let memberships = store.memberships(alice.id).await.unwrap();
    assert_eq!(memberships.len(), 1);
    assert_eq!(memberships[0].tenant, tenant);
    store.ping().await.unwrap();
}

async fn conflicts(store: Arc<dyn Store>) {
    let (alice, _) = store.register_user(new_user("alice")).await.unwrap();
    let same_name = NewUser { email: "other@example.com".into(), ..new_user("alice") };
    assert!(matches!(store.register_user(same_name).await, Err(StoreError::Conflict(Conflict::Username))));
    let same_email = NewUser { email: "alice@example.com".into(), ..new_user("alice2") };
    assert!(matches!(store.register_user(same_email).await, Err(StoreError::Conflict(Conflict::Email))));
    store.create_organization("acme", "Acme", alice.id).await.unwrap();
    assert!(matches!(
        store.create_organization("acme", "Acme 2", alice.id).await,
        Err(StoreError::Conflict(Conflict::TenantSlug))
    ));
    assert!(matches!(
        store.create_organization("alice", "Alice Inc", alice.id).await,
        Err(StoreError::Conflict(Conflict::TenantSlug))
    ));
    // An organisation's slug is a username nobody can register, and the failed
    // registration leaves no user behind.
    assert!(matches!(store.register_user(new_user("acme")).await, Err(StoreError::Conflict(Conflict::Username))));
    assert!(matches!(store.user_by_username("acme").await, Err(StoreError::NotFound(Entity::User))));
}

async fn isolation(store: Arc<dyn Store>) {
    let (alice, a) = store.register_user(new_user("alice")).await.unwrap();
    let (bob, b) = store.register_user(new_user("bob")).await.unwrap();
    let (sa, sb) = (store.scoped(a.id), store.scoped(b.id));
    let key_a = sa.create_api_key(new_key(alice.id, "hash-a")).await.unwrap();
    let key_b = sb.create_api_key(new_key(bob.id, "hash-b")).await.unwrap();
    sa.record_audit(event("a.secret")).await.unwrap();

    // Tenant B's handle sees none of A's rows, whatever id it is given.
    assert!(matches!(sb.api_key(key_a.id).await, Err(StoreError::NotFound(Entity::ApiKey))));
    assert!(matches!(sb.revoke_api_key(key_a.id, maas_core::now()).await, Err(StoreError::NotFound(_))));
    sb.touch_api_key(key_a.id, maas_core::now()).await.unwrap();
    assert_eq!(sb.api_keys().await.unwrap(), vec![key_b.clone()]);
    assert!(sb.audit(100, None).await.unwrap().iter().all(|e| e.tenant_id == b.id));
    assert!(matches!(sb.member(alice.id).await, Err(StoreError::NotFound(Entity::Member))));
    assert!(matches!(sb.remove_member(alice.id).await, Err(StoreError::NotFound(Entity::Member))));
    assert_eq!(sb.members().await.unwrap().iter().map(|m| m.user_id).collect::<Vec<_>>(), vec![bob.id]);

    // A's rows are untouched by B's attempts.
    let still = sa.api_key(key_a.id).await.unwrap();
    assert_eq!(still.revoked_at, None);
    assert_eq!(still.last_used_at, None);
    assert_eq!(sa.audit(100, None).await.unwrap()[0].action, "a.secret");
    assert_eq!(sa.tenant_id(), a.id);
}

async fn membership(store: Arc<dyn Store>) {
    let (alice, _) = store.register_user(new_user("alice")).await.unwrap();
    let (bob, _) = store.register_user(new_user("bob")).await.unwrap();
    let org = store.create_organization("acme", "Acme", alice.id).await.unwrap();
    assert_eq!(org.kind, TenantKind::Organization);
    let s = store.scoped(org.id);
    assert_eq!(s.count_owners().await.unwrap(), 1);
    let m = s.set_member(bob.id, Role::Viewer).await.unwrap();
    assert_eq!((m.username.as_str(), m.role), ("bob", Role::Viewer));
    let m = s.set_member(bob.id, Role::Owner).await.unwrap();
    assert_eq!(m.role, Role::Owner);
    assert_eq!(s.count_owners().await.unwrap(), 2);
    assert_eq!(store.role(bob.id, org.id).await.unwrap(), Some(Role::Owner));
    let slugs: Vec<_> = store.memberships(bob.id).await.unwrap().into_iter().map(|m| m.tenant.slug).collect();
    assert_eq!(slugs, ["bob", "acme"], "personal tenant first");
    s.remove_member(bob.id).await.unwrap();
    assert_eq!(store.role(bob.id, org.id).await.unwrap(), None);
    assert_eq!(store.all_tenants().await.unwrap().len(), 3);
}

async fn keys(store: Arc<dyn Store>) {
    let (alice, a) = store.register_user(new_user("alice")).await.unwrap();
    let s = store.scoped(a.id);
    let expires = maas_core::now() + chrono::Duration::days(1);
    let key = s.create_api_key(NewApiKey { expires_at: Some(expires), ..new_key(alice.id, "h1") }).await.unwrap();
    assert_eq!(key.scopes, [Scope::Read, Scope::Infer]);
    assert_eq!(key.expires_at, Some(expires));
    assert_eq!(store.api_key_by_hash("h1").await.unwrap(), key);
    assert!(matches!(store.api_key_by_hash("nope").await, Err(StoreError::NotFound(Entity::ApiKey))));
    assert!(matches!(s.api_key(ApiKeyId::new()).await, Err(StoreError::NotFound(Entity::ApiKey))));

    let used = maas_core::now();
    s.touch_api_key(key.id, used).await.unwrap();
    assert_eq!(s.api_key(key.id).await.unwrap().last_used_at, Some(used));

    let first = maas_core::now();
    let revoked = s.revoke_api_key(key.id, first).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(first));
    let again = s.revoke_api_key(key.id, first + chrono::Duration::seconds(5)).await.unwrap();
    assert_eq!(again.revoked_at, Some(first), "revocation time is kept");
}

async fn audit(store: Arc<dyn Store>) {
    let (_, a) = store.register_user(new_user("alice")).await.unwrap();
    let s = store.scoped(a.id);
    for i in 0..5 {
        s.record_audit(event(&format!("act.{i}"))).await.unwrap();
    }
    let page = s.audit(2, None).await.unwrap();
    assert_eq!(page.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["act.4", "act.3"]);
    assert_eq!(page[0].details, serde_json::json!({ "n": "act.4" }));
    assert_eq!(page[0].client_ip.as_deref(), Some("127.0.0.1"));
    let next = s.audit(10, Some(page[1].id)).await.unwrap();
    assert_eq!(next.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["act.2", "act.1", "act.0"]);
}

#[tokio::test]
async fn sqlite_keeps_committed_rows_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("maas.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    let (alice, _) = store.register_user(new_user("alice")).await.unwrap();
    drop(store);
    let reopened = SqliteStore::open(&url).await.unwrap();
    assert_eq!(reopened.user(alice.id).await.unwrap(), alice);
}

#[tokio::test]
async fn unknown_url_schemes_are_refused() {
    assert!(matches!(maas_store::open("mysql://x").await, Err(StoreError::UnsupportedUrl)));
}
