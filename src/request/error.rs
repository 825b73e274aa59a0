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

/// The name of an error's type, for `exception.type`: the type itself, or for a boxed error
/// (tower's `BoxError`), the type inside when it is one the layers know. `None` for another
/// boxed error: the box's own name (`Box<dyn Error + Send + Sync>`) says nothing of it, and
/// stable Rust cannot name the type inside.
pub(crate) fn error_type_name<E: 'static>(error: &E) -> Option<&'static str> {
    match boxed(error) {
        Some(inner) => known_type_name(inner),
        None => Some(std::any::type_name::<E>()),
    }
}

/// `error.type` of an error: [`error_type_name`], else `_OTHER`, the conventions' fallback.
pub(crate) fn error_type<E: 'static>(error: &E) -> &'static str {
    error_type_name(error).unwrap_or("_OTHER")
}

fn boxed<E: 'static>(error: &E) -> Option<&(dyn Error + 'static)> {
    let any: &dyn Any = error;
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error + Send + Sync>>() {
        return Some(&**boxed);
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error + Send>>() {
        return Some(&**boxed);
    }
    any.downcast_ref::<Box<dyn Error>>().map(|boxed| &**boxed)
}

/// Calls `$known!(types…)` with the errors of the I/O, HTTP and gRPC crates that tower
/// stacks box and that the clients people wrap return: the one list both lookups below use.
macro_rules! with_known_errors {
    ($known:ident) => {
        $known!(std::io::Error, http::Error);
        #[cfg(feature = "axum")]
        $known!(axum::Error);
        #[cfg(feature = "hyper-util")]
        $known!(hyper_util::client::legacy::Error, hyper::Error);
        #[cfg(feature = "grpc")]
        $known!(tonic::transport::Error, tonic::Status);
        #[cfg(feature = "reqwest")]
        $known!(reqwest::Error, reqwest_middleware::Error);
        #[cfg(feature = "otel")]
        $known!(opentelemetry_sdk::error::OTelSdkError);
    };
}

fn known_type_name(error: &(dyn Error + 'static)) -> Option<&'static str> {
    macro_rules! known {
        ($($ty:ty),* $(,)?) => {$(
            if error.is::<$ty>() {
                return Some(std::any::type_name::<$ty>());
            }
        )*};
    }
    with_known_errors!(known);
    None
}

fn as_std_error<E: 'static>(error: &E) -> Option<&(dyn Error + 'static)> {
    if let Some(inner) = boxed(error) {
        return Some(inner);
    }
    let any: &dyn Any = error;
    macro_rules! known {
        ($($ty:ty),* $(,)?) => {$(
            if let Some(error) = any.downcast_ref::<$ty>() {
                return Some(error);
            }
        )*};
    }
    with_known_errors!(known);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Custom;

    impl std::fmt::Display for Custom {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("custom")
        }
    }

    impl Error for Custom {}

    type BoxError = Box<dyn Error + Send + Sync>;

    #[test]
    fn a_boxed_error_is_named_by_the_known_type_inside_else_other() {
        let io: BoxError = Box::new(std::io::Error::other("disk"));
        assert_eq!(error_type_name(&io), Some("std::io::error::Error"));
        assert_eq!(error_type(&io), "std::io::error::Error");
        let custom: BoxError = Box::new(Custom);
        assert_eq!(error_type_name(&custom), None);
        assert_eq!(error_type(&custom), "_OTHER");
        let local: Box<dyn Error> = Box::new(Custom);
        assert_eq!(error_type(&local), "_OTHER");
        // A concrete type names itself.
        assert_eq!(error_type(&Custom), std::any::type_name::<Custom>());
        assert_eq!(error_message(&custom), "custom");
    }
}
