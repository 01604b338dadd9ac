//! Test helpers for the learner's rooms: a learner with one parent and
//! one pool, paths from a peer, and what a change's routes go through.

pub(super) use std::net::IpAddr;
pub(super) use std::sync::Arc;
pub(super) use std::time::Duration;

pub(super) use ipnet::IpNet;

pub(super) use super::{Learner, Limits, SAMPLE};
pub(super) use crate::bgp::gobgp::LearnedPath;
use crate::bgp::policy::ParentInfo;
pub(super) use crate::bgp::policy::PolicyInputs;
pub(super) use crate::kernel::{MultiRoute, NextHop, Route};
pub(super) use crate::metrics::Metrics;
pub(super) use crate::rib::installer::Change;

pub(super) fn n(s: &str) -> IpNet {
    s.parse().unwrap()
}

pub(super) fn inputs() -> PolicyInputs {
    PolicyInputs {
        pools: vec![n("10.1.0.0/16")],
        network_subnets: vec![n("10.1.1.0/24")],
        connected: vec![n("192.0.2.0/24")],
        own_addresses: ["192.0.2.1".parse().unwrap()].into(),
        parents: vec![ParentInfo {
            name: "eth1".into(),
            index: 3,
            nets: vec![n("192.0.2.0/24")],
        }],
        ..PolicyInputs::default()
    }
}

pub(super) fn path(prefix: &str, nh: &str, withdraw: bool) -> LearnedPath {
    LearnedPath {
        prefix: n(prefix),
        next_hop: nh.parse().ok(),
        withdraw,
        peer: Some("192.0.2.2".into()),
        as_path: vec![],
    }
}

pub(super) fn from_peer(prefix: &str, nh: &str, withdraw: bool) -> LearnedPath {
    LearnedPath {
        peer: Some(nh.into()),
        ..path(prefix, nh, withdraw)
    }
}

pub(super) fn hops_of(c: &[Change]) -> Vec<Vec<Option<IpAddr>>> {
    c.iter()
        .map(|c| match c {
            Change::Set(r) => r.hops.iter().map(|h| h.via).collect(),
            Change::Remove(_) => Vec::new(),
        })
        .collect()
}

pub(super) fn ips(v: &[&str]) -> Vec<Option<IpAddr>> {
    v.iter().map(|a| a.parse().ok()).collect()
}

/// How many paths the learner refused for `why`, if it counted any.
pub(super) fn rejected(l: &Learner, why: &str) -> Option<u64> {
    l.metrics.bgp_snapshot().rejected.get(why).copied()
}

pub(super) fn learner() -> Learner {
    let mut l = Learner::new(
        73,
        Limits::installing(2),
        Duration::from_secs(10),
        Arc::new(Metrics::default()),
    );
    assert!(l.set_inputs(inputs()).is_empty());
    l
}
