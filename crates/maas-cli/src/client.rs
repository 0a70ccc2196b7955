//! A thin HTTP client for the management API: base URL, credentials, error decoding.

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

use crate::{CliError, Credentials};

pub const SESSION_COOKIE: &str = "maas_session";

#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Session(String),
    ApiKey(String),
}

#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    pub base: String,
    pub auth: Auth,
}

impl Client {
    pub fn new(base: &str, auth: Auth) -> Result<Self, CliError> {
        let http = reqwest::Client::builder().user_agent(concat!("maas-cli/", env!("CARGO_PKG_VERSION"))).build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), auth })
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.auth {
            Auth::None => req,
            Auth::Session(id) => req.header(reqwest::header::COOKIE, format!("{SESSION_COOKIE}={id}")),
            Auth::ApiKey(key) => req.bearer_auth(key),
        }
    }

    /// Sends the request; a non-2xx answer becomes [`CliError::Api`] with the server's code.
    pub async fn send(&self, req: RequestBuilder) -> Result<Response, CliError> {
        let response = req.send().await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        Err(api_error(status, &body))
    }

    /// Sends and decodes a JSON answer (`null` for an empty body).
    pub async fn json(&self, req: RequestBuilder) -> Result<Value, CliError> {
        let bytes = self.send(req).await?.bytes().await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(CliError::Response)
    }
}

/// Decodes an error answer: the management API's `{"error": {"code", "message"}}`, or the v2
/// inference API's `{"error": "…", "code": "…"}`; any other body (a proxy's page, nothing)
/// keeps the status with a short excerpt of the text, or the status's reason.
pub fn api_error(status: reqwest::StatusCode, body: &[u8]) -> CliError {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().unwrap_or_default().trim().to_owned();
    let (code, message) = match &value["error"] {
        Value::String(message) => (text(&value["code"]), message.trim().to_owned()),
        error @ Value::Object(_) => (text(&error["code"]), text(&error["message"])),
        _ => (String::new(), String::new()),
    };
    let message = if !message.is_empty() {
        message
    } else if value.is_null() && !String::from_utf8_lossy(body).trim().is_empty() {
        let raw = String::from_utf8_lossy(body);
        let excerpt: String = raw.trim().chars().take(200).collect();
        if raw.trim().chars().count() > 200 { format!("{excerpt}…") } else { excerpt }
    } else {
        status.canonical_reason().unwrap_or("error").to_owned()
    };
    let code = if code.is_empty() { "http_error".to_owned() } else { code };
    CliError::Api { status: status.as_u16(), code, message }
}

/// The session id in a response's `Set-Cookie`, if it sets one.
pub fn session_from(response: &Response) -> Option<String> {
    response.headers().get_all(reqwest::header::SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let (pair, _) = v.split_once(';').unwrap_or((v, ""));
        let (name, value) = pair.split_once('=')?;
        (name.trim() == SESSION_COOKIE && !value.is_empty()).then(|| value.trim().to_owned())
    })
}

/// Builds the client for an authenticated command: `MAAS_API_KEY`, else the stored key or
/// session. A stored session is refreshed first (the pre-login call), and a rotated id saved.
pub async fn authenticated(server: Option<&str>) -> Result<Client, CliError> {
    let mut creds = Credentials::load()?;
    let base = base_url(server, &creds);
    if let Ok(key) = std::env::var("MAAS_API_KEY") {
        return Client::new(&base, Auth::ApiKey(key));
    }
    if let Some(key) = creds.api_key.clone() {
        return Client::new(&base, Auth::ApiKey(key));
    }
    let session = creds.session.clone().ok_or(CliError::NotLoggedIn)?;
    let client = Client::new(&base, Auth::Session(session))?;
    let response = client.send(client.request(Method::POST, "/api/v1/auth/refresh")).await.map_err(|e| match e {
        CliError::Api { status: 401, .. } => CliError::NotLoggedIn,
        e => e,
    })?;
    match session_from(&response) {
        Some(fresh) => {
            creds.session = Some(fresh.clone());
            creds.save()?;
            Client::new(&base, Auth::Session(fresh))
        }
        None => Ok(client),
    }
}

/// Builds the client for a command that also works anonymously (public models): the stored
/// credentials when there are usable ones, else no credentials at all.
pub async fn optional(server: Option<&str>) -> Result<Client, CliError> {
    match authenticated(server).await {
        Err(CliError::NotLoggedIn) => Client::new(&base_url(server, &Credentials::load()?), Auth::None),
        other => other,
    }
}

/// The server to talk to: `--server`/`MAAS_SERVER`, else the one logged in to, else the default.
fn base_url(server: Option<&str>, creds: &Credentials) -> String {
    server.map(str::to_owned).or_else(|| creds.server.clone()).unwrap_or_else(default_server)
}

pub fn default_server() -> String {
    "http://127.0.0.1:8080".to_owned()
}

/// Percent-encodes one URL path segment (everything but RFC 3986 unreserved characters).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a `/`-separated file path segment by segment, keeping the slashes.
pub fn file_path(path: &str) -> String {
    path.split('/').map(segment).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_per_segment() {
        assert_eq!(segment("1.0.0+build"), "1.0.0%2Bbuild");
        assert_eq!(file_path("1_Pooling/config.json"), "1_Pooling/config.json");
        assert_eq!(file_path("a b/c#d%e@f.txt"), "a%20b/c%23d%25e%40f.txt");
        assert_eq!(file_path("é"), "%C3%A9");
    }

    #[test]
    fn both_error_shapes_decode() {
        let decode = |status: u16, body: &str| match api_error(
            reqwest::StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
        ) {
            CliError::Api { status, code, message } => (status, code, message),
            other => panic!("{other}"),
        };
        let management = r#"{"error": {"code": "deployment_not_found", "message": "deployment 'a/b' not found"}}"#;
        assert_eq!(decode(404, management), (404, "deployment_not_found".into(), "deployment 'a/b' not found".into()));
        let v2 = r#"{"error": "input 'INPUT0': expected INT32, got FP32", "code": "invalid_request"}"#;
        assert_eq!(decode(400, v2), (400, "invalid_request".into(), "input 'INPUT0': expected INT32, got FP32".into()));
        assert_eq!(
            decode(502, "<html>bad gateway</html>"),
            (502, "http_error".into(), "<html>bad gateway</html>".into())
        );
        assert_eq!(decode(503, ""), (503, "http_error".into(), "Service Unavailable".into()));
        assert_eq!(decode(500, r#"{"unexpected": 1}"#).2, "Internal Server Error");
    }
}
