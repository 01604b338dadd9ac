//! Benchmark: what a peer leaking refused paths inside an accepted pool
//! costs the driver's memory (issue 19, point 5: 1,000,000 refused in-pool
//! /128s must grow its RSS by less than 100 MB).
//!
//! One sample is one fresh child process (this binary with `--child`, so no
//! allocator keeps what an earlier sample freed): a BGP [`Learner`] with the
//! default limits (`--max-learned`, `--max-rib`, `--max-rib-per-peer`), an
//! IPv6 /64 pool, and `--paths` /128s inside it from one peer, each with a
//! next hop off every link (refused: `next-hop-off-link`), fed in batches of
//! 10,000 as gobgpd's watch delivers them. The child reads its own VmRSS
//! before the learner exists and after the last batch, and its peak (VmHWM).
//! Samples run one after another. No root needed; no gobgpd (its own memory
//! for the same paths is gobgpd's, see `harness bench flood`).
//!
//!   cargo bench -p ipvlan-bgp --bench rib_memory                  # n = 5, 1,000,000 paths
//!   cargo bench -p ipvlan-bgp --bench rib_memory -- --n 7 --paths 1000000 --json out.json
//!   cargo bench -p ipvlan-bgp --bench rib_memory -- --max-rib 1000000   # as without the cap
//!
//! Prints per sample and as n/min/median/p90/max: RSS growth, peak growth
//! (KiB), the paths the learner kept, and the paths it dropped as rib-full.

mod common;

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{setup, Series};
use ipnet::{IpNet, Ipv6Net};
use ipvlan_bgp::bgp::gobgp::LearnedPath;
use ipvlan_bgp::bgp::learner::{Learner, Limits, DEFAULT_MAX_LEARNED, DEFAULT_MAX_RIB};
use ipvlan_bgp::bgp::policy::{ParentInfo, PolicyInputs};
use ipvlan_bgp::metrics::Metrics;

const BATCH: u64 = 10_000;

/// A `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn net(s: &str) -> IpNet {
    s.parse().expect("valid")
}

/// A host whose parent eth0 holds 2001:db8::1/64, peering with 2001:db8::2,
/// with one network whose subnet is the pool fd00:1::/64.
fn inputs() -> PolicyInputs {
    let pool = net("fd00:1::/64");
    PolicyInputs {
        pools: vec![pool],
        network_subnets: vec![pool],
        local_endpoints: Default::default(),
        endpoints_via_host: Default::default(),
        connected: vec![net("2001:db8::/64")],
        own_addresses: [IpAddr::V6("2001:db8::1".parse().expect("valid"))].into(),
        parents: vec![ParentInfo {
            name: "eth0".into(),
            index: 2,
            nets: vec![net("2001:db8::/64")],
        }],
        neighbors: [IpAddr::V6("2001:db8::2".parse().expect("valid"))].into(),
        next_hops: Default::default(),
        default_gateways: Default::default(),
    }
}

