//! Privileged: the driver's BGP side over IPv6 against two real gobgpd, of
//! each line (3.x `gobgpd` and 4.x `gobgpd-v4`, both ends the same line).
//!
//! Needs root and that line's gobgpd and CLI (skipped with the reason
//! otherwise). Two namespaces
//! `v6bgp-<pid>-<case>-a`/`-b` joined by a dual-stack veth pair:
//!
//! ```text
//!   A: driver (Bgp + installer) ──unix socket──► gobgpd (configured by the driver: --peer)
//!        a0 192.0.2.1/24 2001:db8:ab::1/64 ───── veth ───── b0 192.0.2.2/24 2001:db8:ab::2/64
//!   B: gobgpd from a TOML file with ipv4-unicast and ipv6-unicast (the operator's way)
//! ```
//! The BGP session runs over IPv6 in one case and over IPv4 in the other;
//! both families cross it. Checked: A's endpoint /128 (and /32) reach B's
//! RIB with A's address of that family as next hop; a /128 (and a /32) B
//! originates are installed in A's kernel with tag 73 through a0, a /128
//! outside A's pools is refused and counted; withdrawals on both sides
//! remove them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use ipvlan_bgp::bgp::config::BgpConfig;
use ipvlan_bgp::bgp::gobgp::{ApiLine, GobgpAddr};
use ipvlan_bgp::bgp::speaker::SpeakerConfig;
use ipvlan_bgp::view::View;

use common::driver::Driver;
use common::lab::{self, ip, progs, run, wait_for, Cleanup};
use common::{skip, Outcome};

fn gobgp_b(line: ApiLine, ns: &str, args: &str) -> String {
    lab::cli(line, Some(ns), "127.0.0.1:50051", args)
}

fn n(s: &str) -> IpNet {
    s.parse().expect("prefix")
}

/// B's config; `{A}` is A's session address.
const TOML_B: &str = r#"
[global.config]
  as = 65000
  router-id = "192.0.2.2"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{A}"
    peer-as = 65000
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#;

fn main() {
    common::run_async_trials(vec![
        (
            "v3_ipv6_paths_are_announced_learned_and_installed_over_an_ipv6_session",
            || {
                Box::pin(dual_stack_exchange(
                    ApiLine::V3,
                    "v6",
                    "2001:db8:ab::1",
                    "2001:db8:ab::2",
                ))
            },
        ),
        (
            "v3_ipv6_paths_are_announced_learned_and_installed_over_an_ipv4_session",
            || {
                Box::pin(dual_stack_exchange(
                    ApiLine::V3,
                    "v4",
                    "192.0.2.1",
                    "192.0.2.2",
                ))
            },
        ),
        (
            "v4_ipv6_paths_are_announced_learned_and_installed_over_an_ipv6_session",
            || {
                Box::pin(dual_stack_exchange(
                    ApiLine::V4,
                    "v6",
                    "2001:db8:ab::1",
                    "2001:db8:ab::2",
                ))
            },
        ),
        (
            "v4_ipv6_paths_are_announced_learned_and_installed_over_an_ipv4_session",
            || {
                Box::pin(dual_stack_exchange(
                    ApiLine::V4,
                    "v4",
                    "192.0.2.1",
                    "192.0.2.2",
                ))
            },
        ),
    ])
}

