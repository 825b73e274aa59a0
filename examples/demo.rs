//! The checkout demo: three services in one process, each request printed as one trace tree.
//!
//! ```sh
//! cargo run --example demo
//! ```
//!
//! - `checkout` (axum) handles `POST /checkout/{sku}`: it asks `inventory` (axum, over HTTP
//!   with the client layer) for stock, then charges the card through `payment` (tonic, over
//!   gRPC with the client layer on the `Channel`).
//! - Five orders go in: three ordinary ones, one whose inventory lookup is slow, and one whose
//!   card `payment` declines (`UNAVAILABLE: gateway timeout`), so checkout answers 500.
//! - Every finished trace prints as a tree; at exit the guard prints a per-operation summary.
//!
//! `RUST_LOG` filters the log lines (default `info`); `NO_COLOR` turns colour off.
//!
//! With `--ui` (`cargo run --example demo -- --ui`) it also serves the trace viewer (on
//! `TRACEWIRE_UI_ADDR`, default `127.0.0.1:16686`), prints its URL, and keeps placing an
//! order every second until interrupted (Ctrl-C). (The examples are built with the feature
//! `ui` through the crate's dev-dependency on itself; a library user turns it on with
//! `features = ["ui"]`.)

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tracewire::client::{ClientTrace, HyperClient};
use tracewire::{ClientLayer, ServerLayer};

/// The payment service's gRPC messages and service, written by hand so that no `protoc` is
/// needed: `payment.Pay/Charge`.
mod payment {
    use std::convert::Infallible;
    use std::task::{Context, Poll};

    use tonic::codegen::BoxFuture;
    use tonic_prost::ProstCodec;

    pub const CHARGE: &str = "/payment.Pay/Charge";

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ChargeRequest {
        #[prost(string, tag = "1")]
        pub card: String,
        #[prost(int64, tag = "2")]
        pub amount_cents: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ChargeReply {
        #[prost(string, tag = "1")]
        pub receipt: String,
    }

    #[tracing::instrument(skip(request), fields(card = %request.card))]
    async fn charge(request: ChargeRequest) -> Result<ChargeReply, tonic::Status> {
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        if request.card == "declined" {
            tokio::time::sleep(std::time::Duration::from_millis(40)).await;
            tracing::error!("gateway timeout");
            return Err(tonic::Status::unavailable("gateway timeout"));
        }
        Ok(ChargeReply {
            receipt: format!("r-{}", request.amount_cents),
        })
    }

    struct ChargeMethod;

    impl tonic::server::UnaryService<ChargeRequest> for ChargeMethod {
        type Response = ChargeReply;
        type Future = BoxFuture<tonic::Response<ChargeReply>, tonic::Status>;

        fn call(&mut self, request: tonic::Request<ChargeRequest>) -> Self::Future {
            Box::pin(async move { charge(request.into_inner()).await.map(tonic::Response::new) })
        }
    }

    /// The `payment.Pay` service, as tonic's generated servers are.
    #[derive(Clone)]
    pub struct PayServer;

    impl tonic::server::NamedService for PayServer {
        const NAME: &'static str = "payment.Pay";
    }

    impl<B> tower::Service<http::Request<B>> for PayServer
    where
        B: http_body::Body + Send + 'static,
        B::Error: Into<tonic::codegen::StdError> + Send + 'static,
    {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Infallible>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<B>) -> Self::Future {
            Box::pin(async move {
                if request.uri().path() != CHARGE {
                    return Ok(tonic::Status::unimplemented("no such method").into_http());
                }
                let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
                Ok(grpc.unary(ChargeMethod, request).await)
            })
        }
    }

    /// Calls `payment.Pay/Charge` over any gRPC service (here, a traced `Channel`).
    pub async fn call<T>(channel: T, request: ChargeRequest) -> Result<ChargeReply, tonic::Status>
    where
        T: tonic::client::GrpcService<tonic::body::Body>,
        T::Error: Into<tonic::codegen::StdError>,
        T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
    {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.into().to_string()))?;
        let path = http::uri::PathAndQuery::from_static(CHARGE);
        let reply = grpc
            .unary(tonic::Request::new(request), path, ProstCodec::default())
            .await?;
        Ok(reply.into_inner())
    }
}

