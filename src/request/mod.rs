//! What the server and client layers share about one request: their configuration
//! ([`config`]), the status rules ([`classify`]), the attributes they record, gRPC wire
//! details, and the response future and body that carry a request's span until its response
//! ends.

pub(crate) mod attrs;
pub(crate) mod body;
pub mod classify;
pub mod config;
pub(crate) mod error;
pub(crate) mod future;
pub(crate) mod rpc;
