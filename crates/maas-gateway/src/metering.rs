//! Metering at the edge, the same for v2 REST, v2 gRPC and the OpenAI API: [`admit`] a call
//! (rate limits, quotas, budget) once its caller and deployment are known, run it, then
//! [`Metered::finish`] it, which returns only after the call's usage record is durable. A call
//! dropped before it finished (the client went away, a stream was cut) is recorded when the
//! [`Metered`] is dropped.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use maas_auth::{Caller, Principal};
use maas_controller::Endpoint;
use maas_core::TenantId;
use maas_core::identity::Role;
use maas_core::keys::Scope;
use maas_core::usage::{InferenceApi, UsageRecord};
use maas_metering::{Admission, Ledger, MeteringError, Policy, Settlement, Subject};

use crate::error::ApiError;
use crate::state::AppState;

/// The metering services every inference handler reaches.
#[derive(Debug, Clone)]
pub struct Metering {
    pub ledger: Ledger,
    pub policy: Policy,
}

impl From<MeteringError> for ApiError {
    fn from(e: MeteringError) -> Self {
        ApiError::from_coded(&e)
    }
}

/// How a call ended.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub status: u16,
    pub error_code: Option<&'static str>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub compute: Duration,
    pub response_bytes: usize,
}

impl Outcome {
    pub fn ok(response_bytes: usize, compute: Duration) -> Outcome {
        Outcome { status: 200, response_bytes, compute, ..Outcome::default() }
    }

    pub fn failed(e: &ApiError) -> Outcome {
        Outcome { status: e.code.http_status(), error_code: Some(e.code.as_str()), ..Outcome::default() }
    }

    pub fn tokens(mut self, input: usize, output: usize) -> Outcome {
        self.input_tokens = i64::try_from(input).unwrap_or(i64::MAX);
        self.output_tokens = i64::try_from(output).unwrap_or(i64::MAX);
        self
    }
}

/// A call let in and not yet recorded.
#[derive(Debug)]
pub struct Metered {
    ledger: Ledger,
    policy: Policy,
    admission: Option<Admission>,
    record: UsageRecord,
    gpus: i64,
    started: Instant,
    /// Tokens the call used so far (input, output), for [`Metered::respond`] and drops.
    pub tokens: (usize, usize),
    /// What a drop records (set by streams once the response is under way).
    pub on_drop: Outcome,
}

/// The tenant that pays for `caller`'s calls to `endpoint`: an API key's own tenant; for a
/// session, the deployment's tenant when the user is a member, else their personal tenant.
async fn payer(state: &AppState, caller: &Caller, endpoint: &Endpoint) -> Result<(TenantId, String), ApiError> {
    match &caller.principal {
        Principal::ApiKey { key, .. } if key.tenant_id == endpoint.row.tenant_id => {
            Ok((key.tenant_id, format!("'{}'", endpoint.tenant)))
        }
        Principal::ApiKey { key, .. } => Ok((key.tenant_id, "the API key's tenant".into())),
        Principal::Session { user, .. } => {
            let slug = match state.identity.access(caller, &endpoint.tenant, Role::Viewer, Scope::Infer).await {
                Ok(_) => endpoint.tenant.clone(),
                Err(_) => user.username.clone(),
            };
            let access = state.identity.access(caller, &slug, Role::Viewer, Scope::Infer).await?;
            Ok((access.tenant.id, format!("'{slug}'")))
        }
    }
}

/// Admits a call of `caller` to `endpoint` estimated at `input_tokens` + `output_tokens`, or
/// refuses it with the code of the limit, quota or budget that has no room.
pub async fn admit(
    state: &AppState,
    caller: &Caller,
    endpoint: &Endpoint,
    api: InferenceApi,
    request_bytes: usize,
    (input_tokens, output_tokens): (i64, i64),
) -> Result<Metered, ApiError> {
    let started = Instant::now();
    let (tenant_id, tenant_label) = payer(state, caller, endpoint).await?;
    let price = endpoint.spec.pricing.clone().unwrap_or_default();
    let gpus = i64::from(endpoint.spec.resources.gpu.unwrap_or(0));
    let policy = &state.metering.policy;
    let subject = Subject { tenant_id, tenant_slug: &tenant_label, key: caller.api_key(), gpus, price: &price };
    let admission = policy.admit(subject, input_tokens, output_tokens).await?;
    let record = UsageRecord {
        id: uuid::Uuid::now_v7(),
        tenant_id,
        api_key_id: caller.api_key().map(|k| k.id),
        deployment_id: endpoint.row.id,
        deployment: endpoint.full_name(),
        version_id: endpoint.version.id,
        model_version: format!("{}/{}@{}", endpoint.model.owner, endpoint.model.name, endpoint.version.version),
        api,
        calls: 1,
        input_tokens: 0,
        output_tokens: 0,
        compute_ms: 0,
        gpu_ms: 0,
        request_bytes: i64::try_from(request_bytes).unwrap_or(i64::MAX),
        response_bytes: 0,
        status: 0,
        error_code: None,
        latency_us: 0,
        at: maas_core::now(),
        billable: true,
        price,
        cost_micros: 0,
    };
    Ok(Metered {
        ledger: state.metering.ledger.clone(),
        policy: policy.clone(),
        admission: Some(admission),
        record,
        gpus,
        started,
        tokens: (0, 0),
        on_drop: Outcome { status: 499, error_code: Some("client_closed_request"), ..Outcome::default() },
    })
}

