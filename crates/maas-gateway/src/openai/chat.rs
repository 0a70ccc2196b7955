//! `POST /v1/chat/completions`: messages through the model's chat template, answered whole or
//! streamed as server-sent events.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use maas_auth::Caller;
use maas_core::ErrorCode;
use maas_core::usage::InferenceApi;
use maas_runtime::generate::template::ChatMessage;
use maas_runtime::generate::{GenerateRequest, Prompt};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::choices::Shape;
use super::generation::{self, Sampling};
use super::{Routed, route};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// A message's `content`: a string, or parts of which only text is supported.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct Message {
    /// `system` (or `developer`), `user`, `assistant`.
    pub role: String,
    pub content: Option<Content>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ChatRequest {
    /// The deployment: `tenant/name`, or a name in your tenant.
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(flatten)]
    pub sampling: Sampling,
    /// Tools are not supported; a non-empty list is refused.
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Value>>,
}

/// The messages as the chat template takes them.
fn messages(request: &ChatRequest) -> Result<Vec<ChatMessage>, ApiError> {
    let bad = |m: String| ApiError::new(ErrorCode::InvalidRequest, m).with_param("messages");
    if request.messages.is_empty() {
        return Err(bad("messages must not be empty".into()));
    }
    request
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "developer" => "system",
                r @ ("system" | "user" | "assistant") => r,
                other => return Err(bad(format!("messages[{i}]: role '{other}' is not supported"))),
            };
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for part in parts {
                        match (part.kind.as_str(), &part.text) {
                            ("text", Some(t)) => text.push_str(t),
                            (kind, _) => {
                                return Err(bad(format!(
                                    "messages[{i}]: content parts of type '{kind}' are not supported"
                                )));
                            }
                        }
                    }
                    text
                }
            };
            Ok(ChatMessage { role: role.to_owned(), content })
        })
        .collect()
}

/// Chat completion: the answer of a text-generation deployment to `messages`. With
/// `stream: true` the answer comes as server-sent events (`chat.completion.chunk` objects,
/// then `data: [DONE]`); `stream_options.include_usage` adds a last chunk with `usage`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = ChatRequest,
    security(("api_key" = [])),
    responses((status = 200, description = "`chat.completion`, or an event stream"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn chat_completions(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    body: Body,
) -> Result<Response, ApiError> {
    let route = route::<ChatRequest>(&state, caller?, body, "/v1/chat/completions", InferenceApi::OpenaiChat);
    let (endpoint, request, call) = match route.await? {
        Routed::Here(endpoint, request, call) => (endpoint, request, *call),
        Routed::Forwarded(response) => return Ok(response),
    };
    match generate_requests(&request) {
        Ok(generate) => {
            let logprobs = generate.iter().any(|r| r.logprobs.is_some());
            let shape = Shape::new(true, logprobs, endpoint.full_name());
            generation::respond(&state.controller, &endpoint, generate, shape, &request.sampling, call).await
        }
        Err(e) => Err(call.fail(e).await),
    }
}

/// The generations a chat request asks for: `n` answers to its messages.
fn generate_requests(request: &ChatRequest) -> Result<Vec<GenerateRequest>, ApiError> {
    if request.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "tools are not supported").with_param("tools"));
    }
    request.sampling.requests(vec![Prompt::Chat(messages(request)?)], None, true)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(chat_completions))
}
