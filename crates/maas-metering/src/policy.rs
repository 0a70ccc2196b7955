//! Admission: before a call runs, [`Policy::admit`] checks and reserves every limit that
//! applies to it in one atomic [`Limiter`] call (key and tenant requests and tokens per minute,
//! the tenant's daily calls and tokens, monthly GPU-hours, the hard budget); after it ran,
//! [`Policy::settle`] corrects the reservations with what the call really used and raises the
//! soft-budget alert.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Datelike as _, TimeZone as _, Utc};
use maas_core::billing::{Budget, Micros, PricePlan};
use maas_core::keys::ApiKey;
use maas_core::registry::Quota;
use maas_core::{ErrorCode, TenantId};
use maas_store::{NewAuditEvent, Store};
use serde::{Deserialize, Serialize};

use crate::error::{LimitError, MeteringError};
use crate::events::Events;
use crate::limits::{Bucket, BucketKind, Limiter, Verdict};

/// What happens to calls when the limit store (Redis) cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Admit calls without checking limits (they are still metered and billed).
    #[default]
    Open,
    /// Refuse calls with 503 `limiter_unavailable`.
    Closed,
}

/// Settings of admission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// `open` or `closed`: see [`FailMode`].
    pub on_limiter_error: FailMode,
    /// How long a tenant's quotas and budget are cached by each instance, in milliseconds.
    pub cache_ms: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self { on_limiter_error: FailMode::Open, cache_ms: 2000 }
    }
}

/// Who a call is for and what it costs.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The paying tenant.
    pub tenant_id: TenantId,
    pub tenant_slug: &'a str,
    pub key: Option<&'a ApiKey>,
    /// GPUs of one replica of the deployment (GPU-hour quotas apply when > 0).
    pub gpus: i64,
    pub price: &'a PricePlan,
}

/// What a call really used, known once it ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settlement {
    pub tokens: i64,
    pub gpu_ms: i64,
    pub cost: Micros,
}

/// The requests-per-minute limit closest to refusing, for `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: i64,
    pub remaining: i64,
    pub reset: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meter {
    KeyRequests,
    TenantRequests,
    KeyTokens,
    TenantTokens,
    DailyCalls,
    DailyTokens,
    GpuHours,
    Spend,
}

/// A call let in: what it reserved, to be settled once it ends.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    reserved: Vec<(Meter, Bucket)>,
    tenant_id: Option<TenantId>,
    soft_limit: Option<Micros>,
    period: String,
    /// `X-RateLimit-*` values, when a requests-per-minute limit applies.
    pub rate: Option<RateHeaders>,
}

#[derive(Debug, Clone)]
struct TenantSettings {
    quota: Quota,
    budget: Option<Budget>,
    read_at: Instant,
}

/// Admission control; cheap to clone.
#[derive(Debug, Clone)]
pub struct Policy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limiter: Arc<dyn Limiter>,
    store: Arc<dyn Store>,
    events: Option<Arc<dyn Events>>,
    config: PolicyConfig,
    /// Server-wide defaults for quota fields a tenant has not set.
    defaults: Quota,
    settings: Mutex<HashMap<TenantId, TenantSettings>>,
    /// Window buckets this instance has seeded from stored usage.
    seeded: Mutex<HashSet<String>>,
}

const MINUTE: Duration = Duration::from_secs(60);

fn merge(own: Quota, d: Quota) -> Quota {
    Quota {
        max_models: own.max_models.or(d.max_models),
        max_storage_bytes: own.max_storage_bytes.or(d.max_storage_bytes),
        max_gpu_hours: own.max_gpu_hours.or(d.max_gpu_hours),
        max_calls_per_day: own.max_calls_per_day.or(d.max_calls_per_day),
        max_tokens_per_day: own.max_tokens_per_day.or(d.max_tokens_per_day),
        requests_per_minute: own.requests_per_minute.or(d.requests_per_minute),
        tokens_per_minute: own.tokens_per_minute.or(d.tokens_per_minute),
    }
}

/// The UTC day and month around `now`: (day key, day start, day end, month key, month start, month end).
struct Periods {
    day: String,
    day_start: chrono::DateTime<Utc>,
    day_end: chrono::DateTime<Utc>,
    month: String,
    month_start: chrono::DateTime<Utc>,
    month_end: chrono::DateTime<Utc>,
}

