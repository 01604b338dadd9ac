//! Privileged: the driver's BGP side against real peers, on each GoBGP
//! line (3.x `gobgpd`, 4.x `gobgpd-v4`; every daemon of a trial the same
//! line): what it learns follows its peers through multipath, graceful
//! shutdown, failures and restarts; what it configures reads back.
//!
//! Needs root and the line's gobgpd and CLI (skipped with the reason
//! otherwise; a failure under `CI=true`). Namespaces `bp<pid><line>-a|b|c`:
//!
//! ```text
//!   B: gobgpd AS 65001 (TOML, GR) ── 192.0.2.0/24 ──┐
//!                                                    A: driver (Bgp + installer) ─► gobgpd AS 65000 (configured by the driver)
//!   C: gobgpd AS 65002 (TOML, GR) ── 198.51.100.0/24 ┘
//! ```
//! Checked (`learned_paths_follow_peers`, both lines):
//! - multipath: B and C announce the same /32; B withdraws it: A keeps the
//!   route (via C) at every 50 ms sample (4.x sends only B's withdrawal);
//! - GRACEFUL_SHUTDOWN on receipt: B's path with 65535:0 loses to C's
//!   longer one (the import policy the driver installs);
//! - a frozen peer (hold expiry, 3 s) loses its routes in A's kernel within
//!   the hold time plus 2 s, although A's gobgpd still holds them as stale
//!   for B's restart time (120 s); they come back when B does;
//! - a restart of A's gobgpd: no learned route leaves A's kernel, and the
//!   one B withdrew meanwhile goes at B's End-of-RIB, long before the stale
//!   time (60 s).
//!
//! `bfd_takes_a_frozen_peer_down_within_a_second` (4.x): BFD 300 ms × 3,
//! hold 9 s: status shows BFD up, and a frozen B's routes leave A's kernel
//! in under 2 s. `managed_settings_read_back_and_drain` (both lines): BFD
//! (4.x), graceful restart and long-lived GR read back through the line's
//! own CLI, UpdatePeer changes BFD; a drained announcement carries
//! 65535:0, MED 4294967294 and the prepend, and loses them when undrained.
//! `drain_cli_waits_and_survives_a_restart` (both lines): the binary's
//! `drain --wait` (what the harness runs before stopping a host) returns
//! with "safe to stop", the drain shows in /metrics and survives a driver
//! restart, `undrain` clears it.
//! `stop_gobgpd_on_exit` (both lines): without `--stop-gobgpd-on-exit` an
//! exiting driver leaves gobgpd running BGP (B's session with A outlives
//! B's hold time); with it, on 4.x gobgpd stops BGP (B's session goes down,
//! the process lives on), on 3.x it is left running with a warning.
//! `v4_stuck_handshake_is_added_again` (4.x): a hand-written speaker at B
//! drives A's gobgpd 4.8 into its connection-collision deadlock (OpenSent
//! for good, no hold timer: docs/gobgp-v4.md §9), checked to last past the
//! hold time; the driver counts it and deletes and adds the peer again,
//! and the session comes up.
//! `export_only_own_paths` (both lines): with `--export own` (the
//! default) C receives A's own /32 and never B's, though A learned and
//! installed it; the policy is in A's gobgpd once, also when installed a
//! second time through the API, and still once after a
//! driver restart (gobgpd kept running) and after A's gobgpd restarts (the
//! driver installs it again); started with `--export all`, A passes B's
//! path on to C (the check sees transit where there is transit); an
//! operator's gobgpd started with the TOML block docs/dual-uplink.md gives
//! (read from the file) keeps B's path from C as well.
//! `export_ipv6_next_hop_per_uplink` (both lines): A in dual-uplink mode
//! (`ab0` and `ac0` as its uplinks, each with a global IPv6 address, the
//! sessions to B and C over IPv4) announces an IPv4 and an IPv6 prefix
//! with unspecified next hops; B receives the IPv6 one with A's `ab0`
//! address as next hop and C with A's `ac0` address (never gobgpd's
//! `::ffff:<IPv4>`), and the IPv4 one with A's session address as
//! before; the same with an operator's gobgpd started with the TOML block
//! docs/dual-uplink.md gives for it (its example addresses replaced by the
//! lab's).
//! `export_policy_after_a_failed_install` (both lines): the export policy
//! fails to install once after the driver's own StartBgp (test hook); the
//! next connection finds BGP running, knows the start was its own and
//! installs the policy before it adds the peers: C never gets B's path.
//! `export_policy_after_a_driver_killed_before_the_install` (both lines):
//! the first driver dies (aborted, as a kill ends it) after its StartBgp
//! and before the export policy is in; a driver started afresh on the same
//! state directory reads the owed policies' mark, checks it names this
//! gobgpd's AS and router ID, and installs the policy before the peers: C
//! never gets B's path, the policy is there once, the mark is gone. Before
//! that, a driver whose mark cannot be written does not start BGP at all.
//! `v3_refuses_bfd`: against 3.x, the BGP side fails with an error naming
//! 4.x, and the `ipvlan-bgp` binary exits non-zero with it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use ipvlan_bgp::bgp::config::BgpConfig;
use ipvlan_bgp::bgp::gobgp::GobgpApi;
use ipvlan_bgp::bgp::gobgp::{ApiLine, GobgpAddr};
use ipvlan_bgp::bgp::speaker::{Export, GrConfig, SpeakerConfig, FAIL_EXPORT_INSTALL};
use ipvlan_bgp::view::View;
use serde_json::Value;

use common::driver::Driver;
use common::lab::{self, ip, wait_for, Cleanup};
use common::{skip, Outcome};

fn n(s: &str) -> IpNet {
    s.parse().expect("prefix")
}

/// A peer's gobgpd config: AS `asn`, neighbour A at `a`, graceful restart
/// (120 s) on both unicast families, hold 3 s (or 9 s with BFD 300 ms × 3).
/// Both families as the driver configures them: a restarting gobgpd 3.10
/// sends End-of-RIB for every family it has configured when its deferral
/// timer expires, and a 3.10 peer with IPv4 only resets the session on the
/// IPv6 one ("Address-family rf 131073 not available"; docs/gobgp-v4.md).
fn peer_toml(asn: u32, me: &str, a: &str, bfd: bool) -> String {
    let (hold, ka) = if bfd { (9, 3) } else { (3, 1) };
    let mut t = format!(
        r#"
[global.config]
  as = {asn}
  router-id = "{me}"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{a}"
    peer-as = 65000
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = {hold}
    keepalive-interval = {ka}
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 120
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
"#
    );
    if bfd {
        t.push_str(
            r#"  [neighbors.bfd.config]
    enabled = true
    desired-minimum-tx-interval = 300000
    required-minimum-receive = 300000
    detection-multiplier = 3
"#,
        );
    }
    t
}

/// A's settings: AS 65000, hold 3 s, BFD 300 ms × 3 where a peer asks for
/// it, graceful restart 120 s (long-lived `long_lived` seconds after it).
fn config(sock: &Path, peers: &[&str], long_lived: Option<u32>) -> BgpConfig {
    BgpConfig {
        gobgp: GobgpAddr::Unix(sock.to_path_buf()),
        call_timeout: Duration::from_secs(5),
        speaker: SpeakerConfig {
            asn: Some(65000),
            router_id: Some("192.0.2.1".into()),
            peers: peers.iter().map(|p| p.parse().expect("peer")).collect(),
            hold_time: 3,
            keepalive: 1,
            connect_retry: 1,
            bfd_interval: Duration::from_millis(300),
            bfd_multiplier: 3,
            graceful_restart: Some(GrConfig {
                restart_time: 120,
                long_lived,
            }),
            ..SpeakerConfig::default()
        },
        next_hops: Vec::new(),
        communities: Vec::new(),
        protocol: 73,
        accept_pools: vec![n("10.2.0.0/16")],
        limits: ipvlan_bgp::bgp::learner::Limits::installing(1000),
        stale_time: Duration::from_secs(60),
        default_parent: Some("ab0".into()),
        uplinks: Vec::new(),
        stop_gobgpd_on_exit: false,
    }
}

/// A's view: one network on ab0 (announcing 10.1.1.5/32 when asked), both
/// links as parents so next hops on either are on-link.
fn view(announce: bool, drained: Option<u64>) -> View {
    View {
        announcements: if announce {
            imbl::OrdMap::from_iter([(n("10.1.1.5/32"), "ab0".to_string())])
        } else {
            imbl::OrdMap::new()
        },
        pools: BTreeSet::from([n("10.1.1.0/24")]),
        local_endpoints: imbl::OrdSet::new(),
        endpoints_via_host: imbl::OrdSet::new(),
        parents: BTreeSet::from(["ab0".to_string(), "ac0".to_string()]),
        attrs: imbl::OrdMap::new(),
        ipam_pools: BTreeMap::new(),
        drained,
    }
}

/// The three namespaces and their links; B and C optional.
struct Lab {
    line: ApiLine,
    a: String,
    b: String,
    c: String,
    dir: tempfile::TempDir,
    sock: PathBuf,
}

