//! `inference.GRPCInferenceService` on the shared v2 operations: each RPC authenticates (API
//! key in the `authorization` metadata), decodes, calls [`core`], encodes; errors become a
//! status only in [`super::status`]. Model names are `tenant/name` or a name in the key's
//! tenant, as over REST.

use std::time::Instant;

use maas_auth::{AuthError, Caller};
use maas_controller::Endpoint;
use maas_core::usage::InferenceApi;
use tonic::{Request, Response, Status};

use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::{
    ModelConfigRequest, ModelConfigResponse, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelMetadataResponse, ModelReadyRequest, ModelReadyResponse, ModelStatisticsRequest, ModelStatisticsResponse,
    RepositoryIndexRequest, RepositoryIndexResponse, RepositoryModelLoadRequest, RepositoryModelLoadResponse,
    RepositoryModelUnloadRequest, RepositoryModelUnloadResponse, ServerLiveRequest, ServerLiveResponse,
    ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use super::{status, tensors, triton};
use crate::error::ApiError;
use crate::extract::bearer_secret;
use crate::metering::{self, Outcome};
use crate::state::AppState;
use crate::v2::{core, repository};
use maas_core::ErrorCode;

/// The gRPC inference service over the gateway's state.
#[derive(Debug, Clone)]
pub struct InferenceService {
    state: AppState,
}

impl InferenceService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// The client IP: the peer address, or the first `x-forwarded-for` hop behind a trusted proxy.
    fn client_ip<T>(&self, request: &Request<T>) -> Option<String> {
        if self.state.config.trust_forwarded_for
            && let Some(hop) = request
                .metadata()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        {
            return Some(hop.to_owned());
        }
        request.remote_addr().map(|a| a.ip().to_string())
    }

    /// The caller of an RPC: the API key in `authorization: Bearer maas_…`.
    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, ApiError> {
        let ip = self.client_ip(request);
        let Some(value) = request.metadata().get("authorization") else {
            return Err(AuthError::Unauthenticated.into());
        };
        let value = value
            .to_str()
            .map_err(|_| ApiError::new(ErrorCode::Unauthenticated, "the authorization metadata is not ASCII"))?;
        Ok(self.state.identity.authenticate_key(bearer_secret(value)?, ip).await?)
    }

    async fn ready(&self, request: Request<ModelReadyRequest>) -> Result<ModelReadyResponse, ApiError> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let endpoint = core::endpoint(&self.state, &caller, &req.name, Some(&req.version)).await?;
        Ok(ModelReadyResponse { ready: core::ready(&endpoint).await? })
    }

    async fn metadata(&self, request: Request<ModelMetadataRequest>) -> Result<ModelMetadataResponse, ApiError> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let endpoint = core::endpoint(&self.state, &caller, &req.name, Some(&req.version)).await?;
        let meta = core::metadata(&endpoint).await?;
        let tensors = |io: Vec<core::TensorMetadata>| {
            io.into_iter()
                .map(|t| TensorMetadata { name: t.name, datatype: t.datatype.to_owned(), shape: t.shape })
                .collect()
        };
        Ok(ModelMetadataResponse {
            name: meta.name,
            versions: meta.versions,
            platform: meta.platform,
            inputs: tensors(meta.inputs),
            outputs: tensors(meta.outputs),
        })
    }

    async fn config(&self, request: Request<ModelConfigRequest>) -> Result<ModelConfigResponse, ApiError> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let endpoint = core::endpoint(&self.state, &caller, &req.name, Some(&req.version)).await?;
        Ok(ModelConfigResponse { config: Some(triton::config(crate::v2::triton::config(&endpoint)?)) })
    }

    async fn statistics(&self, request: Request<ModelStatisticsRequest>) -> Result<ModelStatisticsResponse, ApiError> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let name = Some(req.name.as_str()).filter(|n| !n.is_empty());
        let list = crate::v2::triton::stats(&self.state, &caller, name, Some(&req.version)).await?;
        Ok(triton::stats(list))
    }

    async fn index(&self, request: Request<RepositoryIndexRequest>) -> Result<RepositoryIndexResponse, ApiError> {
        let caller = self.caller(&request).await?;
        let models = repository::index(&self.state, &caller, request.get_ref().ready).await?;
        Ok(RepositoryIndexResponse { models: models.into_iter().map(triton::index_entry).collect() })
    }

    /// Load and unload: authenticated, then refused.
    async fn model_control<T>(&self, request: &Request<T>, name: &str, action: &str) -> Result<(), ApiError> {
        self.caller(request).await?;
        Err(repository::model_control(name, action))
    }

    async fn infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, ApiError> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let endpoint = core::endpoint(&self.state, &caller, &req.model_name, Some(&req.model_version)).await?;
        let size = prost::Message::encoded_len(&req);
        let call = metering::admit(&self.state, &caller, &endpoint, InferenceApi::V2Grpc, size, (0, 0)).await?;
        let started = Instant::now();
        let result = self.run(&endpoint, req).await;
        let outcome = match &result {
            Ok(r) => Outcome::ok(prost::Message::encoded_len(r), started.elapsed()),
            Err(e) => Outcome::failed(e),
        };
        let headers = call.headers();
        call.finish(outcome).await?;
        let mut response = Response::new(result?);
        for (name, value) in headers {
            if let Ok(v) = value.parse() {
                response.metadata_mut().insert(name, v);
            }
        }
        Ok(response)
    }

    async fn run(&self, endpoint: &Endpoint, req: ModelInferRequest) -> Result<ModelInferResponse, ApiError> {
        let inputs = tensors::decode_inputs(req.inputs, req.raw_input_contents)
            .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e.0))?;
        let outputs = req.outputs.into_iter().map(|o| o.name).collect();
        let id = Some(req.id.as_str()).filter(|id| !id.is_empty());
        let result = core::infer(&self.state, endpoint, id, inputs, outputs).await?;
        let mut response = ModelInferResponse {
            model_name: endpoint.full_name(),
            model_version: endpoint.version.version.clone(),
            id: req.id,
            ..Default::default()
        };
        tensors::encode_outputs(result, &mut response);
        Ok(response)
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        let ready = match self.state.identity.ready().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "not ready");
                false
            }
        };
        Ok(Response::new(ServerReadyResponse { ready }))
    }

    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        self.ready(request).await.map(Response::new).map_err(status)
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "maas".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: core::EXTENSIONS.map(String::from).to_vec(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        self.metadata(request).await.map(Response::new).map_err(status)
    }

    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        self.infer(request).await.map_err(status)
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        self.config(request).await.map(Response::new).map_err(status)
    }

    async fn model_statistics(
        &self,
        request: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        self.statistics(request).await.map(Response::new).map_err(status)
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        self.index(request).await.map(Response::new).map_err(status)
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        let name = request.get_ref().model_name.clone();
        self.model_control(&request, &name, "load")
            .await
            .map(|()| Response::new(RepositoryModelLoadResponse {}))
            .map_err(status)
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        let name = request.get_ref().model_name.clone();
        self.model_control(&request, &name, "unload")
            .await
            .map(|()| Response::new(RepositoryModelUnloadResponse {}))
            .map_err(status)
    }
}
