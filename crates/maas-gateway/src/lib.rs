//! The HTTP gateway: the only crate that knows HTTP. It parses requests, asks the services
//! (in `maas-auth`, later registry, runtime, metering) to act, and maps their typed errors to
//! `{"error": {"code", "message"}}` through the error-code table.

pub mod error;
pub mod extract;
pub mod metering;
pub mod openai;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod v2;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::response::IntoResponse;
use maas_core::ErrorCode;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

pub use error::{ApiError, ApiResult};
pub use state::{AppState, GatewayConfig};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    OpenApiRouter::<AppState>::with_openapi(openapi::ApiDoc::openapi()).merge(routes::all()).split_for_parts().1
}

/// The whole HTTP application: routes, the OpenAPI document, request ids, tracing, body
/// limits, JSON 404/405 and panic answers.
pub fn app(state: AppState) -> Router {
    let (router, _) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi()).merge(routes::all()).split_for_parts();
    let max_body = state.config.max_body_bytes;
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(ErrorCode::Internal, "internal error; the server log has the details").into_response()
        }))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| {
                    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this route does not accept that method")
}

/// Serves `app` on an already-bound listener until `shutdown` resolves, then drains
/// in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).with_graceful_shutdown(shutdown).await
}
