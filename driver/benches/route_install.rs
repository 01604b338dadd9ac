//! Benchmark: installing N learned routes with our installer versus `ip -batch`
//! and versus the `rtnetlink` crate pipelining the same requests.
//!
//! All three run in the same scratch network namespace, several rounds, the
//! order rotated each round; every side's install and delete are timed from
//! the same starting point (nothing opened yet). n, min, median, p90 and max
//! of each are printed, and comparisons are worded by their spread. Needs root.
//!
//!   sudo cargo bench -p ipvlan-bgp --bench route_install            # 100k routes, 5 rounds
//!   sudo cargo bench -p ipvlan-bgp --bench route_install -- 20000 3 --json out.json
//!
//! `--json` writes a one-element array in the shape of the harness's
//! `BenchResult` (bench "route-install"), which `harness bench render` plots.
//!
//! Ours goes through the real path a learned route takes after the policy:
//! `Installer` thread with its watch socket, batched netlink (many requests
//! per sendmsg), create-exclusive semantics, protocol tag 73. Also timed: one
//! full reconcile dump of the table with N routes installed (what the
//! periodic reconcile and a link event cost). `ip -batch` sends one request and waits for
//! its acknowledgement each time (protocol 188 so the two never collide);
//! its deletes are a second batch file of `route del` lines.
//! The `rtnetlink` arm sends the same create-exclusive requests (protocol 75)
//! through `rtnetlink::Handle`, up to 256 in flight, on a current-thread
//! tokio runtime whose socket lives in the namespace.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use ipvlan_bgp::kernel::real::Kernel;
use ipvlan_bgp::kernel::{Family, Route};
use ipvlan_bgp::metrics::Metrics;
use ipvlan_bgp::rib::installer::{Change, Installer};
use ipvlan_bgp::rib::table::RouteTable;
use ipvlan_bgp::rib::watch::RouteWatch;

use common::{median, ms, rank, BenchResult, Series};

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {}", args.join(" "));
}

