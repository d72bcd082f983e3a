//! Generates the filer lock client (`proto/filer_lock.proto`) with protox, a protobuf compiler in
//! Rust, so building kelp needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/filer_lock.proto");
    let fds = protox::compile(["filer_lock.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
