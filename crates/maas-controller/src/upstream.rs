//! The client of an engine that runs elsewhere (a version of format `external`): the gateway
//! forwards calls through it with the upstream's own key, and streams pass through.

use std::time::Duration;

use maas_core::Secret;

use crate::ControllerError;
use crate::spec::{External, UpstreamProtocol};

/// One external engine.
#[derive(Debug)]
pub struct Upstream {
    base: String,
    pub protocol: UpstreamProtocol,
    /// The model name the engine knows.
    pub model: String,
    api_key: Option<Secret<String>>,
    client: reqwest::Client,
}

impl Upstream {
    /// A client for `external`; `endpoint` (`tenant/name`) is the model name when none is given.
    /// `read_timeout` bounds each wait for bytes (a long stream that keeps sending is fine).
    pub fn new(external: &External, endpoint: &str, read_timeout: Duration) -> Result<Upstream, ControllerError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(read_timeout)
            .build()
            .map_err(|e| ControllerError::Upstream(format!("cannot build the HTTP client: {e}")))?;
        Ok(Upstream {
            base: external.url.trim_end_matches('/').to_owned(),
            protocol: external.protocol,
            model: external.model.clone().unwrap_or_else(|| endpoint.to_owned()),
            api_key: external.api_key.clone(),
            client,
        })
    }

    /// The engine's URL for `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `request` (built with [`Upstream::request`]) and returns the engine's response,
    /// whatever its status; only a failure to reach the engine is an error.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, ControllerError> {
        request.send().await.map_err(|e| {
            let what = if e.is_timeout() { "timed out" } else { "could not be reached" };
            ControllerError::Upstream(format!("{} {what}: {e}", self.base))
        })
    }

    /// A request to `path` carrying the upstream key.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match &self.api_key {
            Some(key) => request.bearer_auth(key.expose()),
            None => request,
        }
    }
}
