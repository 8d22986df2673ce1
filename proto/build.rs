//! Compiles `herald/v1/*.proto` with protox (pure Rust), so no build needs a
//! system `protoc`; tonic-prost-build adds the gRPC client and server.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "herald/v1/job.proto",
        "herald/v1/enqueue.proto",
        "herald/v1/callback.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
