//! Whole route sets on every host: `expect-converged` and `bench scale`.
//!
//! In: the world, the running containers and, for hosts that announce the
//! cluster IPAM's blocks, the blocks each holds. Out: for each Docker host the
//! set it must hold (every block every *other* host holds, and the /32 and
//! /128 of every running container there that no block of its host covers,
//! through that host's underlay address of the same family, and nothing
//! else of ours),
//! how long it took until every host held its set ([`wait_converged`]), and
//! which routes went missing while it should have kept holding
//! ([`watch_held`]). Each host is read with one netlink socket opened in
//! its namespace once and dumped on every round; a host that differs is
//! named with its missing, extra and misrouted prefixes, each with the
//! container it belongs to.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use ipnet::IpNet;
use ipvlan_bgp::kernel::real::Kernel;
use ipvlan_bgp::kernel::Family;

use super::views::{SeenRoutes, WantRoute};
use crate::engine::ContainerRt;
use crate::topology::World;

/// How often the route sets are read while waiting (each round reads every
/// host that has not converged yet).
const ROUND: Duration = Duration::from_millis(20);
/// How many prefixes of each kind a failure lists per host.
const LIST: usize = 8;

/// What every host must hold.
pub struct Expected {
    /// (host index, host name, its wanted routes), one per checked host.
    pub hosts: Vec<(usize, String, Vec<WantRoute>)>,
    /// Container address -> "name on host", for messages.
    names: HashMap<IpAddr, String>,
    /// Block -> "block of host", for messages.
    blocks: HashMap<IpNet, String>,
    /// Whether any host must hold IPv6 routes (else only IPv4 is read).
    v6: bool,
}

impl Expected {
    /// The full sets for `hosts` (indices of Docker hosts), given the
    /// running containers (each announces its /32 from its own host).
    pub fn new<'a>(
        w: &World,
        hosts: &[usize],
        running: impl IntoIterator<Item = &'a ContainerRt>,
    ) -> Result<Expected> {
        Expected::with_blocks(w, hosts, running, &BTreeMap::new())
    }

    /// As [`Expected::new`], where the hosts in `held` (index -> the
    /// cluster IPAM's blocks it holds) announce each of their blocks and a
    /// host route only for a container outside them (a stray).
    pub fn with_blocks<'a>(
        w: &World,
        hosts: &[usize],
        running: impl IntoIterator<Item = &'a ContainerRt>,
        held: &BTreeMap<usize, Vec<IpNet>>,
    ) -> Result<Expected> {
        let running: Vec<&ContainerRt> = running.into_iter().collect();
        let mut names = HashMap::new();
        for c in &running {
            for p in c.host_prefixes() {
                names.insert(
                    p.addr(),
                    format!("{} on {}", c.name, w.hosts[c.host].def.name),
                );
            }
        }
        let mut blocks = HashMap::new();
        for (j, bs) in held {
            for b in bs {
                blocks.insert(*b, format!("block of {}", w.hosts[*j].def.name));
            }
        }
        let mut out = Vec::new();
        let mut v6 = false;
        for &i in hosts {
            let mut want: BTreeMap<IpNet, Option<IpAddr>> = BTreeMap::new();
            let via = |j: usize, dst: &IpNet| {
                let origin = &w.hosts[j];
                match dst {
                    IpNet::V4(_) => Some(origin.addr.addr().into()),
                    IpNet::V6(_) => origin.addr6.map(|a| a.addr().into()),
                }
            };
            for (&j, bs) in held.iter().filter(|(j, _)| **j != i) {
                for b in bs {
                    want.insert(*b, via(j, b));
                }
            }
            for c in running.iter().filter(|c| c.host != i) {
                let covering = held.get(&c.host).map_or(&[][..], Vec::as_slice);
                for dst in c.host_prefixes() {
                    if covering.iter().any(|b| b.contains(&dst)) {
                        continue;
                    }
                    want.insert(dst, via(c.host, &dst));
                }
            }
            v6 |= want.keys().any(|d| d.addr().is_ipv6());
            let want = want
                .into_iter()
                .map(|(dst, via)| WantRoute { dst, via })
                .collect();
            out.push((i, w.hosts[i].def.name.clone(), want));
        }
        Ok(Expected {
            hosts: out,
            names,
            blocks,
            v6,
        })
    }

    /// Host `k`'s wanted routes: prefix -> next hop.
    pub fn wanted(&self, k: usize) -> BTreeMap<IpNet, Option<IpAddr>> {
        self.hosts[k].2.iter().map(|w| (w.dst, w.via)).collect()
    }

    /// Routes wanted in all (on every host together).
    pub fn total(&self) -> usize {
        self.hosts.iter().map(|h| h.2.len()).sum()
    }

    fn label(&self, dst: &IpNet) -> String {
        match (self.names.get(&dst.addr()), self.blocks.get(dst)) {
            (Some(name), _) if dst.prefix_len() == dst.max_prefix_len() => {
                format!("{dst} ({name})")
            }
            (_, Some(block)) => format!("{dst} ({block})"),
            _ => dst.to_string(),
        }
    }

    /// One host's difference, with container names, or `Ok`.
    fn compare(&self, k: usize, seen: &SeenRoutes) -> std::result::Result<(), String> {
        let (_, name, want) = &self.hosts[k];
        let d = match seen.compare(want, true) {
            Ok(()) => return Ok(()),
            Err(d) => d,
        };
        let mut parts = Vec::new();
        if !d.missing.is_empty() {
            let list: Vec<String> = d.missing.iter().map(|w| self.label(&w.dst)).collect();
            parts.push(format!(
                "missing {} of {} [{}]",
                d.missing.len(),
                want.len(),
                capped(&list)
            ));
        }
        if !d.extra.is_empty() {
            parts.push(format!("extra {} [{}]", d.extra.len(), capped(&d.extra)));
        }
        if !d.wrong_via.is_empty() {
            let list: Vec<String> = d
                .wrong_via
                .iter()
                .map(|(w, hops)| {
                    format!(
                        "{} via {hops}, expected via {}",
                        self.label(&w.dst),
                        w.via.map(|v| v.to_string()).unwrap_or_default()
                    )
                })
                .collect();
            parts.push(format!(
                "wrong next hop {} [{}]",
                d.wrong_via.len(),
                capped(&list)
            ));
        }
        Err(format!("{name}: {}", parts.join("; ")))
    }

    /// The wanted prefixes a host does not hold through their next hop.
    fn absent(&self, k: usize, seen: &SeenRoutes) -> Vec<IpNet> {
        self.hosts[k]
            .2
            .iter()
            .filter(|w| {
                let via = w.via;
                !seen.0.get(&w.dst).is_some_and(|hops| hops.contains(&via))
            })
            .map(|w| w.dst)
            .collect()
    }
}

