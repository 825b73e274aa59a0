//! The recorder.
pub mod data;
