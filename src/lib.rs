//! tracewire follows a request across services.
#![warn(missing_docs)]
#![deny(unreachable_pub)]

pub mod baggage;
pub mod context;
pub mod propagation;
pub mod record;
