//! The KServe Open Inference Protocol v2: REST in [`routes`], gRPC in [`grpc`], both calling
//! [`core`]; the REST wire format in [`codec`]; external v2 engines forwarded by [`upstream`].

pub mod codec;
pub mod core;
pub mod grpc;
pub mod routes;
pub mod upstream;
