//! What chat and text completions share: the sampling fields of a request, counting the tokens
//! of every generation (streams the client cut off included), collecting a whole answer, and
//! streaming one as server-sent events in either response shape.

use std::convert::Infallible;
use std::time::Instant;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use maas_controller::routing::Generation;
use maas_controller::{Controller, Endpoint};
use maas_core::ErrorCode;
use maas_runtime::generate::sampler::SamplingParams;
use maas_runtime::generate::{FinishReason, GenerateRequest, GenerationEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::ApiError;

/// `stop`: one string or several.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` (and no choices) before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// The sampling and streaming fields chat and text completions have in common.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct Sampling {
    /// 0 to 2; 0 is greedy. Default 1.
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Not in OpenAI's API; as vLLM offers it.
    pub top_k: Option<usize>,
    pub max_tokens: Option<usize>,
    /// The newer name of `max_tokens` (chat).
    pub max_completion_tokens: Option<usize>,
    pub stop: Option<Stop>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    /// Same seed and request, same answer.
    pub seed: Option<i64>,
    /// Only 1 is supported.
    pub n: Option<usize>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// Only `false`/absent is supported.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
}

/// Most stop sequences per request (OpenAI allows 4).
const MAX_STOP: usize = 4;

impl Sampling {
    /// The runtime's parameters, the token limit and the stop sequences; unsupported options
    /// are refused with the field named.
    pub fn to_runtime(
        &self,
        default_max_tokens: Option<usize>,
    ) -> Result<(SamplingParams, Option<usize>, Vec<String>), ApiError> {
        let bad = |param: &str, message: String| ApiError::new(ErrorCode::InvalidRequest, message).with_param(param);
        if self.n.is_some_and(|n| n != 1) {
            return Err(bad("n", "only n = 1 is supported".into()));
        }
        if self.logprobs.as_ref().is_some_and(|l| !matches!(l, Value::Null | Value::Bool(false))) {
            return Err(bad("logprobs", "logprobs are not supported".into()));
        }
        let defaults = SamplingParams::default();
        let params = SamplingParams {
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            top_k: self.top_k.unwrap_or(defaults.top_k),
            presence_penalty: self.presence_penalty.unwrap_or(defaults.presence_penalty),
            frequency_penalty: self.frequency_penalty.unwrap_or(defaults.frequency_penalty),
            seed: self.seed.map(|s| s as u64),
        };
        params.validate().map_err(ApiError::from)?;
        let max_tokens = self.max_completion_tokens.or(self.max_tokens).or(default_max_tokens);
        if max_tokens == Some(0) {
            return Err(bad("max_tokens", "max_tokens must be at least 1".into()));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > MAX_STOP {
            return Err(bad("stop", format!("at most {MAX_STOP} stop sequences")));
        }
        Ok((params, max_tokens, stop))
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }
}

/// `usage` in responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Usage {
        Usage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens }
    }
}

/// Counts one call's tokens as they are produced and reports them when the call ends, however
/// it ends (finished, failed, or dropped because the client went away mid-stream). The
/// report is a `maas::usage` tracing event; metering stores it.
#[derive(Debug)]
pub struct UsageMeter {
    endpoint: String,
    api: &'static str,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    finished: bool,
    started: Instant,
}

impl UsageMeter {
    pub fn new(endpoint: String, api: &'static str, prompt_tokens: usize) -> UsageMeter {
        UsageMeter { endpoint, api, prompt_tokens, completion_tokens: 0, finished: false, started: Instant::now() }
    }

    pub fn finish(&mut self) {
        self.finished = true;
    }

    pub fn usage(&self) -> Usage {
        Usage::new(self.prompt_tokens, self.completion_tokens)
    }
}

impl Drop for UsageMeter {
    fn drop(&mut self) {
        tracing::info!(
            target: "maas::usage",
            endpoint = %self.endpoint,
            api = self.api,
            prompt_tokens = self.prompt_tokens,
            completion_tokens = self.completion_tokens,
            complete = self.finished,
            latency_ms = self.started.elapsed().as_millis() as u64,
            "usage"
        );
    }
}

/// The response shape: chat (`chat.completion[.chunk]`, `message`/`delta`) or text
/// (`text_completion`, `text`).
#[derive(Debug, Clone)]
pub struct Shape {
    pub chat: bool,
    pub id: String,
    pub model: String,
    pub created: i64,
}

fn reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

impl Shape {
    pub fn new(chat: bool, model: String) -> Shape {
        let prefix = if chat { "chatcmpl" } else { "cmpl" };
        Shape { chat, id: format!("{prefix}-{}", uuid::Uuid::new_v4().simple()), model, created: super::unix_now() }
    }

    /// The whole answer (not streamed).
    pub fn answer(&self, text: String, finish: FinishReason, usage: Usage) -> Value {
        let choice = if self.chat {
            json!({ "index": 0, "message": { "role": "assistant", "content": text },
                    "finish_reason": reason(finish), "logprobs": null })
        } else {
            json!({ "index": 0, "text": text, "finish_reason": reason(finish), "logprobs": null })
        };
        let object = if self.chat { "chat.completion" } else { "text_completion" };
        json!({ "id": self.id, "object": object, "created": self.created, "model": self.model,
                "choices": [choice], "usage": usage })
    }

