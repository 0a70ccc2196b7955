//! The store contract, run against both backends: every test runs once on a fresh SQLite
//! file and once on a fresh PostgreSQL database.

use std::sync::Arc;

use maas_core::billing::{BillingMeter, Budget, Invoice, InvoiceLine, InvoiceStatus, PricePlan};
use maas_core::identity::{Role, TenantKind};
use maas_core::keys::Scope;
use maas_core::registry::{
    CollaboratorAccess, ModelFormat, ModelQuery, ModelSort, Quota, VersionState, Viewer, Visibility,
};
use maas_core::usage::{InferenceApi, UsageRecord};
use maas_core::{ApiKeyId, UserId};
use maas_store::{
    Conflict, DeploymentWrite, Entity, ModelPatch, NewApiKey, NewAuditEvent, NewModel, NewUser, SqliteStore, Store,
    StoreError, Upload, UsageGrouping,
};

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
    models_crud_tags_and_isolation => models;
    search_applies_visibility_text_filters_sort_and_pages => search;
    versions_files_uploads_and_publishing => versions;
    stars_collaborators_and_quotas => social;
    deployments_crud_and_isolation => deployments;
    usage_records_are_idempotent_summed_and_isolated => usage;
    budgets_alert_once_and_invoices_are_stored_once => billing;
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
        limits: Default::default(),
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
    assert_eq!(store.api_key_with_creator("h1").await.unwrap(), (key.clone(), alice.clone()));
    assert!(matches!(store.api_key_with_creator("nope").await, Err(StoreError::NotFound(Entity::ApiKey))));
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

fn new_model(name: &str, visibility: Visibility, description: &str, tags: &[&str]) -> NewModel {
    NewModel {
        name: name.into(),
        task: "embeddings".into(),
        visibility,
        description: description.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        license: Some("apache-2.0".into()),
        readme: "# Hello".into(),
    }
}

async fn models(store: Arc<dyn Store>) {
    let (_, a) = store.register_user(new_user("alice")).await.unwrap();
    let (_, b) = store.register_user(new_user("bob")).await.unwrap();
    let (sa, sb) = (store.scoped(a.id), store.scoped(b.id));
    let m = sa
        .create_model(new_model("minilm", Visibility::Private, "Sentence embeddings", &["nlp", "onnx"]))
        .await
        .unwrap();
    assert_eq!(
        (m.owner.as_str(), m.name.as_str(), m.tags.clone()),
        ("alice", "minilm", vec!["nlp".to_string(), "onnx".into()])
    );
    assert_eq!(sa.readme(m.id).await.unwrap(), "# Hello");
    assert!(matches!(
        sa.create_model(new_model("minilm", Visibility::Public, "", &[])).await,
        Err(StoreError::Conflict(Conflict::ModelName))
    ));
    sb.create_model(new_model("minilm", Visibility::Public, "", &[])).await.unwrap();
    assert_eq!(sa.count_models().await.unwrap(), 1);

    let patch = ModelPatch {
        visibility: Some(Visibility::Public),
        tags: Some(vec!["nlp".into()]),
        readme: Some("new".into()),
        ..ModelPatch::default()
    };
    let updated = sa.update_model(m.id, patch).await.unwrap();
    assert_eq!((updated.visibility, updated.tags.clone()), (Visibility::Public, vec!["nlp".to_string()]));
    assert_eq!(updated.description, "Sentence embeddings", "untouched fields stay");
    assert_eq!(sa.readme(m.id).await.unwrap(), "new");
    sa.add_downloads(m.id, 3).await.unwrap();
    assert_eq!(sa.model("minilm").await.unwrap().downloads, 3);

    // B's handle cannot touch A's model, even by id.
    assert!(matches!(sb.update_model(m.id, ModelPatch::default()).await, Err(StoreError::NotFound(Entity::Model))));
    assert!(matches!(sb.delete_model(m.id).await, Err(StoreError::NotFound(Entity::Model))));
    let (carol, _) = store.register_user(new_user("carol")).await.unwrap();
    let foreign = sb.create_version(m.id, "v1", ModelFormat::Onnx, serde_json::json!({})).await;
    assert!(matches!(foreign, Err(StoreError::NotFound(Entity::Model))), "{foreign:?}");
    assert!(matches!(
        sb.set_collaborator(m.id, &carol, CollaboratorAccess::Write).await,
        Err(StoreError::NotFound(Entity::Model))
    ));
    assert!(matches!(sb.set_star(m.id, carol.id, true).await, Err(StoreError::NotFound(Entity::Model))));
    assert_eq!(sa.model("minilm").await.unwrap().stars, 0);
    let v = sa.create_version(m.id, "v1", ModelFormat::Onnx, serde_json::json!({})).await.unwrap();
    assert!(matches!(sb.put_file(v.id, "x", &"a".repeat(64), 1).await, Err(StoreError::NotFound(Entity::Version))));
    assert!(matches!(sb.publish_version(v.id, serde_json::json!({})).await, Err(StoreError::VersionNotDraft)));
    assert!(sb.versions(m.id).await.unwrap().is_empty());
    assert_eq!(sa.version(m.id, "v1").await.unwrap().state, VersionState::Draft);
    sa.delete_model(m.id).await.unwrap();
    assert!(matches!(sa.model("minilm").await, Err(StoreError::NotFound(Entity::Model))));
}

