//! `harness bench failover`: what a failure costs, with the hold time
//! alone (9 s, keepalive 3 s) and with BFD at 300 ms x 3, side by side in
//! one run, on gobgpd 4.x (on 3.x, which has no BFD, the hold time alone):
//!
//! - **a top-of-rack router dies** (its daemons killed, its links down):
//!   the traffic lost between a container behind the rack's two routers and
//!   one in another rack, as the longest run of unanswered pings (every
//!   2 ms, both ways, timed from the probes' own send stamps);
//! - **a peer host freezes** (its gobgpd and driver SIGSTOPped): the time
//!   until its container's route is gone from both other hosts, stamped by
//!   a netlink route subscription in each.
//!
//! Both cases' worlds are built up front and each round plays the two
//! settings one after the other, in alternating order, so that the
//! machine's load falls on both alike. Each round kills the router that
//! carries the traffic at that moment (after a return the other one does:
//! the returning router's paths are the newer), waits until everything is
//! back (sessions, BFD, routes), and goes on.
//!
//! In: the rounds, the GoBGP line, run options. Out: a [`BenchResult`] with one series per
//! case and setting (ms), and how many rounds needed a retry.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;

use super::measure::{poll_until, route_events, tagged_routes};
use super::stats::{BenchResult, Series};
use crate::engine::{ContainerEngine, ContainerRt, Emulator, Subnets};
use crate::probe::{Member, Prober};
use crate::scenario::{DaemonKind, GobgpLine, NetworkDef, Scenario};
use crate::topology::{Options, World};

/// The probe's interval: finer than the figures it measures.
const PROBE_INTERVAL: Duration = Duration::from_millis(2);

/// The two settings compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    Hold,
    Bfd,
}

impl Setting {
    fn label(self) -> &'static str {
        match self {
            Setting::Hold => "hold 9 s",
            Setting::Bfd => "BFD 300 ms x 3",
        }
    }

    /// The scenario text's `[bgp.bfd]` section for this setting.
    fn section(self) -> &'static str {
        match self {
            Setting::Hold => "",
            Setting::Bfd => "[bgp.bfd]\ninterval = \"300ms\"\nmultiplier = 3\n",
        }
    }
}

/// tor-failover's topology: h1 behind tor1a and tor1b, h3 behind tor2.
const TORS: &str = r#"
description = "failover bench: two top-of-rack routers"
requires = ["macvlan", "frr"]
gobgp = "{LINE}"
{BFD}
[driver]
args = ["--accept-pool", "10.27.0.0/16"]
[[segments]]
name = "rack1"
subnet = "192.0.2.0/26"
[[segments]]
name = "rack2"
subnet = "192.0.2.64/26"
[[segments]]
name = "spine"
subnet = "198.51.100.0/24"
[[hosts]]
name = "h1"
asn = 65001
segment = "rack1"
peers = ["tor1a", "tor1b"]
[[hosts]]
name = "h3"
asn = 65003
segment = "rack2"
gateway = "tor2"
peers = ["tor2"]
[[routers]]
name = "tor1a"
kind = "frr"
asn = 65101
links = { rack1 = "192.0.2.1/26", spine = "198.51.100.1/24" }
neighbors = ["h1", "tor2"]
[[routers]]
name = "tor1b"
kind = "frr"
asn = 65102
links = { rack1 = "192.0.2.2/26", spine = "198.51.100.2/24" }
neighbors = ["h1", "tor2"]
[[routers]]
name = "tor2"
kind = "frr"
asn = 65103
links = { rack2 = "192.0.2.65/26", spine = "198.51.100.3/24" }
neighbors = ["h3", "tor1a", "tor1b"]
[[networks]]
name = "net"
options = { dataplane = "macvlan" }
subnets = { h1 = "10.27.1.0/24", h3 = "10.27.3.0/24" }
"#;

/// Three hosts in an iBGP mesh on one switch.
const HOSTS: &str = r#"
description = "failover bench: three hosts"
requires = ["macvlan"]
gobgp = "{LINE}"
{BFD}
[driver]
args = ["--accept-pool", "10.29.0.0/16"]
[[hosts]]
name = "h1"
[[hosts]]
name = "h2"
[[hosts]]
name = "h3"
[[networks]]
name = "net"
options = { dataplane = "macvlan" }
subnet = "10.29.{n}.0/24"
"#;