    /// One streamed chunk: `text` (chat: `role` too when `first`), or the finish reason.
    fn chunk(&self, text: Option<&str>, first: bool, finish: Option<FinishReason>) -> Value {
        let finish_reason = finish.map(reason);
        let choice = if self.chat {
            let delta = match (first, text) {
                (true, t) => json!({ "role": "assistant", "content": t.unwrap_or("") }),
                (false, Some(t)) => json!({ "content": t }),
                (false, None) => json!({}),
            };
            json!({ "index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": null })
        } else {
            json!({ "index": 0, "text": text.unwrap_or(""), "finish_reason": finish_reason, "logprobs": null })
        };
        self.envelope(json!([choice]), None)
    }

    fn envelope(&self, choices: Value, usage: Option<Usage>) -> Value {
        let object = if self.chat { "chat.completion.chunk" } else { "text_completion" };
        let mut v = json!({ "id": self.id, "object": object, "created": self.created, "model": self.model,
                            "choices": choices });
        if let Some(u) = usage {
            v["usage"] = json!(u);
        }
        v
    }
}

/// Runs `request` on a text-generation endpoint and answers whole, or streamed when the
/// request says `stream: true`, in the chat or the text completion shape.
pub async fn respond(
    controller: &Controller,
    endpoint: &Endpoint,
    request: GenerateRequest,
    chat: bool,
    sampling: &Sampling,
) -> Result<Response, ApiError> {
    let generation = controller.generate(endpoint, request).await?;
    let api = if chat { "chat.completions" } else { "completions" };
    let meter = UsageMeter::new(endpoint.full_name(), api, generation.prompt_tokens);
    let shape = Shape::new(chat, endpoint.full_name());
    if sampling.stream {
        Ok(stream(generation, meter, shape, sampling.include_usage()))
    } else {
        Ok(axum::Json(collect(generation, meter, &shape).await?).into_response())
    }
}

/// Waits for the whole answer.
pub async fn collect(mut generation: Generation, mut meter: UsageMeter, shape: &Shape) -> Result<Value, ApiError> {
    let mut text = String::new();
    while let Some(event) = generation.events.recv().await {
        match event {
            GenerationEvent::Delta { text: t, tokens } => {
                meter.completion_tokens += tokens;
                text.push_str(&t);
            }
            GenerationEvent::Finished { reason, usage } => {
                meter.completion_tokens = usage.completion_tokens;
                meter.finish();
                return Ok(shape.answer(text, reason, meter.usage()));
            }
            GenerationEvent::Failed(e) => return Err(maas_controller::routing::InferError::from(e).into()),
            GenerationEvent::Started { .. } => {}
        }
    }
    Err(ApiError::new(ErrorCode::InferenceFailed, "the replica stopped before the answer was complete"))
}

/// Streams the answer as server-sent events ending in `data: [DONE]`. Dropping the stream
/// (the client went away) drops the generation, which cancels it on the replica.
pub fn stream(generation: Generation, meter: UsageMeter, shape: Shape, include_usage: bool) -> Response {
    struct St {
        generation: Generation,
        meter: UsageMeter,
        shape: Shape,
        include_usage: bool,
        first: bool,
        done: bool,
        pending: std::collections::VecDeque<Event>,
    }
    let state = St { generation, meter, shape, include_usage, first: true, done: false, pending: Default::default() };
    let events = futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(event) = st.pending.pop_front() {
                return Some((Ok::<Event, Infallible>(event), st));
            }
            if st.done {
                return None;
            }
            let data = |v: Value| Event::default().data(v.to_string());
            if st.first {
                st.first = false;
                if st.shape.chat {
                    st.pending.push_back(data(st.shape.chunk(None, true, None)));
                    continue;
                }
            }
            match st.generation.events.recv().await {
                Some(GenerationEvent::Delta { text, tokens }) => {
                    st.meter.completion_tokens += tokens;
                    if !text.is_empty() {
                        st.pending.push_back(data(st.shape.chunk(Some(&text), false, None)));
                    }
                }
                Some(GenerationEvent::Finished { reason, usage }) => {
                    st.meter.completion_tokens = usage.completion_tokens;
                    st.meter.finish();
                    st.pending.push_back(data(st.shape.chunk(None, false, Some(reason))));
                    if st.include_usage {
                        st.pending.push_back(data(st.shape.envelope(json!([]), Some(st.meter.usage()))));
                    }
                    st.pending.push_back(Event::default().data("[DONE]"));
                    st.done = true;
                }
                Some(GenerationEvent::Failed(e)) => {
                    let error = ApiError::from(maas_controller::routing::InferError::from(e));
                    let body = json!({ "error": { "message": error.message, "type": "server_error",
                                                  "code": error.code.as_str(), "param": null } });
                    st.pending.push_back(data(body));
                    st.done = true;
                }
                Some(GenerationEvent::Started { .. }) => {}
                None => {
                    st.done = true;
                }
            }
        }
    });
    sse(events)
}

/// A server-sent event response with keep-alive comments.
pub fn sse(events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}
