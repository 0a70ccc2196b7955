//! The CLI end to end: the `maas` binary's client commands against a real `maas serve`.

use std::path::Path;
use std::process::Output;

use maas_testkit::cli::{json_of, ok};

use maas_testkit::{Server, ServerOptions, client, password_of, register};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_maas");

/// Runs `maas ARGS` with its own config dir, pointed at `server`.
fn maas(config_dir: &Path, server: &Server, args: &[&str]) -> Output {
    maas_testkit::cli::run(Path::new(BIN), config_dir, server, args)
}

#[tokio::test]
async fn login_tenants_members_keys_logout() {
    let s = Server::start(Path::new(BIN), ServerOptions::default()).unwrap();
    register(&s, "alice").await.unwrap();
    register(&s, "bob").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path();

    let out = maas(cfg, &s, &["whoami"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not logged in"));

    let out = maas(cfg, &s, &["login", "alice", "--password", "wrong-password"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_credentials"));

    assert!(ok(&maas(cfg, &s, &["login", "alice@example.com", "--password", &password_of("alice")])).contains("alice"));
    let creds = cfg.join("credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "credentials are private");
    }
    let stored: Value = serde_json::from_slice(&std::fs::read(&creds).unwrap()).unwrap();
    assert_eq!(stored["server"], s.url.as_str());
    assert!(stored["session"].is_string());

    let me = json_of(&maas(cfg, &s, &["whoami", "--output", "json"]));
    assert_eq!(me["user"]["username"], "alice");
    assert!(ok(&maas(cfg, &s, &["whoami"])).contains("alice <alice@example.com> [platform admin]"));

    let org = json_of(&maas(cfg, &s, &["tenants", "create", "acme", "--name", "Acme Corp", "--output", "json"]));
    assert_eq!(org["slug"], "acme");
    assert!(ok(&maas(cfg, &s, &["tenants", "list"])).contains("Acme Corp"));

    let member = json_of(&maas(cfg, &s, &["members", "add", "acme", "bob", "--role", "admin", "--output", "json"]));
    assert_eq!(member["role"], "admin");
    let listing = ok(&maas(cfg, &s, &["members", "list", "acme"]));
    assert!(listing.contains("bob") && listing.contains("admin"), "{listing}");

    let key = json_of(&maas(
        cfg,
        &s,
        &["keys", "create", "acme", "--name", "ci", "--scopes", "read,infer", "--output", "json"],
    ));
    let (id, secret) = (key["id"].as_str().unwrap().to_owned(), key["key"].as_str().unwrap().to_owned());
    let list = json_of(&maas(cfg, &s, &["keys", "list", "acme", "--output", "json"]));
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert!(!list.to_string().contains(&secret));
    let me = |k: &str| client().get(s.at("/api/v1/me")).bearer_auth(k.to_owned()).send();
    assert_eq!(me(&secret).await.unwrap().status(), 200);
    ok(&maas(cfg, &s, &["keys", "revoke", "acme", &id]));
    assert_eq!(me(&secret).await.unwrap().status(), 401);
    assert!(ok(&maas(cfg, &s, &["keys", "list", "acme"])).contains("revoked"));

    let audit = ok(&maas(cfg, &s, &["audit", "acme"]));
    assert!(audit.contains("key.revoke") && audit.contains("member.set") && audit.contains("tenant.create"), "{audit}");

    // An API key can be stored instead of a session.
    let other = tempfile::tempdir().unwrap();
    let key =
        json_of(&maas(cfg, &s, &["keys", "create", "alice", "--name", "cli", "--scopes", "read", "--output", "json"]));
    ok(&maas(other.path(), &s, &["login", "--api-key", key["key"].as_str().unwrap()]));
    let me2 = json_of(&maas(other.path(), &s, &["whoami", "--output", "json"]));
    assert_eq!(me2["api_key"]["name"], "cli");

    let session = stored["session"].as_str().unwrap().to_owned();
    ok(&maas(cfg, &s, &["logout"]));
    assert!(!creds.exists(), "credentials forgotten");
    let r = client().get(s.at("/api/v1/me")).header("cookie", format!("maas_session={session}")).send().await.unwrap();
    assert_eq!(r.status(), 401, "the session ended on the server too");
}

#[tokio::test]
async fn cli_refreshes_and_saves_a_rotated_session() {
    let s = Server::start(
        Path::new(BIN),
        ServerOptions::default().env("MAAS_AUTH__SESSION_TTL_SECS", "60").env("MAAS_AUTH__REFRESH_WINDOW_SECS", "59"),
    )
    .unwrap();
    register(&s, "alice").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    ok(&maas(dir.path(), &s, &["login", "alice", "--password", &password_of("alice")]));
    let read =
        || serde_json::from_slice::<Value>(&std::fs::read(dir.path().join("credentials.json")).unwrap()).unwrap();
    let before = read()["session"].clone();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ok(&maas(dir.path(), &s, &["whoami"]));
    let after = read()["session"].clone();
    assert_ne!(before, after, "the pre-login refresh rotated the id and the CLI kept the new one");
    ok(&maas(dir.path(), &s, &["whoami"]));
}
