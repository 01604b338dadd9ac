//! Is an endpoint's address live inside its container yet?
//!
//! In: [`Watch`]es (the endpoint's addresses, the bound, the sandbox path
//! Docker named at Join, whether to tell the segment), registered during
//! Join with the one long-lived [`Watcher`], which listens from the
//! driver's (the host's) network namespace. Out: one [`Outcome`] per watch,
//! handed to its callback on the watcher's thread: live (each address on a
//! link that is up, IPv6 past duplicate address detection: not tentative,
//! and the routes the container answers through, its default route per
//! family, there), or the bound passed and what was missing.
//!
//! Docker answers Join before it moves the link into the container and
//! configures its address; a route announced at Join reaches other hosts
//! before the container can answer. The container's namespace cannot be
//! entered at Join: dockerd mounts it at the sandbox path only once the
//! container's process exists (libnetwork's external key), and a driver in
//! another mount namespace (the managed plugin; dockerd's own in the
//! harness) never sees that mount. So the watch listens from the host's
//! namespace: an rtnetlink socket subscribed to link and address changes
//! with `NETLINK_LISTEN_ALL_NSID` also hears every namespace that has an id
//! here, and moving our link into the container gives the container's
//! namespace one (the kernel allocates it for the move's `RTM_DELLINK`,
//! before the link's first event over there). Each message comes with that
//! id; while a watch waits, the watcher keeps the links, addresses and
//! routes it hears per namespace id, stamped with when it heard them, and
//! ends a watch when its addresses are live in one namespace by what was
//! heard since the watch was registered (during Join, before Docker can
//! move the link, so no change is missed and nothing older counts). A
//! freed namespace id (`RTM_DELNSID`) forgets what was heard there; a lost
//! notification (ENOBUFS) ends every waiting watch as a fallback. One
//! socket and one thread serve every Join, however many wait at once.
//! A live outcome carries the MAC of the container's interface, so that
//! the caller can set this host's own neighbour entry for the container
//! from the host's namespace before it announces ([`crate::provision::neighbour`]).
//! After the outcome is handed over, on data planes with neighbour
//! resolution (macvlan, ipvlan L2), it sends a gratuitous ARP /
//! unsolicited NA from the container's interface
//! ([`super::neigh_probe::announce`]) when the sandbox path is a namespace
//! it can enter (the same mount namespace as dockerd's), so other
//! neighbours on the segment holding a stale or failed entry for the
//! address take the new one. That send is off the announcement's path: on
//! a thread of its own, which nothing waits for (from one macvlan in bridge
//! mode a broadcast is copied to every sibling on the parent inside the
//! send call: 17 ms median with 1,000 of them, and ENOBUFS); how it went
//! ([`Told`]) goes to the callback given to [`Watcher::start`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::real::{parse_addr, parse_link, parse_route};
use super::{ifa, neigh_probe, Addr, Link};

/// How long the watch waits before the endpoint is announced anyway.
/// dockerd configures a container's interface within milliseconds to a
/// few hundred of them after Join (it starts the container's process
/// first); an IPv6 address it adds with nodad needs no wait, one with DAD
/// about a second.
pub const BOUND: Duration = Duration::from_secs(5);

/// `RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE |
/// RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE`.
const GROUPS: u32 = 0x1 | 0x10 | 0x40 | 0x100 | 0x400;
/// `SOL_NETLINK`, `NETLINK_LISTEN_ALL_NSID` (linux/netlink.h).
const SOL_NETLINK: i32 = 270;
const NETLINK_LISTEN_ALL_NSID: i32 = 8;
/// `NSFS_MAGIC` (linux/magic.h): the file system of namespace files.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// What to watch for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// The sandbox's network namespace file (Join's `SandboxKey`): only
    /// for the gratuitous ARP / unsolicited NA.
    pub sandbox: PathBuf,
    /// The endpoint's addresses: every one must be live.
    pub addrs: Vec<IpAddr>,
    /// Routes the container needs to answer (its default route per family,
    /// which dockerd adds after the address): every one must be there.
    pub routes: Vec<IpNet>,
    pub bound: Duration,
    /// Send a gratuitous ARP / unsolicited NA once live (L2 data planes).
    pub tell_neighbours: bool,
}

