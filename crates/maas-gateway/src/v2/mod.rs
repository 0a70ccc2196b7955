//! The KServe Open Inference Protocol v2: REST in [`routes`], gRPC in [`grpc`], both calling
//! [`core`]; the REST wire format in [`codec`]; external v2 engines forwarded by [`upstream`];
//! Triton's model-configuration and statistics extensions in [`triton`], its model repository
//! extension (the index; load/unload refused) in [`repository`].

pub mod codec;
pub mod core;
pub mod grpc;
pub mod repository;
pub mod routes;
pub mod triton;
pub mod upstream;
