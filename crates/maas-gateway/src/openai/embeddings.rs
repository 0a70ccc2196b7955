//! `POST /v1/embeddings`: vectors of one or many texts from a sentence-embeddings deployment.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use maas_auth::Caller;
use maas_controller::Endpoint;
use maas_core::usage::InferenceApi;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::generation::Usage;
use super::{Routed, route};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Most texts in one request (OpenAI's limit).
const MAX_INPUTS: usize = 2048;

/// `input`: one text or several. Token-id arrays are not supported.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Input {
    One(String),
    Many(Vec<String>),
    #[schema(value_type = Vec<Object>)]
    Tokens(Vec<Value>),
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    /// The deployment: `tenant/name`, or a name in your tenant.
    pub model: String,
    pub input: Input,
    /// `float` (default) or `base64` (little-endian float32, as the OpenAI SDKs decode it).
    pub encoding_format: Option<String>,
    /// Keep the first `dimensions` values and re-normalise (for Matryoshka-trained models).
    pub dimensions: Option<usize>,
    pub user: Option<String>,
}

fn texts(input: Input) -> Result<Vec<String>, ApiError> {
    let texts = match input {
        Input::One(t) => vec![t],
        Input::Many(v) => v,
        Input::Tokens(_) => {
            // Token ids from another tokenizer (tiktoken's, as LangChain sends them by default)
            // would be embedded as the wrong words: refused, with the setting that stops it.
            return Err(ApiError::invalid(
                "input",
                "token-id inputs are not supported; send text (LangChain's OpenAIEmbeddings sends \
                 tiktoken ids unless check_embedding_ctx_length=False)",
            ));
        }
    };
    if texts.is_empty() || texts.len() > MAX_INPUTS {
        return Err(ApiError::invalid("input", format!("input must hold 1 to {MAX_INPUTS} texts")));
    }
    if let Some(i) = texts.iter().position(|t| t.is_empty()) {
        return Err(ApiError::invalid("input", format!("input[{i}] is empty")));
    }
    Ok(texts)
}

/// The first `dimensions` values, L2-normalised again.
fn shorten(vector: &mut Vec<f32>, dimensions: usize) {
    vector.truncate(dimensions);
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
}

/// Embeddings: one vector per input text, in input order, with `usage.prompt_tokens`.
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai", request_body = EmbeddingsRequest,
    security(("api_key" = [])),
    responses((status = 200, description = "a list of `embedding` objects"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn embeddings(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    body: Body,
) -> Result<Response, ApiError> {
    let route = route::<EmbeddingsRequest>(&state, caller?, body, "/v1/embeddings", InferenceApi::OpenaiEmbeddings);
    let (endpoint, request, mut call) = match route.await? {
        Routed::Here(endpoint, request, call) => (endpoint, request, *call),
        Routed::Forwarded(response) => return Ok(response),
    };
    let started = Instant::now();
    let result = embed(&state, &endpoint, request).await;
    let result = result.map(|(response, tokens)| {
        call.tokens = (tokens, 0);
        response
    });
    Ok(call.respond(result, started.elapsed(), IntoResponse::into_response).await)
}

/// Embeds the request's texts: the response and the tokens it took.
async fn embed(
    state: &AppState,
    endpoint: &Endpoint,
    request: EmbeddingsRequest,
) -> Result<(Response, usize), ApiError> {
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!("encoding_format '{other}' is not float or base64"),
            ));
        }
    };
    let texts = texts(request.input)?;
    let mut result = state.controller.embed(endpoint, texts).await?;
    if let Some(d) = request.dimensions {
        let full = result.vectors.first().map_or(0, Vec::len);
        if d == 0 || d > full {
            return Err(ApiError::invalid("dimensions", format!("dimensions must be 1 to {full} for this model")));
        }
        result.vectors.iter_mut().for_each(|v| shorten(v, d));
    }
    let data: Vec<Value> = result
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    let usage = Usage::new(result.tokens, 0);
    let body = json!({ "object": "list", "data": data, "model": endpoint.full_name(),
                       "usage": { "prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens } });
    Ok((axum::Json(body).into_response(), result.tokens))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(embeddings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortened_vectors_are_unit_length() {
        let mut v = vec![3.0, 4.0, 12.0];
        shorten(&mut v, 2);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn inputs_are_checked() {
        assert!(texts(Input::Many(vec![])).is_err());
        assert!(texts(Input::Many(vec!["a".into(), String::new()])).is_err());
        assert!(texts(Input::Tokens(vec![json!([1, 2])])).is_err());
        assert_eq!(texts(Input::One("hi".into())).unwrap(), vec!["hi".to_owned()]);
    }
}