/// How the watch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every address is live, `after` the watch began, on an interface
    /// with MAC `mac` (none: not an Ethernet address).
    Live {
        after: Duration,
        mac: Option<[u8; 6]>,
    },
    /// Not seen live: the bound passed (`deadline`), or the changes could
    /// not be heard (`subscription`); `detail` says more.
    Fallback {
        reason: &'static str,
        detail: String,
        after: Duration,
    },
}

/// How a live endpoint's gratuitous ARP / unsolicited NA went, off the
/// announcement's path.
#[derive(Debug)]
pub enum Told {
    /// Sent, `took` after the announcement decision.
    Sent { took: Duration },
    /// Not sent: `error` (ENOBUFS when the parent has many siblings),
    /// `took` after the announcement decision.
    Failed {
        interface: String,
        error: std::io::Error,
        took: Duration,
    },
    /// The sandbox path is not a network namespace here (the driver runs
    /// in another mount namespace than dockerd's: the managed plugin).
    Skipped,
}

/// Where [`Told`]s go.
type OnTold = Arc<dyn Fn(Told) + Send + Sync>;

/// `RTNLGRP_NSID` (linux/rtnetlink.h): namespace ids assigned and freed.
const RTNLGRP_NSID: u32 = 28;

/// One watch waiting for its addresses.
struct Pending {
    watch: Watch,
    /// When it was registered: only what is heard from then on counts (a
    /// watch is registered during Join, before Docker moves the link).
    since: Instant,
    deadline: Instant,
    done: Box<dyn FnOnce(Outcome) + Send>,
}

/// What the Join side and the watcher's thread share.
#[derive(Default)]
struct Shared {
    pending: Mutex<Vec<Pending>>,
    closed: AtomicBool,
}

/// The one long-lived watcher: a thread with one rtnetlink subscription,
/// opened in the namespace of the thread that calls [`Watcher::start`]
/// (the host's), that every Join registers its [`Watch`] with. Each
/// registered watch ends once, live or at its bound, and its callback runs
/// on the watcher's thread (it must not block for long). Dropping the
/// watcher stops the thread; watches still pending then are dropped
/// without an outcome.
pub struct Watcher {
    shared: Arc<Shared>,
    wake: UnixDatagram,
}

impl Watcher {
    /// Opens the subscription here and starts the thread; `told` hears
    /// how each gratuitous ARP / unsolicited NA went (on its own thread).
    pub fn start(told: impl Fn(Told) + Send + Sync + 'static) -> std::io::Result<Watcher> {
        let sub = subscribe()?;
        let (wake, woken) = UnixDatagram::pair()?;
        woken.set_nonblocking(true)?;
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        let told: OnTold = Arc::new(told);
        std::thread::Builder::new()
            .name("address-watch".into())
            .spawn(move || run(&theirs, &sub, &woken, &told))?;
        Ok(Watcher { shared, wake })
    }

    /// Watches for `watch` from now on; `done` gets the outcome.
    pub fn register(&self, watch: Watch, done: impl FnOnce(Outcome) + Send + 'static) {
        let since = Instant::now();
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Pending {
                deadline: since + watch.bound,
                watch,
                since,
                done: Box::new(done),
            });
        let _ = self.wake.send(&[1]);
    }

    /// Watches still waiting.
    pub fn pending(&self) -> usize {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let _ = self.wake.send(&[0]);
    }
}

/// Link, address and route changes of every namespace with an id in the
/// calling thread's network namespace, and namespace ids freed there.
fn subscribe() -> std::io::Result<Socket> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and a pointer to a c_int of the right size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            SOL_NETLINK,
            NETLINK_LISTEN_ALL_NSID,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let _ = s.set_rx_buf_sz(4 << 20);
    s.bind(&SocketAddr::new(0, GROUPS))?;
    s.add_membership(RTNLGRP_NSID)?;
    Ok(s)
}

/// What the watcher has heard, per namespace id, and when.
#[derive(Debug, Default)]
struct Seen {
    links: HashMap<(i32, u32), (Link, Instant)>,
    addrs: HashMap<(i32, IpAddr), (Addr, Instant)>,
    routes: HashMap<(i32, IpNet), Instant>,
}