fn capped(list: &[String]) -> String {
    let mut s = list
        .iter()
        .take(LIST)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > LIST {
        s.push_str(&format!(", … and {} more", list.len() - LIST));
    }
    s
}

/// One route socket per checked host, opened in its namespace; IPv6
/// routes are dumped too when any container has an IPv6 address (an
/// IPv4-only set costs one dump per host and round, as before).
pub struct Readers(Vec<Kernel>, bool);

impl Readers {
    pub fn open(w: &World, e: &Expected) -> Result<Readers> {
        e.hosts
            .iter()
            .map(|(i, name, _)| {
                Kernel::open_in_netns(&w.hosts[*i].ns.path())
                    .map_err(|err| anyhow!("open a route socket on {name}: {err}"))
            })
            .collect::<Result<Vec<_>>>()
            .map(|k| Readers(k, e.v6))
    }

    fn read(&mut self, k: usize) -> std::result::Result<SeenRoutes, String> {
        let tag = Some(ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL);
        let mut routes = self.0[k]
            .routes(Family::V4, tag)
            .map_err(|e| format!("route dump: {e}"))?;
        if self.1 {
            routes.extend(
                self.0[k]
                    .routes(Family::V6, tag)
                    .map_err(|e| format!("IPv6 route dump: {e}"))?,
            );
        }
        Ok(SeenRoutes::from_kernel(&routes))
    }
}

/// When every host first held its whole set.
#[derive(Debug, Clone)]
pub struct Converged {
    /// The moment the last host first held its set (confirmed by one more
    /// round over every host).
    pub at: Instant,
    /// Host name and when it first held its set.
    pub per_host: Vec<(String, Instant)>,
    /// The longest gap between the starts of two rounds (how finely a
    /// read dates the moment a host first held its set).
    pub resolution: Duration,
}

