//! Forwarding OpenAI calls to an external engine (a deployment of format `external`, protocol
//! `openai`): the request goes upstream with the upstream's key and model name; the answer
//! comes back with our deployment name in `model`, streams chunk by chunk. Tokens are counted
//! from the engine's `usage` (streams are asked to include it; the extra chunk is dropped when
//! the client did not ask for it).

use std::convert::Infallible;

use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use maas_controller::spec::UpstreamProtocol;
use maas_controller::{Endpoint, Upstream};
use maas_core::ErrorCode;
use serde_json::{Value, json};

use super::generation::{UsageMeter, sse};
use crate::error::ApiError;
use crate::metering::Metered;

fn not_openai(endpoint: &Endpoint) -> ApiError {
    ApiError::new(
        ErrorCode::UnsupportedOperation,
        format!("{} is an external KServe v2 engine; call it through /v2/models/…/infer", endpoint.full_name()),
    )
}

/// Records the token counts of an upstream `usage` object.
fn count(meter: &mut UsageMeter, usage: &Value) {
    let n = |k: &str| usage.get(k).and_then(Value::as_u64).map(|v| v as usize);
    if let Some(p) = n("prompt_tokens") {
        meter.prompt_tokens = p;
    }
    if let Some(c) = n("completion_tokens") {
        meter.completion_tokens = c;
    }
}

/// Sends `body` to the engine's `path` and relays the answer, metered by `call` (with the
/// engine's token counts).
pub async fn forward(
    endpoint: &Endpoint,
    path: &'static str,
    body: Value,
    mut call: Metered,
) -> Result<Response, ApiError> {
    let headers = call.headers();
    let upstream = match connect(endpoint) {
        Ok(upstream) => upstream,
        Err(e) => return Err(call.fail(e).await),
    };
    let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let client_wants_usage = body.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
    let response = match send(&upstream, path, body, streaming).await {
        Ok(response) => response,
        Err(e) => return Err(call.fail(e).await),
    };
    call.tokens = (0, 0);
    let mut meter = UsageMeter::new(call, 0);
    let mut response = if streaming {
        relay_stream(response, meter, endpoint.full_name(), client_wants_usage, upstream.max_answer_bytes)
    } else {
        let answer = match upstream.body(response).await {
            Ok(body) => serde_json::from_slice::<Value>(&body)
                .map_err(|e| ApiError::new(ErrorCode::UpstreamError, format!("the engine's answer is not JSON: {e}"))),
            Err(e) => Err(ApiError::from(e)),
        };
        let mut answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                meter.finish(0, Some(&e)).await?;
                return Err(e);
            }
        };
        if let Some(usage) = answer.get("usage") {
            count(&mut meter, usage);
        }
        answer["model"] = json!(endpoint.full_name());
        let body = answer.to_string();
        meter.finish(body.len(), None).await?;
        ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    for (name, value) in headers {
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    Ok(response)
}

/// The running upstream of an OpenAI-protocol external deployment.
fn connect(endpoint: &Endpoint) -> Result<std::sync::Arc<Upstream>, ApiError> {
    let upstream = endpoint.upstream().ok_or_else(|| {
        ApiError::new(ErrorCode::ModelNotReady, format!("{} is not started yet", endpoint.full_name()))
    })?;
    if upstream.protocol != UpstreamProtocol::Openai {
        return Err(not_openai(endpoint));
    }
    Ok(upstream)
}

/// Sends the request upstream (as the engine's model; streams asked to include usage); the
/// engine's answer when it is a success.
async fn send(
    upstream: &Upstream,
    path: &str,
    mut body: Value,
    streaming: bool,
) -> Result<reqwest::Response, ApiError> {
    body["model"] = json!(upstream.model);
    if streaming {
        body["stream_options"] = json!({ "include_usage": true });
    }
    let response =
        upstream.send(upstream.request(reqwest::Method::POST, path).json(&body)).await.map_err(ApiError::from)?;
    if !response.status().is_success() {
        return Err(ApiError::from_upstream(upstream, response).await);
    }
    Ok(response)
}

/// Relays the engine's server-sent events, renaming the model and counting tokens; an event
/// larger than `max_event_bytes` ends the stream with an error event.
fn relay_stream(
    response: reqwest::Response,
    meter: UsageMeter,
    model: String,
    client_wants_usage: bool,
    max_event_bytes: usize,
) -> Response {
    struct St {
        bytes: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
        buffer: Vec<u8>,
        meter: UsageMeter,
        model: String,
        client_wants_usage: bool,
        done: bool,
        sent: usize,
        /// How much of `buffer` is known to hold no event end (so each byte is searched once).
        searched: usize,
    }
    let state = St {
        bytes: response.bytes_stream().boxed(),
        buffer: Vec::new(),
        meter,
        model,
        client_wants_usage,
        done: false,
        sent: 0,
        searched: 0,
    };
    let events = futures::stream::unfold(state, move |mut st| async move {
        loop {
            // One whole event (up to a blank line) from the buffer, if there is one.
            let unsearched = st.buffer.get(st.searched..).unwrap_or_default();
            let end = unsearched.windows(2).position(|w| w == b"\n\n").map(|i| st.searched + i);
            st.searched = st.buffer.len().saturating_sub(1);
            if let Some(end) = end {
                st.searched = 0;
                let raw: Vec<u8> = st.buffer.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&raw);
                let data: String = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect::<Vec<_>>()
                    .join("\n");
                if data.is_empty() {
                    continue;
                }
                if data == "[DONE]" {
                    // `[DONE]` acknowledges the answer: only once its usage is durable.
                    let done = match st.meter.finish(st.sent, None).await {
                        Ok(()) => Event::default().data("[DONE]"),
                        Err(e) => Event::default().data(super::generation::error_event(&e).to_string()),
                    };
                    return Some((Ok::<Event, Infallible>(done), st));
                }
                st.sent += data.len() + "data: \n\n".len();
                let Ok(mut chunk) = serde_json::from_str::<Value>(&data) else {
                    return Some((Ok(Event::default().data(data)), st));
                };
                let usage_only = chunk.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty);
                if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
                    count(&mut st.meter, usage);
                    if usage_only && !st.client_wants_usage {
                        continue;
                    }
                    if let (false, Some(c)) = (st.client_wants_usage, chunk.as_object_mut()) {
                        c.remove("usage");
                    }
                }
                if chunk.get("model").is_some() {
                    chunk["model"] = json!(st.model);
                }
                return Some((Ok(Event::default().data(chunk.to_string())), st));
            }
            if st.done {
                return None;
            }
            if st.buffer.len() > max_event_bytes {
                st.done = true;
                (st.buffer, st.searched) = (Vec::new(), 0);
                let message = format!("the engine sent an event of more than {max_event_bytes} bytes");
                return Some((Ok(Event::default().data(upstream_error(message))), st));
            }
            match st.bytes.next().await {
                Some(Ok(bytes)) => st.buffer.extend(bytes.iter().filter(|&&b| b != b'\r')),
                Some(Err(e)) => {
                    st.done = true;
                    let error = upstream_error(format!("the engine's stream broke: {e}"));
                    return Some((Ok(Event::default().data(error)), st));
                }
                None => {
                    st.done = true;
                    st.buffer.extend_from_slice(b"\n\n");
                }
            }
        }
    });
    sse(events)
}

/// The error event that ends a relayed stream which cannot go on.
fn upstream_error(message: String) -> String {
    super::generation::error_event(&ApiError::new(ErrorCode::UpstreamError, message)).to_string()
}
