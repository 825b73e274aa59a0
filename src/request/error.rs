//! The message of an error the layers record on a span.

use std::any::Any;
use std::error::Error;
use std::fmt::Display;

/// The message of an error the layers record: its `Display`, followed by its sources when
/// the type is known to be a `std::error::Error`.
///
/// The layers accept any error that is `Display` (tower's `BoxError` is not a
/// `std::error::Error`), and stable Rust cannot ask "is it also an `Error`?" of a generic
/// type; so the boxed errors of tower stacks and the concrete errors of the clients people
/// wrap are recognized by type, and their causes kept (`client error (Connect): tcp connect
/// error: Connection refused`).
pub(crate) fn error_message<E: Display + 'static>(error: &E) -> String {
    match as_std_error(error) {
        Some(error) => crate::record::error_chain(error),
        None => error.to_string(),
    }
}

fn as_std_error<E: 'static>(error: &E) -> Option<&(dyn Error + 'static)> {
    let any: &dyn Any = error;
    macro_rules! known {
        ($($ty:ty),* $(,)?) => {$(
            if let Some(error) = any.downcast_ref::<$ty>() {
                return Some(error);
            }
        )*};
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error + Send + Sync>>() {
        return Some(&**boxed);
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error + Send>>() {
        return Some(&**boxed);
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error>>() {
        return Some(&**boxed);
    }
    known!(std::io::Error);
    #[cfg(feature = "hyper-util")]
    known!(hyper_util::client::legacy::Error, hyper::Error);
    #[cfg(feature = "grpc")]
    known!(tonic::transport::Error, tonic::Status);
    #[cfg(feature = "reqwest")]
    known!(reqwest::Error, reqwest_middleware::Error);
    #[cfg(feature = "otel")]
    known!(opentelemetry_sdk::error::OTelSdkError);
    let _ = any;
    None
}
