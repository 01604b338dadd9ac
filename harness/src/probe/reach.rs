//! Reachability probes from inside namespaces, without spawning `ping`.
//!
//! In: pairs of [`Member`]s (a container or a host: a namespace and an
//! address). Out: which pairs answered. ICMP echo goes through a raw socket
//! opened inside the source namespace (on a throwaway thread that `setns`es;
//! the socket stays there), so a matrix of hundreds of pairs costs one socket
//! per source and one round trip. TCP probes connect to a small listener
//! started in the target namespace. Both families: an IPv6 target is
//! pinged with ICMPv6 echo (a raw ICMPv6 socket, whose checksum the kernel
//! fills in) and reached over TCP/IPv6. [`Prober`] pings pairs continuously in
//! the background and counts losses (zero-loss checks across restarts).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Something that can be probed: a container or a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub label: String,
    pub netns: PathBuf,
    pub addr: IpAddr,
}

pub const TCP_PORT: u16 = 7777;
static NEXT_ID: AtomicU16 = AtomicU16::new(1);

pub(super) fn next_id() -> u16 {
    (std::process::id() as u16)
        .wrapping_mul(31)
        .wrapping_add(NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// Runs `f` on a thread that has entered the network namespace at `netns`.
pub(super) fn in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = File::open(netns).with_context(|| format!("open {}", netns.display()))?;
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
        f()
    })
    .join()
    .map_err(|_| anyhow!("namespace thread panicked"))?
}

/// A raw ICMP socket (`v6`: ICMPv6) opened inside `netns`.
pub(super) fn icmp_socket(netns: &Path, v6: bool) -> Result<Socket> {
    in_netns(netns, move || {
        let s = if v6 {
            Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
                .context("raw ICMPv6 socket")?
        } else {
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
                .context("raw ICMP socket")?
        };
        Ok(s)
    })
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += word as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(id: u16, seq: u16) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = 8;
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p[8..16].copy_from_slice(b"ipvlbgp!");
    let c = checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// An ICMPv6 echo request: type 128; the checksum is left to the kernel
/// (raw ICMPv6 sockets always compute it, RFC 3542 3.1).
fn echo_request6(id: u16, seq: u16) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = 128;
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p[8..16].copy_from_slice(b"ipvlbgp!");
    p
}

/// Parses an ICMPv6 echo reply (no IP header on raw ICMPv6 sockets) into (id, seq).
fn parse_reply6(buf: &[u8]) -> Option<(u16, u16)> {
    let icmp = buf.get(..8)?;
    if icmp[0] != 129 {
        return None;
    }
    Some((
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    ))
}

/// Parses an echo reply (with its IP header) into (source, id, seq).
fn parse_reply(buf: &[u8]) -> Option<(Ipv4Addr, u16, u16)> {
    if buf.len() < 20 {
        return None;
    }
    let ihl = ((buf[0] & 0x0f) as usize) * 4;
    let icmp = buf.get(ihl..ihl + 8)?;
    if icmp[0] != 0 {
        return None;
    }
    let src = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
    Some((
        src,
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    ))
}

/// One echo reply (source, id, seq) within `timeout`; None on a timeout
/// or another packet (the caller loops).
pub(super) fn recv_one(s: &Socket, timeout: Duration) -> Option<(IpAddr, u16, u16)> {
    s.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
        .ok()?;
    let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
    let (n, from) = s.recv_from(&mut buf).ok()?;
    // SAFETY: recv_from initialised the first n bytes.
    let bytes: Vec<u8> = buf[..n]
        .iter()
        .map(|b| unsafe { b.assume_init() })
        .collect();
    match from.as_socket() {
        Some(SocketAddr::V6(a)) => {
            let (id, seq) = parse_reply6(&bytes)?;
            Some((IpAddr::V6(*a.ip()), id, seq))
        }
        _ => parse_reply(&bytes).map(|(a, id, seq)| (IpAddr::V4(a), id, seq)),
    }
}

pub(super) fn send_echo(s: &Socket, to: IpAddr, id: u16, seq: u16) {
    let addr = SockAddr::from(SocketAddr::new(to, 0));
    let _ = match to {
        IpAddr::V4(_) => s.send_to(&echo_request(id, seq), &addr),
        IpAddr::V6(_) => s.send_to(&echo_request6(id, seq), &addr),
    };
}

