//! Does anyone on the segment already hold an address? RFC 5227 ARP probes
//! and IPv6 duplicate-address-detection neighbour solicitations, sent and
//! heard on one interface through a raw packet socket (`AF_PACKET`).
//!
//! In: an interface (index and MAC address), the addresses to probe, and a
//! [`Timing`]. Out: the first [`Answer`] heard (the address, the MAC that
//! answered, and whether it answered or is itself probing for the address),
//! or none once the wait is over. The neighbour table is never read: it
//! knows only hosts this one has talked to.
//!
//! What goes out: per IPv4 address an ARP request with sender IP 0.0.0.0
//! and the interface's MAC, broadcast (an RFC 5227 probe: it teaches no one
//! a mapping); per IPv6 address a neighbour solicitation from `::` to the
//! address's solicited-node multicast group, without a source link-layer
//! option (RFC 4862's DAD message). A holder answers the ARP probe with a
//! reply to our MAC and the solicitation with an advertisement to all nodes
//! (`ff02::1`, which the socket joins). A classic BPF filter lets only ARP
//! and ICMPv6 neighbour messages up; frames we sent ourselves are skipped.

use std::io;
use std::mem::{size_of, size_of_val};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How many probes, how far apart, and how long to listen in all (from the
/// first probe). Docker waits for the answer to CreateNetwork, so the wait
/// is short: a holder on the same segment answers within a millisecond or
/// two; three probes cover a lost frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub probes: u32,
    pub interval: Duration,
    pub wait: Duration,
}

/// Three probes 70 ms apart, 210 ms of listening in all.
pub const TIMING: Timing = Timing {
    probes: 3,
    interval: Duration::from_millis(70),
    wait: Duration::from_millis(210),
};

/// Someone on the segment and the address it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub addr: IpAddr,
    pub mac: [u8; 6],
    /// It is itself probing for the address (another host claiming it at
    /// this moment), rather than answering for it.
    pub probing: bool,
}

impl Answer {
    pub fn mac_text(&self) -> String {
        mac_text(&self.mac)
    }
}