impl Periods {
    fn now() -> Periods {
        let now = Utc::now();
        let day_start = Utc.from_utc_datetime(&now.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default());
        let (y, m) = (now.year(), now.month());
        let month_start = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().unwrap_or(day_start);
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        let month_end = Utc.with_ymd_and_hms(ny, nm, 1, 0, 0, 0).single().unwrap_or(day_start);
        Periods {
            day: now.format("%Y-%m-%d").to_string(),
            day_start,
            day_end: day_start + chrono::Duration::days(1),
            month: now.format("%Y-%m").to_string(),
            month_start,
            month_end,
        }
    }
}

impl Policy {
    pub fn new(
        limiter: Arc<dyn Limiter>,
        store: Arc<dyn Store>,
        events: Option<Arc<dyn Events>>,
        defaults: Quota,
        config: PolicyConfig,
    ) -> Policy {
        Policy {
            inner: Arc::new(Inner {
                limiter,
                store,
                events,
                config,
                defaults,
                settings: Mutex::default(),
                seeded: Mutex::default(),
            }),
        }
    }

    /// Drops this instance's cached quotas and budget of `tenant` (after they changed).
    pub fn forget(&self, tenant: TenantId) {
        self.inner.settings.lock().unwrap_or_else(|e| e.into_inner()).remove(&tenant);
    }

    async fn settings(&self, tenant: TenantId) -> Result<TenantSettings, MeteringError> {
        let ttl = Duration::from_millis(self.inner.config.cache_ms);
        if let Some(s) = self.inner.settings.lock().unwrap_or_else(|e| e.into_inner()).get(&tenant)
            && s.read_at.elapsed() < ttl
        {
            return Ok(s.clone());
        }
        let store = self.inner.store.scoped(tenant);
        let quota = merge(store.quota().await?, self.inner.defaults);
        let budget = store.budget().await?;
        let s = TenantSettings { quota, budget, read_at: Instant::now() };
        self.inner.settings.lock().unwrap_or_else(|e| e.into_inner()).insert(tenant, s.clone());
        Ok(s)
    }

