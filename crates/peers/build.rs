//! tonic's client and server for the demo service, generated from a service
//! described in Rust (`tonic_build::manual`), so that no `protoc` is needed:
//! the messages are prost structs written by hand in `src/with_tonic.rs`,
//! what `protoc` would have made of a two-field `.proto`.

fn main() {
    // Without the `stacks` feature the crate is empty and generates nothing.
    #[cfg(feature = "stacks")]
    generate();
}

#[cfg(feature = "stacks")]
fn generate() {
    let call = tonic_build::manual::Method::builder()
        .name("call")
        .route_name("Call")
        .input_type("crate::with_tonic::CallRequest")
        .output_type("crate::with_tonic::CallReply")
        .codec_path("tonic_prost::ProstCodec")
        .build();
    let service = tonic_build::manual::Service::builder().name("Demo").package("fastwire.demo").method(call).build();
    tonic_build::manual::Builder::new().compile(&[service]);
}