async fn search(store: Arc<dyn Store>) {
    let (alice, a) = store.register_user(new_user("alice")).await.unwrap();
    let (bob, b) = store.register_user(new_user("bob")).await.unwrap();
    let (carol, _) = store.register_user(new_user("carol")).await.unwrap();
    let (sa, sb) = (store.scoped(a.id), store.scoped(b.id));
    let public = sa
        .create_model(new_model("resnet-50", Visibility::Public, "Image classification network", &["vision"]))
        .await
        .unwrap();
    let secret = sa
        .create_model(new_model("secret-llm", Visibility::Private, "A private language model", &["nlp"]))
        .await
        .unwrap();
    let bobs = sb.create_model(new_model("bert-base", Visibility::Public, "Language encoder", &["nlp"])).await.unwrap();
    sb.add_downloads(bobs.id, 10).await.unwrap();
    sa.set_collaborator(secret.id, &carol, CollaboratorAccess::Read).await.unwrap();

    let names = |page: maas_store::ModelPage| page.items.into_iter().map(|m| m.name).collect::<Vec<_>>();
    let query =
        |q: Option<&str>| ModelQuery { q: q.map(str::to_owned), page: 1, per_page: 20, ..ModelQuery::default() };
    let anon = Viewer::default();
    let mut seen = names(store.search_models(&anon, &query(None)).await.unwrap());
    seen.sort();
    assert_eq!(seen, ["bert-base", "resnet-50"], "anonymous: public only");
    let as_user = |u: &maas_core::identity::User| Viewer { user_id: Some(u.id), ..Viewer::default() };
    assert_eq!(store.search_models(&as_user(&alice), &query(None)).await.unwrap().total, 3);
    assert_eq!(store.search_models(&as_user(&bob), &query(None)).await.unwrap().total, 2);
    assert_eq!(store.search_models(&as_user(&carol), &query(None)).await.unwrap().total, 3, "collaborator");
    let admin = Viewer { is_admin: true, ..Viewer::default() };
    assert_eq!(store.search_models(&admin, &query(None)).await.unwrap().total, 3);
    let key_of_b = Viewer { user_id: Some(alice.id), only_tenant: Some(b.id), ..Viewer::default() };
    assert_eq!(store.search_models(&key_of_b, &query(None)).await.unwrap().total, 2);

    // Full text on name and description, every word required, prefixes match.
    assert_eq!(names(store.search_models(&anon, &query(Some("image"))).await.unwrap()), ["resnet-50"]);
    assert_eq!(names(store.search_models(&anon, &query(Some("resnet"))).await.unwrap()), ["resnet-50"]);
    assert_eq!(names(store.search_models(&anon, &query(Some("language encoder"))).await.unwrap()), ["bert-base"]);
    assert_eq!(
        store.search_models(&anon, &query(Some("private"))).await.unwrap().total,
        0,
        "text search respects visibility"
    );
    assert_eq!(names(store.search_models(&as_user(&alice), &query(Some("private"))).await.unwrap()), ["secret-llm"]);
    assert_eq!(store.search_models(&anon, &query(Some("\"* OR (NEAR"))).await.unwrap().total, 0, "syntax is inert");

    let filtered = |f: fn(&mut ModelQuery)| {
        let mut q = query(None);
        f(&mut q);
        q
    };
    assert_eq!(
        names(store.search_models(&as_user(&alice), &filtered(|q| q.tag = Some("nlp".into()))).await.unwrap()).len(),
        2
    );
    assert_eq!(
        names(store.search_models(&anon, &filtered(|q| q.owner = Some("bob".into()))).await.unwrap()),
        ["bert-base"]
    );
    assert_eq!(store.search_models(&anon, &filtered(|q| q.task = Some("tensor".into()))).await.unwrap().total, 0);
    let by_downloads = store.search_models(&anon, &filtered(|q| q.sort = Some(ModelSort::Downloads))).await.unwrap();
    assert_eq!(names(by_downloads), ["bert-base", "resnet-50"]);

    // Stable pages.
    let page = |n| filtered_page(n);
    fn filtered_page(n: u32) -> ModelQuery {
        ModelQuery { page: n, per_page: 1, sort: Some(ModelSort::Downloads), ..ModelQuery::default() }
    }
    let p1 = store.search_models(&anon, &page(1)).await.unwrap();
    let p2 = store.search_models(&anon, &page(2)).await.unwrap();
    let p3 = store.search_models(&anon, &page(3)).await.unwrap();
    assert_eq!(
        (p1.total, names(p1), names(p2), p3.items.len()),
        (2, vec!["bert-base".to_string()], vec!["resnet-50".to_string()], 0)
    );
    let _ = public;
}

