//! Benchmark: what one container costs the driver as the host fills up.
//!
//! Three hosts side by side, holding 10, 100 and 1,000 endpoints (override
//! with `-- --sizes 10,100,1000`), each a real [`Driver`] on the in-memory
//! fake kernel with a real state directory on disk (every fsync included),
//! and a BGP [`Learner`] holding 5,000 learned paths (other hosts' /32s
//! inside the shared subnet). One sample is one container's life on one
//! host: CreateEndpoint+Join timed together, then Leave+DeleteEndpoint timed
//! together, each followed by what the BGP side does with the published
//! view (build the policy inputs, `Learner::set_inputs`), so the size stays
//! constant. The hosts take turns sample by sample, so drift (other load on
//! the machine, the page cache) hits every size alike. No root needed.
//!
//!   cargo bench -p ipvlan-bgp --bench join_cost               # n = 200 per size
//!   cargo bench -p ipvlan-bgp --bench join_cost -- --n 500 --sizes 10,1000
//!   cargo bench -p ipvlan-bgp --bench join_cost -- --json out.json   # a BenchResult for `harness bench render`
//!
//! Prints, per size and operation, n/min/median/p90/max in microseconds,
//! the part of the median spent in the learner, and the bytes of every file
//! in the state directory at the end. The state directory is under
//! `target/` (not `/tmp`, which may be a tmpfs where fsync is free), or
//! `--dir DIR`.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use ipvlan_bgp::bgp::gobgp::LearnedPath;
use ipvlan_bgp::bgp::learner::Learner;
use ipvlan_bgp::bgp::policy::{ParentInfo, PolicyInputs};
use ipvlan_bgp::docker::Driver;
use ipvlan_bgp::kernel::fake::FakeKernel;
use ipvlan_bgp::metrics::Metrics;
use ipvlan_bgp::model::network::{
    Announce, Dataplane, EndpointSpec, MacvlanMode, NetworkSpec, Parent,
};
use ipvlan_bgp::store::Store;
use ipvlan_bgp::view::View;
use tokio::sync::watch;

const NET: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const LEARNED: u32 = 5_000;

struct Host {
    size: usize,
    dir: PathBuf,
    driver: Driver<FakeKernel>,
    fake: FakeKernel,
    view: watch::Receiver<Arc<View>>,
    learner: Learner,
    next: u32,
    join: Vec<Duration>,
    leave: Vec<Duration>,
    join_learner: Vec<Duration>,
    leave_learner: Vec<Duration>,
}

fn subnet() -> Ipv4Net {
    "10.1.0.0/16".parse().expect("valid")
}

fn endpoint(n: u32) -> EndpointSpec {
    // Local endpoints from 10.1.0.10 up; learned paths live in 10.1.128.0/17.
    let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 10)) + n);
    EndpointSpec {
        // The link name comes from the first 12 hex digits: they must differ.
        id: format!("{n:012x}{}", "e".repeat(52)),
        address: Some(Ipv4Net::new(addr, 16).expect("valid")),
        address6: None,
        mac: None,
        attrs: Default::default(),
    }
}

/// What `bgp::policy_inputs` makes of the view on a host whose parent eth0
/// holds 192.0.2.1/24 and whose peer is 192.0.2.2.
fn inputs(view: &View) -> PolicyInputs {
    let pools: Vec<IpNet> = view.pools.iter().copied().collect();
    PolicyInputs {
        pools: pools.clone(),
        network_subnets: pools,
        local_endpoints: view.local_endpoints.iter().copied().collect(),
        endpoints_via_host: view.endpoints_via_host.iter().copied().collect(),
        connected: vec!["192.0.2.0/24".parse().expect("valid")],
        own_addresses: ["192.0.2.1".parse().expect("valid")].into(),
        parents: vec![ParentInfo {
            name: "eth0".into(),
            index: 2,
            nets: vec!["192.0.2.0/24".parse().expect("valid")],
        }],
        neighbors: ["192.0.2.2".parse().expect("valid")].into(),
        next_hops: ["192.0.2.1".parse().expect("valid")].into(),
        default_gateways: Default::default(),
    }
}

