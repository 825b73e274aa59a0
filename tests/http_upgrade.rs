//! Requests that turn the connection into something else, through the server layer of a
//! hyper server: a `CONNECT` tunnel and a `101 Switching Protocols` upgrade. Both keep
//! working, and their spans end with the response head, without error.

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{service_fn, ServiceBuilder};
use tracewire::span::Status;
use tracewire::ServerLayer;

/// Echoes four bytes over the upgraded connection. The response carries a body, as a
/// handler's `(StatusCode::OK, "tunnel open")` would: hyper never sends it.
async fn upgrade(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let status = if req.method() == Method::CONNECT {
        StatusCode::OK
    } else {
        StatusCode::SWITCHING_PROTOCOLS
    };
    tokio::spawn(async move {
        let mut io = TokioIo::new(hyper::upgrade::on(req).await.expect("upgraded"));
        let mut buf = [0u8; 4];
        io.read_exact(&mut buf).await.unwrap();
        io.write_all(&buf).await.unwrap();
    });
    let mut response = Response::new(Full::new(Bytes::from("tunnel open")));
    *response.status_mut() = status;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let headers = response.headers_mut();
        headers.insert(http::header::CONNECTION, "upgrade".parse().unwrap());
        headers.insert(http::header::UPGRADE, "echo".parse().unwrap());
    }
    Ok(response)
}

async fn serve_upgrades() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = ServiceBuilder::new()
        .layer(ServerLayer::new().service_name("tunnel"))
        .service(service_fn(upgrade));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// Sends `head`, reads the response head, then echoes `ping` through the connection.
async fn through(addr: std::net::SocketAddr, head: &str) -> String {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            socket.read(&mut byte).await.unwrap(),
            1,
            "connection closed"
        );
        response.push(byte[0]);
    }
    socket.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    socket.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn a_connect_tunnel_and_an_upgrade_work_and_end_their_spans_without_error() {
    let (recorded, (connect, upgraded)) = recorded(|_| async {
        let addr = serve_upgrades().await;
        let connect = through(
            addr,
            "CONNECT example.test:443 HTTP/1.1\r\nhost: example.test:443\r\n\r\n",
        )
        .await;
        let upgraded = through(
            addr,
            "GET /echo HTTP/1.1\r\nhost: localhost\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
        )
        .await;
        (connect, upgraded)
    });
    assert!(connect.starts_with("HTTP/1.1 200"), "{connect}");
    assert!(upgraded.starts_with("HTTP/1.1 101"), "{upgraded}");
    let spans = recorded.spans.wait_for(2, WAIT).unwrap();
    assert_eq!(spans.len(), 2);
    for span in &spans {
        assert_eq!(span.status, Status::Unset, "{}", span.name);
        assert!(span.attribute("error.type").is_none(), "{}", span.name);
    }
}
