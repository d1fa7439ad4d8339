//! `kaizen-kernels`: serves the kernel service until SIGTERM or Ctrl-C.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use kaizen_kernels::server::{self, ServerConfig, DEFAULT_MAX_MESSAGE_BYTES};
use kaizen_kernels::simd;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    /// JSON when stderr is not a terminal, text otherwise.
    Auto,
    Json,
    Text,
}

/// Kaizen kernel service: the trainer's loss and optimizer math over gRPC.
#[derive(Debug, Parser)]
#[command(name = "kaizen-kernels", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; see --address-file).
    #[arg(long, env = "KAIZEN_KERNELS__LISTEN_ADDRESS", default_value = "127.0.0.1:50051")]
    address: SocketAddr,
    /// Largest gRPC message received or sent, in bytes.
    #[arg(long, env = "KAIZEN_KERNELS__MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Compute threads (0: one per core).
    #[arg(long, env = "KAIZEN_KERNELS__THREADS", default_value_t = 0)]
    threads: usize,
    /// Threads serving the network (1: a single event loop, the lowest latency for a trainer's one
    /// channel, measured in bench/kernels; 0: one per core, for many concurrent clients). Compute runs
    /// on the compute threads either way.
    #[arg(long, env = "KAIZEN_KERNELS__IO_THREADS", default_value_t = 1)]
    io_threads: usize,
    /// Serve the Bench RPC (benchmarks only; it burns CPU on request).
    #[arg(long, env = "KAIZEN_KERNELS__ENABLE_BENCH")]
    enable_bench: bool,
    /// Write the bound address (host:port) to this file once listening.
    #[arg(long, env = "KAIZEN_KERNELS__ADDRESS_FILE")]
    address_file: Option<PathBuf>,
    /// Log level or tracing filter (RUST_LOG overrides it).
    #[arg(long, env = "KAIZEN_LOG_LEVEL", default_value = "info")]
    log_level: String,
    #[arg(long, env = "KAIZEN_KERNELS__LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    /// Instead of serving: check the gRPC health of the server at this host:port and exit 0 when it is
    /// SERVING, 1 otherwise (a container health check).
    #[arg(long, value_name = "HOST:PORT")]
    probe: Option<String>,
}

fn init_logging(args: &Args) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives),
        _ => EnvFilter::try_new(args.log_level.to_lowercase()),
    }
    .map_err(|e| format!("invalid log level {:?}: {e}", args.log_level))?;
    let json = match args.log_format {
        LogFormat::Auto => !std::io::stderr().is_terminal(),
        LogFormat::Json => true,
        LogFormat::Text => false,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = if json { builder.json().try_init() } else { builder.try_init() };
    result.map_err(|e| format!("cannot start logging: {e}"))
}

/// Writes `contents` to `path` atomically (a reader never sees a partial address).
fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => info!(signal = "SIGTERM", "received"),
        result = tokio::signal::ctrl_c() => match result {
            Ok(()) => info!(signal = "SIGINT", "received"),
            Err(e) => error!(error = %e, "cannot listen for Ctrl-C"),
        },
    }
}

async fn run(args: Args) -> Result<(), server::BoxError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .thread_name(|i| format!("kernels-compute-{i}"))
        .build_global()?;
    let listener = tokio::net::TcpListener::bind(args.address).await?;
    let local = listener.local_addr()?;
    info!(
        address = %local,
        threads = rayon::current_num_threads(),
        simd = simd::level().name(),
        max_message_bytes = args.max_message_bytes,
        bench = args.enable_bench,
        "kaizen-kernels listening"
    );
    if let Some(path) = &args.address_file {
        write_atomically(path, &local.to_string())?;
    }
    let config = ServerConfig { max_message_bytes: args.max_message_bytes, bench_enabled: args.enable_bench };
    server::serve(listener, config, shutdown_signal()).await
}

/// One gRPC health check of the server at `address`.
async fn probe(address: &str) -> Result<(), server::BoxError> {
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(2))
        .connect()
        .await?;
    let reply = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await?;
    match reply.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        status => Err(format!("{address} is {}", status.as_str_name()).into()),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = init_logging(&args) {
        eprintln!("kaizen-kernels: {e}");
        return ExitCode::FAILURE;
    }
    let mut builder = if args.io_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if args.io_threads > 1 {
            builder.worker_threads(args.io_threads);
        }
        builder
    };
    let runtime = match builder.enable_all().thread_name("kernels-io").build() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    if let Some(address) = &args.probe {
        return match runtime.block_on(probe(address)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kaizen-kernels: probe failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "kaizen-kernels failed");
            ExitCode::FAILURE
        }
    }
}