/// Reads every host until each holds exactly its set, then reads all of
/// them once more (a host that changed meanwhile is waited for again).
/// Fails after `within`, naming every host that still differs and how.
pub fn wait_converged(readers: &mut Readers, e: &Expected, within: Duration) -> Result<Converged> {
    let start = Instant::now();
    let n = e.hosts.len();
    let mut held: Vec<Option<Instant>> = vec![None; n];
    let mut diffs: Vec<Option<String>> = vec![None; n];
    let mut last_round: Option<Instant> = None;
    let mut resolution = ROUND;
    loop {
        let round = Instant::now();
        if let Some(prev) = last_round.replace(round) {
            resolution = resolution.max(round - prev);
        }
        for k in 0..n {
            if held[k].is_some() {
                continue;
            }
            match readers.read(k).and_then(|seen| e.compare(k, &seen)) {
                Ok(()) => {
                    held[k] = Some(Instant::now());
                    diffs[k] = None;
                }
                Err(d) => diffs[k] = Some(d),
            }
        }
        if held.iter().all(Option::is_some) {
            // Confirm: every host at once, after the last one arrived.
            let mut all = true;
            for k in 0..n {
                if let Err(d) = readers.read(k).and_then(|seen| e.compare(k, &seen)) {
                    held[k] = None;
                    diffs[k] = Some(format!("{d} (it had held before)"));
                    all = false;
                }
            }
            if all {
                let per_host: Vec<(String, Instant)> = e
                    .hosts
                    .iter()
                    .zip(&held)
                    .map(|((_, name, _), t)| (name.clone(), t.unwrap_or(start)))
                    .collect();
                let at = per_host.iter().map(|p| p.1).max().unwrap_or(start);
                return Ok(Converged {
                    at,
                    per_host,
                    resolution,
                });
            }
        }
        if start.elapsed() >= within {
            let bad: Vec<&String> = diffs.iter().flatten().collect();
            return Err(anyhow!(
                "{} of {n} hosts do not hold their whole route set after {within:?}:\n  {}",
                bad.len(),
                bad.iter()
                    .take(LIST)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n  ")
                    + &if bad.len() > LIST {
                        format!("\n  … and {} more hosts", bad.len() - LIST)
                    } else {
                        String::new()
                    }
            ));
        }
        std::thread::sleep(ROUND);
    }
}

/// Routes that went missing while every host should have kept its set.
#[derive(Debug, Clone, Default)]
pub struct Losses {
    /// Host name -> the wanted prefixes it lacked in at least one round.
    pub lost: BTreeMap<String, BTreeSet<IpNet>>,
    /// Routes it held but should not (host name -> first difference seen).
    pub other: BTreeMap<String, String>,
    /// Full rounds over every host.
    pub rounds: usize,
    /// The longest gap between the starts of two successive rounds: a
    /// route missing for less than this could slip between two reads.
    pub longest_gap: Duration,
    /// From the start of the first round to the start of the last.
    pub span: Duration,
}

impl Losses {
    /// Host-route pairs that were missing at least once.
    pub fn count(&self) -> usize {
        self.lost.values().map(BTreeSet::len).sum()
    }

    /// The mean time between the starts of two rounds.
    pub fn mean_round(&self) -> Duration {
        match self.rounds {
            0 | 1 => self.span,
            n => self.span / (n as u32 - 1),
        }
    }

    /// The rounds, their mean and longest gap, in words.
    pub fn rounds_text(&self) -> String {
        format!(
            "{} rounds over every host, one every {} ms on average (the longest gap {} ms)",
            self.rounds,
            self.mean_round().as_millis(),
            self.longest_gap.as_millis()
        )
    }

    /// Each host with losses and its prefixes (capped), for a failure.
    pub fn describe(&self, e: &Expected) -> String {
        let mut out = Vec::new();
        for (host, set) in &self.lost {
            let list: Vec<String> = set.iter().map(|d| e.label(d)).collect();
            out.push(format!("{host}: lost {} [{}]", set.len(), capped(&list)));
        }
        for (host, d) in &self.other {
            out.push(format!("{host} also differed: {d}"));
        }
        out.join("\n  ")
    }
}

/// Reads every host round after round for `hold`, recording each wanted
/// route found missing (or through another next hop) in any round, and
/// any other difference (extra routes).
pub fn watch_held(readers: &mut Readers, e: &Expected, hold: Duration) -> Losses {
    let until = Instant::now() + hold;
    let mut l = Losses::default();
    let mut first = None;
    loop {
        one_round(readers, e, &mut l, &mut first);
        if Instant::now() >= until {
            return l;
        }
        std::thread::sleep(ROUND);
    }
}