/// Pings every pair once (all in parallel) and waits up to `timeout` for
/// replies. A probe that cannot run (no socket in a namespace) is an error,
/// never an "unreachable".
pub fn ping_pairs(pairs: &[(Member, Member)], timeout: Duration) -> Result<Vec<bool>> {
    let mut by_source: BTreeMap<(PathBuf, bool), Vec<usize>> = BTreeMap::new();
    for (i, (from, to)) in pairs.iter().enumerate() {
        by_source
            .entry((from.netns.clone(), to.addr.is_ipv6()))
            .or_default()
            .push(i);
    }
    let mut results = vec![false; pairs.len()];
    std::thread::scope(|scope| -> Result<Vec<bool>> {
        let handles: Vec<_> = by_source
            .iter()
            .map(|((src, v6), idx)| {
                scope.spawn(move || -> Result<Vec<(usize, bool)>> {
                    let sock = icmp_socket(src, *v6)
                        .with_context(|| format!("probe from {}", src.display()))?;
                    let id = next_id();
                    for (seq, i) in idx.iter().enumerate() {
                        send_echo(&sock, pairs[*i].1.addr, id, seq as u16);
                    }
                    let mut got = vec![false; idx.len()];
                    let deadline = Instant::now() + timeout;
                    while got.iter().any(|g| !g) {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        if let Some((from, rid, seq)) = recv_one(&sock, left) {
                            let seq = seq as usize;
                            if rid == id && seq < idx.len() && pairs[idx[seq]].1.addr == from {
                                got[seq] = true;
                            }
                        }
                    }
                    Ok(idx.iter().copied().zip(got).collect())
                })
            })
            .collect();
        for h in handles {
            for (i, ok) in h.join().map_err(|_| anyhow!("probe thread panicked"))?? {
                results[i] = ok;
            }
        }
        Ok(results)
    })
}

/// One raw ICMP socket in a source namespace, for timing when a target
/// starts answering: one echo request per interval, no process and no
/// thread per probe (what a latency benchmark needs from its prober).
pub struct Pinger {
    sock: Socket,
    id: u16,
    seq: u16,
}

impl Pinger {
    /// A pinger for IPv4 targets (`open6`: IPv6 ones).
    pub fn open(netns: &Path) -> Result<Pinger> {
        Pinger::open_family(netns, false)
    }

    pub fn open6(netns: &Path) -> Result<Pinger> {
        Pinger::open_family(netns, true)
    }

    fn open_family(netns: &Path, v6: bool) -> Result<Pinger> {
        Ok(Pinger {
            sock: icmp_socket(netns, v6)?,
            id: next_id(),
            seq: 0,
        })
    }

    /// Sends an echo request to `to` every `interval` until one is answered;
    /// returns when the answer arrived, or None after `deadline`.
    pub fn first_reply(
        &mut self,
        to: IpAddr,
        interval: Duration,
        deadline: Duration,
    ) -> Option<Instant> {
        self.first_answer(to, interval, deadline).map(|a| a.at)
    }

    /// As [`Pinger::first_reply`], and which echo was answered: how many
    /// were sent before it (lost, or not answered before it was).
    pub fn first_answer(
        &mut self,
        to: IpAddr,
        interval: Duration,
        deadline: Duration,
    ) -> Option<FirstAnswer> {
        let end = Instant::now() + deadline;
        let first = self.seq;
        while Instant::now() < end {
            send_echo(&self.sock, to, self.id, self.seq);
            self.seq = self.seq.wrapping_add(1);
            let next = Instant::now() + interval;
            loop {
                let left = next.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if let Some((from, id, seq)) = recv_one(&self.sock, left) {
                    // Any answer to this call's requests counts.
                    if from == to
                        && id == self.id
                        && seq.wrapping_sub(first) < self.seq.wrapping_sub(first)
                    {
                        return Some(FirstAnswer {
                            at: Instant::now(),
                            unanswered_before: u32::from(seq.wrapping_sub(first)),
                            sent: u32::from(self.seq.wrapping_sub(first)),
                        });
                    }
                }
            }
        }
        None
    }
}

/// The first answer of [`Pinger::first_answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstAnswer {
    /// When it arrived.
    pub at: Instant,
    /// Echoes sent before the answered one: 0 when the first was answered.
    pub unanswered_before: u32,
    /// Echoes sent in all until then.
    pub sent: u32,
}

/// TCP listeners, one per target namespace, accepting and closing.
#[derive(Default)]
pub struct TcpServers {
    servers: HashMap<PathBuf, (Arc<AtomicBool>, JoinHandle<()>)>,
}

