//! Compiles `protos/*.proto` with protox (a pure-Rust compiler), so a fresh
//! machine needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=protos");
    let descriptors = protox::compile(["protos/im.proto", "protos/internal.proto"], ["protos"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
