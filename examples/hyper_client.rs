//! A hyper-util client traced by tracewire: each request gets a client span whose context
//! travels in the `traceparent` header.
//!
//! ```sh
//! cargo run --example axum_server          # in one terminal
//! cargo run --example hyper_client         # in another (URL defaults to the server above)
//! cargo run --example hyper_client -- http://127.0.0.1:3000/users/7
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tracewire::ClientLayer;
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _guard = tracewire::dev::init("frontend");
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:3000/users/42".into());

    let hyper = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut client = ServiceBuilder::new()
        .layer(ClientLayer::new())
        .service(hyper);

    async {
        let request = http::Request::get(url.as_str()).body(Empty::new())?;
        match client.ready().await?.call(request).await {
            Ok(response) => {
                let status = response.status();
                let body = response.into_body().collect().await?.to_bytes();
                tracing::info!(%status, bytes = body.len(), "response");
                print!("{}", String::from_utf8_lossy(&body));
            }
            Err(error) => tracing::error!(%error, "request failed"),
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    }
    .instrument(tracing::info_span!("fetch", url = %url))
    .await
}