impl Seen {
    fn apply(&mut self, nsid: i32, msg: RouteNetlinkMessage, at: Instant) {
        match msg {
            RouteNetlinkMessage::NewLink(l) => {
                let l = parse_link(&l);
                self.links.insert((nsid, l.index), (l, at));
            }
            RouteNetlinkMessage::DelLink(l) => {
                self.links.remove(&(nsid, l.header.index));
            }
            RouteNetlinkMessage::NewAddress(a) => {
                if let Some(a) = parse_addr(&a) {
                    self.addrs.insert((nsid, a.net.addr()), (a, at));
                }
            }
            RouteNetlinkMessage::DelAddress(a) => {
                if let Some(a) = parse_addr(&a) {
                    self.addrs.remove(&(nsid, a.net.addr()));
                }
            }
            RouteNetlinkMessage::NewRoute(r) => {
                if let Some(r) = parse_route(&r) {
                    self.routes.insert((nsid, r.route.dst), at);
                }
            }
            RouteNetlinkMessage::DelRoute(r) => {
                if let Some(r) = parse_route(&r) {
                    self.routes.remove(&(nsid, r.route.dst));
                }
            }
            _ => {}
        }
    }

    /// A namespace id was freed (its namespace is gone; the id may be
    /// given to a new one): forget what was heard there.
    fn forget(&mut self, nsid: i32) {
        self.links.retain(|k, _| k.0 != nsid);
        self.addrs.retain(|k, _| k.0 != nsid);
        self.routes.retain(|k, _| k.0 != nsid);
    }

    fn clear(&mut self) {
        *self = Seen::default();
    }

    /// The links and addresses of one namespace heard since `since`.
    fn of(&self, nsid: i32, since: Instant) -> (Vec<Link>, Vec<Addr>) {
        let links = self
            .links
            .iter()
            .filter(|(k, (_, at))| k.0 == nsid && *at >= since)
            .map(|(_, (l, _))| l.clone())
            .collect();
        let addrs = self
            .addrs
            .iter()
            .filter(|(k, (_, at))| k.0 == nsid && *at >= since)
            .map(|(_, (a, _))| *a)
            .collect();
        (links, addrs)
    }

    fn routed(&self, nsid: i32, dst: &IpNet, since: Instant) -> bool {
        self.routes
            .get(&(nsid, *dst))
            .is_some_and(|at| *at >= since)
    }