/// The record of a call that ended with `o`, priced.
fn complete(mut record: UsageRecord, gpus: i64, started: Instant, o: &Outcome) -> UsageRecord {
    record.status = o.status;
    record.error_code = o.error_code.map(str::to_owned);
    record.input_tokens = o.input_tokens;
    record.output_tokens = o.output_tokens;
    record.compute_ms = i64::try_from(o.compute.as_millis()).unwrap_or(i64::MAX);
    record.gpu_ms = record.compute_ms.saturating_mul(gpus);
    record.response_bytes = i64::try_from(o.response_bytes).unwrap_or(i64::MAX);
    record.latency_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
    // Failed calls are recorded but free; a call the client cut off is billed for what it used.
    record.billable = o.status < 400 || o.status == 499;
    record.cost_micros = if record.billable {
        record.price.cost(record.calls, record.input_tokens, record.output_tokens, record.compute_ms)
    } else {
        0
    };
    record
}

impl Metered {
    /// The request id the response carries (`x-request-id`), which is also the usage record's id.
    pub fn request_id(&self) -> uuid::Uuid {
        self.record.id
    }

    /// `x-request-id` and, when a requests-per-minute limit applies, `X-RateLimit-Limit`,
    /// `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds until the bucket is full).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![("x-request-id", self.record.id.to_string())];
        if let Some(rate) = self.admission.as_ref().and_then(|a| a.rate) {
            h.push(("x-ratelimit-limit", rate.limit.to_string()));
            h.push(("x-ratelimit-remaining", rate.remaining.to_string()));
            h.push(("x-ratelimit-reset", rate.reset.as_secs_f64().ceil().to_string()));
        }
        h
    }

    /// Adds [`Self::headers`] to `headers`.
    pub fn add_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in self.headers() {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
    }

    /// Records the call's usage and returns once the record is durable; settles the limits in
    /// the background.
    pub async fn finish(mut self, outcome: Outcome) -> Result<(), ApiError> {
        let record = complete(self.record.clone(), self.gpus, self.started, &outcome);
        let admission = self.admission.take();
        self.on_drop.status = 0; // recorded here, not on drop
        let settlement = Settlement {
            tokens: record.input_tokens + record.output_tokens,
            gpu_ms: record.gpu_ms,
            cost: record.cost_micros,
        };
        let result = self.ledger.record(record).await;
        if let Some(admission) = admission {
            let policy = self.policy.clone();
            tokio::spawn(async move { policy.settle(admission, settlement).await });
        }
        result.map_err(ApiError::from)
    }

    /// Records a call that failed with `e` and returns the error to answer (a 503 instead
    /// when the record cannot be made durable).
    pub async fn fail(self, e: ApiError) -> ApiError {
        let outcome = Outcome::failed(&e).tokens(self.tokens.0, self.tokens.1);
        match self.finish(outcome).await {
            Ok(()) => e,
            Err(not_metered) => not_metered,
        }
    }

    /// Finishes an HTTP call: records `result` (its status and size) and returns the response
    /// with the metering headers; if the record cannot be made durable, the answer is a 503.
    /// Errors become responses through `render` (each API has its error shape).
    pub async fn respond(
        self,
        result: Result<Response, ApiError>,
        compute: Duration,
        render: impl Fn(ApiError) -> Response,
    ) -> Response {
        let outcome = match &result {
            Ok(r) => {
                let size = axum::body::HttpBody::size_hint(r.body()).exact().unwrap_or(0);
                Outcome::ok(usize::try_from(size).unwrap_or(usize::MAX), compute)
            }
            Err(e) => Outcome::failed(e),
        };
        let outcome = outcome.tokens(self.tokens.0, self.tokens.1);
        let headers = self.headers();
        let mut response = match self.finish(outcome).await {
            Ok(()) => result.unwrap_or_else(&render),
            Err(e) => render(e),
        };
        for (name, value) in headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, v);
            }
        }
        response
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        if self.on_drop.status == 0 {
            return;
        }
        let outcome = self.on_drop.clone().tokens(self.tokens.0, self.tokens.1);
        let record = complete(self.record.clone(), self.gpus, self.started, &outcome);
        let (ledger, policy, admission) = (self.ledger.clone(), self.policy.clone(), self.admission.take());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            let settlement = Settlement {
                tokens: record.input_tokens + record.output_tokens,
                gpu_ms: record.gpu_ms,
                cost: record.cost_micros,
            };
            if let Err(e) = ledger.record(record).await {
                tracing::error!(error = %e, "usage of an interrupted call could not be recorded");
            }
            if let Some(admission) = admission {
                policy.settle(admission, settlement).await;
            }
        });
    }
}
