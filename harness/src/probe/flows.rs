//! UDP flows between two namespaces (issue 23's flow probe): `n` flows,
//! each its own socket with its own source port (so a multipath route
//! hashes them apart), send a sequence-numbered datagram every interval to
//! an echo in the other namespace; the echo records what arrived, so each
//! lost datagram is counted on the way there (never arrived) or on the
//! way back (arrived, no echo within [`LATE`]).
//!
//! In: two [`Member`]s (namespace and address) and the flow count and
//! interval. Out: per flow, what was sent, what arrived at the echo, what
//! came back on time, and its longest outage from the send stamps (as
//! [`super::Prober`], with its `longest_run`: from the first unanswered
//! datagram's send to the next answered one's; its resolution is the
//! interval). Owns its sockets
//! and two threads (sender and receiver in one, the echo in the other).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use super::reach::{in_netns, longest_run};
use super::Member;

/// An echo that comes back later than this after its send counts as lost.
pub const LATE: Duration = Duration::from_secs(1);
/// What each datagram starts with (a stray packet is ignored).
const MAGIC: [u8; 4] = *b"flw1";

/// One flow's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Its source port.
    pub port: u16,
    pub sent: u64,
    /// Arrived at the echo.
    pub arrived: u64,
    /// Came back within [`LATE`] of their send.
    pub echoed: u64,
    /// Came back, but later than [`LATE`] (counted lost).
    pub late: u64,
    /// Sends the sending namespace refused (no route, a full buffer
    /// after a retry): lost on the way there, before the wire.
    pub unsent: u64,
    /// The longest run of datagrams without a timely echo, as time (the
    /// send stamps of its first and of the next answered one).
    pub longest_outage: Duration,
    /// When that run began (its first datagram's send).
    pub outage_began: Option<Instant>,
    /// The flow's last datagrams went unanswered: an outage still running
    /// when the flows stopped (its length is then only a lower bound).
    pub still_out: bool,
}

impl FlowStats {
    /// Lost on the way to the echo.
    pub fn lost_there(&self) -> u64 {
        self.sent.saturating_sub(self.arrived)
    }
    /// Arrived at the echo, but no echo came back in time.
    pub fn lost_back(&self) -> u64 {
        self.arrived.saturating_sub(self.echoed)
    }
}

/// Flows running in the background until [`Flows::stop`].
pub struct Flows {
    stop: Arc<AtomicBool>,
    client: JoinHandle<Result<Vec<FlowStats>>>,
    echo: JoinHandle<Result<Vec<HashSet<u64>>>>,
    pub interval: Duration,
}