/// One setting's two worlds and their containers.
struct Case {
    setting: Setting,
    tors: World,
    /// c1 on h1, c3 on h3 (kept alive with their engine).
    tor_pair: (ContainerRt, ContainerRt),
    hosts: World,
    /// c2 on h2, the one whose route must leave h1 and h3.
    c2: ContainerRt,
    /// The engines and the other containers, kept until the end.
    _engines: (Emulator, Emulator),
    _others: Vec<ContainerRt>,
    tor_loss: Vec<Duration>,
    host_gone: Vec<Duration>,
}

fn world(
    text: &str,
    setting: Setting,
    line: GobgpLine,
    opts: &Options,
) -> Result<(World, Emulator, NetworkDef)> {
    let text = text
        .replace("{BFD}", setting.section())
        .replace("{LINE}", line.name());
    let s = Scenario::parse(&text, std::path::Path::new("bench-failover.toml"))?;
    let mut opts = opts.clone();
    opts.gobgp = Some(line);
    let w = World::build(&s, &opts, &|m| {
        eprintln!("[bench] {}: {m}", setting.label())
    })?;
    let mut e = Emulator::default();
    let net = s.networks[0].clone();
    for (i, h) in w.hosts.iter().enumerate() {
        if net.on(&h.def.name) {
            e.create_network(&w, i, &net, Subnets::of(&net, &h.def.name))?;
        }
    }
    all_up(&w)?;
    Ok((w, e, net))
}

/// Waits (60 s at most, scaled) until every BGP session of every host and
/// router is established and every BFD session is up.
fn all_up(w: &World) -> Result<Duration> {
    poll_until(Duration::from_secs(60), || {
        let hosts = (0..w.hosts.len()).all(|i| {
            let bgp = w
                .bgp_sessions(i)
                .map(|p| !p.is_empty() && p.iter().all(|x| x.1))
                .unwrap_or(false);
            bgp && w
                .bfd_sessions(i)
                .map(|p| p.iter().all(|x| x.1))
                .unwrap_or(false)
        });
        let routers = w.routers.iter().all(|r| {
            r.sessions().map(|p| p.iter().all(|x| x.1)).unwrap_or(false)
                && r.bfd_sessions()
                    .map(|p| p.iter().all(|x| x.1))
                    .unwrap_or(false)
        });
        Ok(hosts && routers)
    })
    .context("sessions and BFD up")
}

fn member(c: &ContainerRt) -> Result<Member> {
    Ok(Member {
        label: c.name.clone(),
        netns: c.netns.clone(),
        addr: IpAddr::V4(c.address.ok_or_else(|| anyhow!("{} has no IPv4", c.name))?),
    })
}

fn host32(c: &ContainerRt) -> Result<ipnet::IpNet> {
    Ok(ipnet::IpNet::from(IpAddr::V4(
        c.address.ok_or_else(|| anyhow!("{} has no IPv4", c.name))?,
    )))
}

impl Case {
    fn build(setting: Setting, line: GobgpLine, opts: &Options) -> Result<Case> {
        let (tors, mut et, tnet) = world(TORS, setting, line, opts)?;
        let c1 = et.start(&tors, 0, &tnet, "c1")?;
        let c3 = et.start(&tors, 1, &tnet, "c3")?;
        let (hosts, mut eh, hnet) = world(HOSTS, setting, line, opts)?;
        let mut others = Vec::new();
        for (i, n) in ["c1", "c2", "c3"].iter().enumerate() {
            others.push(eh.start(&hosts, i, &hnet, n)?);
        }
        let c2 = others.swap_remove(1);
        Ok(Case {
            setting,
            tors,
            tor_pair: (c1, c3),
            hosts,
            c2,
            _engines: (et, eh),
            _others: others,
            tor_loss: Vec::new(),
            host_gone: Vec::new(),
        })
    }

    /// The top-of-rack router (index in `tors.routers`) h1 sends c3's traffic to.
    fn carrier(&self) -> Result<usize> {
        let dst = host32(&self.tor_pair.1)?;
        let r = tagged_routes(&self.tors, 0)?
            .into_iter()
            .find(|r| r.dst == dst)
            .ok_or_else(|| anyhow!("h1 has no route for {dst}"))?;
        let via = r
            .via
            .ok_or_else(|| anyhow!("h1's route for {dst} has no next hop"))?;
        self.tors
            .routers
            .iter()
            .position(|t| t.def.links.values().any(|a| IpAddr::V4(a.addr()) == via))
            .ok_or_else(|| anyhow!("h1 routes {dst} via {via}, which is no router"))
    }

