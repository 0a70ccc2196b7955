//! The client of an engine that runs elsewhere (a version of format `external`): the gateway
//! forwards calls through it with the upstream's own key, and streams pass through.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
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
    /// Largest answer body (or stream event) read from the engine, in bytes.
    pub max_answer_bytes: usize,
}

impl Upstream {
    /// A client for `external`; `endpoint` (`tenant/name`) is the model name when none is given.
    /// `read_timeout` bounds each wait for bytes (a long stream that keeps sending is fine);
    /// answers larger than `max_answer_bytes` are refused ([`Upstream::body`]).
    pub fn new(
        external: &External,
        endpoint: &str,
        read_timeout: Duration,
        max_answer_bytes: usize,
    ) -> Result<Upstream, ControllerError> {
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
            max_answer_bytes,
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

    /// The whole body of the engine's `response`, refused as soon as it is known to exceed
    /// `max_answer_bytes` (by its `Content-Length` or while it arrives).
    pub async fn body(&self, mut response: reqwest::Response) -> Result<Bytes, ControllerError> {
        let limit = self.max_answer_bytes;
        let too_large = || ControllerError::Upstream(format!("{} answered with more than {limit} bytes", self.base));
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ControllerError::Upstream(format!("reading the answer of {} failed: {e}", self.base)))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
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