impl Flows {
    /// Starts the echo in `to`'s namespace, then `n` flows from `from`'s.
    pub fn start(from: &Member, to: &Member, n: u16, interval: Duration) -> Result<Flows> {
        if n == 0 {
            return Err(anyhow!("a flow probe needs at least one flow"));
        }
        let local: IpAddr = from.addr;
        let v6 = to.addr.is_ipv6();
        let echo_sock = in_netns(&to.netns, move || {
            let s = echo_socket(v6).context("bind the flows' echo")?;
            roomy_receive_buffer(&s);
            Ok(s)
        })?;
        let target = SocketAddr::new(to.addr, echo_sock.local_addr()?.port());
        let socks = in_netns(&from.netns, move || {
            (0..n)
                .map(|i| {
                    let s = UdpSocket::bind((local, 0))
                        .with_context(|| format!("bind flow {i}'s socket on {local}"))?;
                    s.connect(target)?;
                    s.set_nonblocking(true)?;
                    Ok(s)
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let echo = {
            let stop = stop.clone();
            std::thread::spawn(move || echo_loop(echo_sock, n as usize, stop))
        };
        let client = {
            let stop = stop.clone();
            std::thread::spawn(move || client_loop(socks, interval, stop))
        };
        Ok(Flows {
            stop,
            client,
            echo,
            interval,
        })
    }

    /// Stops sending, waits [`LATE`] for the last echoes, returns each flow's counts.
    pub fn stop(self) -> Result<Vec<FlowStats>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut flows = self
            .client
            .join()
            .map_err(|_| anyhow!("the flows' sender panicked"))??;
        let arrived = self
            .echo
            .join()
            .map_err(|_| anyhow!("the flows' echo panicked"))??;
        for (f, a) in flows.iter_mut().zip(&arrived) {
            f.arrived = a.len() as u64;
        }
        Ok(flows)
    }
}

/// The echo's socket on a port the kernel picks, on every address of its
/// family. A port of its own each time: a fixed port failed in CI with
/// "Address already in use" when a flows set started right after another
/// stopped, while a child another scenario's thread had just forked (not
/// yet exec'd) still held a copy of the old echo's descriptor. An IPv6 echo
/// takes IPv6 only.
fn echo_socket(v6: bool) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let (domain, any): (Domain, IpAddr) = if v6 {
        (Domain::IPV6, Ipv6Addr::UNSPECIFIED.into())
    } else {
        (Domain::IPV4, Ipv4Addr::UNSPECIFIED.into())
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if v6 {
        s.set_only_v6(true)?;
    }
    s.bind(&SocketAddr::new(any, 0).into())?;
    Ok(s.into())
}

/// The echo's receive buffer: room for [`ECHO_BUFFER`] bytes, so a
/// thread this busy machine does not schedule for a while loses nothing
/// (the default ~200 KiB holds ~40 ms of 64 flows at 10 ms: every flow then
/// lost the same rounds "on the way there", an artefact of the probe).
/// Root may exceed `net.core.rmem_max` (`SO_RCVBUFFORCE`); otherwise as
/// much as the limit allows.
fn roomy_receive_buffer(s: &UdpSocket) {
    let size: libc::c_int = ECHO_BUFFER;
    // SAFETY: a valid socket and a pointer to an int of the given length.
    let forced = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        let _ = socket2::SockRef::from(s).set_recv_buffer_size(ECHO_BUFFER as usize);
    }
}

/// What the echo's receive buffer holds (about 3 s of 64 flows at 10 ms).
const ECHO_BUFFER: libc::c_int = 16 << 20;

fn datagram(flow: u16, seq: u64) -> [u8; 14] {
    let mut p = [0u8; 14];
    p[..4].copy_from_slice(&MAGIC);
    p[4..6].copy_from_slice(&flow.to_be_bytes());
    p[6..14].copy_from_slice(&seq.to_be_bytes());
    p
}

fn parse(p: &[u8]) -> Option<(u16, u64)> {
    if p.len() != 14 || p[..4] != MAGIC {
        return None;
    }
    Some((
        u16::from_be_bytes([p[4], p[5]]),
        u64::from_be_bytes(p[6..14].try_into().ok()?),
    ))
}

/// The echo: records each flow's sequence numbers as they arrive and sends
/// each datagram back to where it came from, until stopped (plus [`LATE`]).
fn echo_loop(sock: UdpSocket, n: usize, stop: Arc<AtomicBool>) -> Result<Vec<HashSet<u64>>> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut arrived = vec![HashSet::new(); n];
    let mut stopping: Option<Instant> = None;
    let mut buf = [0u8; 64];
    loop {
        if stop.load(Ordering::Relaxed) && stopping.is_none() {
            stopping = Some(Instant::now());
        }
        if stopping.is_some_and(|t| t.elapsed() > LATE) {
            return Ok(arrived);
        }
        let Ok((len, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if let Some((flow, seq)) = parse(&buf[..len]) {
            if let Some(set) = arrived.get_mut(flow as usize) {
                set.insert(seq);
                let _ = sock.send_to(&buf[..len], peer);
            }
        }
    }
}

/// The flows' side: one round (a datagram on every flow) per interval;
/// between rounds, waits on every socket at once for the echoes.
fn client_loop(
    socks: Vec<UdpSocket>,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> Result<Vec<FlowStats>> {
    let n = socks.len();
    let ports: Vec<u16> = socks
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<_>>()?;
    let mut sent_at: Vec<Instant> = Vec::new();
    let mut echoed: Vec<HashSet<u64>> = vec![HashSet::new(); n];
    let mut late = vec![0u64; n];
    let mut unsent = vec![0u64; n];
    let mut next = Instant::now();
    let mut stopping: Option<Instant> = None;
    let mut fds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut buf = [0u8; 64];
    loop {
        if stop.load(Ordering::Relaxed) && stopping.is_none() {
            stopping = Some(Instant::now());
        }
        if stopping.is_some_and(|t| t.elapsed() > LATE) {
            break;
        }
        if stopping.is_none() && Instant::now() >= next {
            let seq = sent_at.len() as u64;
            sent_at.push(Instant::now());
            for (i, s) in socks.iter().enumerate() {
                // A send that fails (no route for a moment) is a lost
                // datagram; a full socket buffer (this machine, not the
                // network) gets one more try after a millisecond.
                let d = datagram(i as u16, seq);
                let sent = s.send(&d).or_else(|e| {
                    if e.kind() == std::io::ErrorKind::WouldBlock {
                        std::thread::sleep(Duration::from_millis(1));
                        s.send(&d)
                    } else {
                        Err(e)
                    }
                });
                if sent.is_err() {
                    unsent[i] += 1;
                }
            }
            next += interval;
            // Behind by more than a round (a stalled machine): skip ahead
            // rather than send a burst.
            if next < Instant::now() {
                next = Instant::now() + interval;
            }
        }
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(50))
            .as_millis()
            .max(1) as libc::c_int;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait) };
        if ready <= 0 {
            continue;
        }
        let now = Instant::now();
        for (i, s) in socks.iter().enumerate() {
            if fds[i].revents == 0 {
                continue;
            }
            while let Ok(len) = s.recv(&mut buf) {
                let Some((flow, seq)) = parse(&buf[..len]) else {
                    continue;
                };
                let Some(&t) = sent_at.get(seq as usize) else {
                    continue;
                };
                if flow as usize != i {
                    continue;
                }
                if now.duration_since(t) <= LATE {
                    echoed[i].insert(seq);
                } else {
                    late[i] += 1;
                }
            }
        }
    }
    let rounds = sent_at.len() as u64;
    Ok((0..n)
        .map(|i| {
            let (_, longest_outage, outage_began) =
                longest_run(rounds, |r| echoed[i].contains(&r), &sent_at, interval);
            FlowStats {
                port: ports[i],
                sent: rounds,
                arrived: 0,
                echoed: echoed[i].len() as u64,
                late: late[i],
                unsent: unsent[i],
                longest_outage,
                outage_began,
                still_out: rounds > 0 && !echoed[i].contains(&(rounds - 1)),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reads_back_and_strays_are_ignored() {
        assert_eq!(parse(&datagram(7, 123_456)), Some((7, 123_456)));
        assert_eq!(parse(b"flw0xxxxxxxxxx"), None);
        assert_eq!(parse(&datagram(1, 1)[..13]), None);
    }

    #[test]
    fn the_longest_outage_runs_from_the_first_lost_send_to_the_next_answered() {
        let t0 = Instant::now();
        let iv = Duration::from_millis(10);
        let sent: Vec<Instant> = (0..10).map(|k| t0 + iv * k).collect();
        // Rounds 3, 4, 5 lost; 8 lost.
        let (_, d, began) = longest_run(10, |r| ![3, 4, 5, 8].contains(&r), &sent, iv);
        assert_eq!(d, Duration::from_millis(30));
        assert_eq!(began, Some(sent[3]));
        // Lost to the end: one interval past the last send.
        let (_, d, _) = longest_run(10, |r| r < 7, &sent, iv);
        assert_eq!(d, Duration::from_millis(30));
        assert_eq!(
            longest_run(10, |_| true, &sent, iv),
            (0, Duration::ZERO, None)
        );
    }

    #[test]
    fn loss_splits_into_there_and_back() {
        let f = FlowStats {
            sent: 100,
            arrived: 90,
            echoed: 85,
            ..FlowStats::default()
        };
        assert_eq!((f.lost_there(), f.lost_back()), (10, 5));
    }

    /// Both ends in this test's own namespace pair would need root; on
    /// loopback in the current namespace every datagram comes back, with
    /// IPv4 and IPv6 flows side by side and two IPv4 sets to the same echo
    /// namespace at once (each echo on a port of its own, so a lingering
    /// copy of an old echo's socket cannot stop a new set from starting).
    #[test]
    fn flows_on_loopback_lose_nothing_in_both_families_at_once() {
        let me = |addr: IpAddr| Member {
            label: "lo".into(),
            netns: "/proc/self/ns/net".into(),
            addr,
        };
        let (v4, v6) = (
            me(Ipv4Addr::LOCALHOST.into()),
            me(Ipv6Addr::LOCALHOST.into()),
        );
        let f4 = Flows::start(&v4, &v4, 4, Duration::from_millis(5)).unwrap();
        let f6 = Flows::start(&v6, &v6, 4, Duration::from_millis(5)).unwrap();
        let again = Flows::start(&v4, &v4, 4, Duration::from_millis(5)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let mut stats = Vec::new();
        for f in [f4, f6, again] {
            let one = f.stop().unwrap();
            let ports: HashSet<u16> = one.iter().map(|s| s.port).collect();
            assert_eq!(ports.len(), 4, "each flow its own source port: {one:?}");
            stats.extend(one);
        }
        for s in &stats {
            assert!(s.sent >= 10, "{s:?}");
            assert_eq!(
                (s.arrived, s.echoed, s.late, s.unsent),
                (s.sent, s.sent, 0, 0),
                "{s:?}"
            );
            assert_eq!(s.longest_outage, Duration::ZERO, "{s:?}");
            assert!(!s.still_out, "{s:?}");
        }
    }
}
