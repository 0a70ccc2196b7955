//! `maas serve`: picks the backends the configuration names and starts the gateway (HTTP
//! and gRPC).

use std::sync::Arc;

use anyhow::Context as _;
use maas_auth::{Counter, IdentityService, MemoryCounter, MemorySessions, RedisCounter, RedisSessions, SessionStore};
use maas_gateway::AppState;
use maas_gateway::metering::Metering;
use maas_metering::events::{Events, NatsEvents};
use maas_metering::{Ledger, Limiter, MemoryLimiter, Policy, RedisLimiter};

use maas_artifacts::{ArtifactStore, LocalArtifacts, S3Artifacts, Staging};
use maas_controller::{Controller, ControllerConfig};
use maas_registry::Registry;
use maas_runtime::OnnxConfig;
use maas_runtime::embed::EmbeddingConfig;

use crate::config::{ArtifactsBackend, Config};

/// Runs the HTTP and gRPC servers until SIGINT/SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    tracing::info!(?config, "starting maas {}", env!("CARGO_PKG_VERSION"));
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;

    let store = maas_store::open(&config.store_url()).await.context("cannot open the metadata store")?;
    tracing::info!(backend = store.backend(), "metadata store ready (migrations applied)");

    let redis = match &config.redis_url {
        Some(url) => {
            let client = redis::Client::open(url.expose().as_str()).context("invalid redis_url")?;
            let conn = redis::aio::ConnectionManager::new(client.clone()).await.context("cannot connect to Redis")?;
            tracing::info!(prefix = %config.redis_prefix, "sessions, counters, rate limits and key changes in Redis");
            Some((client, conn))
        }
        None => {
            tracing::info!("sessions, counters and rate limits in process");
            None
        }
    };
    let (sessions, counter, limiter): (Arc<dyn SessionStore>, Arc<dyn Counter>, Arc<dyn Limiter>) = match &redis {
        Some((_, conn)) => (
            Arc::new(RedisSessions::new(conn.clone(), config.redis_prefix.clone())),
            Arc::new(RedisCounter::new(conn.clone(), config.redis_prefix.clone())),
            Arc::new(RedisLimiter::new(conn.clone(), config.redis_prefix.clone())),
        ),
        None => (Arc::new(MemorySessions::new()), Arc::new(MemoryCounter::new()), Arc::new(MemoryLimiter::new())),
    };
    let events: Option<Arc<dyn Events>> = match &config.nats_url {
        Some(url) => {
            let nats =
                NatsEvents::connect(url.expose(), &config.metering.nats).await.context("cannot connect to NATS")?;
            tracing::info!(stream = %config.metering.nats.stream, "usage events to NATS JetStream");
            Some(Arc::new(nats))
        }
        None => None,
    };
    let ledger = Ledger::start(store.clone(), &config.metering.ledger, events.is_some());
    if let Some(events) = &events {
        tokio::spawn(maas_metering::events::publish_outbox(store.clone(), events.clone(), ledger.committed()));
    }
    let policy =
        Policy::new(limiter, store.clone(), events, config.metering.tenant_defaults, config.metering.policy.clone());

    let artifacts: Arc<dyn ArtifactStore> = match config.artifacts.backend {
        ArtifactsBackend::Local => Arc::new(LocalArtifacts::new(config.data_dir.join("artifacts"))?),
        ArtifactsBackend::S3 => Arc::new(S3Artifacts::new(&config.artifacts.s3)?),
    };
    tracing::info!(backend = artifacts.backend(), "artifact store ready");
    let staging = Staging::new(config.data_dir.join("staging"))?;

    let mut identity = IdentityService::new(store.clone(), sessions, counter, config.auth.clone());
    if let Some((client, conn)) = redis {
        identity = identity.share_key_changes(client, conn, &config.redis_prefix);
    }
    let registry = Registry::new(store.clone(), artifacts.clone(), staging, config.registry.clone());
    let controller = Controller::new(
        store,
        artifacts,
        registry.clone(),
        ControllerConfig {
            cache_dir: config.data_dir.join("models"),
            onnx: OnnxConfig {
                library_path: config.runtime.onnxruntime_library.clone(),
                intra_op_threads: config.runtime.intra_op_threads,
                inter_op_threads: config.runtime.inter_op_threads,
                intra_op_spinning: config.runtime.intra_op_spinning,
                spin_between_runs: config.runtime.spin_between_runs,
            },
            embeddings: EmbeddingConfig {
                precision: config.runtime.embeddings_precision,
                ..EmbeddingConfig::default()
            },
            max_upstream_answer_bytes: config.http.max_infer_bytes,
        },
    );
    let restored = controller.restore().await?;
    tracing::info!(deployments = restored, "deployments restored");
    let state = AppState {
        identity,
        registry,
        controller: controller.clone(),
        metering: Metering { ledger, policy },
        config: config.http.clone(),
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let grpc_listener = tokio::net::TcpListener::bind(config.grpc_listen)
        .await
        .with_context(|| format!("cannot listen on {} (grpc_listen)", config.grpc_listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(listen_addr = %addr, "listening on http://{addr}");
    let grpc_addr = grpc_listener.local_addr()?;
    tracing::info!(grpc_listen_addr = %grpc_addr, "gRPC (KServe v2) listening on {grpc_addr}");

    // One stop signal for both servers: SIGINT/SIGTERM, or either server ending (an error).
    let (stop, _) = tokio::sync::watch::channel(false);
    let signal = tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown_signal().await;
            stop.send_replace(true);
        }
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };
    let http = maas_gateway::serve(listener, state.clone(), stopped(stop.subscribe()));
    let grpc = maas_gateway::v2::grpc::serve_grpc(grpc_listener, state, stopped(stop.subscribe()));
    let http = async {
        let result = http.await;
        stop.send_replace(true);
        result
    };
    let grpc = async {
        let result = grpc.await;
        stop.send_replace(true);
        result
    };
    let (http, grpc) = tokio::join!(http, grpc);
    signal.abort();
    controller.shutdown();
    http.context("the HTTP server failed")?;
    grpc.context("the gRPC server failed")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
