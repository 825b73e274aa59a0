//! What the server and client layers share about one request: their configuration
//! ([`config`]), the attributes they record, and the response future and body that carry a
//! request's span until its response ends. The status rules ([`classify`](crate::classify))
//! and the gRPC wire (`rpc`) are modules of their own, which the metrics read too.

pub(crate) mod attrs;
pub(crate) mod body;
pub mod config;
pub(crate) mod error;
pub(crate) mod future;
pub(crate) mod methods;
