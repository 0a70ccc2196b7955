//! The one table of error codes: every error the platform returns has a stable snake_case
//! code and an HTTP status, declared here and nowhere else.

use serde::Serialize;

/// Implemented by every crate's error type: which [`ErrorCode`] it is, plus optional hints.
pub trait Coded: std::error::Error {
    fn code(&self) -> ErrorCode;
    /// How long the caller should wait before retrying (429/503 answers).
    fn retry_after_secs(&self) -> Option<u64> {
        None
    }
}

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($code:literal, $status:literal), )*) => {
        /// A stable, machine-readable error code. Clients match on [`ErrorCode::as_str`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in table order (used by docs and tests).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The snake_case code clients see.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status that carries this code.
            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }
        }
    };
}

error_codes! {
    /// The request body is not valid JSON.
    MalformedJson = ("malformed_json", 400),
    /// The request is well-formed but a field is missing, unknown or invalid.
    InvalidRequest = ("invalid_request", 400),
    /// A path or query parameter that must be an id is not one.
    InvalidId = ("invalid_id", 400),
    /// A query string parameter could not be parsed.
    InvalidQuery = ("invalid_query", 400),
    /// No credentials were presented where they are required.
    Unauthenticated = ("unauthenticated", 401),
    /// Wrong username/email or password.
    InvalidCredentials = ("invalid_credentials", 401),
    /// The session does not exist or has expired.
    SessionExpired = ("session_expired", 401),
    /// The API key is unknown.
    InvalidApiKey = ("invalid_api_key", 401),
    /// The API key has been revoked.
    ApiKeyRevoked = ("api_key_revoked", 401),
    /// The API key is past its expiry.
    ApiKeyExpired = ("api_key_expired", 401),
    /// The caller's role does not allow this action.
    Forbidden = ("forbidden", 403),
    /// The API key lacks the scope this call needs.
    InsufficientScope = ("insufficient_scope", 403),
    /// No route matches the path.
    RouteNotFound = ("route_not_found", 404),
    /// The tenant does not exist or is not visible to the caller.
    TenantNotFound = ("tenant_not_found", 404),
    /// The user does not exist.
    UserNotFound = ("user_not_found", 404),
    /// The API key does not exist in this tenant.
    ApiKeyNotFound = ("api_key_not_found", 404),
    /// The user is not a member of this tenant.
    MemberNotFound = ("member_not_found", 404),
    /// The model does not exist or is not visible to the caller.
    ModelNotFound = ("model_not_found", 404),
    /// The model has no such version.
    VersionNotFound = ("version_not_found", 404),
    /// The deployment does not exist or is not visible to the caller.
    DeploymentNotFound = ("deployment_not_found", 404),
    /// No invoice with that id (invoices are `YYYY-MM-CUR`, for months up to the current one).
    InvoiceNotFound = ("invoice_not_found", 404),
    /// The version has no such file.
    FileNotFound = ("file_not_found", 404),
    /// The route exists but not for this method.
    MethodNotAllowed = ("method_not_allowed", 405),
    /// The username is taken (by a user or an organisation).
    UsernameTaken = ("username_taken", 409),
    /// The email address is already registered.
    EmailTaken = ("email_taken", 409),
    /// The tenant slug is taken (by a user or an organisation).
    TenantSlugTaken = ("tenant_slug_taken", 409),
    /// The change would leave the tenant without an owner.
    LastOwner = ("last_owner", 409),
    /// The tenant already has a model with this name.
    ModelExists = ("model_exists", 409),
    /// The tenant already has a deployment with this name.
    DeploymentExists = ("deployment_exists", 409),
    /// The model already has this version.
    VersionExists = ("version_exists", 409),
    /// The version is published and can no longer change.
    VersionImmutable = ("version_immutable", 409),
    /// A resumed upload does not start where the committed bytes end.
    UploadOffsetMismatch = ("upload_offset_mismatch", 409),
    /// Another request is uploading the same file right now.
    UploadInProgress = ("upload_in_progress", 409),
    /// The uploaded bytes do not match the announced SHA-256.
    ChecksumMismatch = ("checksum_mismatch", 400),
    /// A file path is absolute, contains `..`, or uses characters or lengths not allowed.
    InvalidPath = ("invalid_path", 400),
    /// A model file is truncated, malformed or not in its declared format; the message says why.
    InvalidModelFile = ("invalid_model_file", 422),
    /// A tenant quota (models, storage) would be exceeded; the message names it.
    QuotaExceeded = ("quota_exceeded", 403),
    /// The requested byte range is outside the file.
    RangeNotSatisfiable = ("range_not_satisfiable", 416),
    /// The body is larger than the server accepts.
    PayloadTooLarge = ("payload_too_large", 413),
    /// The prompt (plus the tokens asked for) does not fit the model's context window.
    ContextLengthExceeded = ("context_length_exceeded", 400),
    /// The deployment serves another kind of model (e.g. embeddings asked of a chat model).
    UnsupportedOperation = ("unsupported_operation", 400),
    /// The body's content type is not the one the route expects.
    UnsupportedMediaType = ("unsupported_media_type", 415),
    /// Too many failed login attempts; retry after the advertised delay.
    TooManyAttempts = ("too_many_attempts", 429),
    /// A model replica's queue is full; retry after the advertised delay.
    Overloaded = ("overloaded", 429),
    /// A requests-per-minute limit (of the API key or the tenant) is reached; the message names it.
    RequestsPerMinuteExceeded = ("requests_per_minute_exceeded", 429),
    /// A tokens-per-minute limit (of the API key or the tenant) is reached.
    TokensPerMinuteExceeded = ("tokens_per_minute_exceeded", 429),
    /// The tenant's daily API call quota is used up until midnight UTC.
    DailyCallsQuotaExceeded = ("daily_calls_quota_exceeded", 429),
    /// The tenant's daily token quota is used up until midnight UTC.
    DailyTokensQuotaExceeded = ("daily_tokens_quota_exceeded", 429),
    /// The tenant's monthly GPU-hour quota is used up.
    GpuHoursQuotaExceeded = ("gpu_hours_quota_exceeded", 429),
    /// The tenant's hard budget for the month is reached: calls are blocked until it is raised.
    BudgetExceeded = ("budget_exceeded", 402),
    /// The shared limit store (Redis) cannot be reached and limits fail closed.
    LimiterUnavailable = ("limiter_unavailable", 503),
    /// An unexpected server-side failure (a bug); details are in the server log.
    Internal = ("internal_error", 500),
    /// The model runtime failed while running the model; the message says why.
    InferenceFailed = ("inference_failed", 500),
    /// The engine behind an external deployment failed or could not be reached.
    UpstreamError = ("upstream_error", 502),
    /// A backing service (database, Redis) is unreachable.
    ServiceUnavailable = ("service_unavailable", 503),
    /// The model is not loaded (still loading, failed to load, or stopping).
    ModelNotReady = ("model_not_ready", 503),
    /// The model did not answer within the inference timeout.
    InferenceTimeout = ("inference_timeout", 504),
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case_with_error_statuses() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s} is not snake_case");
            assert!((400..600).contains(&code.http_status()), "{s}");
        }
    }
}
