//! `POST /v1/chat/completions`: messages (and tools) through the model's chat template,
//! answered whole or streamed as server-sent events; tool calls as `tools` describes.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use maas_auth::Caller;
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
use super::tools::{self, Tools};
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
    /// `system` (or `developer`), `user`, `assistant`, `tool`.
    pub role: String,
    pub content: Option<Content>,
    /// An assistant's calls: `{"id", "type": "function", "function": {"name", "arguments"}}`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub tool_calls: Option<Vec<Value>>,
    /// A `tool` message: the id of the call it answers.
    pub tool_call_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ChatRequest {
    /// The deployment: `tenant/name`, or a name in your tenant.
    pub model: String,
    pub messages: Vec<Message>,
    #[serde(flatten)]
    pub sampling: Sampling,
    /// Functions the model may call: `{"type": "function", "function": {"name", "description",
    /// "parameters"}}`, passed to the chat template.
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Value>>,
    /// `none`, `auto` (the default with tools: Hermes-style `<tool_call>` blocks in the answer
    /// become calls), `required` (decoding constrained to calls of the tools) or
    /// `{"type": "function", "function": {"name"}}` (constrained to that function's arguments).
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    /// With `required`: whether the answer may call several tools (default true).
    pub parallel_tool_calls: Option<bool>,
}

/// The messages as the chat template takes them.
fn messages(request: &ChatRequest) -> Result<Vec<ChatMessage>, ApiError> {
    let bad = |m: String| ApiError::invalid("messages", m);
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
                r @ ("system" | "user" | "assistant" | "tool") => r,
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
            let tool_calls = match (&m.tool_calls, role) {
                (Some(calls), "assistant") => tools::calls_for_template(calls),
                (Some(calls), _) if !calls.is_empty() => {
                    return Err(bad(format!("messages[{i}]: only assistant messages carry tool_calls")));
                }
                _ => Vec::new(),
            };
            Ok(ChatMessage { tool_calls, tool_call_id: m.tool_call_id.clone(), ..ChatMessage::new(role, content) })
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
        Ok((generate, tools)) => {
            let logprobs = generate.iter().any(|r| r.logprobs.is_some());
            let shape = Shape::new(true, logprobs, endpoint.full_name()).with_tools(tools);
            generation::respond(&state.controller, &endpoint, generate, shape, &request.sampling, call).await
        }
        Err(e) => Err(call.fail(e).await),
    }
}

/// The generations a chat request asks for (`n` answers to its messages), and its tools.
fn generate_requests(request: &ChatRequest) -> Result<(Vec<GenerateRequest>, Option<Tools>), ApiError> {
    let tools = Tools::parse(
        request.tools.as_deref().unwrap_or_default(),
        request.tool_choice.as_ref(),
        request.parallel_tool_calls,
    )?;
    let prompt = Prompt::Chat {
        messages: messages(request)?,
        tools: tools.as_ref().map(Tools::for_template).unwrap_or_default(),
    };
    let forced = tools.as_ref().and_then(Tools::forced_format);
    Ok((request.sampling.requests(vec![prompt], None, true, forced)?, tools))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(chat_completions))
}
