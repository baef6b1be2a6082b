//! Contract suites: what every adapter of a port must do. Each suite takes a
//! [`crate::Backend`] and panics on the first broken promise.

pub mod accounts;
pub mod blob;
pub mod index;
pub mod pipeline;
pub mod queue;
pub mod sweep;
