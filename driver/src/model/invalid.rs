//! The one error of the domain's own checks: a request that can never be
//! served as asked.
//!
//! In: what a check found wrong, in words that say what to change. Out:
//! [`InvalidRequest`], which the Docker boundary answers as it is
//! (`crate::error::DriverError::Invalid`). Made by the model's parsers
//! (parents, IDs, subnets, BGP attributes) and by the API's conversion.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidRequest(pub String);

pub(crate) fn invalid(msg: impl Into<String>) -> InvalidRequest {
    InvalidRequest(msg.into())
}
