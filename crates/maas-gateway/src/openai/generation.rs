//! What chat and text completions share: the sampling fields of a request, counting the tokens
//! of every generation (streams the client cut off included), collecting a whole answer, and
//! streaming one as server-sent events in either response shape.

use std::convert::Infallible;
use std::time::Instant;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt as _};
use maas_controller::routing::Generation;
use maas_controller::{Controller, Endpoint};
use maas_core::ErrorCode;
use maas_runtime::generate::sampler::SamplingParams;
use maas_runtime::generate::structured::OutputFormat;
use maas_runtime::generate::{GenerateRequest, GenerationEvent, MAX_TOP_LOGPROBS, Prompt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::choices::{Choice, Held, Shape};
use crate::error::ApiError;
use crate::metering::{Metered, Outcome};

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
    /// Choices per prompt (default 1; at most 64 choices per request); with a `seed`,
    /// choice `i` samples with `seed + i`.
    pub n: Option<usize>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// Chat: `true` reports each token's log-probability (with `top_logprobs` alternatives).
    /// Text completions: the number of alternatives (0 to 20), as OpenAI's legacy API takes it.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    /// Chat: how many of the most likely tokens to list at each position (0 to 20; needs
    /// `logprobs: true`).
    pub top_logprobs: Option<usize>,
    /// `{"type": "text"}` (the default), `{"type": "json_object"}` (JSON mode: the output is one
    /// JSON object) or `{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`
    /// (the output matches the schema). Decoding is constrained, so the output always parses;
    /// schema keywords that cannot be enforced are refused.
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<Value>,
    /// Not in OpenAI's API; vLLM's: exactly one of `json` (a JSON Schema), `regex`, `choice`
    /// (a list of texts), `grammar` (llguidance's Lark syntax, or llama.cpp's GBNF) or
    /// `json_object: true`.
    #[schema(value_type = Option<Object>)]
    pub structured_outputs: Option<Value>,
    /// vLLM's older names of `structured_outputs`' members.
    #[schema(value_type = Option<Object>)]
    pub guided_json: Option<Value>,
    pub guided_regex: Option<String>,
    pub guided_choice: Option<Vec<String>>,
    pub guided_grammar: Option<String>,
    /// Token id (as a string) → bias added to its logit, -100 to 100.
    pub logit_bias: Option<std::collections::HashMap<String, f32>>,
}

/// Most stop sequences per request (OpenAI allows 4).
const MAX_STOP: usize = 4;

/// Most choices in one request (prompts × `n`).
pub const MAX_CHOICES: usize = 64;

