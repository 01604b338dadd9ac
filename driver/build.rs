//! Compiles our GoBGP protos in pure Rust (protox): no system protoc needed.
//! In: proto/gobgp_v3.proto (package `apipb`, gobgpd 3.x) and
//! proto/gobgp_v4.proto (package `api`, gobgpd 4.x). Out: `apipb.rs` and
//! `api.rs` in OUT_DIR, gRPC clients only.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTOS: [&str; 2] = ["proto/gobgp_v3.proto", "proto/gobgp_v4.proto"];
    for p in PROTOS {
        println!("cargo::rerun-if-changed={p}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