async fn versions(store: Arc<dyn Store>) {
    let (_, a) = store.register_user(new_user("alice")).await.unwrap();
    let sa = store.scoped(a.id);
    let m = sa.create_model(new_model("net", Visibility::Private, "", &[])).await.unwrap();
    let v1 =
        sa.create_version(m.id, "1.0", ModelFormat::Onnx, serde_json::json!({"metrics": {"acc": 0.9}})).await.unwrap();
    assert_eq!((v1.state, v1.format), (VersionState::Draft, ModelFormat::Onnx));
    assert!(matches!(
        sa.create_version(m.id, "1.0", ModelFormat::Onnx, serde_json::json!({})).await,
        Err(StoreError::Conflict(Conflict::Version))
    ));
    sa.create_version(m.id, "2.0", ModelFormat::Gguf, serde_json::json!({})).await.unwrap();
    let listed: Vec<_> = sa.versions(m.id).await.unwrap().into_iter().map(|v| v.version).collect();
    assert_eq!(listed, ["2.0", "1.0"]);

    let hash = "a".repeat(64);
    let f = sa.put_file(v1.id, "model.onnx", &hash, 1234).await.unwrap();
    assert_eq!((f.path.as_str(), f.size), ("model.onnx", 1234));
    sa.put_file(v1.id, "model.onnx", &"b".repeat(64), 99).await.unwrap();
    assert_eq!(sa.file(v1.id, "model.onnx").await.unwrap().size, 99, "replaced");
    sa.put_file(v1.id, "config/extra.json", &hash, 1).await.unwrap();
    assert_eq!(sa.files(v1.id).await.unwrap().len(), 2);
    assert_eq!(sa.storage_bytes().await.unwrap(), 100);
    sa.delete_file(v1.id, "config/extra.json").await.unwrap();
    assert!(matches!(sa.file(v1.id, "config/extra.json").await, Err(StoreError::NotFound(Entity::File))));

    let upload = Upload {
        id: maas_core::UploadId::new(),
        version_id: v1.id,
        path: "big.bin".into(),
        total: Some(10),
        sha256: None,
    };
    assert_eq!(sa.upload(v1.id, "big.bin").await.unwrap(), None);
    sa.start_upload(&upload).await.unwrap();
    assert_eq!(sa.upload(v1.id, "big.bin").await.unwrap(), Some(upload.clone()));
    sa.finish_upload(upload.id).await.unwrap();
    assert_eq!(sa.upload(v1.id, "big.bin").await.unwrap(), None);

    let signature = serde_json::json!({"inputs": [{"name": "x"}]});
    let published = sa.publish_version(v1.id, signature.clone()).await.unwrap();
    assert_eq!((published.state, published.signature.clone()), (VersionState::Published, Some(signature)));
    assert!(published.published_at.is_some());
    assert!(matches!(sa.publish_version(v1.id, serde_json::json!({})).await, Err(StoreError::VersionNotDraft)));
    assert_eq!(sa.version(m.id, "1.0").await.unwrap().metadata["metrics"]["acc"], 0.9);
    assert!(matches!(sa.version(m.id, "9.9").await, Err(StoreError::NotFound(Entity::Version))));
}