impl Lab {
    fn new(line: ApiLine, tag: &str, undo: &mut Cleanup) -> Lab {
        let base = format!("bp{}{line}{tag}", std::process::id());
        let (a, b, c) = (
            format!("{base}-a"),
            format!("{base}-b"),
            format!("{base}-c"),
        );
        for ns in [&a, &b, &c] {
            undo.netns(ns);
        }
        ip(
            &a,
            &format!("link add ab0 type veth peer name ba0 netns {b}"),
        );
        ip(
            &a,
            &format!("link add ac0 type veth peer name ca0 netns {c}"),
        );
        ip(&a, "addr add 192.0.2.1/24 dev ab0");
        ip(&b, "addr add 192.0.2.2/24 dev ba0");
        ip(&a, "addr add 198.51.100.1/24 dev ac0");
        ip(&c, "addr add 198.51.100.2/24 dev ca0");
        for (ns, dev) in [(&a, "ab0"), (&a, "ac0"), (&b, "ba0"), (&c, "ca0")] {
            ip(ns, &format!("link set {dev} up"));
        }
        for ns in [&a, &b, &c] {
            ip(ns, "link set lo up");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("a.sock");
        Lab {
            line,
            a,
            b,
            c,
            dir,
            sock,
        }
    }

    /// A's gobgpd (configured by the driver); returns its pid.
    /// The no-transit trials' lab: gobgpd running in A, B and C, B
    /// originating 10.2.1.1/32 and C up. Returns it with A's gobgpd's pid.
    async fn transit(line: ApiLine, tag: &str, undo: &mut Cleanup) -> (Lab, u32) {
        let lab = Lab::new(line, tag, undo);
        let a_pid = lab.start_a(undo);
        lab.start_peer("b", false, undo);
        lab.start_peer("c", false, undo);
        lab.peer_when_up("b", "global rib add 10.2.1.1/32 nexthop 192.0.2.2")
            .await;
        lab.peer_when_up("c", "global rib summary").await;
        (lab, a_pid)
    }

    fn start_a(&self, undo: &mut Cleanup) -> u32 {
        let api = format!("--api-hosts=unix://{}", self.sock.display());
        undo.child(lab::gobgpd(
            self.line,
            Some(&self.a),
            &[&api],
            &self.dir.path().join("a.log"),
        ))
    }

    /// B's or C's gobgpd from its TOML; returns its pid.
    fn start_peer(&self, which: &str, bfd: bool, undo: &mut Cleanup) -> u32 {
        let (ns, asn, me, a) = match which {
            "b" => (&self.b, 65001, "192.0.2.2", "192.0.2.1"),
            _ => (&self.c, 65002, "198.51.100.2", "198.51.100.1"),
        };
        let toml = self.dir.path().join(format!("{which}.toml"));
        std::fs::write(&toml, peer_toml(asn, me, a, bfd)).expect("toml");
        let f = toml.display().to_string();
        undo.child(lab::gobgpd(
            self.line,
            Some(ns),
            &["--api-hosts=127.0.0.1:50051", "-f", &f],
            &self.dir.path().join(format!("{which}.log")),
        ))
    }

    /// The gobgp CLI against B's or C's gobgpd.
    fn peer(&self, which: &str, args: &str) -> String {
        let ns = if which == "b" { &self.b } else { &self.c };
        lab::cli(self.line, Some(ns), "127.0.0.1:50051", args)
    }

    /// Retries `args` on a peer until its gobgpd answers (it reads its TOML
    /// after its API is up).
    async fn peer_when_up(&self, which: &str, args: &str) {
        let ns = if which == "b" { &self.b } else { &self.c };
        let (_, cli) = lab::progs(self.line);
        let ok = wait_for(Duration::from_secs(10), || {
            let mut full = vec!["netns", "exec", ns, cli, "-u", "127.0.0.1", "-p", "50051"];
            full.extend(args.split_whitespace());
            Command::new("ip")
                .args(&full)
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .await;
        assert!(ok.is_some(), "{which}'s gobgpd never took {args:?}");
    }

    /// The gobgp CLI against A's gobgpd.
    fn a_cli(&self, args: &str) -> String {
        lab::cli(
            self.line,
            None,
            &format!("unix://{}", self.sock.display()),
            args,
        )
    }

    /// A's kernel route to `dst` with our tag, as `ip route` prints it.
    fn route(&self, dst: &str) -> String {
        lab::run(&[
            "ip", "-n", &self.a, "route", "show", "exact", dst, "proto", "73",
        ])
        .trim()
        .to_string()
    }
}

impl Drop for Lab {
    /// A failed assertion shows the daemons' logs.
    fn drop(&mut self) {
        if std::thread::panicking() {
            lab::show_logs(self.dir.path());
        }
    }
}

/// Samples A's route to each of `dsts` every 50 ms in a thread until the
/// returned flag is set; collects the samples at which one was missing.
fn watch_routes(
    lab_a: String,
    dsts: Vec<String>,
) -> (
    Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<Vec<String>>,
) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut gaps = Vec::new();
        let start = Instant::now();
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            for d in &dsts {
                let r = lab::run(&[
                    "ip", "-n", &lab_a, "route", "show", "exact", d, "proto", "73",
                ]);
                if r.trim().is_empty() {
                    gaps.push(format!("{d} missing at {:?}", start.elapsed()));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        gaps
    });
    (stop, handle)
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("signal");
}

fn main() {
    // The driver's logs on a failure: RUST_LOG=ipvlan_bgp=debug.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    common::run_async_trials(vec![
        ("v3_learned_paths_follow_peers", || {
            Box::pin(learned_paths_follow_peers(ApiLine::V3))
        }),
        ("v4_learned_paths_follow_peers", || {
            Box::pin(learned_paths_follow_peers(ApiLine::V4))
        }),
        ("v4_bfd_takes_a_frozen_peer_down_within_a_second", || {
            Box::pin(bfd_takes_a_frozen_peer_down())
        }),
        ("v3_managed_settings_read_back_and_drain", || {
            Box::pin(managed_settings_read_back_and_drain(ApiLine::V3))
        }),
        ("v4_managed_settings_read_back_and_drain", || {
            Box::pin(managed_settings_read_back_and_drain(ApiLine::V4))
        }),
        ("v3_refuses_bfd", || Box::pin(v3_refuses_bfd())),
        ("v3_drain_cli_waits_and_survives_a_restart", || {
            Box::pin(drain_cli(ApiLine::V3))
        }),
        ("v4_drain_cli_waits_and_survives_a_restart", || {
            Box::pin(drain_cli(ApiLine::V4))
        }),
        ("v3_stop_gobgpd_on_exit", || {
            Box::pin(stop_gobgpd_on_exit(ApiLine::V3))
        }),
        ("v4_stop_gobgpd_on_exit", || {
            Box::pin(stop_gobgpd_on_exit(ApiLine::V4))
        }),
        ("v4_stuck_handshake_is_added_again", || {
            Box::pin(stuck_handshake_is_added_again())
        }),
        ("v3_export_only_own_paths", || {
            Box::pin(export_only_own_paths(ApiLine::V3))
        }),
        ("v4_export_only_own_paths", || {
            Box::pin(export_only_own_paths(ApiLine::V4))
        }),
        ("v3_export_policy_after_a_failed_install", || {
            Box::pin(export_policy_after_a_failed_install(ApiLine::V3))
        }),
        ("v4_export_policy_after_a_failed_install", || {
            Box::pin(export_policy_after_a_failed_install(ApiLine::V4))
        }),
        (
            "v3_export_policy_after_a_driver_killed_before_the_install",
            || {
                Box::pin(export_policy_after_a_driver_killed_before_the_install(
                    ApiLine::V3,
                ))
            },
        ),
        (
            "v4_export_policy_after_a_driver_killed_before_the_install",
            || {
                Box::pin(export_policy_after_a_driver_killed_before_the_install(
                    ApiLine::V4,
                ))
            },
        ),
        ("v3_export_ipv6_next_hop_per_uplink", || {
            Box::pin(export_ipv6_next_hop_per_uplink(ApiLine::V3))
        }),
        ("v4_export_ipv6_next_hop_per_uplink", || {
            Box::pin(export_ipv6_next_hop_per_uplink(ApiLine::V4))
        }),
    ])
}

const PEERS: [&str; 2] = [
    "192.0.2.2:65001,hold=3,keepalive=1,connect-retry=1",
    "198.51.100.2:65002,hold=3,keepalive=1,connect-retry=1",
];

