//! `POST /v1/completions`: plain text continued, answered whole or streamed.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use maas_auth::Caller;
use maas_core::usage::InferenceApi;
use maas_runtime::generate::{GenerateRequest, Prompt};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::choices::Shape;
use super::generation::{self, Sampling};
use super::{Routed, route};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// OpenAI's default `max_tokens` for text completions.
const DEFAULT_MAX_TOKENS: usize = 16;

/// `prompt`: a string, a list of strings, token ids, or a list of token-id lists (each prompt
/// answered with `n` choices). Token ids are fed as they are, without a BOS token.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PromptIn {
    One(String),
    Many(Vec<String>),
    Tokens(Vec<u32>),
    ManyTokens(Vec<Vec<u32>>),
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CompletionRequest {
    /// The deployment: `tenant/name`, or a name in your tenant.
    pub model: String,
    pub prompt: PromptIn,
    #[serde(flatten)]
    pub sampling: Sampling,
    /// Each choice's text starts with its prompt; with `logprobs`, the lists start with the
    /// prompt's tokens, each scored given the ones before it (the first `null`).
    #[serde(default)]
    pub echo: bool,
}

/// Text completion: continues `prompt` (no chat template). `max_tokens` defaults to 16, as
/// OpenAI's does. With `stream: true`, server-sent `text_completion` chunks then `[DONE]`.
#[utoipa::path(post, path = "/v1/completions", tag = "openai", request_body = CompletionRequest,
    security(("api_key" = [])),
    responses((status = 200, description = "`text_completion`, or an event stream"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn completions(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    body: Body,
) -> Result<Response, ApiError> {
    let route = route::<CompletionRequest>(&state, caller?, body, "/v1/completions", InferenceApi::OpenaiCompletions);
    let (endpoint, request, call) = match route.await? {
        Routed::Here(endpoint, request, call) => (endpoint, request, *call),
        Routed::Forwarded(response) => return Ok(response),
    };
    match generate_requests(&request) {
        Ok(generate) => {
            let logprobs = generate.iter().any(|r| r.logprobs.is_some());
            // Token-id prompts are spelled from the tokens the replica reports.
            let echo = match request.echo {
                true => generate.iter().map(|r| prompt_text(&r.prompt).to_owned()).collect(),
                false => Vec::new(),
            };
            let shape = Shape::new(false, logprobs, endpoint.full_name()).with_echo(echo);
            generation::respond(&state.controller, &endpoint, generate, shape, &request.sampling, call).await
        }
        Err(e) => Err(call.fail(e).await),
    }
}

fn prompt_text(prompt: &Prompt) -> &str {
    match prompt {
        Prompt::Text(text) => text,
        Prompt::Chat { .. } | Prompt::Tokens(_) => "",
    }
}

/// The generations a completion request asks for: `n` continuations of each prompt.
fn generate_requests(request: &CompletionRequest) -> Result<Vec<GenerateRequest>, ApiError> {
    let prompts = match &request.prompt {
        PromptIn::One(p) => vec![Prompt::Text(p.clone())],
        PromptIn::Many(v) if v.is_empty() => {
            return Err(ApiError::invalid("prompt", "prompt must hold at least one text"));
        }
        PromptIn::Many(v) => v.iter().map(|p| Prompt::Text(p.clone())).collect(),
        PromptIn::Tokens(t) if t.is_empty() => {
            return Err(ApiError::invalid("prompt", "prompt must hold at least one token"));
        }
        PromptIn::Tokens(t) => vec![Prompt::Tokens(t.clone())],
        PromptIn::ManyTokens(v) if v.is_empty() || v.iter().any(Vec::is_empty) => {
            return Err(ApiError::invalid("prompt", "every prompt must hold at least one token"));
        }
        PromptIn::ManyTokens(v) => v.iter().map(|t| Prompt::Tokens(t.clone())).collect(),
    };
    let mut requests = request.sampling.requests(prompts, Some(DEFAULT_MAX_TOKENS), false, None)?;
    for r in &mut requests {
        r.echo = request.echo;
        r.prompt_logprobs = if request.echo { r.logprobs } else { None };
    }
    Ok(requests)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(completions))
}