    /// The namespaces where one of `want` was heard of since `since`.
    fn namespaces(&self, want: &[IpAddr], since: Instant) -> Vec<i32> {
        let mut ids: Vec<i32> = self
            .addrs
            .iter()
            .filter(|(k, (_, at))| want.contains(&k.1) && *at >= since)
            .map(|(k, _)| k.0)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The interface `w` is live on, if it is live in some namespace.
    fn live(&self, w: &Watch, since: Instant) -> Option<Link> {
        self.namespaces(&w.addrs, since)
            .into_iter()
            .find_map(|nsid| {
                let (links, addrs) = self.of(nsid, since);
                let routed = w.routes.iter().all(|r| self.routed(nsid, r, since));
                live_on(&w.addrs, &links, &addrs)
                    .filter(|_| routed)
                    .cloned()
            })
    }

    /// What `w` still misses, for the log.
    fn missing(&self, w: &Watch, since: Instant) -> String {
        match self.namespaces(&w.addrs, since).first() {
            Some(&nsid) => {
                let (links, addrs) = self.of(nsid, since);
                let mut m = missing(&w.addrs, &links, &addrs);
                for r in w.routes.iter().filter(|r| !self.routed(nsid, r, since)) {
                    m.push_str(&format!(
                        "{}no route to {r}",
                        if m.is_empty() { "" } else { ", " }
                    ));
                }
                m
            }
            None => "no address of it appeared in any namespace".to_string(),
        }
    }
}

/// The watcher's thread: reads changes, ends the watches that are live or
/// past their bound, and sleeps until the next change, registration or
/// deadline. What it heard is kept only while a watch waits (a watch only
/// counts what was heard after its registration, so nothing older is
/// needed).
fn run(shared: &Shared, sub: &Socket, woken: &UnixDatagram, told: &OnTold) {
    let mut seen = Seen::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut lost: Option<String> = None;
    loop {
        if shared.closed.load(Ordering::SeqCst) {
            return;
        }
        while woken.recv(&mut [0u8; 16]).is_ok() {}
        loop {
            match recv(sub, &mut buf) {
                Ok(Some((nsid, n))) => {
                    let at = Instant::now();
                    each_message(&buf[..n], |m| match (nsid, m) {
                        (Some(nsid), m) => seen.apply(nsid, m, at),
                        // Our own namespace: the link is not there, but
                        // it hears which ids are freed.
                        (None, RouteNetlinkMessage::DelNsId(m)) => {
                            for a in &m.attributes {
                                if let netlink_packet_route::nsid::NsidAttribute::Id(id) = a {
                                    seen.forget(*id);
                                }
                            }
                        }
                        (None, _) => {}
                    })
                }
                Ok(None) => break,
                Err(e) => {
                    // Lost notifications: what was heard may be wrong now.
                    seen.clear();
                    lost = Some(format!("lost link and address notifications: {e}"));
                    break;
                }
            }
        }
        let now = Instant::now();
        let mut ended = Vec::new();
        let next = {
            let mut pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
            let mut i = 0;
            while i < pending.len() {
                let p = &pending[i];
                let outcome = if let Some(detail) = &lost {
                    Some((
                        Outcome::Fallback {
                            reason: "subscription",
                            detail: detail.clone(),
                            after: now - p.since,
                        },
                        None,
                    ))
                } else if let Some(iface) = seen.live(&p.watch, p.since) {
                    tracing::debug!(addrs = ?p.watch.addrs, mono_us = crate::clock::mono_us(), "address live");
                    Some((
                        Outcome::Live {
                            after: now - p.since,
                            mac: <[u8; 6]>::try_from(iface.mac.as_slice()).ok(),
                        },
                        Some(iface),
                    ))
                } else if now >= p.deadline {
                    Some((
                        Outcome::Fallback {
                            reason: "deadline",
                            detail: format!(
                                "not live within {:?}: {}",
                                p.watch.bound,
                                seen.missing(&p.watch, p.since)
                            ),
                            after: now - p.since,
                        },
                        None,
                    ))
                } else {
                    None
                };
                match outcome {
                    Some((o, iface)) => ended.push((pending.swap_remove(i), o, iface)),
                    None => i += 1,
                }
            }
            if pending.is_empty() {
                seen.clear();
            }
            pending.iter().map(|p| p.deadline).min()
        };
        lost = None;
        for (p, outcome, iface) in ended {
            let decided = Instant::now();
            // The announcement first; the segment hears afterwards.
            (p.done)(outcome);
            if let (Some(iface), true) = (iface, p.watch.tell_neighbours) {
                tell(p.watch.sandbox, iface, p.watch.addrs, decided, told.clone());
            }
        }
        let timeout = next.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        poll_two(sub.as_raw_fd(), woken.as_raw_fd(), timeout);
    }
}

/// One datagram, if one is waiting: the namespace id it came with (none:
/// the socket's own namespace) and its length.
fn recv(s: &Socket, buf: &mut [u8]) -> std::io::Result<Option<(Option<i32>, usize)>> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: a zeroed msghdr pointing at a live iovec and control buffer;
    // recvmsg writes within their lengths, and the cmsg walk stays within
    // msg_controllen as the CMSG macros guarantee.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        let n = libc::recvmsg(s.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        let mut nsid = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == SOL_NETLINK && (*c).cmsg_type == NETLINK_LISTEN_ALL_NSID {
                nsid = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>()));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Ok(Some((nsid, n as usize)))
    }
}

/// Hands each rtnetlink message of a datagram to `f`.
fn each_message(buf: &[u8], mut f: impl FnMut(RouteNetlinkMessage)) {
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or([0; 4])) as usize;
        if len < 16 || off + len > buf.len() {
            return;
        }
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..off + len]) {
            if let NetlinkPayload::InnerMessage(inner) = m.payload {
                f(inner);
            }
        }
        off += (len + 3) & !3;
    }
}

