//! A small synchronous rtnetlink socket.
//!
//! In: `RouteNetlinkMessage`s built by the caller (links, addresses, routes).
//! Out: acknowledgements (one `Result` per request) or the messages of a dump.
//! It owns one `NETLINK_ROUTE` socket bound to the network namespace that was
//! current when it was opened; `in_netns` (tests, harness) opens one (or any socket) in
//! another namespace from a throwaway thread, so no long-lived thread ever
//! changes its namespace. Requests can be pipelined: [`Netlink::batch`] packs many requests
//! into few `sendmsg` calls and matches the acknowledgements by sequence number,
//! which is how the route installer beats one-request-one-ack tools.

use std::collections::HashMap;
use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_MULTIPART,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Largest number of bytes packed into one `sendmsg`.
const SEND_CHUNK: usize = 64 * 1024;
/// Most requests in flight: their acknowledgements must fit the receive
/// buffer even where `rmem_max` is small, or the kernel drops them (ENOBUFS).
const MAX_IN_FLIGHT: usize = 256;
/// Receive buffer asked for, so a burst of acknowledgements is never dropped.
const RCVBUF: usize = 8 * 1024 * 1024;

/// An error answered by the kernel (negative errno in an `NLMSG_ERROR`), or a
/// failure of the socket itself.
#[derive(Debug, thiserror::Error)]
pub enum NlError {
    #[error("kernel refused: {0}")]
    Kernel(io::Error),
    #[error("netlink socket: {0}")]
    Socket(io::Error),
    #[error("netlink decode: {0}")]
    Decode(String),
}

impl NlError {
    /// The errno the kernel answered, if this is a kernel refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NlError::Kernel(e) => e.raw_os_error(),
            _ => None,
        }
    }
    pub fn is(&self, errno: i32) -> bool {
        self.errno() == Some(errno)
    }
}

/// `SO_RCVBUFFORCE`: like `SO_RCVBUF` but not capped by `rmem_max` (needs CAP_NET_ADMIN).
fn force_rcvbuf(sock: &Socket, bytes: usize) -> bool {
    set_int_option(
        sock,
        libc::SO_RCVBUFFORCE,
        bytes.try_into().unwrap_or(libc::c_int::MAX),
    )
}

/// Sets a `SOL_SOCKET` option that takes a C int; says whether it took.
pub(crate) fn set_int_option(sock: &Socket, opt: libc::c_int, v: libc::c_int) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket fd and a pointer to a c_int of the right size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Runs `open` inside the network namespace at `path` (`/run/netns/NAME`,
/// `/proc/PID/ns/net`) on a short-lived thread, so no long-lived thread ever
/// changes its namespace; what it opens (a socket) stays bound to that
/// namespace. `wrap` turns the namespace switch's own errors into `E`.
#[cfg(any(test, feature = "test-support"))]
pub fn in_netns<T, E>(
    path: &std::path::Path,
    wrap: fn(io::Error) -> E,
    open: fn() -> Result<T, E>,
) -> Result<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    use std::os::fd::AsFd;
    let ns = std::fs::File::open(path).map_err(wrap)?;
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| wrap(io::Error::from_raw_os_error(e as i32)))?;
        open()
    })
    .join()
    .map_err(|_| wrap(io::Error::other("netns thread panicked")))?
}

pub struct Netlink {
    sock: Socket,
    seq: u32,
    rx: Vec<u8>,
}

