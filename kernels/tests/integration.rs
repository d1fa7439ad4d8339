//! The server end to end on 127.0.0.1:0: health, reflection, an op, malformed requests (after each of
//! which the server keeps serving), the message size limit, Bench gating and graceful shutdown.

use std::net::SocketAddr;

use kaizen_kernels::pb::{self, kernel_service_client::KernelServiceClient};
use kaizen_kernels::server::{serve, ServerConfig};
use kaizen_kernels::tensor::{encode, Tensor};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

struct Running {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), String>>,
}

async fn start(config: ServerConfig) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve(listener, config, async {
            let _ = stopped.await;
        })
        .await
        .map_err(|e| e.to_string())
    });
    Running { address, stop, task }
}

async fn channel(address: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{address}")).expect("uri").connect().await.expect("connect")
}

fn f64s(values: &[f64]) -> Option<pb::Tensor> {
    Some(encode(&Tensor::from_vec(values.to_vec())))
}

fn dpo_request() -> pb::DpoLossRequest {
    pb::DpoLossRequest {
        policy_chosen_logps: f64s(&[-1.0, -2.0]),
        policy_rejected_logps: f64s(&[-3.0, -1.0]),
        ref_chosen_logps: f64s(&[-1.5, -2.0]),
        ref_rejected_logps: f64s(&[-2.0, -1.5]),
        beta: Some(0.1),
        ..Default::default()
    }
}

async fn assert_serving(client: &mut KernelServiceClient<Channel>) {
    let response = client.dpo_loss(dpo_request()).await.expect("a valid request is served").into_inner();
    // delta = [0.5 - (-1.0), 0 - 0.5] = [1.5, -0.5]
    let want = (-(1.0f64 / (1.0 + (-0.15f64).exp())).ln() - (1.0 / (1.0 + (0.05f64).exp())).ln()) / 2.0;
    assert!((response.loss - want).abs() < 1e-15, "{} vs {want}", response.loss);
}

#[tokio::test]
async fn serves_health_reflection_ops_and_refuses_malformed_requests() {
    let server = start(ServerConfig::default()).await;
    let channel = channel(server.address).await;

    let mut health = HealthClient::new(channel.clone());
    for service in ["", "kaizen.kernels.v1.KernelService"] {
        let status = health
            .check(HealthCheckRequest { service: service.into() })
            .await
            .expect("health check")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }

    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut stream = reflection
        .server_reflection_info(tonic::codegen::tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let answer = stream.message().await.expect("reflection answer").expect("one message");
    let names = match answer.message_response {
        Some(
            tonic_reflection::pb::v1::server_reflection_response::MessageResponse::ListServicesResponse(list),
        ) => list.service.into_iter().map(|s| s.name).collect::<Vec<_>>(),
        other => panic!("unexpected reflection answer {other:?}"),
    };
    assert!(names.contains(&"kaizen.kernels.v1.KernelService".to_string()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");

    let mut client = KernelServiceClient::new(channel.clone());
    assert_serving(&mut client).await;

    let short_bytes = pb::Tensor { shape: vec![2], dtype: pb::Dtype::Float64 as i32, data: vec![0; 12] };
    let malformed: Vec<(&str, pb::DpoLossRequest)> = vec![
        ("policy_chosen_logps: required", pb::DpoLossRequest { policy_chosen_logps: None, ..dpo_request() }),
        ("ref_chosen_logps.shape", pb::DpoLossRequest { ref_chosen_logps: f64s(&[1.0]), ..dpo_request() }),
        ("loss_types", pb::DpoLossRequest { loss_types: vec!["nope".into()], ..dpo_request() }),
        (
            "ref_rejected_logps: contains NaN",
            pb::DpoLossRequest { ref_rejected_logps: f64s(&[f64::NAN, 0.0]), ..dpo_request() },
        ),
        (
            "policy_rejected_logps.data",
            pb::DpoLossRequest { policy_rejected_logps: Some(short_bytes), ..dpo_request() },
        ),
        (
            "policy_chosen_logps: empty",
            pb::DpoLossRequest { policy_chosen_logps: f64s(&[]), ..dpo_request() },
        ),
        (
            "policy_chosen_logps.dtype: unknown dtype 9",
            pb::DpoLossRequest {
                policy_chosen_logps: Some(pb::Tensor { shape: vec![2], dtype: 9, data: vec![0; 16] }),
                ..dpo_request()
            },
        ),
    ];
    for (expected, request) in malformed {
        let status = client.dpo_loss(request).await.expect_err(expected);
        assert_eq!(status.code(), Code::InvalidArgument, "{expected}: {status:?}");
        assert!(status.message().starts_with(expected), "{expected}: {:?}", status.message());
        assert_serving(&mut client).await;
    }

    let status = client
        .bench(pb::BenchRequest { iterations: 1, ..Default::default() })
        .await
        .expect_err("bench is off by default");
    assert_eq!(status.code(), Code::FailedPrecondition);

    server.stop.send(()).expect("server still running");
    server.task.await.expect("server task").expect("graceful shutdown");
}

#[tokio::test]
async fn enforces_the_message_size_limit_and_serves_bench_when_enabled() {
    let server = start(ServerConfig { max_message_bytes: 4096, bench_enabled: true }).await;
    let mut client = KernelServiceClient::new(channel(server.address).await);

    let big = pb::SoftmaxRequest { logits: f64s(&vec![0.5; 1024]), grad_output: None };
    let status = client.softmax(big).await.expect_err("over the limit");
    assert_ne!(status.code(), Code::Ok);
    assert_serving(&mut client).await;

    let bench = client
        .bench(pb::BenchRequest {
            op: Some(pb::bench_request::Op::DpoLoss(dpo_request())),
            iterations: 5,
            warmup: 1,
        })
        .await
        .expect("bench")
        .into_inner();
    assert_eq!(bench.seconds.len(), 5);
    assert!(bench.seconds.iter().all(|s| *s >= 0.0));
    assert!(bench.threads >= 1);
    let status = client
        .bench(pb::BenchRequest {
            op: Some(pb::bench_request::Op::DpoLoss(dpo_request())),
            iterations: 0,
            warmup: 0,
        })
        .await
        .expect_err("zero iterations");
    assert_eq!(status.code(), Code::InvalidArgument);

    server.stop.send(()).expect("server still running");
    server.task.await.expect("server task").expect("graceful shutdown");
}