/// Sleeps until either descriptor is readable or `timeout` passed.
fn poll_two(a: i32, b: i32, timeout: Duration) {
    let mut pfd = [a, b].map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: two valid pollfds for the duration of the call.
    unsafe { libc::poll(pfd.as_mut_ptr(), 2, ms) };
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

fn is_nsfs(f: &std::fs::File) -> bool {
    // SAFETY: a zeroed statfs filled by fstatfs on a valid descriptor.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) };
    r == 0 && st.f_type as i64 == NSFS_MAGIC
}

/// The gratuitous ARP / unsolicited NA from the container's interface, on
/// a thread of its own that enters its namespace (when the sandbox path is
/// one here); nothing waits for it, and a failure costs only the segment's
/// head start. `decided`: when the announcement was decided.
fn tell(sandbox: PathBuf, iface: Link, addrs: Vec<IpAddr>, decided: Instant, told: OnTold) {
    let Ok(mac) = <[u8; 6]>::try_from(iface.mac.as_slice()) else {
        return;
    };
    off_path(told, move || {
        let ns = match std::fs::File::open(&sandbox) {
            Ok(f) if is_nsfs(&f) => f,
            _ => return Told::Skipped,
        };
        let sent = nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)
            .and_then(|()| neigh_probe::announce(iface.index, mac, &addrs));
        let took = decided.elapsed();
        match sent {
            // The socket closes here, on this thread (an RCU grace period).
            Ok(_socket) => Told::Sent { took },
            Err(error) => Told::Failed {
                interface: iface.name,
                error,
                took,
            },
        }
    });
}

