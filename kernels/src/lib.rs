//! Kaizen's kernel service: the trainer's loss and optimizer math (TRL 1.x semantics) behind gRPC.
//!
//! `ops` holds the math as pure functions, `service` maps requests onto them, `server` assembles the
//! gRPC server (with health and reflection) and `main.rs` is the command line around it.

pub mod ops;
pub mod server;
pub mod service;
pub mod simd;
pub mod tensor;

/// The generated protobuf types, service trait and client of `kaizen.kernels.v1`.
pub mod pb {
    #![allow(clippy::all)]
    tonic::include_proto!("kaizen.kernels.v1");

    /// Encoded file descriptor set of the proto, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("kernels_descriptor");
}