fn to_learner(h: &mut Host) -> Duration {
    let t = Instant::now();
    let view = h.view.borrow_and_update().clone();
    let changes = h.learner.set_inputs(inputs(&view));
    assert!(
        changes.is_empty(),
        "a local endpoint changed a learned route"
    );
    t.elapsed()
}

impl Host {
    fn new(root: &Path, size: usize) -> Host {
        let dir = root.join(format!("host-{size}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("state dir");
        let fk = FakeKernel::new();
        fk.add_device("eth0", None, None, None);
        let (mut driver, view) =
            Driver::start(Store::new(&dir), fk.clone(), None).expect("driver starts");
        let spec = NetworkSpec {
            id: NET.into(),
            parent: Parent::parse("eth0").expect("valid"),
            dataplane: Dataplane::Macvlan {
                mode: MacvlanMode::Bridge,
            },
            subnet: Some(subnet()),
            gateway: Some("10.1.0.1/16".parse().expect("valid")),
            subnet6: None,
            gateway6: None,
            announce: Announce::Endpoint,
            internal: false,
            host_link: false,
            attrs: Default::default(),
            cluster_ipam: false,
        };
        driver.create_network(spec).expect("network");
        for n in 0..size as u32 {
            let ep = endpoint(n);
            driver.create_endpoint(NET, ep.clone()).expect("endpoint");
            driver.join(NET, &ep.id, "/nonexistent").expect("join");
        }
        let mut learner = Learner::new(
            73,
            ipvlan_bgp::bgp::learner::Limits::installing(1_000_000),
            Duration::from_secs(60),
            Arc::new(Metrics::default()),
        );
        let _ = learner.set_inputs(inputs(&view.borrow()));
        let paths = (0..LEARNED)
            .map(|i| LearnedPath {
                prefix: IpNet::V4(
                    Ipv4Net::new(
                        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 128, 0)) + i),
                        32,
                    )
                    .expect("valid"),
                ),
                next_hop: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))),
                withdraw: false,
                peer: Some("192.0.2.2".into()),
                as_path: vec![],
            })
            .collect();
        let installed = learner.learn(paths);
        assert_eq!(
            installed.len(),
            LEARNED as usize,
            "every learned path is installed"
        );
        let mut h = Host {
            size,
            dir,
            driver,
            fake: fk,
            view,
            learner,
            next: 100_000,
            join: Vec::new(),
            leave: Vec::new(),
            join_learner: Vec::new(),
            leave_learner: Vec::new(),
        };
        to_learner(&mut h);
        h
    }

    fn sample(&mut self) {
        let ep = endpoint(self.next);
        self.next += 1;
        let t = Instant::now();
        self.driver
            .create_endpoint(NET, ep.clone())
            .expect("create");
        self.driver.join(NET, &ep.id, "/nonexistent").expect("join");
        let l = to_learner(self);
        self.join.push(t.elapsed());
        self.join_learner.push(l);
        let t = Instant::now();
        self.driver.leave(NET, &ep.id).expect("leave");
        self.driver.delete_endpoint(NET, &ep.id).expect("delete");
        let l = to_learner(self);
        self.leave.push(t.elapsed());
        self.leave_learner.push(l);
        assert_eq!(self.driver.state().endpoint_count(), self.size);
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn stats(what: &str, size: usize, v: &[Duration], learner: &[Duration]) {
    let mut v = v.to_vec();
    v.sort();
    let mut l = learner.to_vec();
    l.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what:<22} endpoints={size:<5} n={:<4} min={:>8.0} median={:>8.0} p90={:>8.0} max={:>8.0} us   (learner median {:.0} us)",
        v.len(),
        us(v[0]),
        us(at(0.5)),
        us(at(0.9)),
        us(v[v.len() - 1]),
        us(l[l.len() / 2]),
    );
}