/// What checkout calls, each through the client layer.
#[derive(Clone)]
struct Deps {
    inventory: SocketAddr,
    http: HyperClient,
    payment: ClientTrace<tonic::transport::Channel>,
}

#[tracing::instrument(skip(deps))]
async fn reserve(deps: &Deps, sku: &str) -> Result<u32, (StatusCode, String)> {
    let request = http::Request::get(format!("http://{}/items/{sku}", deps.inventory))
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    let failed = |e: String| (StatusCode::BAD_GATEWAY, format!("inventory: {e}"));
    let response = deps
        .http
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| failed(e.to_string()))?;
    let stock = String::from_utf8_lossy(&body.to_bytes())
        .parse()
        .unwrap_or(0);
    tracing::info!(stock, "reserved");
    Ok(stock)
}

async fn checkout(
    State(deps): State<Deps>,
    Path(sku): Path<String>,
    headers: HeaderMap,
) -> Result<String, (StatusCode, String)> {
    let card = headers
        .get("x-card")
        .and_then(|c| c.to_str().ok())
        .unwrap_or("visa")
        .to_owned();
    reserve(&deps, &sku).await?;
    let charge = payment::ChargeRequest {
        card,
        amount_cents: 4200,
    };
    let reply = payment::call(deps.payment.clone(), charge)
        .await
        .map_err(|status| {
            tracing::warn!(code = ?status.code(), "payment failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("payment failed: {}", status.message()),
            )
        })?;
    Ok(format!("ordered {sku}, receipt {}\n", reply.receipt))
}

async fn item(Path(sku): Path<String>) -> String {
    if sku == "slow" {
        // A cold cache: the slow request of the run.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    "42".to_owned()
}

async fn listen() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    (listener, addr)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Recorder + console trees + fmt logs; the layers name each service.
    let ui = std::env::args().skip(1).any(|arg| arg == "--ui");
    let guard = if ui {
        tracewire::dev::init_with_ui("demo")
    } else {
        tracewire::dev::init("demo")
    };

    let (listener, inventory) = listen().await;
    let app = Router::new()
        .route("/items/{sku}", get(item))
        .layer(ServerLayer::new().service_name("inventory"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (listener, payment_addr) = listen().await;
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(ServerLayer::new().service_name("payment"))
            .add_service(payment::PayServer)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
    });

    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{payment_addr}"))?.connect_lazy();
    let deps = Deps {
        inventory,
        http: ClientLayer::new().service_name("checkout").hyper_client(),
        payment: ServiceBuilder::new()
            .layer(ClientLayer::new().service_name("checkout"))
            .service(channel),
    };
    let (listener, checkout_addr) = listen().await;
    let app = Router::new()
        .route("/checkout/{sku}", post(checkout))
        .with_state(deps)
        .layer(ServerLayer::new().service_name("checkout"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The shoppers: a plain client, so each checkout request starts its own trace.
    let shopper = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let orders = [
        ("A-1", "visa"),
        ("B-2", "visa"),
        ("slow", "visa"),
        ("C-3", "declined"),
        ("D-4", "mastercard"),
    ];
    let order = |sku: &'static str, card: &'static str| {
        let mut shopper = shopper.clone();
        async move {
            let request = http::Request::post(format!("http://{checkout_addr}/checkout/{sku}"))
                .header("x-card", card)
                .body(Full::new(Bytes::new()))?;
            let response = shopper.call(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            tracing::info!(%sku, %status, "{}", String::from_utf8_lossy(&body).trim());
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }
    };
    for (sku, card) in orders {
        order(sku, card).await?;
        // Let the console print this trace before the next request's logs.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if ui {
        // Keep serving the viewer, an order a second, until Ctrl-C.
        let mut every_second = tokio::time::interval(Duration::from_secs(1));
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        for (sku, card) in orders.into_iter().cycle() {
            tokio::select! {
                _ = &mut interrupted => break,
                _ = every_second.tick() => order(sku, card).await?,
            }
        }
    }

    // Prints what is left and the summary.
    drop(guard);
    Ok(())
}
