//! Assembles the gRPC server: the kernel service, gRPC health (SERVING until shutdown begins) and
//! server reflection, on a listener the caller bound.

use std::future::Future;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tracing::info;

use crate::pb::{self, kernel_service_server::KernelServiceServer};
use crate::service::KernelsService;

/// Default largest message sent or received: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// HTTP/2 flow-control window (stream and connection), in bytes.
const FLOW_CONTROL_WINDOW: u32 = 16 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub max_message_bytes: usize,
    pub bench_enabled: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES, bench_enabled: false }
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves until `shutdown` resolves, then reports NOT_SERVING, lets in-flight calls finish and returns.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), BoxError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<KernelServiceServer<KernelsService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let kernels = KernelServiceServer::new(KernelsService::new(config.bench_enabled))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let signal = async move {
        shutdown.await;
        info!("shutting down: no new calls, finishing those in flight");
        reporter.set_not_serving::<KernelServiceServer<KernelsService>>().await;
        reporter.set_service_status("", ServingStatus::NotServing).await;
    };
    Server::builder()
        // Large tensors: let a request or response stream without waiting on 64 KiB flow-control windows.
        .initial_stream_window_size(Some(FLOW_CONTROL_WINDOW))
        .initial_connection_window_size(Some(FLOW_CONTROL_WINDOW))
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(kernels)
        .serve_with_incoming_shutdown(incoming, signal)
        .await?;
    info!("stopped");
    Ok(())
}