pub fn mac_text(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

const ETH_P_ALL: u16 = 0x0003;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ICMPV6: u8 = 58;
const NS: u8 = 135;
const NA: u8 = 136;

/// Probes `addrs` on interface `ifindex` (whose MAC is `mac`) and listens
/// for `timing.wait`; returns the first answer, at once when it comes.
pub fn probe(
    ifindex: u32,
    mac: [u8; 6],
    addrs: &[IpAddr],
    timing: &Timing,
) -> io::Result<Option<Answer>> {
    if addrs.is_empty() {
        return Ok(None);
    }
    let sock = open(ifindex)?;
    let frames: Vec<Vec<u8>> = addrs
        .iter()
        .map(|a| match a {
            IpAddr::V4(a) => arp_probe(mac, *a),
            IpAddr::V6(a) => dad_solicitation(mac, *a),
        })
        .collect();
    let start = Instant::now();
    let end = start + timing.wait;
    let mut sent = 0;
    let mut buf = [0u8; 1600];
    loop {
        let now = Instant::now();
        let next_send = start + timing.interval * sent;
        if sent < timing.probes && now >= next_send {
            for f in &frames {
                send(&sock, ifindex, f)?;
            }
            sent += 1;
            continue;
        }
        if now >= end && sent >= timing.probes {
            return Ok(None);
        }
        let until = if sent < timing.probes {
            next_send.min(end)
        } else {
            end
        };
        wait_readable(&sock, until.saturating_duration_since(now))?;
        while let Some((len, outgoing)) = recv(&sock, &mut buf)? {
            if outgoing {
                continue;
            }
            if let Some(a) = answer(&buf[..len], mac, addrs) {
                return Ok(Some(a));
            }
        }
    }
}

/// Tells the segment that `addrs` now live at `mac` on `ifindex`: per IPv4
/// address a gratuitous ARP (a broadcast request whose sender and target
/// are the address), per IPv6 address an unsolicited neighbour
/// advertisement to all nodes with the override flag and the target's
/// link-layer address (RFC 4861 7.2.6). A neighbour holding an entry for
/// the address (a previous container's MAC, or one that failed while the
/// address was not there yet) takes the new one at once instead of after
/// its next probe. Sent once each, from the namespace the caller is in.
///
/// Returns the socket they went out on, still open (none when there was
/// nothing to send): closing a packet socket waits for an RCU grace period
/// (the kernel's `synchronize_net` in `packet_release`), 5 to 25 ms on a
/// busy host, which the caller can spend where nothing waits for it. From
/// a macvlan in bridge mode each frame is copied to every sibling on the
/// parent inside the send: the caller sends off any path that waits.
pub fn announce(ifindex: u32, mac: [u8; 6], addrs: &[IpAddr]) -> io::Result<Option<OwnedFd>> {
    if addrs.is_empty() {
        return Ok(None);
    }
    let sock = open_sender()?;
    for a in addrs {
        let frame = match a {
            IpAddr::V4(a) => gratuitous_arp(mac, *a),
            IpAddr::V6(a) => unsolicited_na(mac, *a),
        };
        send(&sock, ifindex, &frame)?;
    }
    Ok(Some(sock))
}

/// A packet socket that only sends (each frame names its interface and
/// protocol): unbound, no filter, no multicast membership. Joining a
/// group takes the kernel's RTNL lock, which a busy host's link and
/// namespace changes hold for milliseconds at a time; sending needs none
/// of it.
fn open_sender() -> io::Result<OwnedFd> {
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A packet socket on `ifindex` that hears only ARP and ICMPv6 neighbour
/// messages, and all-nodes multicast (where advertisements to `::` go).
fn open(ifindex: u32) -> io::Result<OwnedFd> {
    // Protocol 0 hears nothing until bound, so no frame slips in before
    // the filter is attached.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let filter = filter();
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    setsockopt(&sock, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)?;
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = ifindex as i32;
    mreq.mr_type = libc::PACKET_MR_MULTICAST as u16;
    mreq.mr_alen = 6;
    mreq.mr_address[..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    setsockopt(&sock, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)?;
    let addr = sockaddr(ifindex, ETH_P_ALL, None);
    cvt(unsafe {
        libc::bind(
            sock.as_raw_fd(),
            &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
            size_of::<libc::sockaddr_ll>() as u32,
        )
    })?;
    Ok(sock)
}

/// ARP (any) or IPv6 ICMPv6 type 135/136 (no extension headers).
fn filter() -> [libc::sock_filter; 10] {
    const LDH: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
    const LDB: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        op(LDH, 0, 0, 12),                    // 0: ethertype
        op(JEQ, 6, 0, u32::from(ETH_P_ARP)),  // 1: ARP -> accept
        op(JEQ, 0, 6, u32::from(ETH_P_IPV6)), // 2: not IPv6 -> drop
        op(LDB, 0, 0, 20),                    // 3: next header
        op(JEQ, 0, 4, u32::from(ICMPV6)),     // 4: not ICMPv6 -> drop
        op(LDB, 0, 0, 54),                    // 5: ICMPv6 type
        op(JEQ, 1, 0, u32::from(NS)),         // 6: NS -> accept
        op(JEQ, 0, 1, u32::from(NA)),         // 7: NA -> accept, else drop
        op(RET, 0, 0, 0x0004_0000),           // 8: accept
        op(RET, 0, 0, 0),                     // 9: drop
    ]
}

fn sockaddr(ifindex: u32, proto: u16, dst: Option<[u8; 6]>) -> libc::sockaddr_ll {
    let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    a.sll_family = libc::AF_PACKET as u16;
    a.sll_protocol = proto.to_be();
    a.sll_ifindex = ifindex as i32;
    if let Some(mac) = dst {
        a.sll_halen = 6;
        a.sll_addr[..6].copy_from_slice(&mac);
    }
    a
}

fn send(sock: &OwnedFd, ifindex: u32, frame: &[u8]) -> io::Result<()> {
    let mut dst = [0u8; 6];
    dst.copy_from_slice(&frame[..6]);
    let proto = u16::from_be_bytes([frame[12], frame[13]]);
    let addr = sockaddr(ifindex, proto, Some(dst));
    let n = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            frame.as_ptr() as *const libc::c_void,
            frame.len(),
            0,
            &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One frame, if one is waiting: its length and whether we sent it.
fn recv(sock: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<(usize, bool)>> {
    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_ll>() as u32;
    let n = unsafe {
        libc::recvfrom(
            sock.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            0,
            &mut from as *mut libc::sockaddr_ll as *mut libc::sockaddr,
            &mut len,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock => Ok(None),
            io::ErrorKind::Interrupted => Ok(Some((0, true))),
            _ => Err(e),
        };
    }
    Ok(Some((
        n as usize,
        from.sll_pkttype == libc::PACKET_OUTGOING,
    )))
}

fn wait_readable(sock: &OwnedFd, timeout: Duration) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // Round up: a 0 ms poll would spin until the deadline.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

fn setsockopt<T>(sock: &OwnedFd, level: i32, name: i32, v: &T) -> io::Result<()> {
    cvt(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            v as *const T as *const libc::c_void,
            size_of_val(v) as u32,
        )
    })
    .map(|_| ())
}

fn cvt(r: i32) -> io::Result<i32> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// RFC 5227's probe: "who has `target`?", from 0.0.0.0 at `mac`.
fn arp_probe(mac: [u8; 6], target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet, IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0; 4]); // sender IP: none yet
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// A gratuitous ARP: "`addr` is at `mac`", broadcast as a request whose
/// sender and target address are both `addr` (RFC 5227 2.4's announcement).
fn gratuitous_arp(mac: [u8; 6], addr: Ipv4Addr) -> Vec<u8> {
    let mut f = arp_probe(mac, addr);
    f[28..32].copy_from_slice(&addr.octets());
    f
}

/// An unsolicited neighbour advertisement for `target` from `target` to
/// all nodes (`ff02::1`), override set, with the target link-layer option.
fn unsolicited_na(mac: [u8; 6], target: Ipv6Addr) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = vec![NA, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&mac);
    let sum = icmpv6_checksum(&target, &all_nodes, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[ICMPV6, 255]);
    f.extend_from_slice(&target.octets());
    f.extend_from_slice(&all_nodes.octets());
    f.extend_from_slice(&icmp);
    f
}