async fn social(store: Arc<dyn Store>) {
    let (alice, a) = store.register_user(new_user("alice")).await.unwrap();
    let (bob, _) = store.register_user(new_user("bob")).await.unwrap();
    let sa = store.scoped(a.id);
    let m = sa.create_model(new_model("net", Visibility::Public, "", &[])).await.unwrap();
    assert_eq!(sa.set_star(m.id, bob.id, true).await.unwrap(), 1);
    assert_eq!(sa.set_star(m.id, bob.id, true).await.unwrap(), 1, "starring twice counts once");
    assert_eq!(sa.set_star(m.id, alice.id, true).await.unwrap(), 2);
    assert!(sa.starred(m.id, bob.id).await.unwrap());
    assert_eq!(sa.set_star(m.id, bob.id, false).await.unwrap(), 1);
    assert_eq!(sa.set_star(m.id, bob.id, false).await.unwrap(), 1);

    let c = sa.set_collaborator(m.id, &bob, CollaboratorAccess::Read).await.unwrap();
    assert_eq!((c.username.as_str(), c.access), ("bob", CollaboratorAccess::Read));
    sa.set_collaborator(m.id, &bob, CollaboratorAccess::Write).await.unwrap();
    assert_eq!(sa.collaborator_access(m.id, bob.id).await.unwrap(), Some(CollaboratorAccess::Write));
    assert_eq!(sa.collaborators(m.id).await.unwrap().len(), 1);
    sa.remove_collaborator(m.id, bob.id).await.unwrap();
    assert_eq!(sa.collaborator_access(m.id, bob.id).await.unwrap(), None);

    assert_eq!(sa.quota().await.unwrap(), Quota::default());
    let q = Quota {
        max_models: Some(3),
        max_storage_bytes: Some(1 << 30),
        max_calls_per_day: Some(1000),
        requests_per_minute: Some(60),
        ..Quota::default()
    };
    assert_eq!(sa.set_quota(q).await.unwrap(), q);
    assert_eq!(sa.quota().await.unwrap(), q);
}