impl Netlink {
    /// Opens a socket in the caller's current network namespace.
    pub fn open() -> Result<Self, NlError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NlError::Socket)?;
        sock.bind_auto().map_err(NlError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(NlError::Socket)?;
        // Best effort: a large receive buffer (root may exceed rmem_max).
        if !force_rcvbuf(&sock, RCVBUF) {
            let _ = sock.set_rx_buf_sz(RCVBUF);
        }
        let _ = sock.set_ext_ack(false);
        Ok(Netlink {
            sock,
            seq: 1,
            rx: vec![0u8; 1 << 20],
        })
    }

    /// The network namespace this socket is bound to, as a file
    /// (`SIOCGSKNS`): to name it in requests about namespaces.
    pub fn netns(&self) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: a valid socket fd; SIOCGSKNS takes no argument and
        // returns a new file descriptor, which we own from here.
        let fd = unsafe { libc::ioctl(self.sock.as_raw_fd(), libc::SIOCGSKNS as _) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    fn encode(&mut self, msg: RouteNetlinkMessage, flags: u16, out: &mut Vec<u8>) -> u32 {
        let seq = self.next_seq();
        let mut header = NetlinkHeader::default();
        header.flags = flags | NLM_F_REQUEST;
        header.sequence_number = seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        nl.finalize();
        let start = out.len();
        out.resize(start + nl.buffer_len(), 0);
        nl.serialize(&mut out[start..]);
        seq
    }

    fn send_all(&self, buf: &[u8]) -> Result<(), NlError> {
        let mut off = 0;
        while off < buf.len() {
            let n = self.sock.send(&buf[off..], 0).map_err(NlError::Socket)?;
            off += n;
        }
        Ok(())
    }

    /// Reads one datagram and hands every message in it to `f`.
    fn recv_each(
        &mut self,
        mut f: impl FnMut(NetlinkMessage<RouteNetlinkMessage>) -> Result<(), NlError>,
    ) -> Result<(), NlError> {
        let n = loop {
            match self.sock.recv(&mut &mut self.rx[..], 0) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(NlError::Socket(e)),
            }
        };
        let mut off = 0;
        while off + 16 <= n {
            let len =
                u32::from_ne_bytes(self.rx[off..off + 4].try_into().unwrap_or([0; 4])) as usize;
            if len < 16 || off + len > n {
                return Err(NlError::Decode(format!("bad message length {len}")));
            }
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.rx[off..off + len])
                .map_err(|e| NlError::Decode(e.to_string()))?;
            f(msg)?;
            off += (len + 3) & !3;
        }
        Ok(())
    }

    /// Sends one request and waits for its acknowledgement.
    pub fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<(), NlError> {
        self.batch(vec![(msg, flags)]).pop().unwrap_or(Ok(()))
    }

    /// Sends many requests, pipelined, and returns one result per request in
    /// the same order.
    pub fn batch(&mut self, msgs: Vec<(RouteNetlinkMessage, u16)>) -> Vec<Result<(), NlError>> {
        let total = msgs.len();
        let mut results: Vec<Option<Result<(), NlError>>> = (0..total).map(|_| None).collect();
        let mut iter = msgs.into_iter().enumerate().peekable();
        let mut buf = Vec::with_capacity(SEND_CHUNK + 4096);
        while iter.peek().is_some() {
            buf.clear();
            let mut pending: HashMap<u32, usize> = HashMap::new();
            while buf.len() < SEND_CHUNK && pending.len() < MAX_IN_FLIGHT {
                let Some((i, (msg, flags))) = iter.next() else {
                    break;
                };
                let seq = self.encode(msg, flags | NLM_F_ACK, &mut buf);
                pending.insert(seq, i);
            }
            if let Err(e) = self.send_all(&buf) {
                let text = e.to_string();
                for (_, i) in pending.drain() {
                    results[i] = Some(Err(NlError::Socket(io::Error::other(text.clone()))));
                }
                continue;
            }
            while !pending.is_empty() {
                let r = self.recv_each(|m| {
                    if let NetlinkPayload::Error(err) = &m.payload {
                        if let Some(i) = pending.remove(&m.header.sequence_number) {
                            results[i] = Some(match err.code {
                                None => Ok(()),
                                Some(_) => Err(NlError::Kernel(err.to_io())),
                            });
                        }
                    }
                    Ok(())
                });
                if let Err(e) = r {
                    let text = e.to_string();
                    for (_, i) in pending.drain() {
                        results[i] = Some(Err(NlError::Socket(io::Error::other(text.clone()))));
                    }
                }
            }
        }
        results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect()
    }

    /// A `GET` of one object (not a dump): its answer, or the kernel's refusal.
    pub fn get(
        &mut self,
        msg: RouteNetlinkMessage,
    ) -> Result<Option<RouteNetlinkMessage>, NlError> {
        let mut buf = Vec::new();
        let seq = self.encode(msg, 0, &mut buf);
        self.send_all(&buf)?;
        let mut answer: Option<Result<Option<RouteNetlinkMessage>, NlError>> = None;
        while answer.is_none() {
            self.recv_each(|m| {
                if m.header.sequence_number != seq || answer.is_some() {
                    return Ok(());
                }
                answer = Some(match m.payload {
                    NetlinkPayload::Error(e) if e.code.is_some() => Err(NlError::Kernel(e.to_io())),
                    NetlinkPayload::InnerMessage(inner) => Ok(Some(inner)),
                    _ => Ok(None),
                });
                Ok(())
            })?;
        }
        answer.unwrap_or(Ok(None))
    }

    /// Runs a dump request and returns every message of the answer.
    pub fn dump(&mut self, msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        let mut buf = Vec::new();
        let seq = self.encode(msg, NLM_F_DUMP, &mut buf);
        self.send_all(&buf)?;
        let mut out = Vec::new();
        let mut done = false;
        while !done {
            self.recv_each(|m| {
                if m.header.sequence_number != seq {
                    return Ok(());
                }
                match m.payload {
                    NetlinkPayload::Done(_) => done = true,
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(NlError::Kernel(e.to_io()))
                    }
                    NetlinkPayload::Error(_) => done = true,
                    NetlinkPayload::InnerMessage(inner) => {
                        out.push(inner);
                        if m.header.flags & NLM_F_MULTIPART == 0 {
                            done = true;
                        }
                    }
                    _ => {}
                }
                Ok(())
            })?;
        }
        Ok(out)
    }
}