/// Runs `send` on a thread of its own (it may enter another namespace) and
/// returns at once; how it went goes to `told`, from that thread.
fn off_path(told: OnTold, send: impl FnOnce() -> Told + Send + 'static) {
    let theirs = told.clone();
    let spawned = std::thread::Builder::new()
        .name("neighbours".into())
        .spawn(move || theirs(send()));
    if let Err(error) = spawned {
        told(Told::Failed {
            interface: String::new(),
            error,
            took: Duration::ZERO,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::real::Kernel;
    use crate::kernel::{LinkKind, NewLink};

    fn link(index: u32, up: bool) -> Link {
        Link {
            index,
            name: format!("eth{index}"),
            kind: None,
            parent: None,
            up,
            noarp: false,
            running: up,
            mtu: 1500,
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

    /// The announcement does not wait for the neighbour frames:
    /// `off_path` returns while the sender is still blocked (as a send to
    /// a parent with 1,000 siblings is), and how it went arrives later.
    #[test]
    fn the_frames_go_out_off_the_announcements_path() {
        use std::sync::mpsc::channel;
        let (release, released) = channel::<()>();
        let (told_tx, told_rx) = channel();
        let told_tx = Mutex::new(told_tx);
        let told: OnTold = Arc::new(move |t| {
            let _ = told_tx.lock().unwrap().send(t);
        });
        off_path(told.clone(), move || {
            released.recv_timeout(Duration::from_secs(10)).unwrap();
            Told::Sent {
                took: Duration::from_millis(17),
            }
        });
        // Returned with the sender still blocked: nothing told yet.
        assert!(told_rx.recv_timeout(Duration::from_millis(50)).is_err());
        release.send(()).unwrap();
        let t = told_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            matches!(t, Told::Sent { took } if took == Duration::from_millis(17)),
            "{t:?}"
        );
        off_path(told, || Told::Failed {
            interface: "eth0".into(),
            error: std::io::Error::from_raw_os_error(libc::ENOBUFS),
            took: Duration::ZERO,
        });
        let t = told_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            matches!(&t, Told::Failed { error, .. } if error.raw_os_error() == Some(libc::ENOBUFS)),
            "{t:?}"
        );
    }

    #[test]
    fn live_means_present_up_and_past_dad() {
        let want: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
        let up = [link(1, true), link(2, true)];
        let down = [link(1, true), link(2, false)];
        let v4 = addr(2, "10.0.0.2/24", ifa::PERMANENT);
        let v6 = addr(2, "fd00::2/64", ifa::PERMANENT);
        let tentative = addr(2, "fd00::2/64", ifa::PERMANENT | ifa::TENTATIVE);
        let on = |links: &[Link], addrs: &[Addr]| live_on(&want, links, addrs).map(|l| l.index);
        assert_eq!(on(&up, &[v4, v6]), Some(2));
        assert_eq!(on(&down, &[v4, v6]), None);
        assert_eq!(on(&up, &[v4]), None);
        assert_eq!(on(&up, &[v4, tentative]), None);
        assert_eq!(missing(&want, &up, &[v4, tentative]), "fd00::2 tentative");
        assert_eq!(
            missing(&want, &down, &[v4]),
            "10.0.0.2 on a link that is down, fd00::2 absent"
        );
    }

    /// Runs `f` on a thread in a network namespace of its own.
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    /// Real namespaces (the tests run as root): a "host" with a veth pair
    /// whose one end goes into a "container", where it gets the address
    /// and comes up after the watch began: seen live from the host. A watch
    /// for an address that never comes falls back at the bound, and so
    /// does one registered after the address was already live (nothing
    /// heard before a watch began counts). One watcher serves them all.
    #[test]
    fn an_address_configured_in_the_container_is_heard_from_the_host() {
        in_new_netns(|| {
            let mut host = Kernel::open().unwrap();
            host.create_link(&NewLink {
                name: "awa".into(),
                kind: LinkKind::Veth,
                parent: None,
                mac: None,
                alias: String::new(),
                peer: Some("awb".into()),
                mtu: None,
            })
            .unwrap();
            let b = host.link("awb").unwrap().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let watch = |addr: &str, bound| Watch {
                sandbox: "/nonexistent".into(),
                addrs: vec![addr.parse().unwrap()],
                routes: vec!["0.0.0.0/0".parse().unwrap()],
                bound,
                tell_neighbours: false,
            };
            let tx2 = tx.clone();
            // One watcher for both watches, started in the "host".
            let watcher = Watcher::start(|_| {}).unwrap();
            // Waits throughout, so the watcher keeps what it hears.
            let (keep_tx, keep_rx) = std::sync::mpsc::channel();
            watcher.register(watch("192.0.2.11", Duration::from_secs(3)), move |o| {
                keep_tx.send(o).unwrap()
            });
            watcher.register(watch("192.0.2.9", Duration::from_secs(5)), move |o| {
                tx2.send(o).unwrap()
            });
            watcher.register(watch("192.0.2.10", Duration::from_millis(300)), move |o| {
                tx.send(o).unwrap()
            });
            // The container: its own namespace, held by a thread.
            let (path_tx, path_rx) = std::sync::mpsc::channel();
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let container = std::thread::spawn(move || {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                let tid = nix::unistd::gettid();
                path_tx
                    .send(format!("/proc/{}/task/{tid}/ns/net", std::process::id()))
                    .unwrap();
                go_rx.recv().unwrap();
                let mut k = Kernel::open().unwrap();
                let l = k.link("awb").unwrap().unwrap();
                k.add_address(l.index, "192.0.2.9/24".parse().unwrap())
                    .unwrap();
                k.set_up(l.index, true).unwrap();
                k.replace_routes(&[crate::kernel::Route {
                    dst: "0.0.0.0/0".parse().unwrap(),
                    via: Some("192.0.2.1".parse().unwrap()),
                    oif: Some(l.index),
                    protocol: 3,
                }
                .into()])
                    .pop()
                    .unwrap()
                    .unwrap();
                go_rx.recv().ok();
            });
            let ns = std::fs::File::open(path_rx.recv().unwrap()).unwrap();
            host.set_name_and_netns(b.index, None, Some(ns.as_raw_fd()))
                .unwrap();
            go_tx.send(()).unwrap();
            let mut outcomes = vec![
                rx.recv_timeout(Duration::from_secs(5)).unwrap(),
                rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            ];
            assert_eq!(watcher.pending(), 1);
            // The address is live, but nothing was heard of it since this
            // watch began: only what follows a Join counts.
            let (tx, rx) = std::sync::mpsc::channel();
            watcher.register(watch("192.0.2.9", Duration::from_millis(300)), move |o| {
                tx.send(o).unwrap()
            });
            outcomes.push(rx.recv_timeout(Duration::from_secs(5)).unwrap());
            outcomes.push(keep_rx.recv_timeout(Duration::from_secs(5)).unwrap());
            assert_eq!(watcher.pending(), 0);
            go_tx.send(()).unwrap();
            container.join().unwrap();
            outcomes.sort_by_key(|o| matches!(o, Outcome::Fallback { .. }));
            assert!(
                matches!(outcomes[0], Outcome::Live { mac: Some(m), .. } if m[..] == b.mac[..]),
                "live, with the container interface's MAC {:?}: {outcomes:?}",
                b.mac
            );
            for o in &outcomes[1..] {
                assert!(
                    matches!(o, Outcome::Fallback { reason: "deadline", detail, .. } if detail.contains("no address of it appeared")),
                    "{outcomes:?}"
                );
            }
        })
    }
}