fn files(dir: &Path) -> String {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    format!("{}={len} B", e.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.join(", ")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let n: usize = flag("--n").and_then(|v| v.parse().ok()).unwrap_or(200);
    let sizes: Vec<usize> = flag("--sizes")
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100, 1000]);
    let root = flag("--dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-join-cost"));
    println!(
        "join_cost: {n} samples per size, sizes {sizes:?}, {LEARNED} learned paths, state under {}",
        root.display()
    );
    let t = Instant::now();
    let mut hosts: Vec<Host> = sizes.iter().map(|s| Host::new(&root, *s)).collect();
    println!("setup: {:.1} s", t.elapsed().as_secs_f64());
    for h in &hosts {
        println!("before  endpoints={:<5} {}", h.size, files(&h.dir));
    }
    for _ in 0..n {
        for h in hosts.iter_mut() {
            h.sample();
        }
    }
    for h in &hosts {
        stats("CreateEndpoint+Join", h.size, &h.join, &h.join_learner);
        stats("Leave+DeleteEndpoint", h.size, &h.leave, &h.leave_learner);
    }
    for h in &hosts {
        println!("after   endpoints={:<5} {}", h.size, files(&h.dir));
    }
    if let Some(out) = flag("--json") {
        json(Path::new(&out), n, &sizes, &hosts);
    }
    // Where the O(n) that is left goes: the View rebuilt on every change
    // (and compared with the last one), and a link lookup by name in the
    // fake kernel (a scan of every link; the real kernel looks names up in
    // a hash table).
    for h in &hosts {
        let none = Default::default();
        let t = Instant::now();
        for _ in 0..100 {
            let v = View::from_state(h.driver.state(), &none, h.driver.pending());
            assert!(*h.view.borrow().as_ref() == v);
        }
        let view = t.elapsed() / 100;
        let t = Instant::now();
        for _ in 0..100 {
            let v: View = h.view.borrow().as_ref().clone();
            assert_eq!(v.local_endpoints.len(), h.size);
        }
        let clone = t.elapsed() / 100;
        let t = Instant::now();
        for _ in 0..100 {
            assert!(h.fake.link_named("nonexistent").is_none());
        }
        let lookup = t.elapsed() / 100;
        println!(
            "parts   endpoints={:<5} View::from_state+compare {:.0} us, View clone {:.0} us, fake-kernel link lookup {:.1} us",
            h.size,
            us(view),
            us(clone),
            us(lookup)
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// Writes the samples as a `BenchResult`: one series per operation and
/// size (x = endpoints on the host), the state files' bytes as figures.
fn json(out: &Path, n: usize, sizes: &[usize], hosts: &[Host]) {
    let sizes_arg = sizes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut setup = common::setup(format!(
        "cargo bench -p ipvlan-bgp --bench join_cost -- --n {n} --sizes {sizes_arg} --json OUT"
    ));
    setup.insert("samples per size".into(), n.to_string());
    setup.insert("learned paths".into(), LEARNED.to_string());
    setup.insert(
        "kernel side".into(),
        "in-memory fake kernel; real state directory with fsync".into(),
    );
    let mut series = Vec::new();
    let mut figures = std::collections::BTreeMap::new();
    let mut lines = Vec::new();
    for h in hosts {
        for (what, v) in [
            ("CreateEndpoint+Join", &h.join),
            ("Leave+DeleteEndpoint", &h.leave),
        ] {
            let s = common::Series {
                name: what.into(),
                x: Some(h.size as f64),
                x_label: Some("endpoints on the host".into()),
                unit: "us".into(),
                samples: v.iter().map(|d| d.as_secs_f64() * 1e6).collect(),
            };
            lines.push(format!("{} at {} endpoints", s.line(), h.size));
            series.push(s);
        }
        let bytes: u64 = std::fs::read_dir(&h.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        figures.insert(
            format!("state on disk at {} endpoints (bytes)", h.size),
            bytes as f64,
        );
    }
    let r = common::BenchResult {
        bench: "join-cost".into(),
        setup,
        summary: format!(
            "the driver alone (fake kernel, real fsync, learner with {LEARNED} paths): {}",
            lines.join("; ")
        ),
        series,
        figures,
    };
    common::write_json(out, &r);
}