impl Sampling {
    /// The generations a request asks for: `n` choices of each prompt, in that order (choice
    /// `i` of prompt `p` has index `p·n + i`). `chat` says which `logprobs` form applies;
    /// `forced` is the output format a forced tool call needs (it excludes `response_format`);
    /// unsupported or out-of-range options are refused with the field named.
    pub fn requests(
        &self,
        prompts: Vec<Prompt>,
        default_max_tokens: Option<usize>,
        chat: bool,
        forced: Option<OutputFormat>,
    ) -> Result<Vec<GenerateRequest>, ApiError> {
        let n = self.n.unwrap_or(1);
        if n == 0 || n.saturating_mul(prompts.len()) > MAX_CHOICES {
            return Err(ApiError::invalid(
                "n",
                format!("n must be at least 1, with at most {MAX_CHOICES} choices per request"),
            ));
        }
        let logprobs = self.logprobs(chat)?;
        let format = match (forced, self.output_format()?) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(
                    "response_format",
                    "response_format cannot be combined with a forced tool call",
                ));
            }
            (forced, asked) => forced.or(asked),
        };
        let defaults = SamplingParams::default();
        let params = SamplingParams {
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            top_k: self.top_k.unwrap_or(defaults.top_k),
            presence_penalty: self.presence_penalty.unwrap_or(defaults.presence_penalty),
            frequency_penalty: self.frequency_penalty.unwrap_or(defaults.frequency_penalty),
            seed: self.seed.map(|s| s as u64),
            logit_bias: self.logit_bias()?,
        };
        params.validate().map_err(ApiError::from)?;
        let max_tokens = self.max_completion_tokens.or(self.max_tokens).or(default_max_tokens);
        if max_tokens == Some(0) {
            return Err(ApiError::invalid("max_tokens", "max_tokens must be at least 1"));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > MAX_STOP {
            return Err(ApiError::invalid("stop", format!("at most {MAX_STOP} stop sequences")));
        }
        let mut requests = Vec::with_capacity(prompts.len() * n);
        for prompt in prompts {
            for i in 0..n {
                let seed = params.seed.map(|s| s.wrapping_add(i as u64));
                requests.push(GenerateRequest {
                    prompt: prompt.clone(),
                    sampling: SamplingParams { seed, ..params.clone() },
                    max_tokens,
                    stop: stop.clone(),
                    logprobs,
                    echo: false,
                    prompt_logprobs: None,
                    format: format.clone(),
                });
            }
        }
        Ok(requests)
    }

    /// How many alternatives to report with each token's log-probability, if any: chat's
    /// `logprobs: true` with `top_logprobs`, or text completions' `logprobs: <n>`.
    fn logprobs(&self, chat: bool) -> Result<Option<usize>, ApiError> {
        let range = |param: &str, n: usize| {
            if n > MAX_TOP_LOGPROBS {
                return Err(ApiError::invalid(param, format!("{param} must be 0 to {MAX_TOP_LOGPROBS}")));
            }
            Ok(Some(n))
        };
        match (chat, &self.logprobs) {
            (true, None | Some(Value::Null | Value::Bool(false))) => match self.top_logprobs {
                Some(_) => Err(ApiError::invalid("top_logprobs", "top_logprobs needs logprobs: true")),
                None => Ok(None),
            },
            (true, Some(Value::Bool(true))) => range("top_logprobs", self.top_logprobs.unwrap_or(0)),
            (true, Some(_)) => Err(ApiError::invalid("logprobs", "logprobs must be true or false")),
            (false, _) if self.top_logprobs.is_some() => {
                Err(ApiError::invalid("top_logprobs", "text completions take the number of alternatives in logprobs"))
            }
            (false, None | Some(Value::Null)) => Ok(None),
            (false, Some(Value::Number(n))) => match n.as_u64() {
                Some(n) => range("logprobs", usize::try_from(n).unwrap_or(usize::MAX)),
                None => Err(ApiError::invalid("logprobs", format!("logprobs must be 0 to {MAX_TOP_LOGPROBS}"))),
            },
            (false, Some(_)) => {
                Err(ApiError::invalid("logprobs", format!("logprobs must be a number, 0 to {MAX_TOP_LOGPROBS}")))
            }
        }
    }

    /// `logit_bias` as (token id, bias) pairs.
    fn logit_bias(&self) -> Result<Vec<(u32, f32)>, ApiError> {
        self.logit_bias
            .iter()
            .flatten()
            .map(|(token, &b)| match token.parse::<u32>() {
                Ok(id) => Ok((id, b)),
                Err(_) => Err(ApiError::invalid("logit_bias", format!("logit_bias: '{token}' is not a token id"))),
            })
            .collect()
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }

    /// How many choices answer each prompt (`n`).
    pub fn per_prompt(&self) -> usize {
        self.n.unwrap_or(1).max(1)
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

/// Counts the tokens of one generation and records its usage: [`UsageMeter::finish`] when it
/// ends (returning once the record is durable), or on drop with what was generated by then (a
/// stream the client cut off).
#[derive(Debug)]
pub struct UsageMeter {
    call: Option<Metered>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    started: Instant,
}

impl UsageMeter {
    pub fn new(call: Metered, prompt_tokens: usize) -> UsageMeter {
        UsageMeter { call: Some(call), prompt_tokens, completion_tokens: 0, started: Instant::now() }
    }

    pub fn usage(&self) -> Usage {
        Usage::new(self.prompt_tokens, self.completion_tokens)
    }

    /// Records the generation as answered (or, with `error`, as failed); returns once durable.
    pub async fn finish(&mut self, response_bytes: usize, error: Option<&ApiError>) -> Result<(), ApiError> {
        let Some(call) = self.call.take() else { return Ok(()) };
        let outcome = match error {
            None => Outcome::ok(response_bytes, self.started.elapsed()),
            Some(e) => Outcome { compute: self.started.elapsed(), ..Outcome::failed(e) },
        };
        call.finish(outcome.tokens(self.prompt_tokens, self.completion_tokens)).await
    }
}

impl Drop for UsageMeter {
    fn drop(&mut self) {
        if let Some(call) = self.call.as_mut() {
            // The call's own drop records it, with the tokens generated so far.
            call.tokens = (self.prompt_tokens, self.completion_tokens);
            call.on_drop.compute = self.started.elapsed();
        }
    }
}

/// Runs the generations of one call (its choices, in index order) on a text-generation
/// endpoint and answers whole, or streamed when the request says `stream: true`, in `shape`.
/// `n` choices share each prompt, whose tokens count once.
pub async fn respond(
    controller: &Controller,
    endpoint: &Endpoint,
    requests: Vec<GenerateRequest>,
    shape: Shape,
    sampling: &Sampling,
    mut call: Metered,
) -> Result<Response, ApiError> {
    let per_prompt = sampling.per_prompt();
    // All at once, so that the choices decode together; one refused: the rest are dropped
    // (which cancels them) and the call fails.
    let started = futures::future::join_all(requests.into_iter().map(|r| controller.generate(endpoint, r))).await;
    let generations = match started.into_iter().collect::<Result<Vec<Generation>, _>>() {
        Ok(generations) => generations,
        Err(e) => return Err(call.fail(e.into()).await),
    };
    let prompt_tokens = generations.iter().step_by(per_prompt.max(1)).map(|g| g.prompt_tokens).sum();
    call.tokens = (prompt_tokens, 0);
    let headers = call.headers();
    let meter = UsageMeter::new(call, prompt_tokens);
    let choices = generations.len();
    let events = merged(generations);
    let mut response = if sampling.stream {
        stream(events, choices, meter, shape, sampling.include_usage())
    } else {
        collect(events, choices, meter, &shape).await?
    };
    for (name, value) in headers {
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    Ok(response)
}

/// The events of every choice as they come, each with its choice's index. Dropping the
/// stream drops the generations, which cancels them on the replica.
fn merged(generations: Vec<Generation>) -> impl Stream<Item = (usize, GenerationEvent)> + Send + Unpin + 'static {
    futures::stream::select_all(generations.into_iter().enumerate().map(|(index, g)| {
        tokio_stream::wrappers::UnboundedReceiverStream::new(g.events).map(move |event| (index, event))
    }))
}

/// How a choice's generation ended without an answer: its error, or the replica went away.
fn failure(event: Option<GenerationEvent>) -> ApiError {
    match event {
        Some(GenerationEvent::Failed(e)) => ApiError::from(maas_controller::routing::InferError::from(e)),
        _ => ApiError::new(ErrorCode::InferenceFailed, "the replica stopped before the answer was complete"),
    }
}

/// Waits for every choice's whole answer; returns them once their usage is recorded.
async fn collect(
    mut events: impl Stream<Item = (usize, GenerationEvent)> + Unpin,
    count: usize,
    mut meter: UsageMeter,
    shape: &Shape,
) -> Result<Response, ApiError> {
    let mut choices: Vec<Choice> = (0..count).map(|_| Choice::default()).collect();
    let mut completion = vec![0; count];
    let mut open = count;
    let error = loop {
        match events.next().await {
            Some((i, GenerationEvent::Delta { text, tokens, logprobs })) => {
                meter.completion_tokens += tokens;
                completion[i] += tokens;
                choices[i].text.push_str(&text);
                choices[i].logprobs.extend(logprobs);
            }
            Some((i, GenerationEvent::Finished { reason, usage })) => {
                meter.completion_tokens += usage.completion_tokens - completion[i].min(usage.completion_tokens);
                choices[i].finish = Some(reason);
                open -= 1;
                if open > 0 {
                    continue;
                }
                let body = shape.answer(&choices, meter.usage()).to_string();
                meter.finish(body.len(), None).await?;
                let mut response = body.into_response();
                response
                    .headers_mut()
                    .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
                return Ok(response);
            }
            Some((i, GenerationEvent::Prompt(tokens))) => choices[i].prompt = Some(tokens),
            Some((_, GenerationEvent::Started { .. })) => {}
            Some((_, failed)) => break failure(Some(failed)),
            None => break failure(None),
        }
    };
    drop(events);
    meter.finish(0, Some(&error)).await?;
    Err(error)
}

/// Streams the answer as server-sent events ending in `data: [DONE]`: each choice's chunks
/// as they come (chat: a chunk with the role first), its finish reason, and, when asked, a
/// last chunk with the usage of all. Dropping the stream (the client went away) drops the
/// generations, which cancels them on the replica.
fn stream(
    events: impl Stream<Item = (usize, GenerationEvent)> + Send + Unpin + 'static,
    count: usize,
    meter: UsageMeter,
    shape: Shape,
    include_usage: bool,
) -> Response {
    struct St<E> {
        events: E,
        meter: UsageMeter,
        shape: Shape,
        include_usage: bool,
        /// Per choice: completion tokens seen in deltas, characters of text sent, text held
        /// back while it may be a tool call.
        completion: Vec<usize>,
        offsets: Vec<usize>,
        held: Vec<Held>,
        open: usize,
        done: bool,
        pending: std::collections::VecDeque<Event>,
        /// Bytes of the events sent so far (metered as the response size).
        sent: usize,
    }
    impl<E> St<E> {
        fn push(&mut self, v: Value) {
            let data = v.to_string();
            self.sent += data.len() + "data: \n\n".len();
            self.pending.push_back(Event::default().data(data));
        }
    }
    let mut state = St {
        events,
        meter,
        shape,
        include_usage,
        completion: vec![0; count],
        offsets: vec![0; count],
        held: (0..count).map(|_| Held::default()).collect(),
        open: count,
        done: false,
        pending: Default::default(),
        sent: 0,
    };
    for index in 0..count {
        if let Some(v) = state.shape.opening(index) {
            state.push(v);
        }
    }
    let events = futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(event) = st.pending.pop_front() {
                return Some((Ok::<Event, Infallible>(event), st));
            }
            if st.done {
                return None;
            }
            match st.events.next().await {
                Some((i, GenerationEvent::Delta { text, tokens, logprobs })) => {
                    st.meter.completion_tokens += tokens;
                    st.completion[i] += tokens;
                    for v in st.shape.stream_delta(i, &text, &logprobs, &mut st.offsets[i], &mut st.held[i]) {
                        st.push(v);
                    }
                }
                Some((i, GenerationEvent::Finished { reason, usage })) => {
                    st.meter.completion_tokens +=
                        usage.completion_tokens - st.completion[i].min(usage.completion_tokens);
                    for v in st.shape.stream_finished(i, reason, &mut st.held[i]) {
                        st.push(v);
                    }
                    st.open -= 1;
                    if st.open > 0 {
                        continue;
                    }
                    if st.include_usage {
                        let v = st.shape.usage_chunk(st.meter.usage());
                        st.push(v);
                    }
                    // `[DONE]` acknowledges the answer: only once its usage is durable.
                    match st.meter.finish(st.sent, None).await {
                        Ok(()) => st.pending.push_back(Event::default().data("[DONE]")),
                        Err(e) => st.push(error_event(&e)),
                    }
                    st.done = true;
                }
                Some((i, GenerationEvent::Prompt(tokens))) => {
                    let v = st.shape.prompt(i, &tokens, &mut st.offsets[i]);
                    st.push(v);
                }
                Some((_, GenerationEvent::Started { .. })) => {}
                ended => {
                    // A choice failed, or the replica went away: the others are cancelled
                    // when the stream (and with it the generations) is dropped.
                    let error = failure(ended.map(|(_, e)| e));
                    let v = error_event(&error);
                    st.push(v);
                    if let Err(e) = st.meter.finish(st.sent, Some(&error)).await {
                        tracing::error!(error = %e.message, "usage of a failed stream could not be recorded");
                    }
                    st.done = true;
                }
            }
        }
    });
    sse(events)
}

/// An error in the middle of a stream, in the OpenAI shape.
pub(crate) fn error_event(error: &ApiError) -> Value {
    json!({ "error": { "message": error.message, "type": "server_error", "code": error.code.as_str(), "param": null } })
}

/// A server-sent event response with keep-alive comments.
pub fn sse(events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}
