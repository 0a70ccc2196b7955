//! The KServe Open Inference Protocol v2: REST in [`routes`], gRPC in [`grpc`], both calling
//! [`core`]; the REST wire format in [`codec`]; external v2 engines forwarded by [`upstream`];
//! Triton's model-configuration and statistics extensions in [`triton`].

pub mod codec;
pub mod core;
pub mod grpc;
pub mod routes;
pub mod triton;
pub mod upstream;