fn prefixes(n: usize) -> Vec<Ipv4Net> {
    (0..n as u32)
        .map(|i| Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i + 256), 32).expect("valid"))
        .collect()
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut json_out: Option<std::path::PathBuf> = None;
    let mut args = Vec::new();
    let mut it = raw.iter();
    while let Some(a) = it.next() {
        if a == "--json" {
            json_out = it.next().map(Into::into);
        } else if let Some(p) = a.strip_prefix("--json=") {
            json_out = Some(p.into());
        } else if !a.starts_with("--") {
            args.push(a.clone());
        }
    }
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    if !nix::unistd::geteuid().is_root() {
        eprintln!("route_install: needs root (it builds a network namespace); skipped");
        return;
    }
    // Other work on the machine skews every figure: say how busy it was.
    let load_at_start = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string));
    let ns = format!("ibb-{}", std::process::id());
    ip(&["netns", "add", &ns]);
    let _guard = NsGuard(ns.clone());
    ip(&[
        "-n", &ns, "link", "add", "dxu0", "type", "veth", "peer", "name", "dxu1",
    ]);
    ip(&["-n", &ns, "addr", "add", "192.0.2.1/24", "dev", "dxu0"]);
    ip(&["-n", &ns, "link", "set", "dxu0", "up"]);
    ip(&["-n", &ns, "link", "set", "dxu1", "up"]);
    let path = std::path::PathBuf::from(format!("/run/netns/{ns}"));
    let mut k = Kernel::open_in_netns(&path).expect("netlink in namespace");
    let parent = k.link("dxu0").expect("get").expect("dxu0").index;

    let pfx = prefixes(n);
    let batch_file = std::env::temp_dir().join(format!("{ns}.batch"));
    let del_file = std::env::temp_dir().join(format!("{ns}.del.batch"));
    for (file, verb) in [(&batch_file, "add"), (&del_file, "del")] {
        let mut f = std::io::BufWriter::new(std::fs::File::create(file).expect("batch file"));
        for p in &pfx {
            writeln!(f, "route {verb} {p} via 192.0.2.2 dev dxu0 proto 188").expect("write");
        }
    }
    let routes: Vec<Route> = pfx
        .iter()
        .map(|p| Route {
            dst: IpNet::V4(*p),
            via: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))),
            oif: Some(parent),
            protocol: 73,
        })
        .collect();

    println!(
        "route_install: {n} routes, {rounds} rounds, order rotated each round (kernel {})",
        kernel_release()
    );
    // Every side is timed from the same starting point: nothing opened yet
    // (ip -batch: the process starts, enters the namespace, reads its file;
    // ours: the installer opens its sockets and starts its thread; rtnetlink:
    // a thread enters the namespace and opens its connection) until the
    // kernel has acknowledged the last route.
    let mut t = Timings::default();
    for round in 0..rounds {
        let mut order = [Side::IpBatch, Side::Ours, Side::Rtnetlink];
        order.rotate_left(round % 3);
        for side in order {
            match side {
                Side::IpBatch => {
                    let d = ip_batch(&ns, &batch_file);
                    assert_eq!(count(&mut k, 188), n, "ip -batch installed them all");
                    let dd = ip_batch(&ns, &del_file);
                    assert_eq!(count(&mut k, 188), 0, "ip -batch removed them all");
                    t.ip.push(d);
                    t.ip_del.push(dd);
                }
                Side::Ours => {
                    let metrics = Arc::new(Metrics::default());
                    let start = Instant::now();
                    let inst_kernel = Kernel::open_in_netns(&path).expect("netlink");
                    let watch = RouteWatch::open_in_netns(&path).expect("watch socket");
                    let (handle, thread, adopted) = Installer::start_with(
                        inst_kernel,
                        Some(watch),
                        73,
                        ipvlan_bgp::rib::installer::everywhere(),
                        metrics.clone(),
                    )
                    .expect("installer");
                    assert!(adopted.is_empty());
                    handle.send(routes.iter().map(|r| Change::Set((*r).into())).collect());
                    handle.flush_blocking();
                    t.ours.push(start.elapsed());
                    assert_eq!(metrics.bgp_snapshot().installed, n);
                    assert_eq!(metrics.bgp_snapshot().install_errors, 0);
                    assert_eq!(count(&mut k, 73), n, "our installer installed them all");
                    let s = Instant::now();
                    let dumped = RouteTable::dump(&mut k).expect("dump").len();
                    t.dumps.push(s.elapsed());
                    assert!(dumped >= n);
                    let s = Instant::now();
                    handle.send(routes.iter().map(|r| Change::Remove(r.dst)).collect());
                    handle.flush_blocking();
                    t.ours_del.push(s.elapsed());
                    assert_eq!(count(&mut k, 73), 0, "our installer removed them all");
                    drop(handle);
                    let _ = thread.join();
                }
                Side::Rtnetlink => {
                    let (d, dd) = rtnetlink_arm(&path, &pfx, parent);
                    assert_eq!(count(&mut k, 75), 0, "rtnetlink arm removed them all");
                    t.rtnl.push(d);
                    t.rtnl_del.push(dd);
                }
            }
        }
        let last = |v: &Vec<Duration>| ms(*v.last().expect("this round's figure"));
        println!(
            "  round {} ({:?} first): ip -batch {:>7.1} ms   ours {:>7.1} ms   rtnetlink {:>7.1} ms   (delete: ip -batch {:>7.1} ms, ours {:>7.1} ms, rtnetlink {:>7.1} ms)",
            round + 1,
            order[0],
            last(&t.ip),
            last(&t.ours),
            last(&t.rtnl),
            last(&t.ip_del),
            last(&t.ours_del),
            last(&t.rtnl_del)
        );
    }
    let _ = std::fs::remove_file(&batch_file);
    let _ = std::fs::remove_file(&del_file);

    let series = vec![
        Series::ms("ours", &t.ours),
        Series::ms("ip -batch", &t.ip),
        Series::ms("rtnetlink (256 in flight)", &t.rtnl),
        Series::ms("delete: ours", &t.ours_del),
        Series::ms("delete: ip -batch", &t.ip_del),
        Series::ms("delete: rtnetlink", &t.rtnl_del),
        Series::ms("full dump of the table (the reconcile's read)", &t.dumps),
        Series::rate("install rate: ours", n, &t.ours),
        Series::rate("install rate: ip -batch", n, &t.ip),
        Series::rate("install rate: rtnetlink", n, &t.rtnl),
    ];
    for s in &series {
        println!("{}", s.line());
    }
    let words = [
        compare(&series[0], &series[1]),
        compare(&series[0], &series[2]),
        compare(&series[3], &series[4]),
        compare(&series[3], &series[5]),
    ];
    for w in &words {
        println!("{w}");
    }
    let rate = |s: &Series| n as f64 / (median(&s.samples) / 1000.0);
    let summary = format!(
        "{n} routes, {rounds} rounds, order rotated; install rate at the median: ours {:.0} routes/s, ip -batch {:.0}, rtnetlink {:.0}. {}",
        rate(&series[0]),
        rate(&series[1]),
        rate(&series[2]),
        words.join("; ")
    );
    if let Some(out) = json_out {
        let mut setup = common::setup(format!(
            "sudo cargo bench -p ipvlan-bgp --bench route_install -- {n} {rounds} --json OUT"
        ));
        setup.insert("routes".to_string(), n.to_string());
        setup.insert("rounds".to_string(), rounds.to_string());
        if let Some(l) = load_at_start {
            setup.insert("load average at start".to_string(), l);
        }
        let mut figures = BTreeMap::new();
        for (i, name) in ["ours", "ip -batch", "rtnetlink"].iter().enumerate() {
            figures.insert(
                format!("install rate at the median, {name} (routes/s)"),
                rate(&series[i]),
            );
        }
        let r = BenchResult {
            bench: "route-install".into(),
            setup,
            summary,
            series,
            figures,
        };
        common::write_json(&out, &r);
    }
}

