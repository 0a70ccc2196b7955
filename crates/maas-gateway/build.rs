//! Generates the KServe v2 gRPC service (`proto/grpc_service.proto`, package `inference`):
//! `protox` compiles the file in pure Rust (no `protoc` needed) and `tonic-prost-build` turns
//! the descriptors into messages and the server trait.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/grpc_service.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        // Tensor bytes as `bytes::Bytes`: slices of the received frame rather than copies.
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .compile_fds(descriptors)?;
    Ok(())
}
