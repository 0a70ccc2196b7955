//! `POST /v1/completions`: plain text continued, answered whole or streamed.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use maas_auth::Caller;
use maas_core::ErrorCode;
use maas_core::usage::InferenceApi;
use maas_runtime::generate::{GenerateRequest, Prompt};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::generation::{self, Sampling};
use super::{Routed, route};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// OpenAI's default `max_tokens` for text completions.
const DEFAULT_MAX_TOKENS: usize = 16;

/// `prompt`: a string, or a list holding one string.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PromptIn {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CompletionRequest {
    /// The deployment: `tenant/name`, or a name in your tenant.
    pub model: String,
    pub prompt: PromptIn,
    #[serde(flatten)]
    pub sampling: Sampling,
    /// Echoing the prompt back is not supported.
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
    match generate_request(&request) {
        Ok(generate) => {
            generation::respond(&state.controller, &endpoint, generate, false, &request.sampling, call).await
        }
        Err(e) => Err(call.fail(e).await),
    }
}

/// The generation a completion request asks for.
fn generate_request(request: &CompletionRequest) -> Result<GenerateRequest, ApiError> {
    let bad = |param: &str, m: &str| ApiError::new(ErrorCode::InvalidRequest, m).with_param(param);
    if request.echo {
        return Err(bad("echo", "echo is not supported"));
    }
    let prompt = match &request.prompt {
        PromptIn::One(p) => p.clone(),
        PromptIn::Many(v) if v.len() == 1 => v[0].clone(),
        PromptIn::Many(_) => return Err(bad("prompt", "send one prompt per request")),
    };
    let (sampling, max_tokens, stop) = request.sampling.to_runtime(Some(DEFAULT_MAX_TOKENS))?;
    Ok(GenerateRequest { prompt: Prompt::Text(prompt), sampling, max_tokens, stop })
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(completions))
}