async fn learned_paths_follow_peers(line: ApiLine) -> Outcome {
    if let Some(why) = lab::missing(line, true) {
        return skip(&why);
    }
    let mut undo = Cleanup::default();
    let lab = Lab::new(line, "l", &mut undo);
    let mut a_pid = lab.start_a(&mut undo);
    let b_pid = lab.start_peer("b", false, &mut undo);
    lab.start_peer("c", false, &mut undo);
    // B and C originate before the sessions come up.
    for p in ["10.2.0.1/32", "10.2.1.1/32", "10.2.1.2/32"] {
        lab.peer_when_up("b", &format!("global rib add {p} nexthop 192.0.2.2"))
            .await;
    }
    for p in ["10.2.0.1/32", "10.2.2.1/32"] {
        lab.peer_when_up("c", &format!("global rib add {p} nexthop 198.51.100.2"))
            .await;
    }
    let d = Driver::start(&lab.a, config(&lab.sock, &PEERS, None), view(false, None));
    let all = ["10.2.0.1/32", "10.2.1.1/32", "10.2.1.2/32", "10.2.2.1/32"];
    let up = wait_for(Duration::from_secs(40), || {
        all.iter().all(|p| !lab.route(p).is_empty())
    })
    .await;
    if up.is_none() {
        lab::show_logs(lab.dir.path());
    }
    assert!(
        up.is_some(),
        "learned routes not installed: {:?} ({:?})",
        all.map(|p| lab.route(p)),
        d.metrics.bgp_snapshot()
    );
    eprintln!("[{line}] sessions up and 4 routes installed after {up:?}");
    assert_eq!(d.metrics.bgp_snapshot().api.as_deref(), Some(line.name()));
    // The withdrawals' cheap read of a session's state (4.x: a watch's INIT
    // events; 3.x has none and asks ListPeer).
    let mut probe = ipvlan_bgp::bgp::gobgp::Gobgp::connect(
        &GobgpAddr::Unix(lab.sock.clone()),
        Duration::from_secs(5),
    )
    .await
    .expect("connect to A's gobgpd");
    let b_up = probe.peer_up("192.0.2.2").await.expect("peer state");
    let unknown = probe.peer_up("192.0.2.99").await.expect("peer state");
    let expected = |v4: bool| match line {
        ApiLine::V4 => Some(v4),
        ApiLine::V3 => None,
    };
    assert_eq!(
        (b_up, unknown),
        (expected(true), expected(false)),
        "[{line}] B's session read as up, an unknown peer's as not"
    );

    // Multipath: B withdraws its member; C's keeps the route.
    let (stop, samples) = watch_routes(lab.a.clone(), vec!["10.2.0.1/32".into()]);
    lab.peer("b", "global rib del 10.2.0.1/32");
    let via_c = wait_for(Duration::from_secs(5), || {
        lab.route("10.2.0.1/32").contains("via 198.51.100.2")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let gaps = samples.join().expect("sampler");
    assert!(
        via_c.is_some() && gaps.is_empty(),
        "[{line}] B's withdrawal of one equal path took the route: {gaps:?}, now {:?}",
        lab.route("10.2.0.1/32")
    );

    // GRACEFUL_SHUTDOWN on receipt: B's shorter path carries it and loses.
    lab.peer(
        "c",
        "global rib add 10.2.3.1/32 nexthop 198.51.100.2 aspath 65009",
    );
    lab.peer(
        "b",
        "global rib add 10.2.3.1/32 nexthop 192.0.2.2 community 65535:0",
    );
    let both = wait_for(Duration::from_secs(10), || {
        lab.a_cli("global rib 10.2.3.1/32")
            .matches("10.2.3.1/32")
            .count()
            >= 2
    })
    .await;
    assert!(
        both.is_some(),
        "A's gobgpd has not both paths: {}",
        lab.a_cli("global rib")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = lab.route("10.2.3.1/32");
    assert!(
        r.contains("via 198.51.100.2") && !r.contains("192.0.2.2"),
        "[{line}] the GRACEFUL_SHUTDOWN path won: {:?}\n{}",
        lab.route("10.2.3.1/32"),
        lab.a_cli("global rib 10.2.3.1/32")
    );

    // B freezes: hold expiry (3 s). A's gobgpd keeps B's paths as stale for
    // B's restart time; the driver removes them at once.
    let frozen = Instant::now();
    signal(b_pid, nix::sys::signal::Signal::SIGSTOP);
    let gone = wait_for(Duration::from_secs(8), || {
        lab.route("10.2.1.1/32").is_empty()
    })
    .await;
    let took = frozen.elapsed();
    let b_frozen = probe.peer_up("192.0.2.2").await.expect("peer state");
    let rib: Value = serde_json::from_str(&lab.a_cli("global rib -j")).expect("json");
    let stale_in_gobgpd = rib["10.2.1.1/32"][0]["stale"].as_bool();
    signal(b_pid, nix::sys::signal::Signal::SIGCONT);
    assert!(
        gone.is_some() && took < Duration::from_secs(5),
        "[{line}] a frozen peer's route stayed {took:?}: {:?} ({:?})",
        lab.route("10.2.1.1/32"),
        d.metrics.bgp_snapshot().peers
    );
    eprintln!("[{line}] frozen peer's routes removed {took:?} after the freeze (hold 3 s); A's gobgpd: stale={stale_in_gobgpd:?}");
    assert_eq!(
        b_frozen,
        expected(false),
        "[{line}] the frozen peer's session read as up after its routes went"
    );
    assert_eq!(
        stale_in_gobgpd,
        Some(true),
        "A's gobgpd should still hold B's path as stale (the driver removed it): {}",
        rib["10.2.1.1/32"]
    );
    assert!(d.metrics.bgp_snapshot().peer_routes_dropped >= 2);
    assert!(!lab.route("10.2.3.1/32").is_empty(), "C's path stays");
    // B is back: its routes too (A's gobgpd sends no event for a stale
    // path refreshed unchanged; the driver reads the RIB at B's End-of-RIB).
    let back = wait_for(Duration::from_secs(40), || {
        !lab.route("10.2.1.1/32").is_empty() && !lab.route("10.2.1.2/32").is_empty()
    })
    .await;
    assert!(
        back.is_some(),
        "[{line}] B's routes not back: {:?}",
        d.metrics.bgp_snapshot().peers
    );
    eprintln!("[{line}] B's routes back {back:?} after SIGCONT");

    // A's gobgpd restarts; B withdraws 10.2.1.2 meanwhile.
    let kept = vec![
        "10.2.1.1/32".to_string(),
        "10.2.2.1/32".into(),
        "10.2.3.1/32".into(),
    ];
    let (stop, samples) = watch_routes(lab.a.clone(), kept);
    signal(a_pid, nix::sys::signal::Signal::SIGKILL);
    tokio::time::sleep(Duration::from_millis(500)).await;
    lab.peer("b", "global rib del 10.2.1.2/32");
    let _ = std::fs::remove_file(&lab.sock);
    a_pid = lab.start_a(&mut undo);
    let restarted = Instant::now();
    let removed = wait_for(Duration::from_secs(40), || {
        lab.route("10.2.1.2/32").is_empty()
    })
    .await;
    // Every peer back and its End-of-RIB in: nothing else may have moved.
    let settled = wait_for(Duration::from_secs(40), || {
        let p = d.metrics.bgp_snapshot().peers;
        p.len() == 2
            && p.iter()
                .all(|p| p.state == "established" && !p.end_of_rib.is_empty())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let gaps = samples.join().expect("sampler");
    let _ = a_pid;
    if removed.is_none() || !gaps.is_empty() {
        lab::show_logs(lab.dir.path());
    }
    assert!(
        removed.is_some_and(|t| t < Duration::from_secs(40)),
        "[{line}] the route B withdrew while A's gobgpd was down stayed {:?} after its restart (stale time 60 s)",
        restarted.elapsed()
    );
    eprintln!("[{line}] after A's gobgpd restart, B's withdrawn route went {removed:?} after it (stale time 60 s)");
    assert!(
        settled.is_some(),
        "peers not back: {:?}",
        d.metrics.bgp_snapshot().peers
    );
    assert!(
        gaps.is_empty(),
        "[{line}] routes left A's kernel during its gobgpd's restart: {gaps:?}"
    );
    d.stop().await.expect("clean stop");
    Ok(())
}

async fn bfd_takes_a_frozen_peer_down() -> Outcome {
    let line = ApiLine::V4;
    if let Some(why) = lab::missing(line, true) {
        return skip(&why);
    }
    let mut undo = Cleanup::default();
    let lab = Lab::new(line, "f", &mut undo);
    lab.start_a(&mut undo);
    let b_pid = lab.start_peer("b", true, &mut undo);
    lab.peer_when_up("b", "global rib add 10.2.1.1/32 nexthop 192.0.2.2")
        .await;
    let peer = ["192.0.2.2:65001,hold=9,keepalive=3,connect-retry=1,bfd=300ms,bfd-multiplier=3"];
    let d = Driver::start(&lab.a, config(&lab.sock, &peer, None), view(false, None));
    let bfd_up = wait_for(Duration::from_secs(30), || {
        let p = d.metrics.bgp_snapshot().peers;
        !lab.route("10.2.1.1/32").is_empty()
            && p.iter()
                .any(|p| p.bfd.as_ref().is_some_and(|b| b.state == "up"))
    })
    .await;
    if bfd_up.is_none() {
        lab::show_logs(lab.dir.path());
    }
    assert!(
        bfd_up.is_some(),
        "BFD not up in status, or the route not installed: {:?} {:?}",
        d.metrics.bgp_snapshot().peers,
        lab.route("10.2.1.1/32")
    );
    let text = d.metrics.render(0, 0);
    assert!(
        text.contains("ipvlan_bgp_peer_bfd_up{peer=\"192.0.2.2\"} 1"),
        "{text}"
    );
    // Let a status refresh pass so the BFD session is steady.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let frozen = Instant::now();
    signal(b_pid, nix::sys::signal::Signal::SIGSTOP);
    let gone = wait_for(Duration::from_secs(12), || {
        lab.route("10.2.1.1/32").is_empty()
    })
    .await;
    let took = frozen.elapsed();
    signal(b_pid, nix::sys::signal::Signal::SIGCONT);
    eprintln!("BFD 300 ms x 3: a frozen peer's route left A's kernel {took:?} after the freeze (hold 9 s)");
    assert!(
        gone.is_some() && took < Duration::from_secs(2),
        "not removed within 2 s with BFD: {took:?}"
    );
    d.stop().await.expect("clean stop");
    Ok(())
}

async fn managed_settings_read_back_and_drain(line: ApiLine) -> Outcome {
    if let Some(why) = lab::missing(line, true) {
        return skip(&why);
    }
    let mut undo = Cleanup::default();
    let lab = Lab::new(line, "s", &mut undo);
    lab.start_a(&mut undo);
    // B receives what a drain announces (with BFD on 4.x, as A asks).
    lab.start_peer("b", line == ApiLine::V4, &mut undo);
    let bfd = if line == ApiLine::V4 {
        ",bfd=300ms,bfd-multiplier=3"
    } else {
        ""
    };
    let peer = format!("192.0.2.2:65001,hold=9s,keepalive=3s{bfd}");
    let cfg = config(&lab.sock, &[&peer], Some(300));
    let d = Driver::start(&lab.a, cfg, view(true, None));
    let neighbor = || -> Option<Value> {
        let out = Command::new(lab::progs(line).1)
            .arg("--target")
            .arg(format!("unix://{}", lab.sock.display()))
            .args(["neighbor", "192.0.2.2", "-j"])
            .output()
            .ok()?;
        // The CLI prints `{"error": …}` (and exits 0) for an unknown peer.
        let nb: Value = serde_json::from_slice(&out.stdout).ok()?;
        nb["conf"].is_object().then_some(nb)
    };
    let added = wait_for(Duration::from_secs(15), || neighbor().is_some()).await;
    assert!(
        added.is_some(),
        "the driver added no peer: {:?}",
        d.metrics.bgp_snapshot()
    );
    let nb = neighbor().expect("neighbor");
    assert_eq!(nb["graceful_restart"]["enabled"], true, "{nb}");
    assert_eq!(nb["graceful_restart"]["restart_time"], 120, "{nb}");
    assert_eq!(nb["graceful_restart"]["longlived_enabled"], true, "{nb}");
    assert_eq!(nb["timers"]["config"]["hold_time"], 9, "{nb}");
    let afis = nb["afi_safis"].as_array().cloned().unwrap_or_default();
    assert_eq!(afis.len(), 2, "both families: {nb}");
    for a in &afis {
        assert_eq!(a["mp_graceful_restart"]["config"]["enabled"], true, "{a}");
        assert_eq!(
            a["long_lived_graceful_restart"]["config"]["restart_time"], 300,
            "{a}"
        );
    }
    if line == ApiLine::V4 {
        assert_eq!(nb["bfd"]["enabled"], true, "{nb}");
        assert_eq!(nb["bfd"]["desired_minimum_tx_interval"], 300_000, "{nb}");
        assert_eq!(nb["bfd"]["detection_multiplier"], 3, "{nb}");
    }
    // Our path, as gobgpd holds it, before the drain: no community, no MED.
    let path = || -> Value {
        let rib: Value = serde_json::from_str(&lab.a_cli("global rib -j")).unwrap_or(Value::Null);
        rib["10.1.1.5/32"][0]["attrs"].clone()
    };
    let attr = |attrs: &Value, ty: u64| -> Option<Value> {
        attrs
            .as_array()?
            .iter()
            .find(|a| a["type"].as_u64() == Some(ty))
            .cloned()
    };
    // What B received: its RIB's path for our prefix.
    let at_b = || -> Value {
        let rib: Value =
            serde_json::from_str(&lab.peer("b", "global rib -j")).unwrap_or(Value::Null);
        rib["10.1.1.5/32"][0]["attrs"].clone()
    };
    let announced = wait_for(Duration::from_secs(30), || at_b().is_array()).await;
    if announced.is_none() {
        lab::show_logs(lab.dir.path());
    }
    assert!(
        announced.is_some(),
        "B never received our path: A {} B {}",
        lab.a_cli("global rib"),
        lab.peer("b", "global rib")
    );
    assert!(attr(&path(), 8).is_none() && attr(&path(), 4).is_none());
    assert!(attr(&at_b(), 8).is_none() && attr(&at_b(), 4).is_none());
    // Drained: GRACEFUL_SHUTDOWN, the largest usable MED, and (the peer is
    // eBGP) our AS three more times.
    d.view.send_replace(Arc::new(view(true, Some(1_000))));
    let gshut = serde_json::json!([0xFFFF_0000u32]);
    let drained = wait_for(Duration::from_secs(10), || {
        attr(&at_b(), 8).is_some_and(|c| c["communities"] == gshut)
    })
    .await;
    assert!(drained.is_some(), "not drained at B: {}", at_b());
    let p = path();
    assert_eq!(
        attr(&p, 8).expect("COMMUNITIES")["communities"],
        gshut,
        "{p}"
    );
    assert_eq!(attr(&p, 4).expect("MED")["metric"], 4_294_967_294u32, "{p}");
    assert_eq!(
        attr(&p, 2).expect("AS_PATH")["as_paths"][0]["asns"],
        serde_json::json!([65000, 65000, 65000]),
        "{p}"
    );
    // The drain set no LOCAL_PREF (the iBGP method's 0); A's own import
    // policy for GRACEFUL_SHUTDOWN gives its RIB copy 1, which stays home.
    assert!(
        attr(&p, 5).is_none_or(|l| l["value"] != 0),
        "LOCAL_PREF 0 with only eBGP peers: {p}"
    );
    let b = at_b();
    assert_eq!(
        attr(&b, 4).expect("MED at B")["metric"],
        4_294_967_294u32,
        "{b}"
    );
    assert_eq!(
        attr(&b, 2).expect("AS_PATH at B")["as_paths"][0]["asns"],
        serde_json::json!([65000, 65000, 65000, 65000]),
        "{b}"
    );
    assert!(attr(&b, 5).is_none(), "no LOCAL_PREF crosses eBGP: {b}");
    let safe = wait_for(Duration::from_secs(15), || {
        d.metrics.bgp_snapshot().drain.safe_since.is_some()
    })
    .await;
    let st = d.metrics.bgp_snapshot().drain;
    assert!(safe.is_some() && st.drained && st.prefixes == 1, "{st:?}");
    eprintln!("[{line}] drain: safe to stop after {safe:?}: {}", st.detail);
    d.view.send_replace(Arc::new(view(true, None)));
    let undrained = wait_for(Duration::from_secs(10), || {
        let b = at_b();
        b.is_array() && attr(&b, 8).is_none() && attr(&b, 4).is_none()
    })
    .await;
    assert!(undrained.is_some(), "still drained at B: {}", at_b());
    assert!(
        attr(&path(), 8).is_none() && attr(&path(), 4).is_none(),
        "{}",
        path()
    );
    assert!(!d.metrics.bgp_snapshot().drain.drained);
    d.stop().await.expect("clean stop");

    // A restarted driver with another BFD interval updates the peer (4.x).
    if line == ApiLine::V4 {
        let cfg = config(
            &lab.sock,
            &["192.0.2.2:65001,hold=9s,keepalive=3s,bfd=100ms,bfd-multiplier=5"],
            Some(300),
        );
        let d = Driver::start(&lab.a, cfg, view(true, None));
        let updated = wait_for(Duration::from_secs(10), || {
            neighbor().is_some_and(|nb| nb["bfd"]["desired_minimum_tx_interval"] == 100_000)
        })
        .await;
        assert!(updated.is_some(), "BFD not updated: {:?}", neighbor());
        assert_eq!(neighbor().expect("nb")["bfd"]["detection_multiplier"], 5);
        d.stop().await.expect("clean stop");
    }
    Ok(())
}

async fn v3_refuses_bfd() -> Outcome {
    let line = ApiLine::V3;
    if let Some(why) = lab::missing(line, true) {
        return skip(&why);
    }
    let mut undo = Cleanup::default();
    let lab = Lab::new(line, "r", &mut undo);
    lab.start_a(&mut undo);
    let mut cfg = config(&lab.sock, &["192.0.2.2:65001,bfd=300ms"], None);
    cfg.speaker.listen_port = -1;
    let d = Driver::start(&lab.a, cfg, view(false, None));
    let r = tokio::time::timeout(Duration::from_secs(15), d.task)
        .await
        .expect("the BGP side gives up within 15 s")
        .expect("task");
    let e = r.expect_err("BFD against 3.x must be refused");
    assert!(e.contains("4.6") && e.contains("3.x"), "{e}");
    // Nothing was configured on gobgpd.
    assert!(
        lab.a_cli("neighbor").trim().lines().count() <= 1,
        "{}",
        lab.a_cli("neighbor")
    );

    // The binary: exits non-zero, saying why.
    let state = lab.dir.path().join("state");
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("ip")
            .args(["netns", "exec", &lab.a, env!("CARGO_BIN_EXE_ipvlan-bgp")])
            .arg("--socket")
            .arg(lab.dir.path().join("plugin.sock"))
            .arg("--state-dir")
            .arg(&state)
            .arg(format!("--gobgp=unix://{}", lab.sock.display()))
            .args([
                "--asn",
                "65000",
                "--router-id",
                "192.0.2.1",
                "--listen-port=-1",
            ])
            .args(["--peer", "192.0.2.2:65001", "--bfd", "--gobgp-timeout", "2"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the driver exits within 30 s")
    .expect("run the driver");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "exit status {:?}: {stderr}",
        out.status
    );
    assert!(
        stderr.contains("BFD needs gobgpd 4.6"),
        "the exit says why: {stderr}"
    );
    eprintln!("refused: {}", stderr.lines().last().unwrap_or_default());
    Ok(())
}

/// The `ipvlan-bgp` binary in A with its plugin socket at `sock`.
fn driver_binary(lab: &Lab, sock: &Path, log: &str) -> std::process::Child {
    driver_binary_with(lab, sock, log, &[])
}

/// [`driver_binary`] with further flags.
fn driver_binary_with(lab: &Lab, sock: &Path, log: &str, extra: &[&str]) -> std::process::Child {
    let log = std::fs::File::create(lab.dir.path().join(log)).expect("log");
    Command::new("ip")
        .args(["netns", "exec", &lab.a, env!("CARGO_BIN_EXE_ipvlan-bgp")])
        .arg("--socket")
        .arg(sock)
        .arg("--state-dir")
        .arg(lab.dir.path().join("state"))
        .arg(format!("--gobgp=unix://{}", lab.sock.display()))
        .args(["--asn", "65000", "--router-id", "192.0.2.1"])
        .args([
            "--peer",
            "192.0.2.2:65001,hold=3,keepalive=1,connect-retry=1",
        ])
        .args(extra)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start the driver")
}

/// `ipvlan-bgp ARGS --socket SOCK`: its exit status and output.
fn cli(args: &[&str], sock: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ipvlan-bgp"))
        .args(args)
        .arg("--socket")
        .arg(sock)
        .output()
        .expect("run ipvlan-bgp");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn drain_cli(line: ApiLine) -> Outcome {
    if let Some(why) = lab::missing(line, true) {
        return skip(&why);
    }
    let mut undo = Cleanup::default();
    let lab = Lab::new(line, "d", &mut undo);
    lab.start_a(&mut undo);
    lab.start_peer("b", false, &mut undo);
    let sock = lab.dir.path().join("plugin.sock");
    let pid = undo.child(driver_binary(&lab, &sock, "driver.log"));
    let metric = |name: &str| -> Option<String> {
        let (ok, text) = cli(&["metrics"], &sock);
        ok.then(|| {
            text.lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .map(|l| l.to_string())
        })
        .flatten()
    };
    let up = wait_for(Duration::from_secs(30), || {
        metric("ipvlan_bgp_peers_up").as_deref() == Some("ipvlan_bgp_peers_up 1")
    })
    .await;
    assert!(
        up.is_some(),
        "driver or peer not up: {:?}",
        cli(&["status"], &sock)
    );
    assert_eq!(
        metric("ipvlan_bgp_drained").as_deref(),
        Some("ipvlan_bgp_drained 0")
    );

    let started = Instant::now();
    let (ok, text) = cli(&["drain", "--wait", "--timeout", "30"], &sock);
    assert!(ok, "drain --wait failed: {text}");
    assert!(text.contains("safe to stop"), "{text}");
    eprintln!(
        "[{line}] drain --wait returned after {:?}:\n{text}",
        started.elapsed()
    );
    assert_eq!(
        metric("ipvlan_bgp_drained").as_deref(),
        Some("ipvlan_bgp_drained 1")
    );
    assert_eq!(
        metric("ipvlan_bgp_drain_safe").as_deref(),
        Some("ipvlan_bgp_drain_safe 1")
    );
    let (_, status) = cli(&["status"], &sock);
    assert!(status.contains("DRAINED"), "{status}");

    // A restarted driver is still drained (the state file keeps it).
    signal(pid, nix::sys::signal::Signal::SIGTERM);
    let gone = wait_for(Duration::from_secs(15), || {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    })
    .await;
    assert!(gone.is_some(), "the driver did not stop on SIGTERM");
    let _ = std::fs::remove_file(&sock);
    undo.child(driver_binary(&lab, &sock, "driver2.log"));
    let back = wait_for(Duration::from_secs(30), || {
        metric("ipvlan_bgp_drained").as_deref() == Some("ipvlan_bgp_drained 1")
    })
    .await;
    assert!(
        back.is_some(),
        "not drained after a restart: {:?}",
        metric("ipvlan_bgp_drained")
    );

    let (ok, text) = cli(&["undrain"], &sock);
    assert!(ok && text.contains("undrained"), "{text}");
    assert_eq!(
        metric("ipvlan_bgp_drained").as_deref(),
        Some("ipvlan_bgp_drained 0")
    );
    let (_, status) = cli(&["status"], &sock);
    assert!(!status.contains("DRAINED"), "{status}");
    Ok(())
}

/// SIGTERM to the driver `pid`; waits until it has exited.
async fn terminate(pid: u32) {
    signal(pid, nix::sys::signal::Signal::SIGTERM);
    let gone = wait_for(Duration::from_secs(15), || !alive(pid)).await;
    assert!(gone.is_some(), "the driver did not stop on SIGTERM");
}

/// The process lives (a zombie does not count).
fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// Whether `ok` stays true at every 100 ms sample for `d`.
async fn stays(d: Duration, ok: impl Fn() -> bool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if !ok() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ok()
}

/// `--stop-gobgpd-on-exit`: without it, a driver that exits leaves gobgpd
/// running BGP (B's session with A stays established past B's 3 s hold
/// time); with it, on 4.x the exiting driver stops BGP on gobgpd (the
/// process lives on, its BGP does not: B's session goes down and A's gobgpd
/// has no BGP running), and on 3.x, which cannot stop without a Cease, it
/// leaves gobgpd running and says so in its log.
async fn stop_gobgpd_on_exit(line: ApiLine) -> Outcome {
    if let Some(why) = lab::missing(line, true) {
        return skip(&why);
    }
    let mut undo = Cleanup::default();
    let lab = Lab::new(line, "o", &mut undo);
    let gobgpd = lab.start_a(&mut undo);
    lab.start_peer("b", false, &mut undo);
    let sock = lab.dir.path().join("plugin.sock");
    // B's view of its session with A (its API may not answer yet).
    let b_neighbors = || {
        Command::new("ip")
            .args(["netns", "exec", &lab.b, lab::progs(line).1])
            .args(["-u", "127.0.0.1", "-p", "50051", "neighbor"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let established = || b_neighbors().contains("Establ");
    // A's gobgpd runs BGP: its global settings answer with our AS.
    let a_runs_bgp = || {
        Command::new(lab::progs(line).1)
            .args(["--target", &format!("unix://{}", lab.sock.display())])
            .arg("global")
            .output()
            .is_ok_and(|o| {
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains("65000")
            })
    };

    let pid = undo.child(driver_binary(&lab, &sock, "driver.log"));
    let up = wait_for(Duration::from_secs(30), &established).await;
    assert!(
        up.is_some(),
        "B never established with A: {}",
        b_neighbors()
    );
    terminate(pid).await;
    assert!(
        stays(Duration::from_secs(5), &established).await,
        "[{line}] without the flag, B lost its session with A after the driver exited: {}",
        b_neighbors()
    );
    assert!(
        alive(gobgpd) && a_runs_bgp(),
        "[{line}] gobgpd no longer runs BGP"
    );

    let _ = std::fs::remove_file(&sock);
    let pid = undo.child(driver_binary_with(
        &lab,
        &sock,
        "driver2.log",
        &["--stop-gobgpd-on-exit"],
    ));
    // The restarted driver has taken over gobgpd once it counts the peer up.
    let ready = wait_for(Duration::from_secs(30), || {
        let (ok, text) = cli(&["metrics"], &sock);
        ok && text.lines().any(|l| l == "ipvlan_bgp_peers_up 1")
    })
    .await;
    assert!(
        ready.is_some(),
        "the second driver never counted the peer up: {:?}",
        cli(&["status"], &sock)
    );
    assert!(established(), "B lost A when the driver came back");
    terminate(pid).await;
    let log = std::fs::read_to_string(lab.dir.path().join("driver2.log")).unwrap_or_default();
    match line {
        ApiLine::V4 => {
            let down = wait_for(Duration::from_secs(5), || !established()).await;
            assert!(
                down.is_some(),
                "[v4] with the flag, B still holds an established session: {}",
                b_neighbors()
            );
            assert!(!a_runs_bgp(), "[v4] A's gobgpd still runs BGP");
            assert!(
                alive(gobgpd),
                "[v4] the flag stops BGP on gobgpd, not the process"
            );
            assert!(log.contains("stopped BGP on gobgpd gracefully"), "{log}");
        }
        ApiLine::V3 => {
            assert!(
                stays(Duration::from_secs(5), established).await,
                "[v3] gobgpd 3.x is left running: {}",
                b_neighbors()
            );
            assert!(
                log.contains("gobgpd 3.x cannot stop without a Cease"),
                "{log}"
            );
        }
    }
    Ok(())
}

/// BGP message types on the wire.
const BGP_OPEN: u8 = 1;
const BGP_KEEPALIVE: u8 = 4;

/// One BGP message: 16 bytes of marker, length, type, body.
fn bgp_message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&u16::try_from(19 + body.len()).expect("short").to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

/// B's OPEN: AS 65001, hold 3 s, router ID 192.0.2.2, IPv4 unicast and
/// 4-octet AS capabilities.
fn b_open() -> Vec<u8> {
    let caps: [u8; 16] = [2, 6, 1, 4, 0, 1, 0, 1, 2, 6, 65, 4, 0, 0, 0xfd, 0xe9];
    let mut body = vec![4];
    body.extend_from_slice(&65001u16.to_be_bytes());
    body.extend_from_slice(&3u16.to_be_bytes());
    body.extend_from_slice(&[192, 0, 2, 2]);
    body.push(caps.len() as u8);
    body.extend_from_slice(&caps);
    bgp_message(BGP_OPEN, &body)
}

/// Reads one BGP message; answers its type (None when the peer closed).
fn read_bgp(s: &mut std::net::TcpStream) -> Option<u8> {
    use std::io::Read;
    let mut head = [0u8; 19];
    s.read_exact(&mut head).ok()?;
    let len = usize::from(u16::from_be_bytes([head[16], head[17]]));
    let mut body = vec![0u8; len.saturating_sub(19)];
    s.read_exact(&mut body).ok()?;
    Some(head[18])
}

/// A BGP speaker at 192.0.2.2 (AS 65001) in namespace `ns` that drives A's
/// gobgpd 4.8 into the deadlock of docs/gobgp-v4.md §9: it dials A and
/// stays silent on that connection once A's OPEN has come on it (A's FSM
/// then sits in OpenSent with this incoming connection), and only then
/// answers A's own connection with an OPEN: A takes that outgoing
/// connection without reading the OPEN (negotiated hold time 0: no timers)
/// and waits forever on the one it left. Every later connection from A it
/// answers as a healthy peer does (OPEN, KEEPALIVE, one every second).
/// `accepted` counts A's connections; it ends when `stop` is set.
fn deadlocking_peer(
    ns: String,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    use std::io::Write;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let listener = TcpListener::bind("192.0.2.2:179").expect("listen on 179");
        listener.set_nonblocking(true).expect("nonblocking");
        let a: SocketAddr = "192.0.2.1:179".parse().expect("addr");
        let mut held = Vec::new();
        // A listens once the driver has started BGP on its gobgpd, and
        // closes a connection from B until the driver has added B as a
        // peer (after its first sync): dial until A answers with its OPEN.
        let dial = loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if let Ok(mut s) = TcpStream::connect_timeout(&a, Duration::from_secs(1)) {
                s.set_read_timeout(Some(Duration::from_secs(30)))
                    .expect("timeout");
                if read_bgp(&mut s) == Some(BGP_OPEN) {
                    break s;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        held.push(dial);
        while !stop.load(Ordering::Relaxed) {
            let mut c = match listener.accept() {
                Ok((c, _)) => c,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            };
            c.set_nonblocking(false).expect("blocking");
            c.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            let n = accepted.fetch_add(1, Ordering::SeqCst);
            if read_bgp(&mut c) != Some(BGP_OPEN) {
                continue;
            }
            let _ = c.write_all(&b_open());
            if n == 0 {
                // The deadlock: A sends its KEEPALIVE here and waits for
                // ours, which never comes, with no hold timer running.
                held.push(c);
                continue;
            }
            let _ = c.write_all(&bgp_message(BGP_KEEPALIVE, &[]));
            let mut reader = c.try_clone().expect("clone");
            std::thread::spawn(move || while read_bgp(&mut reader).is_some() {});
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed)
                    && c.write_all(&bgp_message(BGP_KEEPALIVE, &[])).is_ok()
                {
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
        }
    })
}

async fn stuck_handshake_is_added_again() -> Outcome {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let line = ApiLine::V4;
    if let Some(why) = lab::missing(line, true) {
        return skip(&why);
    }
    let mut undo = Cleanup::default();
    let lab = Lab::new(line, "k", &mut undo);
    lab.start_a(&mut undo);
    let accepted = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let peer_thread = deadlocking_peer(lab.b.clone(), accepted.clone(), stop.clone());
    let peer = ["192.0.2.2:65001,hold=3,keepalive=1,connect-retry=1"];
    let d = Driver::start(&lab.a, config(&lab.sock, &peer, None), view(false, None));
    let state = || {
        d.metrics
            .bgp_snapshot()
            .peers
            .iter()
            .find(|p| p.address == "192.0.2.2")
            .map(|p| p.state.clone())
    };
    // The fault is there: A's session sits in the handshake past its hold
    // time (3 s), with no NOTIFICATION and no return to Idle.
    let first = wait_for(Duration::from_secs(20), || {
        accepted.load(Ordering::SeqCst) >= 1
    })
    .await;
    assert!(first.is_some(), "A never dialled B");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let st = state();
    assert!(
        matches!(st.as_deref(), Some("opensent" | "openconfirm")) && accepted.load(Ordering::SeqCst) == 1,
        "the deadlock was not reproduced (8 s after A dialled, hold 3 s): state {st:?}, A's connections {}",
        accepted.load(Ordering::SeqCst)
    );
    assert_eq!(
        d.metrics.bgp_snapshot().stuck_handshakes,
        0,
        "reported before its bound (13 s)"
    );
    // The driver sees it past hold + 10 s (plus one 5 s peer refresh),
    // deletes and adds the peer: A dials again and the session comes up.
    let up = wait_for(Duration::from_secs(30), || {
        state().as_deref() == Some("established")
    })
    .await;
    let snapshot = d.metrics.bgp_snapshot();
    stop.store(true, Ordering::Relaxed);
    if up.is_none() {
        lab::show_logs(lab.dir.path());
    }
    assert!(
        up.is_some(),
        "the stuck session never came up: state {:?}, stuck reported {}, A's connections {}",
        state(),
        snapshot.stuck_handshakes,
        accepted.load(Ordering::SeqCst)
    );
    assert!(snapshot.stuck_handshakes >= 1, "{snapshot:?}");
    assert!(
        d.metrics
            .render(0, 0)
            .contains("ipvlan_bgp_peer_handshakes_stuck_total 1"),
        "the counter in /metrics"
    );
    eprintln!(
        "a session stuck in its handshake came up {:?} after the check began (stuck reported {} time(s))",
        up.expect("up"),
        snapshot.stuck_handshakes
    );
    d.stop().await.expect("clean stop");
    let _ = peer_thread.join();
    Ok(())
}

/// The export policy statement's lines in A's gobgpd's global export
/// policy; `None` while A's gobgpd does not answer (restarting).
fn export_statements(lab: &Lab) -> Option<usize> {
    let (_, cli) = lab::progs(lab.line);
    let target = format!("unix://{}", lab.sock.display());
    let o = Command::new(cli)
        .args(["--target", &target, "global", "policy", "export"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(
        String::from_utf8_lossy(&o.stdout)
            .matches(ipvlan_bgp::bgp::gobgp_api::EXPORT_STATEMENT)
            .count(),
    )
}

/// Whether C's gobgpd holds `prefix` (from A: C's only peer).
fn c_has(lab: &Lab, prefix: &str) -> bool {
    lab.peer("c", &format!("global rib {prefix}"))
        .contains(prefix)
}

async fn export_only_own_paths(line: ApiLine) -> Outcome {
    if let Some(why) = lab::missing(line, true) {
        return skip(&why);
    }
    let mut undo = Cleanup::default();
    let (lab, a_pid) = Lab::transit(line, "x", &mut undo).await;
    let mut d = Driver::start(&lab.a, config(&lab.sock, &PEERS, None), view(true, None));
    // Both facts of one moment: C has A's own path, A has installed B's.
    let up = wait_for(Duration::from_secs(40), || {
        c_has(&lab, "10.1.1.5/32") && !lab.route("10.2.1.1/32").is_empty()
    })
    .await;
    assert!(
        up.is_some(),
        "[{line}] C never got A's own path, or A never learned B's: C {}; A {:?}",
        lab.peer("c", "global rib"),
        lab.route("10.2.1.1/32")
    );
    assert!(
        no_transit(&lab).await,
        "[{line}] A passed B's path on to C: {}\nA's export policy: {}",
        lab.peer("c", "global rib"),
        lab.a_cli("global policy export")
    );
    assert_eq!(
        export_statements(&lab),
        Some(1),
        "[{line}] {}",
        lab.a_cli("global policy export")
    );
    eprintln!("[{line}] C holds A's own path, not B's (3 s); A's export policy installed once");
    // Installing it again (a start that failed half-way and is retried)
    // is a no-op: gobgpd's "already defined" / "duplicated policy" answers
    // are taken as done, and no second statement appears.
    let mut again = ipvlan_bgp::bgp::gobgp::Gobgp::connect(
        &GobgpAddr::Unix(lab.sock.clone()),
        Duration::from_secs(5),
    )
    .await
    .expect("connect to A's gobgpd");
    again
        .export_only_own_paths(&[])
        .await
        .expect("installing the export policy again");
    assert_eq!(
        export_statements(&lab),
        Some(1),
        "[{line}] installed twice: {}",
        lab.a_cli("global policy export")
    );

    // The driver restarts; gobgpd runs on with its policies: none added twice.
    d.stop().await.expect("clean stop");
    d = Driver::start(&lab.a, config(&lab.sock, &PEERS, None), view(true, None));
    let settled = wait_for(Duration::from_secs(20), || {
        d.metrics
            .bgp_snapshot()
            .peers
            .iter()
            .filter(|p| p.state == "established")
            .count()
            == 2
    })
    .await;
    assert!(settled.is_some(), "{:?}", d.metrics.bgp_snapshot().peers);
    assert!(
        no_transit(&lab).await,
        "[{line}] transit after a driver restart"
    );
    assert_eq!(
        export_statements(&lab),
        Some(1),
        "[{line}] after a driver restart: {}",
        lab.a_cli("global policy export")
    );

    // A's gobgpd restarts empty: the driver installs the policy again
    // before it adds the peers.
    let restart_a = |undo: &mut Cleanup| {
        signal(a_pid, nix::sys::signal::Signal::SIGKILL);
        let _ = std::fs::remove_file(&lab.sock);
        lab.start_a(undo)
    };
    let a_pid = restart_a(&mut undo);
    let back = wait_for(Duration::from_secs(40), || {
        export_statements(&lab) == Some(1)
            && c_has(&lab, "10.1.1.5/32")
            && !lab.route("10.2.1.1/32").is_empty()
    })
    .await;
    assert!(
        back.is_some(),
        "[{line}] after A's gobgpd restart: policy {}; C {}",
        lab.a_cli("global policy export"),
        lab.peer("c", "global rib")
    );
    assert!(
        no_transit(&lab).await,
        "[{line}] transit after a gobgpd restart"
    );
    d.stop().await.expect("clean stop");

    // An operator's gobgpd: its TOML runs BGP with the policy block that
    // docs/dual-uplink.md recommends; the driver adds the peers and leaves
    // gobgpd's policies alone.
    signal(a_pid, nix::sys::signal::Signal::SIGKILL);
    let _ = std::fs::remove_file(&lab.sock);
    let toml = lab.dir.path().join("a.toml");
    std::fs::write(
        &toml,
        format!(
            "[global.config]\n  as = 65000\n  router-id = \"192.0.2.1\"\n[global.use-multiple-paths.config]\n  enabled = true\n{}",
            docs_export_toml()
        ),
    )
    .expect("toml");
    let api = format!("--api-hosts=unix://{}", lab.sock.display());
    let f = toml.display().to_string();
    let a_pid = undo.child(lab::gobgpd(
        line,
        Some(&lab.a),
        &[&api, "-f", &f],
        &lab.dir.path().join("a-toml.log"),
    ));
    let d = Driver::start(&lab.a, config(&lab.sock, &PEERS, None), view(true, None));
    let up = wait_for(Duration::from_secs(40), || {
        export_statements(&lab) == Some(1)
            && c_has(&lab, "10.1.1.5/32")
            && !lab.route("10.2.1.1/32").is_empty()
    })
    .await;
    assert!(
        up.is_some(),
        "[{line}] the documented TOML: policy {:?}; C {}",
        export_statements(&lab),
        lab.peer("c", "global rib")
    );
    assert!(
        no_transit(&lab).await,
        "[{line}] transit with the documented TOML"
    );
    eprintln!("[{line}] the documented gobgpd TOML: C holds A's own path, not B's");
    d.stop().await.expect("clean stop");

    // `--export all` on a fresh gobgpd: B's path reaches C through A.
    signal(a_pid, nix::sys::signal::Signal::SIGKILL);
    let _ = std::fs::remove_file(&lab.sock);
    lab.start_a(&mut undo);
    let mut all = config(&lab.sock, &PEERS, None);
    all.speaker.export = Export::All;
    let d = Driver::start(&lab.a, all, view(true, None));
    let passed = wait_for(Duration::from_secs(40), || c_has(&lab, "10.2.1.1/32")).await;
    assert!(
        passed.is_some() && export_statements(&lab) == Some(0),
        "[{line}] --export all: C {}; A's export policy {}",
        lab.peer("c", "global rib"),
        lab.a_cli("global policy export")
    );
    eprintln!("[{line}] --export all: C got B's path through A after {passed:?}");
    d.stop().await.expect("clean stop");
    Ok(())
}

/// The router ID of `export_policy_after_a_failed_install`'s driver: the
/// test hook fails the export policy's install of this driver only (the
/// trials run in parallel, the others with 192.0.2.1).
const FAILING_ROUTER_ID: &str = "192.0.2.101";

/// The export policy fails to install once, after the driver's own
/// StartBgp (test hook): the next connection finds BGP running, knows the
/// start was its own, and installs the policy before it adds the peers.
/// Without that, the retry would take gobgpd for an operator's, install no
/// policy, and A would pass B's path on to C.
async fn export_policy_after_a_failed_install(line: ApiLine) -> Outcome {
    if let Some(why) = lab::missing(line, true) {
        return skip(&why);
    }
    let mut undo = Cleanup::default();
    let (lab, _) = Lab::transit(line, "p", &mut undo).await;
    let armed = || {
        FAIL_EXPORT_INSTALL
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|r| r == FAILING_ROUTER_ID)
    };
    FAIL_EXPORT_INSTALL
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(FAILING_ROUTER_ID.to_string());
    let mut cfg = config(&lab.sock, &PEERS, None);
    cfg.speaker.router_id = Some(FAILING_ROUTER_ID.into());
    let d = Driver::start(&lab.a, cfg, view(true, None));
    let up = wait_for(Duration::from_secs(40), || {
        c_has(&lab, "10.1.1.5/32") && !lab.route("10.2.1.1/32").is_empty()
    })
    .await;
    assert!(
        up.is_some(),
        "[{line}] C never got A's own path, or A never learned B's: C {}; A {:?}; the driver's last error: {:?}",
        lab.peer("c", "global rib"),
        lab.route("10.2.1.1/32"),
        d.metrics.bgp_snapshot().last_error
    );
    assert!(
        !armed(),
        "[{line}] the export policy's install never failed"
    );
    assert!(
        no_transit(&lab).await,
        "[{line}] after a failed install, A passed B's path on to C: {}\nA's export policy: {}",
        lab.peer("c", "global rib"),
        lab.a_cli("global policy export")
    );
    assert_eq!(
        export_statements(&lab),
        Some(1),
        "[{line}] after a failed install: {}",
        lab.a_cli("global policy export")
    );
    eprintln!("[{line}] the export policy failed to install once and the next connection installed it: C holds A's own path, not B's (3 s)");
    d.stop().await.expect("clean stop");
    Ok(())
}

/// The router ID of `export_policy_after_a_driver_killed_before_the_install`'s
/// driver (the test hook fails its installs only).
const KILLED_ROUTER_ID: &str = "192.0.2.102";

/// A driver killed between its StartBgp and the policies' install: the
/// test hook fails every export install of the first driver (its own
/// retries too, as a driver that dies before any would), which is then
/// aborted as a kill would end it (no shutdown). gobgpd runs BGP as our AS
/// without the export policy, and the state directory holds the mark. A
/// driver started afresh on the same directory (nothing in memory) finds
/// the mark naming this gobgpd's AS and router ID, installs the policy
/// before it adds the peers, and drops the mark: C never gets B's path,
/// the policy is there once.
async fn export_policy_after_a_driver_killed_before_the_install(line: ApiLine) -> Outcome {
    use ipvlan_bgp::bgp::owed_policies::{self, OWED_FILE};
    if let Some(why) = lab::missing(line, true) {
        return skip(&why);
    }
    let mut undo = Cleanup::default();
    let (lab, _) = Lab::transit(line, "m", &mut undo).await;
    let state = lab.dir.path().join("state");
    let hook = |arm: bool| {
        let mut h = FAIL_EXPORT_INSTALL
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        h.retain(|r| r != KILLED_ROUTER_ID);
        if arm {
            h.extend(std::iter::repeat_n(KILLED_ROUTER_ID.to_string(), 10_000));
        }
    };
    let failures = || {
        10_000
            - FAIL_EXPORT_INSTALL
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|r| *r == KILLED_ROUTER_ID)
                .count()
    };
    let mut cfg = config(&lab.sock, &PEERS, None);
    cfg.speaker.router_id = Some(KILLED_ROUTER_ID.into());
    // A mark that cannot be written (the state "directory" is a file):
    // BGP is not started at all, and the driver says why.
    let not_a_dir = lab.dir.path().join("not-a-dir");
    std::fs::write(&not_a_dir, "").expect("file");
    let d = Driver::start_with_state(&lab.a, cfg.clone(), view(true, None), Some(not_a_dir));
    let said = wait_for(Duration::from_secs(20), || {
        d.metrics
            .bgp_snapshot()
            .last_error
            .is_some_and(|e| e.contains(OWED_FILE))
    })
    .await;
    assert!(
        said.is_some(),
        "[{line}] an unwritable mark: the driver's last error {:?}",
        d.metrics.bgp_snapshot().last_error
    );
    assert!(
        !lab.a_cli("global").contains("65000"),
        "[{line}] BGP started without its mark: {}",
        lab.a_cli("global")
    );
    d.stop().await.expect("clean stop");
    eprintln!("[{line}] a mark that cannot be written: BGP not started, the error names the mark");

    hook(true);
    let d = Driver::start_with_state(&lab.a, cfg.clone(), view(true, None), Some(state.clone()));
    let failed = wait_for(Duration::from_secs(20), || failures() >= 1).await;
    assert!(failed.is_some(), "[{line}] the export install never failed");
    // Killed: no shutdown, nothing more from this driver.
    d.task.abort();
    let _ = d.task.await;
    let failed = failures();
    hook(false);
    let mark = owed_policies::read(&state);
    assert!(
        matches!(&mark, Ok(Some(m)) if m.asn == 65000 && m.router_id == KILLED_ROUTER_ID),
        "[{line}] the killed driver left no mark in {}: {mark:?}",
        state.display()
    );
    assert_eq!(
        export_statements(&lab),
        Some(0),
        "[{line}] the killed driver installed the export policy after all: {}",
        lab.a_cli("global policy export")
    );
    assert!(
        lab.a_cli("global").contains("65000"),
        "[{line}] A's gobgpd does not run BGP: {}",
        lab.a_cli("global")
    );
    eprintln!(
        "[{line}] the driver was killed after StartBgp and {failed} failed export installs: gobgpd runs AS 65000 without the export policy, the mark is in the state directory"
    );

    // The restarted driver: the same state directory, nothing in memory.
    let d = Driver::start_with_state(&lab.a, cfg, view(true, None), Some(state.clone()));
    let up = wait_for(Duration::from_secs(40), || {
        c_has(&lab, "10.1.1.5/32") && !lab.route("10.2.1.1/32").is_empty()
    })
    .await;
    assert!(
        up.is_some(),
        "[{line}] C never got A's own path, or A never learned B's: C {}; A {:?}; the driver's last error: {:?}",
        lab.peer("c", "global rib"),
        lab.route("10.2.1.1/32"),
        d.metrics.bgp_snapshot().last_error
    );
    assert!(
        no_transit(&lab).await,
        "[{line}] after a driver killed before the install, the restarted one let A pass B's path on to C: {}\nA's export policy: {}",
        lab.peer("c", "global rib"),
        lab.a_cli("global policy export")
    );
    assert_eq!(
        export_statements(&lab),
        Some(1),
        "[{line}] after the restart: {}",
        lab.a_cli("global policy export")
    );
    assert_eq!(
        owed_policies::read(&state),
        Ok(None),
        "[{line}] the mark outlived the install"
    );
    assert!(!state.join(OWED_FILE).exists());
    eprintln!("[{line}] the restarted driver read the mark and installed the export policy before the peers: C holds A's own path, not B's; the mark is gone");
    d.stop().await.expect("clean stop");
    Ok(())
}

/// The next hop `which` (B or C) holds for `prefix` (from A, its only
/// peer), as its CLI writes it; `None` while it has no path.
fn next_hop_at(lab: &Lab, which: &str, prefix: &str) -> Option<String> {
    let fam = if prefix.contains(':') { "-a ipv6" } else { "" };
    let out = lab.peer(which, &format!("global rib {fam} {prefix}"));
    let line = out.lines().find(|l| l.contains(prefix))?;
    // "*> PREFIX  NEXTHOP  AS_PATH  AGE  ATTRS": the field after the prefix.
    let mut words = line.split_whitespace().skip_while(|w| *w != prefix);
    words.next();
    words.next().map(str::to_string)
}

/// Dual-uplink mode, IPv6 over IPv4 sessions: each peer gets our IPv6
/// prefix with the IPv6 address of the uplink it is on as next hop.
async fn export_ipv6_next_hop_per_uplink(line: ApiLine) -> Outcome {
    if let Some(why) = lab::missing(line, true) {
        return skip(&why);
    }
    let mut undo = Cleanup::default();
    let lab = Lab::new(line, "6", &mut undo);
    // nodad: usable (not tentative) at once.
    ip(&lab.a, "addr add fd00:ab::1/64 dev ab0 nodad");
    ip(&lab.a, "addr add fd00:ac::1/64 dev ac0 nodad");
    let a_pid = lab.start_a(&mut undo);
    lab.start_peer("b", false, &mut undo);
    lab.start_peer("c", false, &mut undo);
    lab.peer_when_up("b", "global rib summary").await;
    lab.peer_when_up("c", "global rib summary").await;
    let mut cfg = config(&lab.sock, &PEERS, None);
    cfg.uplinks = vec!["ab0".into(), "ac0".into()];
    cfg.default_parent = None;
    // A view announcing `v4` and `v6`; B and C must hold each with these
    // next hops.
    let announce = |v4: &str, v6: &str| {
        let mut v = view(false, None);
        v.announcements.insert(n(v4), "ab0".into());
        v.announcements.insert(n(v6), "ab0".into());
        v.pools.insert(n("fd00:1::/64"));
        v
    };
    let want = |v4: &'static str, v6: &'static str| {
        [
            ("b", v6, "fd00:ab::1"),
            ("c", v6, "fd00:ac::1"),
            ("b", v4, "192.0.2.1"),
            ("c", v4, "198.51.100.1"),
        ]
    };
    let got = |w: &[(&str, &str, &str); 4]| -> Vec<String> {
        w.iter()
            .map(|(at, p, _)| format!("{at}: {p} via {:?}", next_hop_at(&lab, at, p)))
            .collect()
    };
    let all_there = |w: &[(&str, &str, &str); 4]| {
        w.iter()
            .all(|(at, p, nh)| next_hop_at(&lab, at, p).as_deref() == Some(*nh))
    };
    let w = want("10.1.1.5/32", "fd00:1::5/128");
    let d = Driver::start(&lab.a, cfg.clone(), announce(w[2].1, w[0].1));
    let up = wait_for(Duration::from_secs(40), || all_there(&w)).await;
    assert!(
        up.is_some(),
        "[{line}] the driver's export policy: {:?}; A's export policy: {}",
        got(&w),
        lab.a_cli("global policy export")
    );
    eprintln!("[{line}] driver-installed: {:?}", got(&w));
    d.stop().await.expect("clean stop");

    // An operator's gobgpd with the documented block (its addresses
    // replaced by the lab's): the same next hops, on prefixes B and C
    // never had (they keep the first ones as stale: graceful restart).
    signal(a_pid, nix::sys::signal::Signal::SIGKILL);
    let _ = std::fs::remove_file(&lab.sock);
    let block = docs_toml_with(ipvlan_bgp::bgp::gobgp_api::EXPORT_V6_NEXT_HOP)
        .replace("203.0.113.1", "192.0.2.2")
        .replace("203.0.113.5", "198.51.100.2")
        .replace("fd00:0:ff:1::2", "fd00:ac::1")
        .replace("fd00:0:ff::2", "fd00:ab::1");
    let toml = lab.dir.path().join("a6.toml");
    std::fs::write(
        &toml,
        format!(
            "[global.config]\n  as = 65000\n  router-id = \"192.0.2.1\"\n[global.use-multiple-paths.config]\n  enabled = true\n{block}"
        ),
    )
    .expect("toml");
    let api = format!("--api-hosts=unix://{}", lab.sock.display());
    let f = toml.display().to_string();
    undo.child(lab::gobgpd(
        line,
        Some(&lab.a),
        &[&api, "-f", &f],
        &lab.dir.path().join("a6-toml.log"),
    ));
    let w = want("10.1.1.6/32", "fd00:1::6/128");
    let d = Driver::start(&lab.a, cfg, announce(w[2].1, w[0].1));
    let up = wait_for(Duration::from_secs(40), || all_there(&w)).await;
    assert!(
        up.is_some(),
        "[{line}] the documented TOML: {:?}; A's export policy: {}",
        got(&w),
        lab.a_cli("global policy export")
    );
    eprintln!("[{line}] the documented gobgpd TOML: {:?}", got(&w));
    d.stop().await.expect("clean stop");
    Ok(())
}

/// The gobgpd TOML block docs/dual-uplink.md gives operators (the one
/// that names the export policy).
fn docs_export_toml() -> String {
    docs_toml_with(ipvlan_bgp::bgp::gobgp_api::EXPORT_POLICY)
}

/// The first TOML block of docs/dual-uplink.md that contains `needle`.
fn docs_toml_with(needle: &str) -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/dual-uplink.md"
    ))
    .expect("docs/dual-uplink.md");
    doc.split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(t, _)| t))
        .find(|t| t.contains(needle))
        .unwrap_or_else(|| panic!("a TOML block with {needle} in docs/dual-uplink.md"))
        .to_string()
}

/// C never holds B's path for 3 s (A is no transit).
async fn no_transit(lab: &Lab) -> bool {
    stays(Duration::from_secs(3), || !c_has(lab, "10.2.1.1/32")).await
}