async fn deployments(store: Arc<dyn Store>) {
    let (_, a) = store.register_user(new_user("alice")).await.unwrap();
    let (_, b) = store.register_user(new_user("bob")).await.unwrap();
    let (sa, sb) = (store.scoped(a.id), store.scoped(b.id));
    let m = sa.create_model(new_model("net", Visibility::Private, "", &[])).await.unwrap();
    let v1 = sa.create_version(m.id, "1", ModelFormat::Onnx, serde_json::json!({})).await.unwrap();
    let v2 = sa.create_version(m.id, "2", ModelFormat::Onnx, serde_json::json!({})).await.unwrap();
    let write = |version, replicas| DeploymentWrite {
        name: "api".into(),
        model_id: m.id,
        version_id: version,
        replicas,
        spec: serde_json::json!({ "batching": { "max_batch_size": 8 } }),
    };
    let d = sa.create_deployment(write(v1.id, 1)).await.unwrap();
    assert_eq!((d.name.as_str(), d.replicas, d.version_id), ("api", 1, v1.id));
    assert_eq!(d.spec["batching"]["max_batch_size"], 8);
    assert!(matches!(sa.create_deployment(write(v1.id, 1)).await, Err(StoreError::Conflict(Conflict::Deployment))));
    assert!(
        matches!(sb.create_deployment(write(v1.id, 1)).await, Err(StoreError::NotFound(Entity::Version))),
        "B cannot deploy A's version"
    );
    let updated = sa.update_deployment(d.id, write(v2.id, 3)).await.unwrap();
    assert_eq!((updated.version_id, updated.replicas), (v2.id, 3));
    assert!(matches!(sb.update_deployment(d.id, write(v2.id, 1)).await, Err(StoreError::NotFound(_))));
    assert!(matches!(sb.delete_deployment(d.id).await, Err(StoreError::NotFound(Entity::Deployment))));
    assert!(sb.deployments().await.unwrap().is_empty());
    assert_eq!(store.all_deployments().await.unwrap().len(), 1);
    assert_eq!(sa.deployment("api").await.unwrap().id, d.id);
    sa.delete_deployment(d.id).await.unwrap();
    assert!(matches!(sa.deployment("api").await, Err(StoreError::NotFound(Entity::Deployment))));
}

fn usage_record(
    tenant: maas_core::TenantId,
    deployment: &str,
    status: u16,
    at: chrono::DateTime<chrono::Utc>,
) -> UsageRecord {
    let price = PricePlan { per_call: 100, per_1k_input_tokens: 2000, ..PricePlan::default() };
    let cost = if status < 400 { price.cost(1, 500, 20, 3) } else { 0 };
    UsageRecord {
        id: uuid::Uuid::now_v7(),
        tenant_id: tenant,
        api_key_id: Some(ApiKeyId::new()),
        deployment_id: maas_core::DeploymentId::new(),
        deployment: deployment.into(),
        version_id: maas_core::VersionId::new(),
        model_version: format!("{deployment}@1"),
        api: InferenceApi::OpenaiChat,
        calls: 1,
        input_tokens: 500,
        output_tokens: 20,
        compute_ms: 3,
        gpu_ms: 0,
        request_bytes: 900,
        response_bytes: 400,
        status,
        error_code: (status >= 400).then(|| "invalid_request".to_owned()),
        latency_us: 1234,
        at,
        billable: status < 400,
        price,
        cost_micros: cost,
    }
}