async fn dual_stack_exchange(
    line: ApiLine,
    case: &'static str,
    addr_a: &'static str,
    addr_b: &'static str,
) -> Outcome {
    if !nix::unistd::geteuid().is_root() {
        return skip("needs root");
    }
    let (daemon, cli) = progs(line);
    for tool in [daemon, cli] {
        if Command::new(tool).arg("--version").output().is_err() {
            return skip(&format!("{tool} is not installed (ci/install.sh)"));
        }
    }
    let mut undo = Cleanup::default();
    let (a, b) = (
        format!("v6bgp-{}-{line}{case}-a", std::process::id()),
        format!("v6bgp-{}-{line}{case}-b", std::process::id()),
    );
    for ns in [&a, &b] {
        undo.netns(ns);
    }
    ip(&a, &format!("link add a0 type veth peer name b0 netns {b}"));
    ip(&a, "addr add 2001:db8:ab::1/64 dev a0 nodad");
    ip(&b, "addr add 2001:db8:ab::2/64 dev b0 nodad");
    ip(&a, "addr add 192.0.2.1/24 dev a0");
    ip(&b, "addr add 192.0.2.2/24 dev b0");
    for (ns, dev) in [(&a, "a0"), (&b, "b0"), (&a, "lo"), (&b, "lo")] {
        ip(ns, &format!("link set {dev} up"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("a.sock");
    let toml = dir.path().join("b.toml");
    std::fs::write(&toml, TOML_B.replace("{A}", addr_a)).expect("toml");
    for (ns, args, log) in [
        (
            &a,
            vec![format!("--api-hosts=unix://{}", sock.display())],
            "a.log",
        ),
        (
            &b,
            vec![
                "--api-hosts=127.0.0.1:50051".to_string(),
                "-f".into(),
                toml.display().to_string(),
            ],
            "b.log",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        undo.child(lab::gobgpd(line, Some(ns), &args, &dir.path().join(log)));
    }
    let show_logs = || lab::show_logs(dir.path());

    // Host A: the driver, configuring its gobgpd over gRPC.
    let cfg = BgpConfig {
        gobgp: GobgpAddr::Unix(sock.clone()),
        call_timeout: Duration::from_secs(5),
        speaker: SpeakerConfig {
            asn: Some(65000),
            router_id: Some("192.0.2.1".into()),
            listen_port: 0,
            peers: vec![format!("{addr_b},hold=9,keepalive=3,connect-retry=1")
                .parse()
                .expect("peer")],
            hold_time: 9,
            keepalive: 3,
            connect_retry: 1,
            ..SpeakerConfig::default()
        },
        next_hops: Vec::new(),
        communities: Vec::new(),
        protocol: 73,
        accept_pools: vec![n("fd00:b::/64"), n("10.2.2.0/24")],
        limits: ipvlan_bgp::bgp::learner::Limits::installing(1000),
        stale_time: Duration::from_secs(10),
        default_parent: Some("a0".into()),
        uplinks: Vec::new(),
        stop_gobgpd_on_exit: false,
    };
    let view = |announce: bool| View {
        announcements: if announce {
            imbl::OrdMap::from_iter([
                (n("fd00:a::5/128"), "a0".to_string()),
                (n("10.1.1.5/32"), "a0".to_string()),
            ])
        } else {
            imbl::OrdMap::new()
        },
        pools: BTreeSet::from([n("fd00:a::/64"), n("10.1.1.0/24")]),
        local_endpoints: imbl::OrdSet::from_iter([
            "fd00:a::5".parse::<IpAddr>().expect("ip"),
            "10.1.1.5".parse::<IpAddr>().expect("ip"),
        ]),
        endpoints_via_host: imbl::OrdSet::from_iter([
            "fd00:a::5".parse::<IpAddr>().expect("ip"),
            "10.1.1.5".parse::<IpAddr>().expect("ip"),
        ]),
        parents: BTreeSet::from(["a0".to_string()]),
        attrs: imbl::OrdMap::new(),
        ipam_pools: BTreeMap::new(),
        drained: None,
    };
    let driver = Driver::start(&a, cfg, view(true));
    let metrics = driver.metrics.clone();

    // B originates a /128 inside A's accepted pool, and one A must refuse.
    let added = wait_for(Duration::from_secs(10), || {
        Command::new("ip")
            .args(["netns", "exec", &b, cli, "-u", "127.0.0.1", "-p", "50051"])
            .args(["global", "rib", "-a", "ipv6", "add", "fd00:b::7/128"])
            .args(["nexthop", "2001:db8:ab::2"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
    .await;
    assert!(added.is_some(), "gobgpd B never answered");
    gobgp_b(
        line,
        &b,
        "global rib -a ipv6 add fd00:c::7/128 nexthop 2001:db8:ab::2",
    );
    gobgp_b(
        line,
        &b,
        "global rib -a ipv4 add 10.2.2.7/32 nexthop 192.0.2.2",
    );

    // A's /128 in B's RIB, with A's global address as next hop.
    let start = Instant::now();
    let seen = wait_for(Duration::from_secs(30), || {
        let rib = gobgp_b(line, &b, "global rib -a ipv6");
        let rib4 = gobgp_b(line, &b, "global rib -a ipv4");
        rib.lines()
            .any(|l| l.contains("fd00:a::5/128") && l.contains("2001:db8:ab::1"))
            && rib4
                .lines()
                .any(|l| l.contains("10.1.1.5/32") && l.contains("192.0.2.1"))
    })
    .await;
    if seen.is_none() {
        show_logs();
    }
    assert!(
        seen.is_some(),
        "A's /128 or /32 not in B's RIB:\n{}{}",
        gobgp_b(line, &b, "global rib -a ipv6"),
        gobgp_b(line, &b, "global rib -a ipv4")
    );
    eprintln!(
        "session up and A's /128 in B's RIB after {:?}",
        start.elapsed()
    );

    // B's /128 installed in A's kernel, tagged, through a0.
    let show_a = |dst: &str| {
        let family = if dst.contains(':') { "-6" } else { "-4" };
        run(&["ip", "-n", &a, family, "route", "show", "exact", dst])
    };
    let installed = wait_for(Duration::from_secs(10), || {
        let r = show_a("fd00:b::7/128");
        let r4 = show_a("10.2.2.7/32");
        r.contains("via 2001:db8:ab::2")
            && r.contains("dev a0")
            && r.contains("proto 73")
            && r4.contains("via 192.0.2.2 dev a0 proto 73")
    })
    .await;
    assert!(
        installed.is_some(),
        "not installed: {:?} (metrics {:?})",
        show_a("fd00:b::7/128"),
        metrics.bgp_snapshot()
    );
    let m = metrics.bgp_snapshot();
    assert_eq!(m.api.as_deref(), Some(line.name()), "detected line");
    assert_eq!(m.announced, 2, "{m:?}");
    assert_eq!(m.installed, 2, "{m:?}");
    assert_eq!(m.rejected.get("outside-pools").copied(), Some(1), "{m:?}");
    assert!(show_a("fd00:c::7/128").is_empty());

    // Withdrawals: B's path goes, then A's endpoint leaves.
    gobgp_b(line, &b, "global rib -a ipv6 del fd00:b::7/128");
    let gone = wait_for(Duration::from_secs(5), || {
        show_a("fd00:b::7/128").is_empty()
    })
    .await;
    eprintln!("B's withdrawal removed A's route in {gone:?}");
    // Not held as a lost session's withdrawal (1 s): the IPv6 peer is known up.
    assert!(
        gone.is_some_and(|t| t < Duration::from_millis(900)),
        "not removed in time ({gone:?}): {}",
        show_a("fd00:b::7/128")
    );
    assert!(
        show_a("10.2.2.7/32").contains("proto 73"),
        "IPv4 route gone too"
    );
    driver.view.send_replace(Arc::new(view(false)));
    let gone = wait_for(Duration::from_secs(5), || {
        !gobgp_b(line, &b, "global rib -a ipv6").contains("fd00:a::5/128")
    })
    .await;
    assert!(gone.is_some(), "not withdrawn from B");
    eprintln!("withdrawn from B's RIB in {:?}", gone.unwrap_or_default());
    assert_eq!(metrics.bgp_snapshot().announced, 0);

    let _ = driver.stop().await;
    Ok(())
}
