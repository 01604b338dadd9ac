//! Kernel change notifications for the installer: links and routes.
//!
//! In: a netlink socket subscribed to RTNLGRP_LINK, RTNLGRP_IPV4_ROUTE and
//! RTNLGRP_IPV6_ROUTE (its own socket: the installer's write socket stays
//! request/response only). Out: [`KernelEvent`]s handed to a sink on a
//! thread of its own. Why links: `ip link set PARENT down` flushes the IPv4
//! routes through it *without* an RTM_DELROUTE (facts/host.md), so the only
//! sign is the link's state; a change of IFF_UP/IFF_RUNNING or a link
//! deletion is reported. (IPv6 routes through it do get an RTM_DELROUTE
//! each; the link event covers both.) Route events (a route deleted or added by hand) are
//! reported as hints; the installer confirms with a dump. A lost notification
//! (ENOBUFS) is reported as [`KernelEvent::Overrun`].

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::LinkFlags;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::kernel::netlink::set_int_option;
use crate::kernel::real::parse_route;
use crate::kernel::TableRoute;

const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV6_ROUTE: u32 = 0x400;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    /// A link appeared, changed IFF_UP/IFF_RUNNING, or went away.
    Link {
        index: u32,
        up: bool,
        running: bool,
        deleted: bool,
    },
    /// A main-table route was added/replaced or deleted.
    Route { route: TableRoute, deleted: bool },
    /// Notifications were lost: nothing can be assumed.
    Overrun,
}

/// An open, subscribed notification socket.
pub struct RouteWatch {
    sock: Socket,
}

impl RouteWatch {
    /// Subscribes in the caller's network namespace.
    pub fn open() -> io::Result<RouteWatch> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind(&SocketAddr::new(
            0,
            RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE,
        ))?;
        // Our own installs echo here; a large buffer rides out a 100k batch.
        set_int_option(&sock, libc::SO_RCVBUFFORCE, 16 << 20);
        // A read timeout lets the thread notice that nobody listens any more.
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: valid fd, pointer to a timeval of the right size.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        Ok(RouteWatch { sock })
    }

    /// Subscribes inside the network namespace at `path` (for the harness's
    /// benchmarks, see [`crate::kernel::netlink::in_netns`]).
    #[cfg(any(test, feature = "test-support"))]
    pub fn open_in_netns(path: &std::path::Path) -> io::Result<RouteWatch> {
        crate::kernel::netlink::in_netns(path, std::convert::identity, RouteWatch::open)
    }

    /// Runs on its own thread until `sink` returns false. The sink also gets
    /// `None` about once a second when nothing happens, so the thread notices
    /// when nobody listens any more.
    pub fn spawn(
        self,
        mut sink: impl FnMut(Option<KernelEvent>) -> bool + Send + 'static,
    ) -> io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("route-watch".into())
            .spawn(move || self.run(&mut sink))
    }

    fn run(self, sink: &mut dyn FnMut(Option<KernelEvent>) -> bool) {
        let mut buf = vec![0u8; 1 << 20];
        let mut links: HashMap<u32, (bool, bool)> = HashMap::new();
        loop {
            let n = match self.sock.recv(&mut &mut buf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    // Idle: is anyone still listening?
                    if !sink(None) {
                        return;
                    }
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    if !sink(Some(KernelEvent::Overrun)) {
                        return;
                    }
                    continue;
                }
                Err(_) => return,
            };
            for ev in decode(&buf[..n], &mut links) {
                if !sink(Some(ev)) {
                    return;
                }
            }
        }
    }
}

/// Decodes one datagram of notifications. Links are reported only when
/// their up/running state changed (or they appeared/vanished), which `links`
/// remembers.
fn decode(mut buf: &[u8], links: &mut HashMap<u32, (bool, bool)>) -> Vec<KernelEvent> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..len]) {
            if let NetlinkPayload::InnerMessage(inner) = m.payload {
                match inner {
                    RouteNetlinkMessage::NewLink(l) => {
                        let state = (
                            l.header.flags.contains(LinkFlags::Up),
                            l.header.flags.contains(LinkFlags::Running),
                        );
                        if links.insert(l.header.index, state) != Some(state) {
                            out.push(KernelEvent::Link {
                                index: l.header.index,
                                up: state.0,
                                running: state.1,
                                deleted: false,
                            });
                        }
                    }
                    RouteNetlinkMessage::DelLink(l) => {
                        links.remove(&l.header.index);
                        out.push(KernelEvent::Link {
                            index: l.header.index,
                            up: false,
                            running: false,
                            deleted: true,
                        });
                    }
                    RouteNetlinkMessage::NewRoute(r) => {
                        if let Some(route) = parse_route(&r) {
                            out.push(KernelEvent::Route {
                                route,
                                deleted: false,
                            });
                        }
                    }
                    RouteNetlinkMessage::DelRoute(r) => {
                        if let Some(route) = parse_route(&r) {
                            out.push(KernelEvent::Route {
                                route,
                                deleted: true,
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    out
}
