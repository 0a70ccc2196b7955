//! The OpenAPI document is snapshot-tested: any change to the API surface shows up as a
//! diff of `openapi.snapshot.json` in review. Regenerate with
//! `UPDATE_SNAPSHOTS=1 cargo test -p maas-gateway --test openapi_snapshot`.

use std::path::PathBuf;

#[test]
fn openapi_document_matches_the_snapshot() {
    let doc = serde_json::to_string_pretty(&maas_gateway::openapi()).unwrap() + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.snapshot.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &doc).unwrap();
        return;
    }
    let snapshot = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        snapshot == doc,
        "the OpenAPI document changed; review and run \
         `UPDATE_SNAPSHOTS=1 cargo test -p maas-gateway --test openapi_snapshot`"
    );
}

#[test]
fn every_operation_documents_its_errors() {
    let doc = serde_json::to_value(maas_gateway::openapi()).unwrap();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path} has no responses");
            let public = ["/healthz", "/api/v1/openapi.json", "/api/v1/auth/logout", "/v2", "/v2/health/live"];
            if !public.contains(&path.as_str()) {
                assert!(
                    responses.keys().any(|status| status.starts_with('4') || status.starts_with('5')),
                    "{method} {path} documents no error response"
                );
            }
        }
    }
}