/// Reads every host once into `l` (`first`: when the first round began).
fn one_round(readers: &mut Readers, e: &Expected, l: &mut Losses, first: &mut Option<Instant>) {
    let start = Instant::now();
    let first = *first.get_or_insert(start);
    if l.rounds > 0 {
        l.longest_gap = l.longest_gap.max(start - (first + l.span));
        l.span = start - first;
    }
    for (k, (_, name, _)) in e.hosts.iter().enumerate() {
        match readers.read(k) {
            Ok(seen) => {
                let absent = e.absent(k, &seen);
                if !absent.is_empty() {
                    l.lost.entry(name.clone()).or_default().extend(absent);
                } else if let Err(d) = e.compare(k, &seen) {
                    l.other.entry(name.clone()).or_insert(d);
                }
            }
            Err(err) => {
                l.other.entry(name.clone()).or_insert(err);
            }
        }
    }
    l.rounds += 1;
}

/// A [`watch_held`] running in the background until [`Watch::stop`]: it
/// sees what happens during the steps between (a reflector dying).
pub struct Watch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<(Losses, Expected)>,
}

impl Watch {
    /// Starts reading every host of `e` round after round.
    pub fn start(mut readers: Readers, e: Expected) -> Watch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut all = Losses::default();
            let mut first = None;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                one_round(&mut readers, &e, &mut all, &mut first);
                std::thread::sleep(ROUND);
            }
            (all, e)
        });
        Watch { stop, handle }
    }

    /// Stops the watch; answers what it saw go missing, described.
    pub fn stop(self) -> Result<(Losses, String)> {
        let (l, e) = self.finish()?;
        let text = l.describe(&e);
        Ok((l, text))
    }

    /// Stops the watch; answers what it saw go missing and the sets it
    /// watched.
    pub fn finish(self) -> Result<(Losses, Expected)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.handle
            .join()
            .map_err(|_| anyhow!("the route watch panicked"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(routes: &[(&str, &str)]) -> SeenRoutes {
        let mut m: BTreeMap<IpNet, Vec<Option<IpAddr>>> = BTreeMap::new();
        for (d, v) in routes {
            m.entry(d.parse().unwrap())
                .or_default()
                .push(Some(v.parse().unwrap()));
        }
        SeenRoutes(m)
    }

    fn expected() -> Expected {
        let want = |d: &str, v: &str| WantRoute {
            dst: d.parse().unwrap(),
            via: Some(v.parse().unwrap()),
        };
        Expected {
            hosts: vec![(
                0,
                "h1".into(),
                vec![
                    want("10.2.2.2/32", "192.0.2.2"),
                    want("10.2.3.2/32", "192.0.2.3"),
                ],
            )],
            names: [
                ("10.2.2.2".parse().unwrap(), "h2-c1 on h2".to_string()),
                ("10.2.3.2".parse().unwrap(), "h3-c1 on h3".to_string()),
            ]
            .into_iter()
            .collect(),
            blocks: HashMap::new(),
            v6: false,
        }
    }

    #[test]
    fn a_host_that_differs_is_named_with_its_prefixes_and_containers() {
        let e = expected();
        assert!(e
            .compare(
                0,
                &seen(&[("10.2.2.2/32", "192.0.2.2"), ("10.2.3.2/32", "192.0.2.3")])
            )
            .is_ok());
        let d = e
            .compare(
                0,
                &seen(&[("10.2.2.2/32", "192.0.2.2"), ("10.9.9.9/32", "192.0.2.9")]),
            )
            .unwrap_err();
        assert!(
            d.starts_with("h1: missing 1 of 2 [10.2.3.2/32 (h3-c1 on h3)]"),
            "{d}"
        );
        assert!(d.contains("extra 1 [10.9.9.9/32 via 192.0.2.9]"), "{d}");
        let d = e
            .compare(
                0,
                &seen(&[("10.2.2.2/32", "192.0.2.3"), ("10.2.3.2/32", "192.0.2.3")]),
            )
            .unwrap_err();
        assert!(
            d.contains("wrong next hop 1 [10.2.2.2/32 (h2-c1 on h2) via 192.0.2.3, expected via 192.0.2.2]"),
            "{d}"
        );
        let absent = e.absent(0, &seen(&[("10.2.2.2/32", "192.0.2.3")]));
        assert_eq!(absent.len(), 2, "a wrong next hop counts as lost");
    }

    #[test]
    fn long_lists_are_capped() {
        let list: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        assert_eq!(capped(&list), "0, 1, 2, 3, 4, 5, 6, 7, … and 12 more");
        assert_eq!(capped(&list[..2]), "0, 1");
    }
}
