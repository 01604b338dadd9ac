//! Test helpers for the installer's rooms: an installer over the fake
//! table, our routes and other owners', kernel events.

pub(super) use std::net::IpAddr;
pub(super) use std::sync::{Arc, Mutex};
pub(super) use std::time::{Duration, Instant};

pub(super) use ipnet::IpNet;

pub(super) use super::{everywhere, Change, Installer, FULL_RECONCILE, RETRY};
pub(super) use crate::kernel::{MultiRoute, NextHop, Route, TableRoute};
pub(super) use crate::metrics::{DumpReason, Metrics};
pub(super) use crate::rib::fake::{FakeTable, SharedTable};
pub(super) use crate::rib::watch::KernelEvent;

pub(super) const PROTO: u8 = 73;

pub(super) fn n(s: &str) -> IpNet {
    s.parse().unwrap()
}

pub(super) fn ours(dst: &str, via: &str) -> Route {
    Route {
        dst: n(dst),
        via: via.parse().ok(),
        oif: Some(3),
        protocol: PROTO,
    }
}

pub(super) fn static_route(dst: &str) -> Route {
    Route {
        dst: n(dst),
        via: "192.0.2.99".parse().ok(),
        oif: Some(3),
        protocol: 4,
    }
}

pub(super) fn installer(fake: FakeTable) -> (Installer<FakeTable>, Instant) {
    let t0 = Instant::now();
    let (i, _) =
        Installer::new(fake, PROTO, everywhere(), Arc::new(Metrics::default()), t0).unwrap();
    (i, t0)
}

/// The kernel tells the installer that `route` was added or deleted.
pub(super) fn route_event(
    i: &mut Installer<FakeTable>,
    route: TableRoute,
    deleted: bool,
    now: Instant,
) {
    i.on_event(KernelEvent::Route { route, deleted }, now);
}

pub(super) fn status(i: &Installer<FakeTable>) -> crate::metrics::BgpStatus {
    i.metrics.bgp_snapshot()
}

pub(super) fn static6(dst: &str, via: &str) -> Route {
    Route {
        dst: n(dst),
        via: via.parse().ok(),
        oif: Some(3),
        protocol: 4,
    }
}

pub(super) fn multi(dst: &str, vias: &[&str]) -> MultiRoute {
    MultiRoute::new(
        n(dst),
        vias.iter()
            .map(|v| NextHop {
                via: v.parse().ok(),
                oif: Some(3),
            })
            .collect(),
        PROTO,
    )
}