/// RFC 4862's DAD message: a neighbour solicitation for `target` from `::`
/// to its solicited-node group, with no source link-layer option.
fn dad_solicitation(mac: [u8; 6], target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    );
    let mut icmp = vec![NS, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&t);
    let sum = icmpv6_checksum(&Ipv6Addr::UNSPECIFIED, &group, &icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&[0x33, 0x33, 0xff, t[13], t[14], t[15]]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[ICMPV6, 255]);
    f.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
    f.extend_from_slice(&group.octets());
    f.extend_from_slice(&icmp);
    f
}

fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for c in bytes.chunks(2) {
            let hi = u32::from(c[0]) << 8;
            sum += hi | c.get(1).map(|&b| u32::from(b)).unwrap_or(0);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(msg.len() as u32).to_be_bytes());
    add(&[0, 0, 0, ICMPV6]);
    add(msg);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether a frame someone else sent claims one of `addrs`: an ARP packet
/// from it (any operation), or an ARP probe for it from another MAC; an
/// IPv6 advertisement for it, or another host's DAD solicitation for it.
fn answer(f: &[u8], mine: [u8; 6], addrs: &[IpAddr]) -> Option<Answer> {
    if f.len() < 14 {
        return None;
    }
    let mut src = [0u8; 6];
    src.copy_from_slice(&f[6..12]);
    if src == mine {
        return None;
    }
    let want = |a: IpAddr| addrs.contains(&a);
    match u16::from_be_bytes([f[12], f[13]]) {
        ETH_P_ARP if f.len() >= 42 => {
            let mut sha = [0u8; 6];
            sha.copy_from_slice(&f[22..28]);
            let spa = IpAddr::V4(Ipv4Addr::new(f[28], f[29], f[30], f[31]));
            let tpa = IpAddr::V4(Ipv4Addr::new(f[38], f[39], f[40], f[41]));
            let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            if want(spa) {
                Some(Answer {
                    addr: spa,
                    mac: sha,
                    probing: false,
                })
            } else if spa == unspecified && want(tpa) && sha != mine {
                Some(Answer {
                    addr: tpa,
                    mac: sha,
                    probing: true,
                })
            } else {
                None
            }
        }
        ETH_P_IPV6 if f.len() >= 78 && f[20] == ICMPV6 => {
            let mut t = [0u8; 16];
            t.copy_from_slice(&f[62..78]);
            let target = IpAddr::V6(Ipv6Addr::from(t));
            if !want(target) {
                return None;
            }
            let from_unspecified = f[22..38].iter().all(|&b| b == 0);
            match f[54] {
                NA => Some(Answer {
                    addr: target,
                    mac: src,
                    probing: false,
                }),
                NS if from_unspecified => Some(Answer {
                    addr: target,
                    mac: src,
                    probing: true,
                }),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINE: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const THEIRS: [u8; 6] = [2, 0, 0, 0, 0, 2];

    #[test]
    fn the_arp_probe_is_rfc_5227s() {
        let f = arp_probe(MINE, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[20..22], &[0, 1], "a request");
        assert_eq!(&f[22..28], &MINE);
        assert_eq!(&f[28..32], &[0; 4], "sender IP 0.0.0.0");
        assert_eq!(&f[38..42], &[192, 0, 2, 1]);
        // Our own probe, looped back, is no answer.
        assert_eq!(answer(&f, MINE, &["192.0.2.1".parse().unwrap()]), None);
    }

    /// On a real veth pair in a namespace of its own (the tests run as
    /// root): what `announce` sends from one end, on its send-only socket,
    /// is heard on the other, a gratuitous ARP and an unsolicited NA, as
    /// built; it hands back the socket, still open.
    #[test]
    fn the_announcements_reach_the_segment() {
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            // Made with iproute2: this room's tests use no other kernel room.
            let ip = |args: &str| {
                let ok = std::process::Command::new("ip")
                    .args(args.split_whitespace())
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "ip {args}");
            };
            ip("link add npa address 02:00:00:00:00:01 type veth peer name npb");
            ip("link set npa up");
            ip("link set npb up");
            let index = |n: &str| nix::net::if_::if_nametoindex(n).unwrap();
            let (a, b) = (index("npa"), index("npb"));
            let heard = open(b).unwrap();
            let (v4, v6) = (Ipv4Addr::new(192, 0, 2, 7), "fd00:31:1::7".parse().unwrap());
            let sent = announce(a, MINE, &[v4.into(), IpAddr::V6(v6)]).unwrap();
            assert!(sent.is_some());
            let want = [gratuitous_arp(MINE, v4), unsolicited_na(MINE, v6)];
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            let end = Instant::now() + Duration::from_secs(5);
            while got.len() < want.len() && Instant::now() < end {
                wait_readable(&heard, end.saturating_duration_since(Instant::now())).unwrap();
                while let Some((len, outgoing)) = recv(&heard, &mut buf).unwrap() {
                    if !outgoing && want.iter().any(|w| w[..] == buf[..len]) {
                        got.push(buf[..len].to_vec());
                    }
                }
            }
            assert_eq!(got, want.to_vec(), "heard on the other end");
            assert!(announce(a, MINE, &[]).unwrap().is_none());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_announcements_say_where_the_address_lives() {
        let f = gratuitous_arp(MINE, Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[22..28], &MINE);
        assert_eq!(&f[28..32], &[192, 0, 2, 7], "sender: the address");
        assert_eq!(&f[38..42], &[192, 0, 2, 7], "target: the address");
        let target: Ipv6Addr = "fd00:31:1::7".parse().unwrap();
        let f = unsolicited_na(MINE, target);
        let all: Ipv6Addr = "ff02::1".parse().unwrap();
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(&f[22..38], &target.octets(), "from the address");
        assert_eq!(&f[38..54], &all.octets());
        assert_eq!(f[21], 255, "hop limit");
        assert_eq!(f[54], NA);
        assert_eq!(f[58] & 0x20, 0x20, "override");
        assert_eq!(&f[78..80], &[2, 1], "target link-layer option");
        assert_eq!(&f[80..86], &MINE);
        assert_eq!(icmpv6_checksum(&target, &all, &f[54..]), 0);
    }

    #[test]
    fn the_solicitation_is_dads_with_a_valid_checksum() {
        let target: Ipv6Addr = "fd00:31:1::1".parse().unwrap();
        let f = dad_solicitation(MINE, target);
        assert_eq!(&f[..6], &[0x33, 0x33, 0xff, 0, 0, 1]);
        assert_eq!(&f[22..38], &[0; 16], "from ::");
        let group: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
        assert_eq!(&f[38..54], &group.octets());
        assert_eq!(f[21], 255, "hop limit");
        assert_eq!(f.len(), 14 + 40 + 24, "no source link-layer option");
        // The checksum over the pseudo-header and the message sums to zero.
        let msg = &f[54..];
        assert_eq!(icmpv6_checksum(&Ipv6Addr::UNSPECIFIED, &group, msg), 0);
    }

    #[test]
    fn replies_and_rival_probes_are_answers() {
        let gw: IpAddr = "192.0.2.1".parse().unwrap();
        // A reply from the holder.
        let mut reply = arp_probe(THEIRS, Ipv4Addr::new(0, 0, 0, 0));
        reply[6..12].copy_from_slice(&THEIRS);
        reply[20..22].copy_from_slice(&[0, 2]);
        reply[28..32].copy_from_slice(&[192, 0, 2, 1]);
        let a = answer(&reply, MINE, &[gw]).unwrap();
        assert_eq!((a.addr, a.mac, a.probing), (gw, THEIRS, false));
        assert_eq!(a.mac_text(), "02:00:00:00:00:02");
        // Another host probing for it right now.
        let rival = arp_probe(THEIRS, Ipv4Addr::new(192, 0, 2, 1));
        assert!(answer(&rival, MINE, &[gw]).unwrap().probing);
        // Someone else's address is no answer.
        assert_eq!(answer(&reply, MINE, &["192.0.2.9".parse().unwrap()]), None);
        // An IPv6 advertisement for the target.
        let t: Ipv6Addr = "fd00:31:1::1".parse().unwrap();
        let mut na = dad_solicitation(THEIRS, t);
        na[54] = NA;
        na[22..38].copy_from_slice(&t.octets());
        let a = answer(&na, MINE, &[IpAddr::V6(t)]).unwrap();
        assert_eq!((a.mac, a.probing), (THEIRS, false));
        let rival = dad_solicitation(THEIRS, t);
        assert!(answer(&rival, MINE, &[IpAddr::V6(t)]).unwrap().probing);
        // Truncated frames are nothing.
        assert_eq!(answer(&na[..60], MINE, &[IpAddr::V6(t)]), None);
        assert_eq!(answer(&[0; 10], MINE, &[gw]), None);
    }
}
