//! Extractors that turn request parts into typed values and every rejection into an
//! [`ApiError`] with a stable code: JSON bodies, paths, queries, the client IP and the caller.

use std::net::SocketAddr;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum_extra::extract::CookieJar;
use maas_auth::{AuthError, Caller};
use maas_core::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "maas_session";

/// `axum::Json` with rejections mapped to `malformed_json`, `invalid_request`,
/// `unsupported_media_type` and `payload_too_large`.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let code = match rejection {
        JsonRejection::JsonSyntaxError(_) => ErrorCode::MalformedJson,
        JsonRejection::JsonDataError(_) => ErrorCode::InvalidRequest,
        JsonRejection::MissingJsonContentType(_) => ErrorCode::UnsupportedMediaType,
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        _ => ErrorCode::InvalidRequest,
    };
    ApiError::new(code, rejection.body_text())
}

/// `axum::extract::Path` with rejections mapped to `invalid_id`.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e: PathRejection| ApiError::new(ErrorCode::InvalidId, e.body_text()))
    }
}

/// `axum::extract::Query` with rejections mapped to `invalid_query`.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e: QueryRejection| ApiError::new(ErrorCode::InvalidQuery, e.body_text()))
    }
}

/// The client's IP address: the socket peer, or the first `X-Forwarded-For` hop when the
/// gateway is configured to trust a proxy in front of it.
#[derive(Debug, Clone)]
pub struct ClientIp(pub Option<String>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if state.config.trust_forwarded_for {
            let forwarded = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty());
            if forwarded.is_some() {
                return Ok(ClientIp(forwarded));
            }
        }
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        Ok(ClientIp(peer))
    }
}

/// The session id from the cookie, if any (for refresh and logout).
#[derive(Debug, Clone)]
pub struct SessionId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for SessionId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        Ok(SessionId(jar.get(SESSION_COOKIE).map(|c| c.value().to_owned())))
    }
}

/// The API key of an `Authorization` value (HTTP header or gRPC metadata): `Bearer <key>`.
pub fn bearer_secret(value: &str) -> Result<&str, ApiError> {
    match value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) {
        Some(secret) => Ok(secret.trim()),
        None => Err(ApiError::new(ErrorCode::Unauthenticated, "the Authorization header must be 'Bearer <api key>'")),
    }
}

/// The authenticated caller: `Authorization: Bearer <api key>`, else the session cookie.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;
        if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
            let secret = bearer_secret(auth.to_str().unwrap_or_default())?;
            return Ok(state.identity.authenticate_key(secret, ip).await?);
        }
        let SessionId(session) = SessionId::from_request_parts(parts, state).await?;
        match session {
            Some(id) => Ok(state.identity.authenticate_session(&id, ip).await?),
            None => Err(AuthError::Unauthenticated.into()),
        }
    }
}

/// The caller if credentials were sent, `None` for anonymous requests. An API key that is
/// sent but invalid is still an error (401); a stale session cookie is treated as no cookie,
/// so a browser with an expired session still sees public pages.
#[derive(Debug, Clone)]
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let has_credentials = parts.headers.contains_key(header::AUTHORIZATION)
            || CookieJar::from_headers(&parts.headers).get(SESSION_COOKIE).is_some();
        if !has_credentials {
            return Ok(MaybeCaller(None));
        }
        match Caller::from_request_parts(parts, state).await {
            Ok(caller) => Ok(MaybeCaller(Some(caller))),
            Err(e) if e.code == ErrorCode::SessionExpired => Ok(MaybeCaller(None)),
            Err(e) => Err(e),
        }
    }
}
