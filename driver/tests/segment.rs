//! Privileged tests of what the driver reads from the segment and the
//! host: the neighbour probe (RFC 5227 ARP probes, IPv6 DAD
//! solicitations) against real kernels answering from another namespace,
//! and the links sitting on a parent, in any namespace (what keeps a VLAN
//! parent in place while another instance's containers use it).
//!
//! Not root: a visible skip (a failure under `CI=true`), reported as
//! `ignored` by the custom harness (libtest-mimic).

mod common;

use std::net::IpAddr;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{skip, Outcome, Skip};
use ipvlan_bgp::kernel::neigh_probe::{self, Answer};
use ipvlan_bgp::kernel::real::Kernel;
use libtest_mimic::{Arguments, Completion, Trial};

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Namespaces made for one test, removed when dropped.
struct Nets(Vec<String>);

impl Nets {
    fn new(tag: &str, n: usize) -> Nets {
        let names: Vec<String> = (0..n)
            .map(|i| format!("ibt-{}-{tag}{i}", std::process::id()))
            .collect();
        for name in &names {
            ip(&["netns", "add", name]);
        }
        Nets(names)
    }
}

impl Drop for Nets {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn privileged() -> Outcome {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        skip("needs root (network namespaces, raw sockets)")
    }
}

fn mac_of(ns: &str, link: &str) -> [u8; 6] {
    let out = ip(&["-n", ns, "-br", "link", "show", "dev", link]);
    let text = out.split_whitespace().nth(2).unwrap_or_default();
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(text.split(':')) {
        *m = u8::from_str_radix(p, 16).unwrap();
    }
    mac
}

fn index_of(ns: &str, link: &str) -> u32 {
    let out = ip(&["-n", ns, "-o", "link", "show", "dev", link]);
    out.split(':').next().unwrap().trim().parse().unwrap()
}

/// Runs the probe on a thread inside namespace `ns` (a raw socket belongs
/// to the namespace it is opened in).
fn probe_in(ns: &str, link: &str, addrs: &[IpAddr]) -> (Option<Answer>, Duration) {
    let (ifindex, mac) = (index_of(ns, link), mac_of(ns, link));
    let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    let addrs = addrs.to_vec();
    std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let t = Instant::now();
        let a = neigh_probe::probe(ifindex, mac, &addrs, &neigh_probe::TIMING).unwrap();
        (a, t.elapsed())
    })
    .join()
    .unwrap()
}

/// A "router" namespace holds an IPv4 and an IPv6 address on the segment:
/// its kernel answers the probe for each, at once, from its MAC. A free
/// address gets no answer, and the probe ends after its stated wait.
fn the_probe_hears_a_real_neighbour() -> Outcome {
    privileged()?;
    let n = Nets::new("p", 2);
    let (host, router) = (&n.0[0], &n.0[1]);
    ip(&[
        "-n", host, "link", "add", "dxp0", "type", "veth", "peer", "name", "dxp1",
    ]);
    ip(&["-n", host, "link", "set", "dxp1", "netns", router]);
    ip(&["-n", router, "addr", "add", "192.0.2.77/24", "dev", "dxp1"]);
    ip(&[
        "-n",
        router,
        "addr",
        "add",
        "fd00:77::1/64",
        "dev",
        "dxp1",
        "nodad",
    ]);
    ip(&["-n", host, "link", "set", "dxp0", "up"]);
    ip(&["-n", router, "link", "set", "dxp1", "up"]);
    let theirs = mac_of(router, "dxp1");
    let mut answered = Vec::new();
    for addr in ["192.0.2.77", "fd00:77::1"] {
        let a: IpAddr = addr.parse().unwrap();
        let (got, took) = probe_in(host, "dxp0", &[a]);
        let got = got.unwrap_or_else(|| panic!("nobody answered for {addr}"));
        assert_eq!((got.addr, got.mac, got.probing), (a, theirs, false));
        assert!(took < neigh_probe::TIMING.wait, "{addr}: {took:?}");
        answered.push(took);
    }
    let free: [IpAddr; 2] = ["192.0.2.78".parse().unwrap(), "fd00:77::2".parse().unwrap()];
    let (got, waited) = probe_in(host, "dxp0", &free);
    assert_eq!(got, None);
    assert!(
        waited >= neigh_probe::TIMING.wait && waited < neigh_probe::TIMING.wait * 2,
        "{waited:?}"
    );
    eprintln!("answered after {answered:?}; a free address after {waited:?}");
    Ok(())
}

/// The links on a parent include those Docker moved into a container's
/// namespace (as a container link on another instance's VLAN would be),
/// not those on a same-numbered link elsewhere.
fn links_on_a_parent_are_found_in_every_namespace() -> Outcome {
    privileged()?;
    let n = Nets::new("u", 2);
    let (host, container) = (&n.0[0], &n.0[1]);
    ip(&[
        "-n", host, "link", "add", "dxq0", "type", "veth", "peer", "name", "dxq1",
    ]);
    for (name, mode) in [("dxm0", "bridge"), ("dxm1", "bridge")] {
        ip(&[
            "-n", host, "link", "add", "link", "dxq0", "name", name, "type", "macvlan", "mode",
            mode,
        ]);
    }
    ip(&["-n", host, "link", "set", "dxm1", "netns", container]);
    // A macvlan in the container on the container's own link, whatever its index.
    ip(&[
        "-n", container, "link", "add", "dxr0", "type", "veth", "peer", "name", "dxr1",
    ]);
    ip(&[
        "-n", container, "link", "add", "link", "dxr0", "name", "dxm2", "type", "macvlan",
    ]);
    let parent = index_of(host, "dxq0");
    let mut k = Kernel::open_in_netns(std::path::Path::new(&format!("/run/netns/{host}")))
        .map_err(|e| Skip(format!("netlink in {host}: {e}")))?;
    let users = k.users(parent).unwrap();
    assert!(users.iter().any(|u| u == "dxm0"), "{users:?}");
    assert!(
        users.iter().any(|u| u.starts_with("dxm1 (in namespace id")),
        "{users:?}"
    );
    assert_eq!(users.len(), 2, "{users:?}");
    ip(&["-n", container, "link", "del", "dxm1"]);
    ip(&["-n", host, "link", "del", "dxm0"]);
    assert_eq!(k.users(parent).unwrap(), Vec::<String>::new());
    Ok(())
}

fn main() {
    type TestFn = fn() -> Outcome;
    let tests: [(&str, TestFn); 2] = [
        (
            "the_probe_hears_a_real_neighbour",
            the_probe_hears_a_real_neighbour,
        ),
        (
            "links_on_a_parent_are_found_in_every_namespace",
            links_on_a_parent_are_found_in_every_namespace,
        ),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            Trial::ignorable_test(name, move || match test() {
                Ok(()) => Ok(Completion::Completed),
                Err(Skip(reason)) => {
                    eprintln!("SKIPPED {name}: {reason}");
                    Ok(Completion::ignored_with(reason))
                }
            })
        })
        .collect();
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}
