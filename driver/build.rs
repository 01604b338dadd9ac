//! Compiles our GoBGP 3.x proto in pure Rust (protox): no system protoc needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo::rerun-if-changed=proto/gobgp_v3.proto");
    let fds = protox::compile(["proto/gobgp_v3.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
