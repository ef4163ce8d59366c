//! Generates the gRPC code from `proto/*.proto` with a vendored `protoc`, so building flotilla
//! needs no system-wide protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // Build scripts are single-threaded; setting the variable here affects only this process.
    std::env::set_var("PROTOC", protoc);
    let protos = [
        "proto/raft.proto",
        "proto/etcd_kv.proto",
        "proto/flotilla_v1.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