    /// One ToR failure: the router carrying c1 -> c3 dies; the longest run
    /// of lost pings c1 <-> c3; then it comes back and everything settles.
    fn tor_round(&mut self) -> Result<Duration> {
        let ri = self.carrier()?;
        let pairs = vec![
            (member(&self.tor_pair.0)?, member(&self.tor_pair.1)?),
            (member(&self.tor_pair.1)?, member(&self.tor_pair.0)?),
        ];
        // Both directions must answer before the failure.
        let wait_reach = |what: &str| {
            poll_until(Duration::from_secs(30), || {
                Ok(
                    crate::probe::ping_pairs(&pairs, Duration::from_millis(200))?
                        .iter()
                        .all(|ok| *ok),
                )
            })
            .with_context(|| format!("c1 <-> c3 {what}"))
        };
        wait_reach("before the failure")?;
        let prober = Prober::start(pairs.clone(), PROBE_INTERVAL)?;
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        self.tors.routers[ri].down()?;
        wait_reach("after the failure")?;
        std::thread::sleep(Duration::from_millis(300));
        let stats = prober.stop();
        let lost = stats
            .iter()
            .map(|s| s.longest_outage)
            .max()
            .unwrap_or_default();
        // A run of lost pings that began before the kill is not this failure's.
        if let Some(s) = stats
            .iter()
            .find(|s| s.outage_began.is_some_and(|b| b + PROBE_INTERVAL < t0))
        {
            bail!("{} -> {} lost pings before the router died", s.from, s.to);
        }
        self.tors.routers[ri].up()?;
        all_up(&self.tors)?;
        Ok(lost)
    }

    /// One host freeze: h2's gobgpd and driver stop; the time until c2's
    /// route is gone from h1 and from h3; then h2 thaws and c2 is back.
    fn host_round(&mut self) -> Result<Duration> {
        let dst = host32(&self.c2)?;
        let mut ev1 = route_events(&self.hosts, 0)?;
        let mut ev3 = route_events(&self.hosts, 2)?;
        for h in [0, 2] {
            if !tagged_routes(&self.hosts, h)?.iter().any(|r| r.dst == dst) {
                bail!(
                    "{dst} is not on {} before the freeze",
                    self.hosts.hosts[h].def.name
                );
            }
        }
        let t0 = Instant::now();
        self.hosts
            .send_daemon(1, DaemonKind::Gobgpd, Signal::SIGSTOP)?;
        self.hosts
            .send_daemon(1, DaemonKind::Driver, Signal::SIGSTOP)?;
        let deadline = Duration::from_secs(40);
        let gone = [
            ev1.wait(dst, true, t0, deadline),
            ev3.wait(dst, true, t0, deadline),
        ];
        self.hosts
            .send_daemon(1, DaemonKind::Driver, Signal::SIGCONT)?;
        self.hosts
            .send_daemon(1, DaemonKind::Gobgpd, Signal::SIGCONT)?;
        let [g1, g3] = gone;
        let last = g1?.max(g3?);
        // Back everywhere before the next round.
        all_up(&self.hosts)?;
        for (ev, h) in [(&mut ev1, 0usize), (&mut ev3, 2)] {
            if !tagged_routes(&self.hosts, h)?.iter().any(|r| r.dst == dst) {
                ev.wait(dst, false, t0, Duration::from_secs(60))
                    .with_context(|| format!("{dst} back on {}", self.hosts.hosts[h].def.name))?;
            }
        }
        Ok(last - t0)
    }
}

