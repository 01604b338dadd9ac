//! Is an endpoint's address live inside its container yet?
//!
//! In: a [`Watch`]: the sandbox's network namespace (the path Docker names
//! at Join), the endpoint's addresses, the bound, and whether to tell the
//! segment. Out: one [`Outcome`], handed to a callback from a thread of its
//! own ([`spawn`]): live (each address is on an interface that is up, IPv6
//! past duplicate address detection: not tentative), or the bound passed
//! (or the namespace could not be entered) and why.
//!
//! Docker answers Join before it moves the link into the container and
//! configures its address; a route announced at Join reaches other hosts
//! before the container can answer. The watch enters the namespace on its
//! own short-lived thread (never one of the tokio workers that answer
//! Docker: `setns` changes the calling thread), subscribes to its link and
//! address changes (rtnetlink groups, opened before the first look so no
//! change slips between them), looks at its links and addresses, and looks
//! again after each change until all addresses are live or the bound has
//! passed. When they are, and the data plane has neighbour resolution
//! (macvlan, ipvlan L2), it sends a gratuitous ARP / unsolicited NA from
//! that interface ([`super::neigh_probe::announce`]), so a neighbour table
//! holding a stale or failed entry for the address takes the new one.

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::real::Kernel;
use super::{ifa, neigh_probe, Addr, Link};

/// How long the watch waits before the endpoint is announced anyway.
/// dockerd configures a container's interface within milliseconds of Join
/// (a few hundred under heavy load); an IPv6 address it adds with nodad
/// needs no wait, one with DAD about a second.
pub const BOUND: Duration = Duration::from_secs(5);

/// `RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR`.
const GROUPS: u32 = 0x1 | 0x10 | 0x100;

/// What to watch for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// The sandbox's network namespace file (Join's `SandboxKey`).
    pub sandbox: PathBuf,
    /// The endpoint's addresses: every one must be live.
    pub addrs: Vec<IpAddr>,
    pub bound: Duration,
    /// Send a gratuitous ARP / unsolicited NA once live (L2 data planes).
    pub tell_neighbours: bool,
}

/// How the watch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every address is live, `after` the watch began.
    Live { after: Duration },
    /// Not seen live: the bound passed, or the namespace could not be
    /// watched (`reason` is a metrics label, `detail` says more).
    Fallback {
        reason: &'static str,
        detail: String,
        after: Duration,
    },
}

/// Watches on a thread of its own and hands the outcome to `done` there.
pub fn spawn(watch: Watch, done: impl FnOnce(Outcome) + Send + 'static) {
    let started = Instant::now();
    let spawned = std::thread::Builder::new()
        .name("address-watch".into())
        .spawn(move || done(run(&watch, started)));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to watch an endpoint's address");
    }
}

/// The watch itself; enters the namespace, so only on a throwaway thread.
fn run(w: &Watch, started: Instant) -> Outcome {
    let fallback = |reason: &'static str, detail: String| Outcome::Fallback {
        reason,
        detail,
        after: started.elapsed(),
    };
    let deadline = started + w.bound;
    let ns = match std::fs::File::open(&w.sandbox) {
        Ok(f) => f,
        Err(e) => {
            return fallback(
                "namespace",
                format!("cannot open {}: {e}", w.sandbox.display()),
            )
        }
    };
    if let Err(e) = nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET) {
        return fallback(
            "namespace",
            format!("cannot enter {}: {e}", w.sandbox.display()),
        );
    }
    // Subscribed before the first look: a change between them wakes us.
    let events = match subscribe() {
        Ok(s) => s,
        Err(e) => return fallback("namespace", format!("cannot subscribe to changes: {e}")),
    };
    let mut kernel = match Kernel::open() {
        Ok(k) => k,
        Err(e) => return fallback("namespace", format!("cannot open netlink: {e}")),
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let seen = kernel
            .links()
            .and_then(|links| Ok((links, kernel.addresses()?)));
        let (links, addrs) = match seen {
            Ok(s) => s,
            Err(e) => return fallback("namespace", format!("cannot read the namespace: {e}")),
        };
        if let Some(iface) = live_on(&w.addrs, &links, &addrs) {
            if w.tell_neighbours {
                tell(iface, &w.addrs);
            }
            return Outcome::Live {
                after: started.elapsed(),
            };
        }
        let now = Instant::now();
        if now >= deadline {
            return fallback(
                "deadline",
                format!(
                    "not live within {:?}: {}",
                    w.bound,
                    missing(&w.addrs, &links, &addrs)
                ),
            );
        }
        wait(&events, deadline - now);
        // Drain what came: the next look reads the whole state anyway.
        while events
            .recv(&mut &mut buf[..], libc::MSG_DONTWAIT)
            .is_ok_and(|n| n > 0)
        {}
    }
}

