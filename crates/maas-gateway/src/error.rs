//! The one place errors become HTTP: `{"error": {"code", "message", "type", "param"}}` with
//! the status from the error-code table, plus `Retry-After` where the error carries one. The
//! `type` and `param` fields make the body the error shape the OpenAI SDKs parse too.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maas_auth::AuthError;
use maas_core::validate::InvalidField;
use maas_core::{Coded, ErrorCode};
use maas_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error on its way out to the client.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_secs: Option<u64>,
    /// The request field at fault, when one is.
    pub param: Option<String>,
}

/// The error body every route returns on failure.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `invalid_credentials`.
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// The class of error, as OpenAI names them: `invalid_request_error`,
    /// `authentication_error`, `permission_error`, `not_found_error`, `conflict_error`,
    /// `rate_limit_error`, `server_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The request field at fault, when one is.
    pub param: Option<String>,
}

/// The OpenAI error type of an HTTP status.
fn kind_of(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        409 => "conflict_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after_secs: None, param: None }
    }

    /// An external engine's refusal: its own 4xx message (the caller's request was at fault,
    /// 400), or 502 for its failures.
    pub async fn from_upstream(upstream: &maas_controller::Upstream, response: reqwest::Response) -> Self {
        let status = response.status();
        let text = match upstream.body(response).await {
            Ok(body) => String::from_utf8_lossy(&body).into_owned(),
            Err(e) => e.to_string(),
        };
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message").or_else(|| v.get("error")).and_then(|m| m.as_str()).map(str::to_owned)
            })
            .unwrap_or(text);
        let code = if status.is_client_error() { ErrorCode::InvalidRequest } else { ErrorCode::UpstreamError };
        Self::new(code, format!("the engine at {} answered {status}: {message}", upstream.url("")))
    }

    /// A 400 `invalid_request` about the request field `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message).with_param(param)
    }

    /// Names the request field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub(crate) fn from_coded(e: &dyn Coded) -> Self {
        let code = e.code();
        let message = if code == ErrorCode::Internal {
            // The details of a server-side failure go to the log, not to the client.
            tracing::error!(error = %e, "internal error");
            "internal error; the server log has the details".to_owned()
        } else {
            if code.http_status() >= 500 {
                tracing::warn!(error = %e, code = code.as_str(), "backend unavailable");
            }
            e.to_string()
        };
        Self { code, message, retry_after_secs: e.retry_after_secs(), param: None }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self::from_coded(&e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::from_coded(&e)
    }
}

impl From<maas_registry::RegistryError> for ApiError {
    fn from(e: maas_registry::RegistryError) -> Self {
        Self::from_coded(&e)
    }
}

impl From<maas_controller::ControllerError> for ApiError {
    fn from(e: maas_controller::ControllerError) -> Self {
        Self::from_coded(&e)
    }
}

impl From<maas_controller::routing::InferError> for ApiError {
    fn from(e: maas_controller::routing::InferError) -> Self {
        Self::from_coded(&e)
    }
}

impl From<maas_runtime::RuntimeError> for ApiError {
    fn from(e: maas_runtime::RuntimeError) -> Self {
        Self::from_coded(&e)
    }
}

impl From<InvalidField> for ApiError {
    fn from(e: InvalidField) -> Self {
        Self::from_coded(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().to_owned(),
                message: self.message,
                kind: kind_of(status.as_u16()),
                param: self.param,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