async fn usage(store: Arc<dyn Store>) {
    let (_, a) = store.register_user(new_user("alice")).await.unwrap();
    let (_, b) = store.register_user(new_user("bob")).await.unwrap();
    let now = maas_core::now();
    let records = vec![
        usage_record(a.id, "alice/x", 200, now),
        usage_record(a.id, "alice/x", 400, now),
        usage_record(a.id, "alice/y", 200, now),
        usage_record(b.id, "bob/z", 200, now),
    ];
    assert_eq!(store.insert_usage(&records, false).await.unwrap(), 4);
    assert_eq!(store.insert_usage(&records, false).await.unwrap(), 0, "a replayed batch adds nothing");
    let (from, to) = (now - chrono::Duration::hours(1), now + chrono::Duration::hours(1));
    let sa = store.scoped(a.id);
    let back = sa.usage_records(from, to, None, 100).await.unwrap();
    assert_eq!(back.len(), 3, "only alice's records");
    assert!(back.contains(&records[0]) && back.contains(&records[1]), "records read back unchanged");
    let page = sa.usage_records(from, to, None, 2).await.unwrap();
    let rest = sa.usage_records(from, to, Some((page[1].at, page[1].id)), 2).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(!page.contains(&rest[0]));

    let by = sa.usage_summary(from, to, UsageGrouping::Deployment).await.unwrap();
    assert_eq!(by.len(), 2);
    assert_eq!((by[0].group.as_str(), by[0].requests, by[0].errors), ("alice/x", 2, 1));
    assert_eq!((by[0].input_tokens, by[0].cost_micros), (1000, records[0].cost_micros));
    let days = sa.usage_summary(from, now + chrono::Duration::seconds(1), UsageGrouping::Day).await.unwrap();
    assert_eq!(days[0].group, now.format("%Y-%m-%d").to_string());
    let totals = sa.usage_totals(from, to, "USD").await.unwrap();
    assert_eq!((totals.calls, totals.tokens, totals.cost_micros), (3, 1560, 2 * records[0].cost_micros));
    assert_eq!(sa.usage_totals(from, to, "EUR").await.unwrap().cost_micros, 0);
    let rows = sa.billing_rows(from, to).await.unwrap();
    assert_eq!(rows.len(), 2, "failures are not billed: {rows:?}");
    assert_eq!((rows[0].calls, rows[0].input_tokens, rows[0].price_call), (1, 500, 100));

    let outbox = store.unpublished_usage(10).await.unwrap();
    assert_eq!(outbox.len(), 4);
    store.mark_published(&outbox.iter().map(|r| r.id).take(3).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(store.unpublished_usage(10).await.unwrap().len(), 1);
    store.insert_usage(&[usage_record(a.id, "alice/x", 200, now)], true).await.unwrap();
    assert_eq!(store.unpublished_usage(10).await.unwrap().len(), 1, "published records skip the outbox");
}

async fn billing(store: Arc<dyn Store>) {
    let (_, a) = store.register_user(new_user("alice")).await.unwrap();
    let sa = store.scoped(a.id);
    assert_eq!(sa.budget().await.unwrap(), None);
    let budget = Budget { currency: "EUR".into(), soft_limit: Some(10), hard_limit: None };
    sa.set_budget(Some(&budget)).await.unwrap();
    assert_eq!(sa.budget().await.unwrap(), Some(budget));
    assert!(sa.mark_budget_alerted("2026-11").await.unwrap());
    assert!(!sa.mark_budget_alerted("2026-11").await.unwrap(), "once a month");
    assert!(sa.mark_budget_alerted("2026-12").await.unwrap());
    sa.set_budget(None).await.unwrap();
    assert_eq!(sa.budget().await.unwrap(), None);

    let line = InvoiceLine {
        deployment: "alice/x".into(),
        meter: BillingMeter::Calls,
        quantity: 3,
        unit_price: 100,
        amount: 300,
    };
    let invoice = Invoice {
        id: "2026-10-USD".into(),
        period: "2026-10".into(),
        currency: "USD".into(),
        status: InvoiceStatus::Closed,
        lines: vec![line],
        total: 300,
    };
    assert_eq!(sa.store_invoice(&invoice).await.unwrap(), invoice);
    let changed = Invoice { total: 999, ..invoice.clone() };
    assert_eq!(sa.store_invoice(&changed).await.unwrap(), invoice, "a stored invoice never changes");
    let (_, b) = store.register_user(new_user("bob")).await.unwrap();
    assert_eq!(store.scoped(b.id).stored_invoice("2026-10-USD").await.unwrap(), None);
}
