//! The driver's one error type at the Docker boundary.
//!
//! Every failure of a request becomes a [`DriverError`]; the API layer maps it
//! once to Docker's `{"Err": "..."}` body. Messages say what went wrong and,
//! where there is one, what the user should do about it.

use crate::kernel::KernelError;
use crate::model::invalid::InvalidRequest;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("{0}")]
    Invalid(#[from] InvalidRequest),
    #[error("network {0} is not known to ipvlan-bgp (it may have been created while the driver's state was lost; remove and recreate it)")]
    UnknownNetwork(String),
    #[error("endpoint {endpoint} is not known on network {network}")]
    UnknownEndpoint { network: String, endpoint: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unsupported(String),
    /// A known network whose kernel side could not be restored (its parent
    /// is missing); the driver repairs it by itself once the cause is gone.
    #[error("network {network} cannot serve right now: {reason}; ipvlan-bgp restores it by itself as soon as that is fixed")]
    Unavailable { network: String, reason: String },
    #[error("kernel: {0}")]
    Kernel(#[from] KernelError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl DriverError {
    /// Short machine-friendly class, used in logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            DriverError::Malformed(_) => "malformed",
            DriverError::Invalid(_) => "invalid",
            DriverError::UnknownNetwork(_) | DriverError::UnknownEndpoint { .. } => "unknown",
            DriverError::Conflict(_) => "conflict",
            DriverError::Unsupported(_) => "unsupported",
            DriverError::Unavailable { .. } => "unavailable",
            DriverError::Kernel(_) => "kernel",
            DriverError::Store(_) => "state",
            DriverError::Internal(_) => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_tell_what_to_do() {
        let e = DriverError::UnknownNetwork("abc".into());
        assert!(e.to_string().contains("recreate"));
        assert_eq!(e.class(), "unknown");
        let e = DriverError::from(InvalidRequest("bad option".into()));
        assert_eq!(e.to_string(), "bad option");
        assert_eq!(e.class(), "invalid");
    }
}