    /// Checks and reserves every limit that applies to a call estimated at `input_tokens` +
    /// `output_tokens`; refuses with the code of the first limit that has no room.
    pub async fn admit(
        &self,
        who: Subject<'_>,
        input_tokens: i64,
        output_tokens: i64,
    ) -> Result<Admission, MeteringError> {
        let settings = self.settings(who.tenant_id).await?;
        let q = settings.quota;
        let p = Periods::now();
        let t = who.tenant_id;
        let tokens = input_tokens.saturating_add(output_tokens).max(0);
        let rate = |key: String, limit: i64, cost: i64| Bucket {
            key,
            kind: BucketKind::Rate { period: MINUTE },
            limit,
            cost: cost.min(limit.max(1)).max(0),
        };
        let window = |key: String, ends: chrono::DateTime<Utc>, limit: i64, cost: i64| Bucket {
            key,
            kind: BucketKind::Window { ends_at_ms: ends.timestamp_millis() },
            limit,
            cost,
        };
        let mut buckets: Vec<(Meter, Bucket)> = Vec::new();
        if let Some(key) = who.key {
            if let Some(l) = key.limits.requests_per_minute {
                buckets.push((Meter::KeyRequests, rate(format!("key:{}:rpm", key.id), l, 1)));
            }
            if let Some(l) = key.limits.tokens_per_minute {
                let b = Bucket { cost: tokens, ..rate(format!("key:{}:tpm", key.id), l, 0) };
                buckets.push((Meter::KeyTokens, b));
            }
        }
        if let Some(l) = q.requests_per_minute {
            buckets.push((Meter::TenantRequests, rate(format!("tenant:{t}:rpm"), l, 1)));
        }
        if let Some(l) = q.tokens_per_minute {
            buckets.push((Meter::TenantTokens, Bucket { cost: tokens, ..rate(format!("tenant:{t}:tpm"), l, 0) }));
        }
        if let Some(l) = q.max_calls_per_day {
            buckets.push((Meter::DailyCalls, window(format!("tenant:{t}:calls:{}", p.day), p.day_end, l, 1)));
        }
        if let Some(l) = q.max_tokens_per_day {
            buckets.push((Meter::DailyTokens, window(format!("tenant:{t}:tokens:{}", p.day), p.day_end, l, tokens)));
        }
        if let (Some(hours), true) = (q.max_gpu_hours, who.gpus > 0) {
            let limit = hours.saturating_mul(3_600_000);
            buckets.push((Meter::GpuHours, window(format!("tenant:{t}:gpu_ms:{}", p.month), p.month_end, limit, 0)));
        }
        let mut soft_limit = None;
        if let Some(budget) = settings.budget.as_ref().filter(|b| b.currency == who.price.currency) {
            let cost = who.price.cost(1, input_tokens, output_tokens, 0);
            let key = format!("tenant:{t}:spend:{}:{}", budget.currency, p.month);
            buckets.push((Meter::Spend, window(key, p.month_end, budget.hard_limit.unwrap_or(i64::MAX), cost)));
            soft_limit = budget.soft_limit;
        }
        let mut admission =
            Admission { reserved: Vec::new(), tenant_id: Some(t), soft_limit, period: p.month.clone(), rate: None };
        if buckets.is_empty() {
            return Ok(admission);
        }
        let checked: Vec<Bucket> = buckets.iter().map(|(_, b)| b.clone()).collect();
        let verdict = match self.seed(t, &buckets, &p, &who.price.currency).await {
            Ok(()) => self.inner.limiter.acquire(&checked).await,
            Err(e) => Err(e),
        };
        let verdict = match verdict {
            Ok(v) => v,
            Err(e) if self.inner.config.on_limiter_error == FailMode::Open => {
                tracing::warn!(error = %e, "limit store unreachable: admitting without limits (fail open)");
                return Ok(admission);
            }
            Err(e) => return Err(MeteringError::LimiterUnavailable(e)),
        };
        match verdict {
            Verdict::Refused { index, retry_after } => {
                let (meter, bucket) = &buckets[index.min(buckets.len() - 1)];
                Err(refusal(*meter, bucket, &who, retry_after).into())
            }
            Verdict::Admitted(levels) => {
                admission.rate = buckets
                    .iter()
                    .zip(&levels)
                    .filter(|((m, _), _)| matches!(m, Meter::KeyRequests | Meter::TenantRequests))
                    .map(|((_, b), l)| RateHeaders { limit: b.limit, remaining: l.remaining.max(0), reset: l.reset })
                    .min_by_key(|h| h.remaining);
                admission.reserved = buckets;
                Ok(admission)
            }
        }
    }

    /// Starts the window buckets this instance has not seen from the usage already stored
    /// (counters in memory or in a Redis without persistence do not survive restarts).
    async fn seed(
        &self,
        tenant: TenantId,
        buckets: &[(Meter, Bucket)],
        p: &Periods,
        currency: &str,
    ) -> Result<(), crate::error::LimiterFailure> {
        let fresh: Vec<&(Meter, Bucket)> = {
            let seeded = self.inner.seeded.lock().unwrap_or_else(|e| e.into_inner());
            buckets
                .iter()
                .filter(|(_, b)| matches!(b.kind, BucketKind::Window { .. }) && !seeded.contains(&b.key))
                .collect()
        };
        if fresh.is_empty() {
            return Ok(());
        }
        let store = self.inner.store.scoped(tenant);
        let failure = |e: maas_store::StoreError| crate::error::LimiterFailure(format!("usage totals: {e}"));
        let day = store.usage_totals(p.day_start, p.day_end, currency).await.map_err(failure)?;
        let month = store.usage_totals(p.month_start, p.month_end, currency).await.map_err(failure)?;
        for (meter, b) in fresh {
            let used = match meter {
                Meter::DailyCalls => day.calls,
                Meter::DailyTokens => day.tokens,
                Meter::GpuHours => month.gpu_ms,
                Meter::Spend => month.cost_micros,
                _ => continue,
            };
            if let BucketKind::Window { ends_at_ms } = b.kind {
                self.inner.limiter.seed(&b.key, used, ends_at_ms).await?;
            }
            self.inner.seeded.lock().unwrap_or_else(|e| e.into_inner()).insert(b.key.clone());
        }
        Ok(())
    }