impl TcpServers {
    pub fn ensure(&mut self, netns: &Path) -> Result<()> {
        if self.servers.contains_key(netns) {
            return Ok(());
        }
        // One socket on [::] takes both families (IPv4 as mapped addresses,
        // bindv6only being 0 by default); a namespace whose IPv6 is disabled
        // falls back to IPv4 only.
        let listener = in_netns(netns, || {
            let l = TcpListener::bind((Ipv6Addr::UNSPECIFIED, TCP_PORT))
                .or_else(|_| TcpListener::bind((Ipv4Addr::UNSPECIFIED, TCP_PORT)))
                .context("bind TCP probe port")?;
            l.set_nonblocking(true)?;
            Ok(l)
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let h = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => drop(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        self.servers.insert(netns.to_path_buf(), (stop, h));
        Ok(())
    }

    /// Forgets a namespace's listener (the container went away).
    pub fn forget(&mut self, netns: &Path) {
        if let Some((stop, h)) = self.servers.remove(netns) {
            stop.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
    }
}

impl Drop for TcpServers {
    fn drop(&mut self) {
        let keys: Vec<PathBuf> = self.servers.keys().cloned().collect();
        for k in keys {
            self.forget(&k);
        }
    }
}

/// Connects once per pair (in parallel) to the target's probe port.
/// A listener that cannot be started is an error (never "unreachable").
pub fn tcp_pairs(
    servers: &mut TcpServers,
    pairs: &[(Member, Member)],
    timeout: Duration,
) -> Result<Vec<bool>> {
    for (_, to) in pairs {
        servers
            .ensure(&to.netns)
            .with_context(|| format!("TCP probe listener in {}", to.label))?;
    }
    Ok(std::thread::scope(|scope| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|(from, to)| {
                scope.spawn(move || {
                    let target = SocketAddr::new(to.addr, TCP_PORT);
                    in_netns(&from.netns, move || {
                        Ok(TcpStream::connect_timeout(&target, timeout).is_ok())
                    })
                    .unwrap_or(false)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(false))
            .collect()
    }))
}

/// Loss counted by a background probe for one pair.
#[derive(Debug, Clone, Default)]
pub struct PairStats {
    pub from: String,
    pub to: String,
    pub sent: u64,
    pub received: u64,
    /// The longest run of consecutive lost probes.
    pub longest_gap: u64,
    /// That run as time, from the probes' own send stamps: from the first
    /// lost probe's send to the send of the first answered one after it
    /// (or one interval past the last sent, if none was answered after).
    /// Its resolution is the probe interval.
    pub longest_outage: Duration,
    /// When that run began (the first lost probe's send), if there was one.
    pub outage_began: Option<Instant>,
}

/// Continuous pinging in the background until [`Prober::stop`].
pub struct Prober {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<Vec<PairStats>>>,
    pub interval: Duration,
}

impl Prober {
    pub fn start(pairs: Vec<(Member, Member)>, interval: Duration) -> Result<Prober> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut by_source: BTreeMap<(PathBuf, bool), Vec<(Member, Member)>> = BTreeMap::new();
        for p in pairs {
            by_source
                .entry((p.0.netns.clone(), p.1.addr.is_ipv6()))
                .or_default()
                .push(p);
        }
        let mut handles = Vec::new();
        for ((src, v6), pairs) in by_source {
            let sock = icmp_socket(&src, v6)?;
            let stop = stop.clone();
            handles.push(std::thread::spawn(move || {
                probe_loop(sock, pairs, interval, stop)
            }));
        }
        Ok(Prober {
            stop,
            handles,
            interval,
        })
    }

    /// Stops sending, waits a second for late replies, returns per-pair counts.
    pub fn stop(self) -> Vec<PairStats> {
        self.stop.store(true, Ordering::Relaxed);
        self.handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    }
}

fn probe_loop(
    sock: Socket,
    pairs: Vec<(Member, Member)>,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<PairStats> {
    let id = next_id();
    // When each round was sent (every pair of a round goes at once).
    let mut sent_at: Vec<Instant> = Vec::new();
    let mut sent: Vec<u64> = vec![0; pairs.len()];
    let mut received: Vec<HashSet<u64>> = vec![HashSet::new(); pairs.len()];
    let mut round: u64 = 0;
    let mut next = Instant::now();
    let mut stopping_since: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) && stopping_since.is_none() {
            stopping_since = Some(Instant::now());
        }
        if stopping_since.is_some_and(|t| t.elapsed() > Duration::from_secs(1)) {
            break;
        }
        if stopping_since.is_none() && Instant::now() >= next {
            sent_at.push(Instant::now());
            for (i, (_, to)) in pairs.iter().enumerate() {
                send_echo(&sock, to.addr, id, round as u16);
                sent[i] += 1;
            }
            round += 1;
            next += interval;
        }
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(50));
        if let Some((from, rid, seq)) = recv_one(&sock, wait) {
            if let (true, Some(i)) = (rid == id, pairs.iter().position(|p| p.1.addr == from)) {
                received[i].insert(unwrap_seq(seq, round));
            }
        }
    }
    pairs
        .iter()
        .enumerate()
        .map(|(i, (from, to))| {
            let (longest, longest_outage, began) =
                longest_run(sent[i], |r| received[i].contains(&r), &sent_at, interval);
            PairStats {
                from: from.label.clone(),
                to: to.label.clone(),
                sent: sent[i],
                received: received[i].len() as u64,
                longest_gap: longest,
                longest_outage,
                outage_began: began,
            }
        })
        .collect()
}

/// The longest run of unanswered rounds among `rounds`: its length, its
/// time from the send stamps (first lost send to the next answered send, or
/// one interval past the last send when nothing was answered after), and
/// when it began.
pub(super) fn longest_run(
    rounds: u64,
    answered: impl Fn(u64) -> bool,
    sent_at: &[Instant],
    interval: Duration,
) -> (u64, Duration, Option<Instant>) {
    let at = |r: u64| sent_at.get(r as usize).copied();
    let mut best = (0u64, Duration::ZERO, None);
    let mut start: Option<u64> = None;
    for r in 0..=rounds {
        let ok = r == rounds || answered(r);
        match (ok, start) {
            (false, None) => start = Some(r),
            (true, Some(s)) => {
                let len = r - s;
                let end = if r < rounds {
                    at(r)
                } else {
                    at(r - 1).map(|t| t + interval)
                };
                let dur = match (at(s), end) {
                    (Some(a), Some(b)) => b.saturating_duration_since(a),
                    _ => interval * len as u32,
                };
                if dur > best.1 || (dur == best.1 && len > best.0) {
                    best = (len, dur, at(s));
                }
                start = None;
            }
            _ => {}
        }
    }
    best
}

/// The full round number of a 16-bit sequence, given the rounds sent so far.
pub(super) fn unwrap_seq(seq: u16, rounds_sent: u64) -> u64 {
    let last = rounds_sent.saturating_sub(1);
    let mut r = (last & !0xffff) | seq as u64;
    if r > last {
        r = r.saturating_sub(0x1_0000);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_outage_comes_from_the_send_stamps() {
        let t0 = Instant::now();
        let iv = Duration::from_millis(10);
        // Rounds sent 10 ms apart, except a late one (a stalled sender).
        let at: Vec<Instant> = [0u64, 10, 20, 30, 45, 55, 65]
            .iter()
            .map(|ms| t0 + Duration::from_millis(*ms))
            .collect();
        let lost = [2u64, 3];
        let (n, d, began) = longest_run(7, |r| !lost.contains(&r), &at, iv);
        assert_eq!((n, d, began), (2, Duration::from_millis(25), Some(at[2])));
        // Lost until the end: one interval past the last send.
        let (n, d, _) = longest_run(7, |r| r < 5, &at, iv);
        assert_eq!((n, d), (2, Duration::from_millis(20)));
        assert_eq!(longest_run(7, |_| true, &at, iv), (0, Duration::ZERO, None));
    }

    #[test]
    fn sequences_unwrap() {
        assert_eq!(unwrap_seq(5, 10), 5);
        assert_eq!(unwrap_seq(0xffff, 0x1_0002), 0xffff);
        assert_eq!(unwrap_seq(1, 0x1_0002), 0x1_0001);
    }

    #[test]
    fn echo_requests_checksum_to_zero() {
        let p = echo_request(0x1234, 7);
        assert_eq!(checksum(&p), 0);
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn replies_parse() {
        let mut pkt = vec![
            0x45u8, 0, 0, 36, 0, 0, 0, 0, 64, 1, 0, 0, 10, 1, 1, 2, 10, 1, 2, 2,
        ];
        let mut icmp = echo_request(9, 3);
        icmp[0] = 0;
        pkt.extend_from_slice(&icmp);
        assert_eq!(parse_reply(&pkt), Some((Ipv4Addr::new(10, 1, 1, 2), 9, 3)));
        pkt[20] = 8;
        assert_eq!(parse_reply(&pkt), None);
        let mut r6 = echo_request6(9, 3);
        assert_eq!(parse_reply6(&r6), None);
        r6[0] = 129;
        assert_eq!(parse_reply6(&r6), Some((9, 3)));
    }
}
