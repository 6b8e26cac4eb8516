//! Compiles `proto/counter.proto` with protox (pure Rust), so a fresh machine
//! needs no system `protoc`. Only the `lab` feature needs the generated code.

fn main() {
    #[cfg(feature = "lab")]
    {
        println!("cargo:rerun-if-changed=proto/counter.proto");
        let fds = protox::compile(["counter.proto"], ["proto"]).expect("proto/counter.proto must compile");
        tonic_prost_build::configure().compile_fds(fds).expect("generate gRPC code for counter.proto");
    }
}