    /// Corrects the reservations of `admission` with what the call used; raises the soft
    /// budget alert the first time the month's spend reaches it. Never fails the call: errors
    /// are logged (the usage record, not the counters, is what bills).
    pub async fn settle(&self, admission: Admission, used: Settlement) {
        for (meter, bucket) in &admission.reserved {
            let delta = match meter {
                Meter::KeyTokens | Meter::TenantTokens | Meter::DailyTokens => used.tokens - bucket.cost,
                Meter::GpuHours => used.gpu_ms,
                Meter::Spend => used.cost - bucket.cost,
                Meter::KeyRequests | Meter::TenantRequests | Meter::DailyCalls => 0,
            };
            if delta == 0 && *meter != Meter::Spend {
                continue;
            }
            match self.inner.limiter.adjust(bucket, delta).await {
                Ok(spent) if *meter == Meter::Spend => {
                    if let (Some(soft), Some(tenant)) = (admission.soft_limit, admission.tenant_id)
                        && spent >= soft
                    {
                        self.alert(tenant, &admission.period, spent, soft).await;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, key = %bucket.key, "could not settle a limit reservation"),
            }
        }
    }

    async fn alert(&self, tenant: TenantId, period: &str, spent: Micros, soft: Micros) {
        let store = self.inner.store.scoped(tenant);
        match store.mark_budget_alerted(period).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not record the budget alert");
                return;
            }
        }
        tracing::warn!(tenant = %tenant, period, spent, soft_limit = soft, "soft budget limit reached");
        let details = serde_json::json!({ "period": period, "spent": spent, "soft_limit": soft });
        let event = NewAuditEvent {
            actor_user_id: None,
            actor: "maas".into(),
            actor_key_id: None,
            action: "budget.soft_limit_reached".into(),
            target: period.into(),
            client_ip: None,
            details: details.clone(),
        };
        if let Err(e) = store.record_audit(event).await {
            tracing::warn!(error = %e, "could not record the budget alert in the audit log");
        }
        if let Some(events) = &self.inner.events {
            let alert =
                serde_json::json!({ "tenant_id": tenant, "kind": "budget.soft_limit_reached", "details": details });
            if let Err(e) = events.alert(&alert).await {
                tracing::warn!(error = %e, "could not publish the budget alert");
            }
        }
    }
}

fn refusal(meter: Meter, b: &Bucket, who: &Subject<'_>, retry_after: Duration) -> LimitError {
    let key = who.key.map(|k| k.name.as_str()).unwrap_or_default();
    let t = who.tenant_slug;
    let (code, message) = match meter {
        Meter::KeyRequests => (
            ErrorCode::RequestsPerMinuteExceeded,
            format!("API key '{key}' is limited to {} requests per minute", b.limit),
        ),
        Meter::TenantRequests => (
            ErrorCode::RequestsPerMinuteExceeded,
            format!("tenant '{t}' is limited to {} requests per minute", b.limit),
        ),
        Meter::KeyTokens if b.cost >= b.limit => (
            ErrorCode::TokensPerMinuteExceeded,
            format!("this request needs more tokens than API key '{key}' may use in a minute ({})", b.limit),
        ),
        Meter::KeyTokens => {
            (ErrorCode::TokensPerMinuteExceeded, format!("API key '{key}' is limited to {} tokens per minute", b.limit))
        }
        Meter::TenantTokens => {
            (ErrorCode::TokensPerMinuteExceeded, format!("tenant '{t}' is limited to {} tokens per minute", b.limit))
        }
        Meter::DailyCalls => (
            ErrorCode::DailyCallsQuotaExceeded,
            format!("tenant '{t}' has used its quota of {} API calls today (UTC)", b.limit),
        ),
        Meter::DailyTokens => (
            ErrorCode::DailyTokensQuotaExceeded,
            format!("tenant '{t}' has used its quota of {} tokens today (UTC)", b.limit),
        ),
        Meter::GpuHours => (
            ErrorCode::GpuHoursQuotaExceeded,
            format!("tenant '{t}' has used its quota of {} GPU-hours this month", b.limit / 3_600_000),
        ),
        Meter::Spend => (
            ErrorCode::BudgetExceeded,
            format!(
                "tenant '{t}' has reached its hard budget of {} {} micro-units this month; raise the budget to continue",
                b.limit, who.price.currency
            ),
        ),
    };
    LimitError { code, message, retry_after: Some(retry_after) }
}
