//! The KServe Open Inference Protocol v2: REST in [`routes`], gRPC in [`grpc`], both calling
//! [`core`]; the REST wire format in [`codec`].

pub mod codec;
pub mod core;
pub mod grpc;
pub mod routes;
