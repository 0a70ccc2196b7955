//! `/api/v1/auth/*`: register, login, refresh (pre-login), logout.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use maas_auth::{AuthError, Session};
use maas_core::Timestamp;
use maas_core::identity::{Tenant, User};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ClientIp, Json, SESSION_COOKIE, SessionId};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// 2–39 lowercase letters, digits and hyphens; also the personal tenant's slug.
    pub username: String,
    pub email: String,
    /// At least 8 characters.
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterResponse {
    pub user: User,
    /// The user's personal tenant.
    pub tenant: Tenant,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Log in by email…
    pub email: Option<String>,
    /// …or by username.
    pub username: Option<String>,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    pub user: User,
    /// When the session ends unless refreshed.
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    /// Whether this call issued a new session id (refresh only).
    pub rotated: bool,
}

/// The session cookie. `Secure` when configured, or when a trusted proxy says the client
/// connected over HTTPS (`X-Forwarded-Proto: https`).
fn session_cookie(state: &AppState, headers: &HeaderMap, session: &Session) -> Cookie<'static> {
    let secs = (session.expires_at - maas_core::now()).num_seconds().max(0);
    let https = state.config.trust_forwarded_for
        && headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    Cookie::build((SESSION_COOKIE, session.id.clone()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.secure_cookies || https)
        .path("/")
        .max_age(time::Duration::seconds(secs))
        .build()
}

fn removal_cookie() -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, "")).path("/").build()
}

/// Create a user and their personal tenant. The first user becomes platform admin.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterRequest, responses(
    (status = 201, body = RegisterResponse),
    (status = 400, description = "invalid field", body = ErrorBody),
    (status = 409, description = "username or email taken", body = ErrorBody),
))]
async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<(StatusCode, axum::Json<RegisterResponse>)> {
    let (user, tenant) = state.identity.register(&req.username, &req.email, &req.password, ip).await?;
    Ok((StatusCode::CREATED, axum::Json(RegisterResponse { user, tenant })))
}

/// Log in with email or username and password; sets the HttpOnly session cookie.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = SessionResponse, headers(("set-cookie" = String, description = "maas_session"))),
    (status = 401, description = "wrong credentials", body = ErrorBody),
    (status = 429, description = "too many failed attempts", body = ErrorBody),
))]
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    jar: CookieJar,
    Json(req): Json<LoginRequest>,
) -> ApiResult<impl IntoResponse> {
    let login = req
        .email
        .or(req.username)
        .ok_or_else(|| AuthError::InvalidRequest("give 'email' or 'username' with 'password'".into()))?;
    let (user, session) = state.identity.login(&login, &req.password, ip).await?;
    let jar = jar.add(session_cookie(&state, &headers, &session));
    Ok((jar, axum::Json(SessionResponse { user, expires_at: session.expires_at, rotated: false })))
}

/// Pre-login: returns the session's user; issues a new session id (and deletes the old one)
/// when the session is close to expiry.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", responses(
    (status = 200, body = SessionResponse),
    (status = 401, description = "no session, or it has expired", body = ErrorBody),
))]
async fn refresh(
    State(state): State<AppState>,
    SessionId(id): SessionId,
    headers: HeaderMap,
    jar: CookieJar,
) -> ApiResult<impl IntoResponse> {
    let id = id.ok_or(AuthError::SessionExpired)?;
    let refreshed = state.identity.refresh(&id).await?;
    let jar = if refreshed.rotated { jar.add(session_cookie(&state, &headers, &refreshed.session)) } else { jar };
    let body =
        SessionResponse { user: refreshed.user, expires_at: refreshed.session.expires_at, rotated: refreshed.rotated };
    Ok((jar, axum::Json(body)))
}

/// Destroy the session and clear the cookie.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 204)))]
async fn logout(
    State(state): State<AppState>,
    SessionId(id): SessionId,
    jar: CookieJar,
) -> ApiResult<impl IntoResponse> {
    if let Some(id) = id {
        state.identity.logout(&id).await?;
    }
    Ok((jar.remove(removal_cookie()), StatusCode::NO_CONTENT))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
}
