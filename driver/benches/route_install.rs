//! Benchmark: installing N learned routes with our installer versus `ip -batch`
//! and versus the `rtnetlink` crate pipelining the same requests.
//!
//! Both run in the same scratch network namespace, alternating, several
//! rounds; the medians and their ratio are printed. Needs root.
//!
//!   sudo cargo bench -p ipvlan-bgp --bench route_install            # 100k routes, 5 rounds
//!   sudo cargo bench -p ipvlan-bgp --bench route_install -- 20000 3
//!
//! Ours goes through the real path a learned route takes after the policy:
//! `Installer` thread with its watch socket, batched netlink (many requests
//! per sendmsg), create-exclusive semantics, protocol tag 73. Also timed: one
//! full reconcile dump of the table with N routes installed (what the
//! periodic reconcile and a link event cost). `ip -batch` sends one request and waits for
//! its acknowledgement each time (protocol 188 so the two never collide).
//! The `rtnetlink` arm sends the same create-exclusive requests (protocol 75)
//! through `rtnetlink::Handle`, up to 256 in flight, on a current-thread
//! tokio runtime whose socket lives in the namespace.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use ipvlan_bgp::bgp::installer::{Change, Installer};
use ipvlan_bgp::bgp::route_table::RouteTable;
use ipvlan_bgp::bgp::route_watch::RouteWatch;
use ipvlan_bgp::kernel::{Family, Kernel, Route};
use ipvlan_bgp::metrics::Metrics;

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {}", args.join(" "));
}

fn prefixes(n: usize) -> Vec<Ipv4Net> {
    (0..n as u32)
        .map(|i| Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i + 256), 32).expect("valid"))
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    if !nix::unistd::geteuid().is_root() {
        eprintln!("route_install: needs root (it builds a network namespace); skipped");
        return;
    }
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
    {
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(&batch_file).expect("batch file"));
        for p in &pfx {
            writeln!(f, "route add {p} via 192.0.2.2 dev dxu0 proto 188").expect("write");
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
        "route_install: {n} routes, {rounds} rounds, alternating (kernel {})",
        kernel_release()
    );
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut ours_del = Vec::new();
    let mut dumps = Vec::new();
    let mut rtnl = Vec::new();
    let mut rtnl_del = Vec::new();
    for round in 0..rounds {
        // ip -batch
        let t = Instant::now();
        let st = Command::new("ip")
            .args(["-n", &ns, "-batch"])
            .arg(&batch_file)
            .stdout(Stdio::null())
            .status()
            .expect("ip -batch");
        let d_ip = t.elapsed();
        assert!(st.success(), "ip -batch failed");
        assert_eq!(count(&mut k, 188), n, "ip -batch installed them all");
        ip(&["-n", &ns, "route", "flush", "proto", "188"]);

        // ours: the installer thread, as the learner feeds it
        let metrics = Arc::new(Metrics::default());
        let inst_kernel = Kernel::open_in_netns(&path).expect("netlink");
        let watch = RouteWatch::open_in_netns(&path).expect("watch socket");
        let (handle, thread, adopted) =
            Installer::start_with(inst_kernel, Some(watch), 73, metrics.clone())
                .expect("installer");
        assert!(adopted.is_empty());
        let t = Instant::now();
        handle.send(routes.iter().map(|r| Change::Set(*r)).collect());
        handle.flush_blocking();
        let d_ours = t.elapsed();
        assert_eq!(metrics.bgp_snapshot().installed, n);
        assert_eq!(metrics.bgp_snapshot().install_errors, 0);
        assert_eq!(count(&mut k, 73), n, "our installer installed them all");
        let t = Instant::now();
        let dumped = RouteTable::dump(&mut k).expect("dump").len();
        dumps.push(t.elapsed());
        assert!(dumped >= n);
        let t = Instant::now();
        handle.send(routes.iter().map(|r| Change::Remove(r.dst)).collect());
        handle.flush_blocking();
        let d_del = t.elapsed();
        assert_eq!(count(&mut k, 73), 0, "our installer removed them all");
        drop(handle);
        let _ = thread.join();

        // rtnetlink, pipelined
        let (d_rt, d_rt_del) = rtnetlink_arm(&path, &pfx, parent);
        assert_eq!(count(&mut k, 75), 0, "rtnetlink arm removed them all");
        rtnl.push(d_rt);
        rtnl_del.push(d_rt_del);

        println!(
            "  round {}: ip -batch {:>7.1} ms   ours {:>7.1} ms   rtnetlink {:>7.1} ms   (delete: ours {:>7.1} ms, rtnetlink {:>7.1} ms)",
            round + 1,
            ms(d_ip),
            ms(d_ours),
            ms(d_rt),
            ms(d_del),
            ms(d_rt_del)
        );
        theirs.push(d_ip);
        ours.push(d_ours);
        ours_del.push(d_del);
    }
    let (mi, mo) = (median(theirs), median(ours));
    println!(
        "median: ip -batch {:.1} ms ({:.0} routes/s)   ours {:.1} ms ({:.0} routes/s)   ours/ip-batch time ratio {:.2} ({:.2}x the rate)",
        ms(mi),
        n as f64 / mi.as_secs_f64(),
        ms(mo),
        n as f64 / mo.as_secs_f64(),
        mo.as_secs_f64() / mi.as_secs_f64(),
        mi.as_secs_f64() / mo.as_secs_f64()
    );
    let mr = median(rtnl);
    println!(
        "median rtnetlink (256 in flight): {:.1} ms ({:.0} routes/s)   ours/rtnetlink time ratio {:.2}",
        ms(mr),
        n as f64 / mr.as_secs_f64(),
        mo.as_secs_f64() / mr.as_secs_f64()
    );
    println!(
        "median delete: ours {:.1} ms   rtnetlink {:.1} ms",
        ms(median(ours_del)),
        ms(median(rtnl_del))
    );
    println!(
        "median full dump of the table ({n} routes, the reconcile's read): {:.1} ms",
        ms(median(dumps))
    );
    let _ = std::fs::remove_file(&batch_file);
}

/// Installs then deletes `pfx` with the `rtnetlink` crate in the namespace at
/// `path`; returns both durations.
fn rtnetlink_arm(path: &std::path::Path, pfx: &[Ipv4Net], oif: u32) -> (Duration, Duration) {
    use futures::stream::{self, StreamExt};
    use netlink_packet_route::route::RouteProtocol;
    use rtnetlink::RouteMessageBuilder;

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
            let t = Instant::now();
            let errors = stream::iter(msgs.clone())
                .map(|m| handle.route().add(m).execute())
                .buffer_unordered(256)
                .filter(|r| std::future::ready(r.is_err()))
                .count()
                .await;
            let d_add = t.elapsed();
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
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
