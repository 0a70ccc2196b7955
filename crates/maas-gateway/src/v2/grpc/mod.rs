//! The KServe v2 protocol over gRPC: the standard `inference.GRPCInferenceService` (the
//! service Triton's and KServe's clients call), generated from `proto/grpc_service.proto` by
//! `build.rs`. [`service`] implements it on the same [`super::core`] operations as REST;
//! [`tensors`] converts between its tensors and ours, [`triton`] Triton's configuration and
//! statistics into their messages; [`status`] maps errors once.

pub mod service;
pub mod tensors;
pub mod triton;

use maas_core::ErrorCode;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::error::ApiError;
use crate::state::AppState;

/// The messages and server trait generated from `proto/grpc_service.proto` (package `inference`).
#[allow(clippy::all)]
pub mod proto {
    tonic::include_proto!("inference");
}

pub use proto::grpc_inference_service_server::GrpcInferenceServiceServer;
pub use service::InferenceService;

/// Metadata key carrying the stable error code (`model_not_found`, …) of a failed call.
pub const ERROR_CODE_KEY: &str = "x-error-code";

/// The gRPC code for an error code, chosen by its HTTP status (the one table of statuses is
/// [`ErrorCode::http_status`]). 413 is `OUT_OF_RANGE`, as tonic answers a message above the
/// size limit; `RESOURCE_EXHAUSTED` is kept for 429, which clients retry.
pub fn grpc_code(code: ErrorCode) -> Code {
    match code.http_status() {
        400 | 415 | 422 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        405 => Code::Unimplemented,
        409 if code.as_str().ends_with("_exists") || code.as_str().ends_with("_taken") => Code::AlreadyExists,
        409 => Code::FailedPrecondition,
        413 | 416 => Code::OutOfRange,
        429 => Code::ResourceExhausted,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        400..=499 => Code::InvalidArgument,
        _ => Code::Internal,
    }
}

/// The one place an [`ApiError`] becomes a gRPC status: the code from [`grpc_code`], the
/// message, `x-error-code` with the stable code and `retry-after` (seconds) where it has one.
pub fn status(error: ApiError) -> tonic::Status {
    let mut metadata = MetadataMap::new();
    metadata.insert(ERROR_CODE_KEY, MetadataValue::from_static(error.code.as_str()));
    if let Some(secs) = error.retry_after_secs {
        metadata.insert("retry-after", MetadataValue::from(secs));
    }
    tonic::Status::with_metadata(grpc_code(error.code), error.message, metadata)
}

/// Serves the gRPC inference service on an already-bound listener until `shutdown` resolves,
/// then waits for open calls to finish. Messages up to `max_infer_bytes` are accepted.
pub async fn serve_grpc(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let limit = state.config.max_infer_bytes;
    let service = GrpcInferenceServiceServer::new(InferenceService::new(state)).max_decoding_message_size(limit);
    // Small request/response pairs must not wait for Nagle's algorithm.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        if let Ok(stream) = &conn {
            let _ = stream.set_nodelay(true);
        }
        conn
    });
    // Flow-control windows as large as a request may be (HTTP/2's default is 64 KiB, hyper's
    // 1 MiB): a multi-megabyte tensor then arrives without waiting for window updates.
    let window = u32::try_from(limit).unwrap_or(u32::MAX).clamp(1 << 20, 1 << 30);
    tonic::transport::Server::builder()
        .initial_stream_window_size(window)
        .initial_connection_window_size(window)
        // Clients may send 1 MiB DATA frames instead of 16 KiB ones: a 4.8 MB tensor is then 5
        // frames to parse and account for, not 300.
        .max_frame_size(1 << 20)
        .trace_fn(|req| tracing::info_span!("grpc", method = %req.uri().path()))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_has_a_grpc_code_and_keeps_its_stable_code() {
        for &code in ErrorCode::ALL {
            let s = status(ApiError::new(code, "m"));
            assert_ne!(s.code(), Code::Ok, "{code}");
            assert_eq!(s.message(), "m");
            assert_eq!(s.metadata().get(ERROR_CODE_KEY).and_then(|v| v.to_str().ok()), Some(code.as_str()));
        }
        let cases = [
            (ErrorCode::InvalidRequest, Code::InvalidArgument),
            (ErrorCode::Unauthenticated, Code::Unauthenticated),
            (ErrorCode::InvalidApiKey, Code::Unauthenticated),
            (ErrorCode::InsufficientScope, Code::PermissionDenied),
            (ErrorCode::DeploymentNotFound, Code::NotFound),
            (ErrorCode::VersionNotFound, Code::NotFound),
            (ErrorCode::DeploymentExists, Code::AlreadyExists),
            (ErrorCode::UsernameTaken, Code::AlreadyExists),
            (ErrorCode::VersionImmutable, Code::FailedPrecondition),
            (ErrorCode::PayloadTooLarge, Code::OutOfRange),
            (ErrorCode::Overloaded, Code::ResourceExhausted),
            (ErrorCode::ModelNotReady, Code::Unavailable),
            (ErrorCode::InferenceTimeout, Code::DeadlineExceeded),
            (ErrorCode::InferenceFailed, Code::Internal),
            (ErrorCode::Internal, Code::Internal),
        ];
        for (code, want) in cases {
            assert_eq!(grpc_code(code), want, "{code}");
        }
    }

    #[test]
    fn retry_after_travels_as_metadata() {
        let mut e = ApiError::new(ErrorCode::Overloaded, "queue full");
        e.retry_after_secs = Some(3);
        let s = status(e);
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.metadata().get("retry-after").and_then(|v| v.to_str().ok()), Some("3"));
    }
}
