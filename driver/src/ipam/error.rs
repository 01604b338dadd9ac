//! The IPAM's one error type: what failed, in words an operator can act
//! on. In: failures of the store and refusals of `blocks.rs`, `alloc.rs`
//! and `mod.rs`. Out: [`IpamError`], whose text the api (phase 2) sends to
//! Docker as `{"Err": ...}` with HTTP 500 (dockerd 20.10 drops the text of
//! an IPAM error answered with 200).

use std::net::IpAddr;

use ipnet::IpNet;

use super::store::StoreError;

/// What failed, in words an operator can act on. Mapped once to Docker's
/// `{"Err": ...}` by the api (phase 2).
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("{op} needs etcd, and {source}. {}", advice(source))]
    Etcd {
        op: &'static str,
        #[source]
        source: StoreError,
    },
    #[error("{} is in block {block}, which host {host} holds: only that host hands out its addresses; leave the address out, pick one in a block this host holds or a free block, or run the container on {host}", addr.map_or_else(|| "the address".to_string(), |a| a.to_string()))]
    BlockHeld {
        block: IpNet,
        host: String,
        addr: Option<IpAddr>,
    },
    #[error("{addr} is already in use on this host")]
    AddressInUse { addr: IpAddr },
    #[error("{addr} is not in pool {pool}")]
    OutsidePool { addr: IpAddr, pool: IpNet },
    #[error("{addr} is the network or broadcast address of pool {pool} and is never handed out")]
    Reserved { addr: IpAddr, pool: IpNet },
    #[error("pool {pool} has no free block left; make the pool bigger (a new network with a larger subnet) or free the blocks of dead hosts (ipvlan-bgp ipam release-host HOST)")]
    PoolExhausted { pool: IpNet },
    #[error("pool {pool} already exists with blocks of /{existing}, not /{wanted}; leave the block size out or use the same one on every host")]
    PoolConflict {
        pool: IpNet,
        existing: u8,
        wanted: u8,
    },
    #[error("pool {pool} overlaps pool {other}, which already exists; use {other} itself or a subnet outside it")]
    PoolOverlap { pool: IpNet, other: IpNet },
    #[error("pool {pool} is not known on this host (Docker asks for the pool first: RequestPool)")]
    UnknownPool { pool: IpNet },
    #[error("host id {host} is registered in etcd by another driver instance: two hosts with one id would hand out the same addresses. Give this host its own id, or, if it replaces a dead host, run `ipvlan-bgp ipam release-host {host}` first")]
    HostIdTaken { host: String },
    #[error("etcd is busy: {0}; try again")]
    Contention(String),
    #[error("etcd key {key} holds something this driver cannot read ({reason}); was it written by hand or by another version?")]
    Corrupt { key: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("IPAM state file: {0}; check the driver's state directory (disk full? permissions?)")]
    Local(String),
}

/// What to do about a store failure.
fn advice(e: &StoreError) -> &'static str {
    match e {
        StoreError::Timeout { .. } => "Running containers and new addresses from blocks this host already holds are not affected; bring a majority of the etcd members back (check: etcdctl endpoint health)",
        StoreError::Failed(_) => "Check the driver's etcd settings (endpoints, user and password, CA and client certificate) and that its etcd role may read and write the IPAM's key prefix",
        StoreError::Config(_) => "Fix the driver's etcd settings",
    }
}

impl IpamError {
    /// Wraps a store failure with what we were doing.
    pub fn etcd(op: &'static str) -> impl Fn(StoreError) -> IpamError {
        move |source| IpamError::Etcd { op, source }
    }
}
