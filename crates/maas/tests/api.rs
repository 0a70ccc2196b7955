//! Black-box tests of the management API: the real `maas` binary on 127.0.0.1:0 with its
//! own SQLite database, spoken to over HTTP.

use std::path::Path;
use std::time::Duration;

use maas_testkit::{
    Server, ServerOptions, browser, call, client, code, cookie_pair, fresh_postgres_db, login_set_cookie, password_of,
    redis_prefix, redis_url, register, user,
};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};

fn start(options: ServerOptions) -> Server {
    Server::start(Path::new(env!("CARGO_BIN_EXE_maas")), options).expect("server starts")
}

/// Creates a key in `tenant` through `as_user` and returns `(id, secret)`.
async fn key(server: &Server, as_user: &reqwest::Client, tenant: &str, scopes: &[&str]) -> (String, String) {
    let (status, body) = call(
        as_user
            .post(server.at(&format!("/api/v1/tenants/{tenant}/keys")))
            .json(&json!({ "name": "test key", "scopes": scopes })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (body["id"].as_str().unwrap().to_owned(), body["key"].as_str().unwrap().to_owned())
}

/// Logs in without a cookie store and returns the `maas_session=…` pair.
async fn login_cookie(s: &Server, username: &str) -> String {
    cookie_pair(&login_set_cookie(s, username).await.unwrap())
}

/// Calls refresh with `cookie`; returns the status, any new cookie pair, and the body.
async fn refresh(s: &Server, cookie: String) -> (StatusCode, Option<String>, Value) {
    let r = client().post(s.at("/api/v1/auth/refresh")).header("cookie", cookie).send().await.unwrap();
    let set = r.headers().get("set-cookie").map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    let status = r.status();
    (status, set, r.json::<Value>().await.unwrap())
}

#[tokio::test]
async fn register_login_me_logout() {
    let s = start(ServerOptions::default());
    let body = register(&s, "alice").await.unwrap();
    assert_eq!(body["user"]["username"], "alice");
    assert_eq!(body["user"]["is_admin"], true, "first user is platform admin");
    assert_eq!(body["tenant"]["slug"], "alice");
    assert_eq!(body["tenant"]["kind"], "personal");
    assert!(body["user"].get("password_hash").is_none());
    let second = register(&s, "bob").await.unwrap();
    assert_eq!(second["user"]["is_admin"], false);

    // Login by email (case-insensitive) sets an HttpOnly, SameSite=Lax session cookie.
    let b = browser();
    let response = b
        .post(s.at("/api/v1/auth/login"))
        .json(&json!({ "email": "ALICE@example.com", "password": password_of("alice") }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("maas_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "not over TLS: {cookie}");

    let (status, me) = call(b.get(s.at("/api/v1/me"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user"]["username"], "alice");
    assert_eq!(
        me["tenants"],
        json!([{
            "id": me["tenants"][0]["id"], "slug": "alice", "name": "alice", "kind": "personal",
            "created_at": me["tenants"][0]["created_at"], "role": "owner"
        }])
    );

    let (status, _) = call(b.post(s.at("/api/v1/auth/logout"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(b.get(s.at("/api/v1/me"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "unauthenticated", "the cookie was cleared");

    let (status, body) = call(client().get(s.at("/api/v1/me"))).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "unauthenticated"));
}

#[tokio::test]
async fn logout_destroys_the_session_server_side() {
    let s = start(ServerOptions::default());
    register(&s, "alice").await.unwrap();
    let cookie = login_cookie(&s, "alice").await;
    let with_cookie = |req: RequestBuilder| req.header("cookie", cookie.clone());
    assert_eq!(call(with_cookie(client().get(s.at("/api/v1/me")))).await.0, StatusCode::OK);
    assert_eq!(call(with_cookie(client().post(s.at("/api/v1/auth/logout")))).await.0, StatusCode::NO_CONTENT);
    // A copy of the old cookie is worthless now.
    let (status, body) = call(with_cookie(client().get(s.at("/api/v1/me")))).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "session_expired"));
}

#[tokio::test]
async fn refresh_rotates_near_expiry_and_sessions_expire() {
    let s = start(
        ServerOptions::default().env("MAAS_AUTH__SESSION_TTL_SECS", "3").env("MAAS_AUTH__REFRESH_WINDOW_SECS", "2"),
    );
    register(&s, "alice").await.unwrap();
    let old = login_cookie(&s, "alice").await;
    let (status, set, body) = refresh(&s, old.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((set, &body["rotated"]), (None, &json!(false)), "far from expiry: same id");
    assert_eq!(body["user"]["username"], "alice");

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, set, body) = refresh(&s, old.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["rotated"], true);
    let new = set.expect("a new session cookie");
    assert_ne!(new, old);
    let (status, _, body) = refresh(&s, old).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "session_expired"), "old id deleted");
    let (status, _) = call(client().get(s.at("/api/v1/me")).header("cookie", new.clone())).await;
    assert_eq!(status, StatusCode::OK);

    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (status, _, body) = refresh(&s, new).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "session_expired"));
    let (status, body) = call(client().post(s.at("/api/v1/auth/refresh"))).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "session_expired"), "no cookie at all");
}

#[tokio::test]
async fn repeated_login_failures_are_throttled() {
    let s = start(ServerOptions::default().env("MAAS_AUTH__LOGIN_THROTTLE__MAX_FAILURES_PER_ACCOUNT", "3"));
    register(&s, "alice").await.unwrap();
    let attempt = |password: &'static str| {
        client().post(s.at("/api/v1/auth/login")).json(&json!({ "username": "alice", "password": password }))
    };
    for _ in 0..3 {
        let (status, body) = call(attempt("wrong-password")).await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    }
    let response = attempt("wrong-password").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert_eq!(code(&response.json().await.unwrap()), "too_many_attempts");
    // Even the right password is refused until the window ends.
    let (status, _) = call(client().post(s.at("/api/v1/auth/login")).json(&json!({
        "username": "alice", "password": password_of("alice")
    })))
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // An unknown account is throttled the same way (no user enumeration by status).
    for _ in 0..3 {
        let (status, body) =
            call(client().post(s.at("/api/v1/auth/login")).json(&json!({ "username": "ghost", "password": "x" })))
                .await;
        assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    }
    let (status, _) =
        call(client().post(s.at("/api/v1/auth/login")).json(&json!({ "username": "ghost", "password": "x" }))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn login_failures_from_one_ip_are_throttled() {
    let s = start(ServerOptions::default().env("MAAS_AUTH__LOGIN_THROTTLE__MAX_FAILURES_PER_IP", "4"));
    register(&s, "alice").await.unwrap();
    for i in 0..4 {
        let who = format!("nobody{i}");
        let (status, _) =
            call(client().post(s.at("/api/v1/auth/login")).json(&json!({ "username": who, "password": "x" }))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, body) = call(client().post(s.at("/api/v1/auth/login")).json(&json!({
        "username": "alice", "password": password_of("alice")
    })))
    .await;
    assert_eq!((status, code(&body)), (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"));
}

#[tokio::test]
async fn organisations_members_and_roles() {
    let s = start(ServerOptions::default());
    let alice = user(&s, "alice").await.unwrap();
    let bob = user(&s, "bob").await.unwrap();
    let carol = user(&s, "carol").await.unwrap();

    let (status, org) =
        call(alice.post(s.at("/api/v1/tenants")).json(&json!({ "slug": "acme", "name": "Acme" }))).await;
    assert_eq!(status, StatusCode::CREATED, "{org}");
    assert_eq!((org["slug"].as_str(), org["kind"].as_str()), (Some("acme"), Some("organization")));
    let (status, body) = call(bob.post(s.at("/api/v1/tenants")).json(&json!({ "slug": "acme", "name": "X" }))).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "tenant_slug_taken"));
    let (status, body) = call(bob.post(s.at("/api/v1/tenants")).json(&json!({ "slug": "carol", "name": "X" }))).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "tenant_slug_taken"), "usernames are slugs");

    let members = s.at("/api/v1/tenants/acme/members");
    let (status, m) = call(alice.post(&members).json(&json!({ "username": "bob", "role": "viewer" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!((m["username"].as_str(), m["role"].as_str()), (Some("bob"), Some("viewer")));

    // A viewer reads but does not manage; an outsider does not even see the tenant.
    let (status, list) = call(bob.get(&members)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (status, body) = call(bob.post(&members).json(&json!({ "username": "carol", "role": "member" }))).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body) = call(carol.get(&members)).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "tenant_not_found"));
    let (status, body) = call(carol.get(s.at("/api/v1/tenants/acme"))).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "tenant_not_found"));

    // Admins manage members below owner; only owners touch ownership.
    let (status, _) = call(alice.post(&members).json(&json!({ "username": "bob", "role": "admin" }))).await;
    assert_eq!(status, StatusCode::OK, "role change");
    let (status, _) = call(bob.post(&members).json(&json!({ "username": "carol", "role": "member" }))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = call(bob.post(&members).json(&json!({ "username": "carol", "role": "owner" }))).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body) = call(bob.delete(s.at("/api/v1/tenants/acme/members/alice"))).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, body) = call(alice.post(&members).json(&json!({ "username": "nobody", "role": "member" }))).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "user_not_found"));

    // The last owner can neither leave nor be demoted.
    let (status, body) = call(alice.delete(s.at("/api/v1/tenants/acme/members/alice"))).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "last_owner"));
    let (status, body) = call(alice.post(&members).json(&json!({ "username": "alice", "role": "admin" }))).await;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "last_owner"));
    // Members may leave.
    let (status, _) = call(carol.delete(s.at("/api/v1/tenants/acme/members/carol"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(carol.get(&members)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Personal tenants have no other members.
    let (status, body) =
        call(bob.post(s.at("/api/v1/tenants/bob/members")).json(&json!({ "username": "carol", "role": "member" })))
            .await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_request"));

    // Tenant lists: members see theirs; the platform admin (alice, first user) sees all.
    let (_, mine) = call(bob.get(s.at("/api/v1/tenants"))).await;
    let slugs: Vec<_> = mine["items"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["bob", "acme"]);
    let (_, all) = call(alice.get(s.at("/api/v1/tenants"))).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
    let (status, t) = call(alice.get(s.at("/api/v1/tenants/carol/members"))).await;
    assert_eq!(status, StatusCode::OK, "platform admin manages every tenant: {t}");
}

#[tokio::test]
async fn api_keys_scopes_tenancy_revocation_and_expiry() {
    let s = start(ServerOptions::default());
    let alice = user(&s, "alice").await.unwrap();
    let bob = user(&s, "bob").await.unwrap();
    let (read_id, read_key) = key(&s, &alice, "alice", &["read"]).await;
    let (_, manage_key) = key(&s, &alice, "alice", &["manage"]).await;
    let (_, bob_key) = key(&s, &bob, "bob", &["read", "manage"]).await;
    assert!(read_key.starts_with("maas_"));

    // Bearer works; the key acts in its tenant with its scopes.
    let bearer = |k: &str| client().get(s.at("/api/v1/me")).bearer_auth(k);
    let (status, me) = call(bearer(&read_key)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user"]["username"], "alice");
    assert_eq!(me["api_key"]["id"], read_id.as_str());
    assert!(me["api_key"].get("key").is_none() && me["api_key"].get("secret_hash").is_none());
    let keys_url = s.at("/api/v1/tenants/alice/keys");
    let (status, list) = call(client().get(&keys_url).bearer_auth(&read_key)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&read_key[5..]), "secrets are never listed");
    let create = json!({ "name": "x", "scopes": ["read"] });
    let (status, body) = call(client().post(&keys_url).bearer_auth(&read_key).json(&create)).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "insufficient_scope"));
    let (status, _) = call(client().post(&keys_url).bearer_auth(&manage_key).json(&create)).await;
    assert_eq!(status, StatusCode::CREATED, "manage scope creates keys");
    let (status, body) = call(client().get(s.at("/api/v1/tenants/alice/keys")).bearer_auth(&bob_key)).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "tenant_not_found"), "other tenant's key");
    let (status, body) = call(client().get(s.at("/api/v1/tenants/bob/keys")).bearer_auth(&read_key)).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "tenant_not_found"));
    let (status, body) = call(
        client().post(s.at("/api/v1/tenants")).bearer_auth(&manage_key).json(&json!({"slug": "k-org", "name": "K"})),
    )
    .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));

    // last_used_at is recorded.
    let (_, list) = call(alice.get(&keys_url)).await;
    let used = list["items"].as_array().unwrap().iter().find(|k| k["id"] == read_id.as_str()).unwrap();
    assert!(used["last_used_at"].is_string(), "{used}");

    // Revocation takes effect on the very next request.
    let (status, _) = call(alice.delete(s.at(&format!("/api/v1/tenants/alice/keys/{read_id}")))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(bearer(&read_key)).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "api_key_revoked"));
    let (status, body) = call(bob.delete(s.at(&format!("/api/v1/tenants/alice/keys/{read_id}")))).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "tenant_not_found"));
    let (status, body) =
        call(alice.delete(s.at("/api/v1/tenants/alice/keys/0190d2a4-0000-7000-8000-000000000000"))).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "api_key_not_found"));

    // Expiry.
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let (status, body) =
        call(alice.post(&keys_url).json(&json!({ "name": "short", "scopes": ["read"], "expires_at": soon }))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let short = body["key"].as_str().unwrap().to_owned();
    assert_eq!(call(bearer(&short)).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let (status, body) = call(bearer(&short)).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "api_key_expired"));
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let (status, body) =
        call(alice.post(&keys_url).json(&json!({ "name": "old", "scopes": ["read"], "expires_at": past }))).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_request"));

    // Unknown and malformed bearer tokens.
    let (status, body) = call(bearer("maas_not-a-real-key")).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "invalid_api_key"));
    let (status, body) = call(client().get(s.at("/api/v1/me")).header("authorization", "Basic abc")).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "unauthenticated"));
}