/// Runs `rounds` rounds on GoBGP `line`; each plays both settings
/// (alternating which goes first) for both cases; on 3.x, which has no BFD,
/// the hold time alone.
pub fn failover(rounds: usize, line: GobgpLine, opts: &Options) -> Result<BenchResult> {
    if rounds == 0 {
        bail!("--runs must be at least 1");
    }
    let caps = crate::machine::detect();
    let gobgpd = match line {
        GobgpLine::V3 => caps.gobgpd.clone(),
        GobgpLine::V4 => caps.gobgpd_v4.clone(),
    }
    .ok_or_else(|| anyhow!("{} is not installed", line.daemon()))?;
    if line == GobgpLine::V4
        && !crate::machine::DriverCaps::probe(&opts.driver_bin)
            .map_err(|e| anyhow!(e))?
            .gobgp_v4
    {
        bail!(
            "the driver binary {} does not speak gobgpd 4.x's API (it refuses --bfd): \
             run a driver with the v4 codec, or measure the hold time alone with --gobgp-version v3",
            opts.driver_bin.display()
        );
    }
    let settings: &[Setting] = match line {
        GobgpLine::V3 => &[Setting::Hold],
        GobgpLine::V4 => &[Setting::Hold, Setting::Bfd],
    };
    let mut cases = settings
        .iter()
        .map(|&st| Case::build(st, line, opts))
        .collect::<Result<Vec<_>>>()?;
    let mut retried = 0;
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..cases.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for &k in &order {
            let c = &mut cases[k];
            // A round that fails (a flap on the way back) is retried once.
            let tor = c.tor_round().or_else(|e| {
                eprintln!(
                    "[bench] failover: {} ToR round {round}: {e:#}; again",
                    c.setting.label()
                );
                retried += 1;
                all_up(&c.tors)?;
                c.tor_round()
            })?;
            c.tor_loss.push(tor);
            let host = c.host_round().or_else(|e| {
                eprintln!(
                    "[bench] failover: {} host round {round}: {e:#}; again",
                    c.setting.label()
                );
                retried += 1;
                all_up(&c.hosts)?;
                c.host_round()
            })?;
            c.host_gone.push(host);
            eprintln!(
                "[bench] failover round {}/{rounds} {}: ToR death lost {:.0} ms, frozen host gone everywhere after {:.0} ms",
                round + 1,
                c.setting.label(),
                tor.as_secs_f64() * 1e3,
                host.as_secs_f64() * 1e3
            );
        }
    }
    let mut r = BenchResult::new(
        "failover",
        format!(
            "sudo target/release/harness bench failover --runs {rounds} --gobgp-version {line}"
        ),
    );
    r.setup.insert("runs".into(), rounds.to_string());
    r.setup.insert("gobgpd".into(), gobgpd);
    r.setup.insert(
        "timers".into(),
        match line {
            GobgpLine::V4 => "hold 9 s, keepalive 3 s, connect-retry 1 s on every session; BFD 300 ms x 3 (gobgpd 4.x, FRR bfdd) in the BFD case",
            GobgpLine::V3 => "hold 9 s, keepalive 3 s, connect-retry 1 s on every session; no BFD (gobgpd 3.x has none: --gobgp-version v4 adds the BFD case)",
        }
        .into(),
    );
    r.setup.insert(
        "timing".into(),
        "ToR: the longest run of unanswered ICMP echoes (every 2 ms, c1 <-> c3 both ways), from the probes' send stamps; \
         host: from the SIGSTOP of h2's gobgpd and driver until the route's deletion on the later of h1 and h3 (netlink route events)"
            .into(),
    );
    for c in &cases {
        r.series.push(Series::ms(
            format!("ToR dies: traffic lost ({})", c.setting.label()),
            &c.tor_loss,
        ));
    }
    for c in &cases {
        r.series.push(Series::ms(
            format!(
                "host frozen: its route gone from every other host ({})",
                c.setting.label()
            ),
            &c.host_gone,
        ));
    }
    r.figures
        .insert("rounds retried".into(), f64::from(retried));
    let n = cases.len();
    let fig = |k: usize| {
        r.series[k].stats().map_or("-".to_string(), |s| {
            format!("median {:.0} ms (p90 {:.0})", s.median, s.p90)
        })
    };
    let side = |first: usize| {
        (first..first + n)
            .zip(&cases)
            .map(|(k, c)| format!("{} with {}", fig(k), c.setting.label()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    r.summary = format!(
        "{rounds} failovers per case and setting, gobgpd {line}: a top-of-rack router dies: traffic lost {}; a host freezes: its route gone from every other host after {}{}",
        side(0),
        side(n),
        if line == GobgpLine::V3 {
            " (no BFD case: gobgpd 3.x has no BFD)"
        } else {
            ""
        }
    );
    Ok(r)
}