fn subscribe() -> std::io::Result<Socket> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    s.bind(&SocketAddr::new(0, GROUPS))?;
    Ok(s)
}

fn wait(s: &Socket, timeout: Duration) {
    let mut pfd = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut pfd, 1, ms) };
}

/// Whether an address is usable: on a link that is up, and (IPv6) past
/// duplicate address detection.
fn usable(a: &Addr, links: &[Link]) -> bool {
    let up = links.iter().any(|l| l.index == a.index && l.up);
    up && a.flags & (ifa::TENTATIVE | ifa::DADFAILED) == 0
}

/// The interface carrying the addresses, when every one of them is live.
fn live_on<'a>(want: &[IpAddr], links: &'a [Link], addrs: &[Addr]) -> Option<&'a Link> {
    let mut iface = None;
    for w in want {
        let a = addrs
            .iter()
            .find(|a| a.net.addr() == *w && usable(a, links))?;
        iface = links.iter().find(|l| l.index == a.index);
    }
    iface
}

/// What is not live yet, for the log.
fn missing(want: &[IpAddr], links: &[Link], addrs: &[Addr]) -> String {
    want.iter()
        .filter_map(|w| match addrs.iter().find(|a| a.net.addr() == *w) {
            None => Some(format!("{w} absent")),
            Some(a) if a.flags & ifa::DADFAILED != 0 => Some(format!("{w} failed DAD")),
            Some(a) if a.flags & ifa::TENTATIVE != 0 => Some(format!("{w} tentative")),
            Some(a) if !usable(a, links) => Some(format!("{w} on a link that is down")),
            Some(_) => None,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The gratuitous ARP / unsolicited NA; a failure costs only the speed-up.
fn tell(iface: &Link, addrs: &[IpAddr]) {
    let Ok(mac) = <[u8; 6]>::try_from(iface.mac.as_slice()) else {
        return;
    };
    if let Err(e) = neigh_probe::announce(iface.index, mac, addrs) {
        tracing::warn!(interface = %iface.name, error = %e, "cannot send the gratuitous ARP / unsolicited NA from the container");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, up: bool) -> Link {
        Link {
            index,
            name: format!("eth{index}"),
            kind: None,
            parent: None,
            up,
            mac: vec![2, 0, 0, 0, 0, index as u8],
            alias: None,
        }
    }

    fn addr(index: u32, net: &str, flags: u32) -> Addr {
        Addr {
            index,
            net: net.parse().unwrap(),
            flags,
        }
    }

    #[test]
    fn live_means_present_up_and_past_dad() {
        let want: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
        let up = [link(1, true), link(2, true)];
        let down = [link(1, true), link(2, false)];
        let v4 = addr(2, "10.0.0.2/24", ifa::PERMANENT);
        let v6 = addr(2, "fd00::2/64", ifa::PERMANENT);
        let tentative = addr(2, "fd00::2/64", ifa::PERMANENT | ifa::TENTATIVE);
        assert_eq!(
            live_on(&want, &up, &[v4.clone(), v6.clone()]).map(|l| l.index),
            Some(2)
        );
        assert!(live_on(&want, &down, &[v4.clone(), v6.clone()]).is_none());
        assert!(live_on(&want, &up, &[v4.clone()]).is_none());
        assert!(live_on(&want, &up, &[v4.clone(), tentative.clone()]).is_none());
        assert_eq!(
            missing(&want, &up, &[v4.clone(), tentative]),
            "fd00::2 tentative"
        );
        assert_eq!(
            missing(&want, &down, &[v4]),
            "10.0.0.2 on a link that is down, fd00::2 absent"
        );
    }

    #[test]
    fn a_sandbox_that_cannot_be_opened_falls_back_at_once() {
        let w = Watch {
            sandbox: "/nonexistent/netns/x".into(),
            addrs: vec!["10.0.0.2".parse().unwrap()],
            bound: Duration::from_secs(5),
            tell_neighbours: false,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        spawn(w, move |o| tx.send(o).unwrap());
        let o = rx.recv_timeout(Duration::from_secs(2)).unwrap();
        assert!(
            matches!(
                o,
                Outcome::Fallback {
                    reason: "namespace",
                    ..
                }
            ),
            "{o:?}"
        );
    }
}