#[tokio::test]
async fn key_rights_follow_roles() {
    let s = start(ServerOptions::default());
    let alice = user(&s, "alice").await.unwrap();
    let bob = user(&s, "bob").await.unwrap();
    let vic = user(&s, "vic").await.unwrap();
    call(alice.post(s.at("/api/v1/tenants")).json(&json!({ "slug": "acme", "name": "Acme" }))).await;
    let members = s.at("/api/v1/tenants/acme/members");
    call(alice.post(&members).json(&json!({ "username": "bob", "role": "member" }))).await;
    call(alice.post(&members).json(&json!({ "username": "vic", "role": "viewer" }))).await;
    let keys_url = s.at("/api/v1/tenants/acme/keys");

    let (status, body) = call(vic.post(&keys_url).json(&json!({ "name": "v", "scopes": ["read"] }))).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"), "viewers create no keys");
    let (bob_key_id, _) = key(&s, &bob, "acme", &["infer"]).await;
    let (status, body) = call(bob.post(&keys_url).json(&json!({ "name": "m", "scopes": ["manage"] }))).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"), "manage keys need admin");
    let (alice_key_id, _) = key(&s, &alice, "acme", &["read"]).await;

    // Members list and revoke their own keys only; admins see and revoke all.
    let (_, list) = call(bob.get(&keys_url)).await;
    let ids: Vec<_> = list["items"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [bob_key_id.as_str()]);
    let (_, list) = call(alice.get(&keys_url)).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (status, body) = call(bob.delete(format!("{keys_url}/{alice_key_id}"))).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, _) = call(alice.delete(format!("{keys_url}/{bob_key_id}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn audit_log_records_management_actions() {
    let s = start(ServerOptions::default());
    let alice = user(&s, "alice").await.unwrap();
    let bob = user(&s, "bob").await.unwrap();
    call(alice.post(s.at("/api/v1/tenants")).json(&json!({ "slug": "acme", "name": "Acme" }))).await;
    call(alice.post(s.at("/api/v1/tenants/acme/members")).json(&json!({ "username": "bob", "role": "member" }))).await;
    let (key_id, secret) = key(&s, &alice, "acme", &["read", "manage"]).await;
    let (status, _) = call(
        client()
            .post(s.at("/api/v1/tenants/acme/keys"))
            .bearer_auth(&secret)
            .json(&json!({ "name": "via key", "scopes": ["read"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    call(alice.delete(s.at(&format!("/api/v1/tenants/acme/keys/{key_id}")))).await;

    let (status, page) = call(alice.get(s.at("/api/v1/tenants/acme/audit"))).await;
    assert_eq!(status, StatusCode::OK);
    let items = page["items"].as_array().unwrap();
    let actions: Vec<_> = items.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["key.revoke", "key.create", "key.create", "member.set", "tenant.create"]);
    let revoke = &items[0];
    assert_eq!(revoke["actor"], "alice");
    assert_eq!(revoke["target"], key_id.as_str());
    assert_eq!(revoke["client_ip"], "127.0.0.1");
    assert!(revoke["at"].is_string());
    assert_eq!(items[1]["actor_key_id"], key_id.as_str(), "actions through a key name the key");
    assert_eq!(items[3]["target"], "bob");
    assert_eq!(items[3]["details"]["role"], "member");

    let (status, page) = call(alice.get(s.at("/api/v1/tenants/acme/audit?limit=2"))).await;
    assert_eq!(status, StatusCode::OK);
    let before = page["next_before"].as_str().unwrap().to_owned();
    let (_, older) = call(alice.get(s.at(&format!("/api/v1/tenants/acme/audit?limit=10&before={before}")))).await;
    assert_eq!(older["items"].as_array().unwrap().len(), 3);
    assert!(older["next_before"].is_null());

    let (status, body) = call(bob.get(s.at("/api/v1/tenants/acme/audit"))).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"), "members do not read the audit log");
    let (status, body) = call(alice.get(s.at("/api/v1/tenants/acme/audit?limit=abc"))).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_query"));
}

#[tokio::test]
async fn bad_input_gets_4xx_with_a_code() {
    let s = start(ServerOptions::default().env("MAAS_HTTP__MAX_BODY_BYTES", "4096"));
    let alice = user(&s, "alice").await.unwrap();
    let register = s.at("/api/v1/auth/register");
    let cases: Vec<(RequestBuilder, StatusCode, &str)> = vec![
        (
            client().post(&register).header("content-type", "application/json").body("{\"username\":"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            client()
                .post(&register)
                .json(&json!({ "username": "x1", "email": "a@b.io", "password": "12345678", "admin": true })),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (client().post(&register).json(&json!({ "username": "x1" })), StatusCode::BAD_REQUEST, "invalid_request"),
        (
            client()
                .post(&register)
                .json(&json!({ "username": "Bad Name", "email": "a@b.io", "password": "12345678" })),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            client().post(&register).json(&json!({ "username": "okname", "email": "nope", "password": "12345678" })),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            client().post(&register).json(&json!({ "username": "okname", "email": "a@b.io", "password": "short" })),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            client().post(&register).json(&json!({ "username": "alice", "email": "z@b.io", "password": "12345678" })),
            StatusCode::CONFLICT,
            "username_taken",
        ),
        (
            client()
                .post(&register)
                .json(&json!({ "username": "zed", "email": "alice@example.com", "password": "12345678" })),
            StatusCode::CONFLICT,
            "email_taken",
        ),
        (
            client().post(&register).header("content-type", "text/plain").body("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            client()
                .post(&register)
                .header("content-type", "application/json")
                .body(format!("{{\"username\":\"{}\"}}", "a".repeat(10_000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            client().post(s.at("/api/v1/auth/login")).json(&json!({ "password": "x" })),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (alice.delete(s.at("/api/v1/tenants/alice/keys/not-a-uuid")), StatusCode::BAD_REQUEST, "invalid_id"),
        (
            alice.post(s.at("/api/v1/tenants/alice/keys")).json(&json!({ "name": "k", "scopes": ["root"] })),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            alice.post(s.at("/api/v1/tenants/alice/keys")).json(&json!({ "name": "k", "scopes": [] })),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            alice.post(s.at("/api/v1/tenants/alice/keys")).json(&json!({ "name": "", "scopes": ["read"] })),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            alice
                .post(s.at("/api/v1/tenants/alice/keys"))
                .json(&json!({ "name": "k", "scopes": ["read"], "expires_at": "tomorrow" })),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (alice.get(s.at("/api/v1/tenants/nobody/keys")), StatusCode::NOT_FOUND, "tenant_not_found"),
        (client().get(s.at("/api/v1/tenants/alice/keys")), StatusCode::UNAUTHORIZED, "unauthenticated"),
        (client().get(s.at("/api/v1/no/such/route")), StatusCode::NOT_FOUND, "route_not_found"),
        (client().put(s.at("/api/v1/me")), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    ];
    for (i, (req, status, expected)) in cases.into_iter().enumerate() {
        let (got, body) = call(req).await;
        assert_eq!((got, code(&body)), (status, expected), "case {i}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "case {i}: {body}");
    }
    let (status, _) = call(client().get(s.at("/healthz"))).await;
    assert_eq!(status, StatusCode::OK, "still alive after all that");
}

#[tokio::test]
async fn health_readiness_request_ids_and_json_logs() {
    let s = start(ServerOptions::default());
    let response = client().get(s.at("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID request id: {id}");
    let response = client().get(s.at("/readyz")).header("x-request-id", "trace-me-123").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-123", "a caller's id is kept");
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "status": "ready" }));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = s.log_text();
    assert!(logs.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()), "JSON logs:\n{logs}");
    assert!(logs.contains("trace-me-123"), "the request id is in the request's log lines:\n{logs}");
}

#[tokio::test]
async fn openapi_document_lists_exactly_the_served_routes() {
    let s = start(ServerOptions::default());
    let (status, doc) = call(client().get(s.at("/api/v1/openapi.json"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for required in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/me",
        "/api/v1/tenants",
        "/api/v1/tenants/{tenant}/members",
        "/api/v1/tenants/{tenant}/keys",
        "/api/v1/tenants/{tenant}/keys/{id}",
        "/api/v1/tenants/{tenant}/audit",
        "/api/v1/openapi.json",
        "/healthz",
        "/readyz",
        "/api/v1/models",
        "/api/v1/models/{tenant}/{name}",
        "/api/v1/models/{tenant}/{name}/versions",
        "/api/v1/models/{tenant}/{name}/versions/{version}/publish",
        "/api/v1/models/{tenant}/{name}/versions/{version}/files/{path}",
        "/api/v1/models/{tenant}/{name}/versions/{version}/uploads/{path}",
        "/api/models/{tenant}/{name}/revision/{revision}",
        "/{tenant}/{name}/resolve/{revision}/{path}",
        "/v1/models",
        "/v1/models/{model}",
        "/v1/embeddings",
        "/v1/chat/completions",
        "/v1/completions",
    ] {
        assert!(paths.contains_key(required), "{required} missing from the OpenAPI document");
    }
    // Every documented operation is routed (no route_not_found / method_not_allowed).
    for (path, ops) in paths {
        let concrete = path
            .replace("{tenant}", "alice")
            .replace("{id}", "0190d2a4-0000-7000-8000-000000000000")
            .replace("{username}", "bob")
            .replace("{name}", "some-model")
            .replace("{version}", "1.0")
            .replace("{revision}", "main")
            .replace("{path}", "dir/file.bin")
            .replace("{model}", "alice/some-model");
        assert!(!concrete.contains('{'), "unsubstituted parameter in {concrete}");
        for method in ops.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = call(client().request(method.clone(), s.at(&concrete))).await;
            assert!(
                !matches!(code(&body), "route_not_found" | "method_not_allowed"),
                "{method} {concrete}: {status} {body}"
            );
        }
    }
}

/// Two instances sharing PostgreSQL and Redis, each trusting a verified key for ten minutes:
/// a key revoked on one stops working on the other at once (Redis pub/sub clears its cache),
/// not when its cache entry ages out.
#[tokio::test]
async fn a_key_revoked_on_one_instance_stops_on_the_others() {
    let db = fresh_postgres_db().await.unwrap();
    let prefix = redis_prefix();
    let options = || {
        ServerOptions::default()
            .env("MAAS_DATABASE_URL", &db)
            .env("MAAS_REDIS_URL", redis_url())
            .env("MAAS_REDIS_PREFIX", &prefix)
            .env("MAAS_AUTH__KEY_CACHE_MS", "600000")
    };
    let a = start(options());
    let b = start(options());
    let alice = user(&a, "alice").await.unwrap();
    let (id, secret) = key(&a, &alice, "alice", &["read"]).await;
    let me = |s: &Server| client().get(s.at("/api/v1/me")).bearer_auth(&secret);
    for s in [&a, &b] {
        let (status, body) = call(me(s)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    let (status, _) = call(alice.delete(a.at(&format!("/api/v1/tenants/alice/keys/{id}")))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(me(&a)).await;
    assert_eq!((status, code(&body)), (StatusCode::UNAUTHORIZED, "api_key_revoked"), "the revoking instance");
    // Pub/sub delivery takes a moment; the cache entry alone would last ten minutes.
    let mut last = (StatusCode::OK, Value::Null);
    for _ in 0..100 {
        last = call(me(&b)).await;
        if last.0 == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!((last.0, code(&last.1)), (StatusCode::UNAUTHORIZED, "api_key_revoked"), "the other instance");
}
