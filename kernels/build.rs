//! Compiles the shared proto (also used by the Python client) into the service and client code, plus
//! the encoded file descriptor set that server reflection serves.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("kernels_descriptor.bin"))
        .compile_protos(&["proto/kaizen/kernels/v1/kernels.proto"], &["proto"])?;
    Ok(())
}
