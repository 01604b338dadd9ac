//! `harness bench convergence`: a container joins on one host; how long
//! until the other host has its route and its container reaches it, and how
//! long the withdrawal takes after it stops.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{median, ms, poll_until, rss_kib, tagged_routes, two_hosts};
use crate::engine::Engine;
use crate::world::Options;

/// Two hosts over iBGP: a container joins on b1, how long until b2 has its
/// route and until b2's container reaches it; and how long the withdrawal
/// takes after it leaves. Also the drivers' memory.
pub fn convergence(runs: usize, opts: &Options) -> Result<String> {
    use crate::probe::{ping_pairs, Member};
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let (w, mut e, net) = two_hosts(opts, &["b1", "b2"])?;
    let rss_idle = rss_kib(w.hosts[1].driver.pid());
    let c2 = e.start(&w, 1, &net, "c2")?;
    let from = Member {
        label: "c2".into(),
        netns: c2.netns.clone(),
        addr: c2.address,
    };
    let (mut route, mut reach, mut withdraw, mut join) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let t0 = Instant::now();
        let c1 = e.start(&w, 0, &net, &format!("c1r{i}"))?;
        join.push(t0.elapsed());
        let dst = ipnet::IpNet::V4(ipnet::Ipv4Net::new(c1.address, 32)?);
        poll_until(Duration::from_secs(10), || {
            Ok(tagged_routes(&w, 1)?.iter().any(|r| r.dst == dst))
        })?;
        route.push(t0.elapsed());
        let to = Member {
            label: "c1".into(),
            netns: c1.netns.clone(),
            addr: c1.address,
        };
        poll_until(Duration::from_secs(10), || {
            Ok(ping_pairs(&[(from.clone(), to.clone())], Duration::from_millis(50))?[0])
        })?;
        reach.push(t0.elapsed());
        let t1 = Instant::now();
        e.stop(&w, &c1)?;
        poll_until(Duration::from_secs(10), || {
            Ok(!tagged_routes(&w, 1)?.iter().any(|r| r.dst == dst))
        })?;
        withdraw.push(t1.elapsed());
    }
    let rss_busy = rss_kib(w.hosts[1].driver.pid());
    e.stop(&w, &c2)?;
    let out = format!(
        "convergence ({runs} runs, emulated docker run on b1, iBGP to b2; times from the start of the run): \
         container started (CreateEndpoint..OperInfo, sandbox set up) median {:.1} ms; route on b2 median {:.1} ms; \
         b2's container reaches it median {:.1} ms; route gone from b2, counted from the start of the stop (Revoke, Leave, ...), median {:.1} ms; \
         driver RSS {} KiB idle, {} KiB after the runs",
        ms(median(join)),
        ms(median(route)),
        ms(median(reach)),
        ms(median(withdraw)),
        rss_idle,
        rss_busy
    );
    drop(w);
    Ok(out)
}