#[derive(Debug, Clone, Copy)]
enum Side {
    IpBatch,
    Ours,
    Rtnetlink,
}

#[derive(Default)]
struct Timings {
    ip: Vec<Duration>,
    ip_del: Vec<Duration>,
    ours: Vec<Duration>,
    ours_del: Vec<Duration>,
    rtnl: Vec<Duration>,
    rtnl_del: Vec<Duration>,
    dumps: Vec<Duration>,
}

fn ip_batch(ns: &str, file: &std::path::Path) -> Duration {
    let t = Instant::now();
    let st = Command::new("ip")
        .args(["-n", ns, "-batch"])
        .arg(file)
        .stdout(Stdio::null())
        .status()
        .expect("ip -batch");
    let d = t.elapsed();
    assert!(st.success(), "ip -batch {} failed", file.display());
    d
}

/// Worded as the harness's `stats::compare`: a difference only when the
/// p10..p90 ranges do not overlap and each side has at least 5 samples.
fn compare(a: &Series, b: &Series) -> String {
    let band = |s: &[f64]| {
        let mut v = s.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        (rank(&v, 0.1), rank(&v, 0.9))
    };
    let ((alo, ahi), (blo, bhi)) = (band(&a.samples), band(&b.samples));
    let (ma, mb) = (median(&a.samples), median(&b.samples));
    let n = a.samples.len().min(b.samples.len());
    if n < 5 {
        format!(
            "{} vs {}: too few samples to tell (n {n}; medians {ma:.1} vs {mb:.1} ms)",
            a.name, b.name
        )
    } else if ahi < blo || bhi < alo {
        format!(
            "{} median {ma:.1} vs {} median {mb:.1} ms: {} takes {:.2}x the time of {} (p10..p90 ranges do not overlap)",
            a.name,
            b.name,
            a.name,
            ma / mb,
            b.name
        )
    } else {
        format!(
            "{} vs {}: no measurable difference (medians {ma:.1} vs {mb:.1} ms, ratio {:.3}; the p10..p90 ranges overlap)",
            a.name,
            b.name,
            ma / mb
        )
    }
}

/// Installs then deletes `pfx` with the `rtnetlink` crate in the namespace at
/// `path`; returns both durations.
fn rtnetlink_arm(path: &std::path::Path, pfx: &[Ipv4Net], oif: u32) -> (Duration, Duration) {
    use futures::stream::{self, StreamExt};
    use netlink_packet_route::route::RouteProtocol;
    use rtnetlink::RouteMessageBuilder;

    // Timed from before the thread enters the namespace, like the others.
    let start = Instant::now();
    let ns = std::fs::File::open(path).expect("open netns");
    let pfx = pfx.to_vec();
    std::thread::spawn(move || {
        use std::os::fd::AsFd;
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection().expect("rtnetlink socket");
            tokio::spawn(conn);
            let msgs: Vec<_> = pfx
                .iter()
                .map(|p| {
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(p.addr(), p.prefix_len())
                        .gateway(Ipv4Addr::new(192, 0, 2, 2))
                        .output_interface(oif)
                        .protocol(RouteProtocol::from(75))
                        .build()
                })
                .collect();
            let errors = stream::iter(msgs.clone())
                .map(|m| handle.route().add(m).execute())
                .buffer_unordered(256)
                .filter(|r| std::future::ready(r.is_err()))
                .count()
                .await;
            let d_add = start.elapsed();
            assert_eq!(errors, 0, "rtnetlink installs failed");
            let t = Instant::now();
            let errors = stream::iter(msgs)
                .map(|m| handle.route().del(m).execute())
                .buffer_unordered(256)
                .filter(|r| std::future::ready(r.is_err()))
                .count()
                .await;
            let d_del = t.elapsed();
            assert_eq!(errors, 0, "rtnetlink deletes failed");
            (d_add, d_del)
        })
    })
    .join()
    .expect("rtnetlink arm")
}

fn count(k: &mut Kernel, proto: u8) -> usize {
    k.routes(Family::V4, Some(proto)).expect("dump").len()
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

struct NsGuard(String);

impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