/// One sample: prints `rss_growth_kib peak_growth_kib kept dropped`.
fn child(paths: u64, max_rib: usize) {
    let rss0 = status_kib("VmRSS:");
    let hwm0 = status_kib("VmHWM:");
    let metrics = Arc::new(Metrics::default());
    let mut learner = Learner::new(
        73,
        Limits {
            installed: DEFAULT_MAX_LEARNED,
            rib: max_rib,
            per_peer: max_rib,
            ..Limits::default()
        },
        Duration::from_secs(60),
        metrics,
    );
    let _ = learner.set_inputs(inputs());
    let base = u128::from("fd00:1::".parse::<Ipv6Addr>().expect("valid"));
    let off_link: IpAddr = "2001:db8:ff::2".parse().expect("valid");
    let mut installed = 0;
    let mut start = 0;
    while start < paths {
        let end = (start + BATCH).min(paths);
        let batch = (start..end)
            .map(|i| LearnedPath {
                prefix: IpNet::V6(
                    Ipv6Net::new(Ipv6Addr::from(base + 1 + u128::from(i)), 128).expect("valid"),
                ),
                next_hop: Some(off_link),
                withdraw: false,
                peer: Some("2001:db8::2".into()),
                as_path: vec![65002],
            })
            .collect();
        installed += learner.learn(batch).len();
        start = end;
    }
    assert_eq!(
        installed, 0,
        "a path with an off-link next hop was installed"
    );
    let [rib, desired, rejected, sample] = learner.state_sizes();
    assert_eq!(desired, 0);
    let kept = rib.max(rejected);
    assert!(
        kept <= max_rib,
        "the learner kept {kept} paths, over --max-rib {max_rib}"
    );
    let rss = status_kib("VmRSS:");
    let hwm = status_kib("VmHWM:");
    eprintln!("child: rib {rib}, rejected {rejected}, sample {sample}");
    println!(
        "{} {} {} {}",
        rss.saturating_sub(rss0),
        hwm.saturating_sub(hwm0),
        kept,
        paths - kept as u64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let paths: u64 = flag("--paths")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let max_rib: usize = flag("--max-rib")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_RIB);
    if let Some(p) = flag("--child") {
        child(p.parse().expect("--child PATHS"), max_rib);
        return;
    }
    let n: usize = flag("--n").and_then(|v| v.parse().ok()).unwrap_or(5);
    let exe = std::env::current_exe().expect("own path");
    println!(
        "rib_memory: {n} samples, {paths} refused /128s in an accepted /64 each, --max-rib {max_rib}"
    );
    let (mut growth, mut peak, mut kept, mut dropped) = (vec![], vec![], 0, 0);
    for i in 0..n {
        let out = Command::new(&exe)
            .args([
                "--child",
                &paths.to_string(),
                "--max-rib",
                &max_rib.to_string(),
            ])
            .output()
            .expect("child runs");
        assert!(
            out.status.success(),
            "sample {i} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout);
        let v: Vec<u64> = line
            .split_whitespace()
            .map(|x| x.parse().expect("number"))
            .collect();
        println!(
            "sample {}: RSS +{} KiB, peak +{} KiB, kept {}, dropped {}",
            i + 1,
            v[0],
            v[1],
            v[2],
            v[3]
        );
        growth.push(v[0] as f64);
        peak.push(v[1] as f64);
        (kept, dropped) = (v[2], v[3]);
    }
    let series = |name: &str, s: &[f64]| Series {
        name: name.into(),
        x: None,
        x_label: None,
        unit: "KiB".into(),
        samples: s.to_vec(),
    };
    let s = [
        series(
            &format!("RSS growth holding {paths} refused in-pool /128s"),
            &growth,
        ),
        series(
            &format!("peak RSS growth during {paths} refused in-pool /128s"),
            &peak,
        ),
    ];
    for x in &s {
        println!("{}", x.line());
    }
    if let Some(out) = flag("--json") {
        let command = format!(
            "cargo bench -p ipvlan-bgp --bench rib_memory -- --n {n} --paths {paths} --max-rib {max_rib} --json OUT"
        );
        let r = common::BenchResult {
            bench: "rib-memory".into(),
            setup: setup(command),
            summary: format!(
                "{paths} /128s inside an accepted /64, next hop off-link, one peer, {n} fresh processes: \
                 the learner keeps {kept} (--max-rib {max_rib}) and drops {dropped} as rib-full; RSS growth median {:.0} KiB, peak growth median {:.0} KiB",
                common::median(&growth),
                common::median(&peak)
            ),
            series: s.into(),
            figures: [
                ("paths kept".to_string(), kept as f64),
                ("paths dropped as rib-full".to_string(), dropped as f64),
            ]
            .into(),
        };
        std::fs::write(
            Path::new(&out),
            serde_json::to_string_pretty(&[r]).expect("json"),
        )
        .expect("write --json");
    }
}
