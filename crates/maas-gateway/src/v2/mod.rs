//! The KServe Open Inference Protocol v2 (REST): wire format in [`codec`].

pub mod codec;
pub mod core;
pub mod routes;
