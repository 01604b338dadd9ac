//! The route expectations, dated by route events: a prefix on a host
//! (`expect-route`) or on a router (`expect-router-route`), a host's whole
//! set (`expect-routes`), every host's set (`expect-converged`), and the
//! background watches of those sets (`route-watch-start`, `-stop`).
//!
//! In: one such [`Action`]; the route events of every namespace, recorded
//! from before the first step (`probe::routes`). Out: how long it took to
//! hold, from the end of the last action to the route event since which it
//! holds (resolution 1 ms: the table, read every 20 ms, says whether it
//! holds, the events say since when); or the error saying what differs, or
//! which event broke what had to hold: with `within = "0s"` the condition
//! must have held throughout the last action, and a hold fails on an event
//! between two reads. Where the events cannot date it (lost notifications,
//! a router's RIB without a kernel event), the figure is the poll's and its
//! resolution says so. Owns the route logs' opening and trimming.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use ipnet::IpNet;
use ipvlan_bgp::kernel::real::Kernel;
use ipvlan_bgp::kernel::{Family, Route};

use super::converged::{wait_converged, watch_held, Expected, Losses, Readers, Watch};
use super::poll::poll_every;
use super::stamps::{set_break, set_breaks, stamp_set, RouteWant, Stamp};
use super::views::{hops_text, SeenRoutes, WantRoute};
use super::{RouteWatchRt, Runner, Span};
use crate::probe::routes::{RouteEvent, RouteLog};
use crate::scenario::Action;

/// The driver's route protocol tag.
const TAG: u8 = ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL;
/// How often a route step reads the table (the events date what it sees).
const ROUTE_POLL: Duration = Duration::from_millis(20);
/// How long the events may lag what the table shows.
const DELIVERY: Duration = Duration::from_secs(1);
/// The resolution of a time dated by a route event (the report's unit).
const EVENT_RESOLUTION: Duration = Duration::from_millis(1);

impl Runner<'_> {
    /// Subscribes to the route events of every host and router namespace.
    pub(super) fn open_route_logs(&mut self) -> Result<()> {
        let spaces: Vec<(String, std::path::PathBuf)> = self
            .w
            .hosts
            .iter()
            .map(|h| (h.def.name.clone(), h.ns.path()))
            .chain(
                self.w
                    .routers
                    .iter()
                    .map(|r| (r.def.name.clone(), r.ns.path())),
            )
            .collect();
        for (name, path) in spaces {
            self.route_logs.insert(name, RouteLog::open(&path)?);
        }
        Ok(())
    }

    /// An action begins at `t`: reads every table as it is (a route that
    /// goes silently with its link is dated only if it was there) and
    /// forgets the route events before `t`, or before the start of a route
    /// watch or a route-events recording still running.
    pub(super) fn mark_route_tables(&self, t: Instant) {
        let keep = (self.watches.values().map(|w| w.since))
            .chain(self.recordings.values().map(|r| r.since))
            .fold(t, Instant::min);
        for l in self.route_logs.values() {
            l.mark();
            l.forget_before(keep);
        }
    }

    /// Keeps what [`dated`] found for the step's report; answers how long
    /// the poll took (the play loop counts the convergence from `held_at`).
    fn take_dated(&mut self, d: Dated) -> Duration {
        self.held_at = d.held_at;
        self.resolution = Some(d.resolution);
        self.note = Some(d.note);
        d.took
    }

    /// Adds to `l` every route event that broke a host's set since
    /// `since(k)`; answers how many events were read, in words.
    fn event_breaks(
        &self,
        e: &Expected,
        since: impl Fn(usize) -> Instant,
        l: &mut Losses,
    ) -> String {
        let mut read = 0;
        for (k, (_, name, _)) in e.hosts.iter().enumerate() {
            let Some(log) = self.route_logs.get(name.as_str()) else {
                l.other
                    .insert(name.clone(), "no route events recorded".to_string());
                continue;
            };
            let events = log.since(since(k));
            read += events.len();
            let wanted = e.wanted(k);
            for (dst, why) in set_breaks(&events, &wanted, TAG, since(k)) {
                match dst {
                    Some(d) if wanted.contains_key(&d) => {
                        l.lost.entry(name.clone()).or_default().insert(d);
                    }
                    _ => {
                        l.other.entry(name.clone()).or_insert(why);
                    }
                }
            }
        }
        format!("{read} route events read")
    }

    /// Plays a route expectation or a route watch.
    pub(super) fn expect_route(&mut self, a: &Action) -> Result<Option<Duration>> {
        match a {
            Action::ExpectRouterRoute {
                router,
                prefix,
                present,
                via,
                within,
                hold,
                family,
            } => {
                let ri = self
                    .w
                    .routers
                    .iter()
                    .position(|r| &r.def.name == router)
                    .ok_or_else(|| anyhow!("unknown router {router}"))?;
                let prefix = self.prefix_of_family(prefix, *family)?;
                let fam = family_of(&prefix);
                let via_name = via.clone();
                let via = via
                    .as_deref()
                    .map(|v| self.resolve_addr_of(router, v, fam))
                    .transpose()?;
                // A router named as next hop of an IPv6 route also matches
                // by its link-local addresses: FRR installs the link-local
                // next hop a peer sends beside its global one.
                let also: Vec<IpAddr> = match (
                    fam,
                    self.w
                        .routers
                        .iter()
                        .find(|r| Some(&r.def.name) == via_name.as_ref()),
                ) {
                    (crate::scenario::Family::Ipv6, Some(r)) => r.link_locals(),
                    _ => Vec::new(),
                };
                let present = *present;
                let hold = self.hold_for(present, *hold);
                // Its kernel table dates what its RIB shows (zebra and BIRD
                // install their best routes there).
                let cond = RouteWant {
                    dst: prefix,
                    present,
                    via: via.into_iter().chain(also.iter().copied()).collect(),
                    protocol: None,
                };
                let mut check = || {
                    let routes = self.w.routers[ri].routes().map_err(|e| format!("{e:#}"))?;
                    match (present, routes.get(&prefix)) {
                        (true, None) => Err(format!("{router} has no route for {prefix}")),
                        (true, Some(hops)) => match via {
                            Some(v)
                                if !hops.contains(&v) && !also.iter().any(|a| hops.contains(a)) =>
                            {
                                Err(format!(
                                    "{router} routes {prefix} via {hops:?}, expected {v}"
                                ))
                            }
                            _ => Ok(()),
                        },
                        (false, None) => Ok(()),
                        (false, Some(h)) => {
                            Err(format!("{router} still routes {prefix} via {h:?}"))
                        }
                    }
                };
                let d = dated(
                    self.route_logs.get(router.as_str()),
                    self.action,
                    Window::new(self.scale(*within), false, hold),
                    false,
                    &mut check,
                    &|ev, m| cond.stamp(ev, m),
                    &|ev, m, since| cond.first_break(ev, m, since),
                )?;
                Ok(Some(self.take_dated(d)))
            }
            Action::ExpectRoute {
                host,
                prefix,
                present,
                via,
                next_hops,
                protocol,
                within,
                hold,
                family,
            } => {
                let proto = match protocol {
                    Some(p) => crate::scenario::route_protocol(p).map_err(|e| anyhow!(e))?,
                    None => ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL,
                };
                let whose = match protocol.as_deref() {
                    None | Some("ours") => "tagged".to_string(),
                    Some(p) => format!("proto {p}"),
                };
                let hi = self.w.host_index(host)?;
                let dst = self.prefix_of_family(prefix, *family)?;
                let want = WantRoute {
                    dst,
                    via: via
                        .as_deref()
                        .map(|v| self.resolve_addr_of(host, v, family_of(&dst)))
                        .transpose()?,
                };
                let ns = self.w.hosts[hi].ns.path();
                let present = *present;
                let kfam = kernel_family(&dst);
                let mut k = Kernel::open_in_netns(&ns)
                    .map_err(|e| anyhow!("open a route socket on {host}: {e}"))?;
                let hops_wanted: Option<Vec<IpAddr>> = match next_hops {
                    Some(hops) => {
                        let mut v = hops
                            .iter()
                            .map(|h| self.resolve_addr_of(host, h, family_of(&dst)))
                            .collect::<Result<Vec<_>>>()?;
                        v.sort();
                        Some(v)
                    }
                    None => None,
                };
                let mut check = || -> std::result::Result<(), String> {
                    if let Some(wanted) = &hops_wanted {
                        // One route, exactly these next hops (multipath).
                        let all = k.table_routes().map_err(|e| e.to_string())?;
                        let at: Vec<_> = all
                            .iter()
                            .filter(|r| r.route.dst == dst && r.route.protocol == proto)
                            .collect();
                        let seen: Vec<Vec<Option<IpAddr>>> = at
                            .iter()
                            .map(|r| r.hops().iter().map(|h| h.via).collect())
                            .collect();
                        let want: Vec<Option<IpAddr>> = wanted.iter().copied().map(Some).collect();
                        return if seen.len() == 1 && seen[0] == want {
                            Ok(())
                        } else {
                            Err(format!(
                                "{whose} route {dst} on {host}: next hops {seen:?}, expected one route via {want:?}"
                            ))
                        };
                    }
                    let all = k.routes(kfam, None).map_err(|e| e.to_string())?;
                    let (routes, others): (Vec<_>, Vec<_>) =
                        all.into_iter().partition(|r| r.protocol == proto);
                    let seen = SeenRoutes::from_kernel(&routes);
                    if present {
                        seen.compare(std::slice::from_ref(&want), false).map_err(|d| {
                            let others: Vec<String> = others
                                .iter()
                                .filter(|r| r.dst == want.dst)
                                .map(|r| format!("{} via {:?} proto {}", r.dst, r.via, r.protocol))
                                .collect();
                            format!(
                                "{whose} routes on {host} differ: {d} (other routes for {}: [{}]); {whose} routes: {seen}",
                                want.dst,
                                others.join(", "),
                            )
                        })
                    } else {
                        match seen.0.get(&want.dst) {
                            None => Ok(()),
                            Some(hops) => Err(format!(
                                "{whose} route {} via {} is on {host}",
                                want.dst,
                                hops_text(hops)
                            )),
                        }
                    }
                };
                let hold = self.hold_for(present, *hold);
                let cond = RouteWant {
                    dst,
                    present,
                    via: want.via.into_iter().collect(),
                    protocol: Some(proto),
                };
                let d = dated(
                    self.route_logs.get(host.as_str()),
                    self.action,
                    Window::new(self.scale(*within), within.0.is_zero(), hold),
                    true,
                    &mut check,
                    &|ev, m| cond.stamp(ev, m),
                    &|ev, m, since| cond.first_break(ev, m, since),
                )?;
                Ok(Some(self.take_dated(d)))
            }
            Action::ExpectRoutes {
                host,
                routes,
                within,
            } => {
                let hi = self.w.host_index(host)?;
                let mut want = Vec::new();
                for r in routes {
                    // A name as next hop means its address of the prefix's family.
                    let via_of = |dst: &IpNet| {
                        r.via()
                            .map(|v| self.resolve_addr_of(host, v, family_of(dst)))
                            .transpose()
                    };
                    let p = r.prefix();
                    if p.parse::<IpNet>().is_err() && self.s.container(p).is_none() {
                        // A group: its members running now (stopped ones are withdrawn).
                        for m in self.s.expand(&[p.to_string()]) {
                            if let Some(c) = self.running.get(&m) {
                                for dst in c.host_prefixes() {
                                    want.push(WantRoute {
                                        dst,
                                        via: via_of(&dst)?,
                                    });
                                }
                            }
                        }
                    } else if let Some(c) = self.running.get(p) {
                        // A running container: its /32 and its /128, as it has them.
                        for dst in c.host_prefixes() {
                            want.push(WantRoute {
                                dst,
                                via: via_of(&dst)?,
                            });
                        }
                    } else {
                        let dst = self.prefix_of(p)?;
                        want.push(WantRoute {
                            dst,
                            via: via_of(&dst)?,
                        });
                    }
                }
                let ns = self.w.hosts[hi].ns.path();
                let mut k = Kernel::open_in_netns(&ns)
                    .map_err(|e| anyhow!("open a route socket on {host}: {e}"))?;
                let mut check = || {
                    let tag = Some(ipvlan_bgp::config::DEFAULT_ROUTE_PROTOCOL);
                    let mut routes = k.routes(Family::V4, tag).map_err(|e| e.to_string())?;
                    routes.extend(k.routes(Family::V6, tag).map_err(|e| e.to_string())?);
                    let seen = SeenRoutes::from_kernel(&routes);
                    seen.compare(&want, true).map_err(|d| {
                        format!(
                            "{host}'s tagged routes differ from the {} expected: {d}; seen: {seen}",
                            want.len()
                        )
                    })
                };
                let wanted: BTreeMap<IpNet, Option<IpAddr>> =
                    want.iter().map(|w| (w.dst, w.via)).collect();
                let d = dated(
                    self.route_logs.get(host.as_str()),
                    self.action,
                    Window::new(self.scale(*within), within.0.is_zero(), None),
                    true,
                    &mut check,
                    &|ev, m| stamp_set(ev, m, &wanted, TAG),
                    &|ev, _, since| set_break(ev, &wanted, TAG, since),
                )?;
                Ok(Some(self.take_dated(d)))
            }
            Action::RouteWatchStart { id, hosts } => {
                if self.watches.contains_key(id) {
                    bail!("route watch {id} is already running");
                }
                let since = Instant::now();
                let idx = self.converged_hosts(hosts)?;
                let e = Expected::with_blocks(
                    &self.w,
                    &idx,
                    self.running.values(),
                    &self.held_blocks()?,
                )?;
                let readers = Readers::open(&self.w, &e)?;
                self.note = Some(format!(
                    "watching {} routes on {} hosts (their tables round after round, and every route event)",
                    e.total(),
                    idx.len()
                ));
                let watch = Watch::start(readers, e);
                self.watches
                    .insert(id.clone(), RouteWatchRt { watch, since });
                Ok(None)
            }
            Action::RouteWatchStop {
                id,
                max_lost,
                min_rounds,
            } => {
                let w = self
                    .watches
                    .remove(id)
                    .ok_or_else(|| anyhow!("no route watch {id} was started"))?;
                let (mut l, e) = w.watch.finish()?;
                // What the rounds could miss between two reads, the events
                // cannot: every route of the sets deleted or re-pointed.
                let events = self.event_breaks(&e, |_| w.since, &mut l);
                let text = l.describe(&e);
                let rounds = l.rounds_text();
                if l.count() as u64 > *max_lost || !l.other.is_empty() {
                    bail!(
                        "route watch {id}: {} host-route pairs went missing ({rounds}; {events}; at most {max_lost} allowed):\n  {text}",
                        l.count(),
                    );
                }
                if (l.rounds as u64) < *min_rounds {
                    bail!("route watch {id} read only {rounds}: fewer than the {min_rounds} rounds asked for");
                }
                self.resolution = Some(l.longest_gap);
                self.note = Some(format!(
                    "route watch {id}: {} routes lost in {rounds}; {events}",
                    l.count(),
                ));
                Ok(None)
            }
            Action::ExpectConverged {
                hosts,
                within,
                hold,
            } => {
                let idx = self.converged_hosts(hosts)?;
                let e = Expected::with_blocks(
                    &self.w,
                    &idx,
                    self.running.values(),
                    &self.held_blocks()?,
                )?;
                let mut readers = Readers::open(&self.w, &e)?;
                let mut c = wait_converged(&mut readers, &e, self.scale(*within))?;
                // Each host's moment dated by its route events, where they can.
                let mut undated = Vec::new();
                for (k, (_, name, _)) in e.hosts.iter().enumerate() {
                    let wanted = e.wanted(k);
                    let log = self.route_logs.get(name.as_str());
                    match date(log, self.action.start, &|ev, m| {
                        stamp_set(ev, m, &wanted, TAG)
                    }) {
                        Stamp::At(t, _) => c.per_host[k].1 = t,
                        Stamp::Before => c.per_host[k].1 = self.action.start,
                        Stamp::Lagging(why) | Stamp::Unknown(why) => {
                            undated.push(format!("{name}: {why}"))
                        }
                    }
                }
                let slowest = c
                    .per_host
                    .iter()
                    .max_by_key(|p| p.1)
                    .cloned()
                    .unwrap_or_else(|| (String::new(), c.at));
                c.at = slowest.1;
                let mut note = format!(
                    "{} hosts hold all {} routes ({} each on average; the last: {})",
                    idx.len(),
                    e.total(),
                    e.total() / idx.len().max(1),
                    slowest.0
                );
                if let Some(wave) = self.wave {
                    note.push_str(&format!(
                        "; {} ms after the first and {} ms after the last of {} container {}s",
                        c.at.saturating_duration_since(wave.first).as_millis(),
                        c.at.saturating_duration_since(wave.last).as_millis(),
                        wave.count,
                        wave.what
                    ));
                }
                if undated.is_empty() {
                    note.push_str(" (dated by route events)");
                    self.resolution = Some(EVENT_RESOLUTION);
                } else {
                    note.push_str(&format!(
                        " (read every {} ms at best: not dated by route events on {})",
                        c.resolution.as_millis(),
                        undated.join(", ")
                    ));
                    self.resolution = Some(c.resolution);
                }
                if let Some(h) = hold {
                    let h = self.scale(*h);
                    let mut l = watch_held(&mut readers, &e, h);
                    let held: Vec<Instant> = c.per_host.iter().map(|p| p.1).collect();
                    let events = self.event_breaks(&e, |k| held[k], &mut l);
                    if l.count() > 0 || !l.other.is_empty() {
                        bail!(
                            "{note}; then, within the {h:?} hold ({}; {events}), {} routes went missing:\n  {}",
                            l.rounds_text(),
                            l.count(),
                            l.describe(&e)
                        );
                    }
                    note.push_str(&format!(
                        "; held for {h:?} ({}, 0 routes lost; {events})",
                        l.rounds_text()
                    ));
                }
                self.note = Some(note);
                self.held_at = Some(c.at);
                Ok(Some(Duration::ZERO))
            }
            other => bail!("internal: {other:?} is not a route expectation"),
        }
    }
}

/// A route step's deadline and holds.
struct Window {
    within: Duration,
    /// `within = "0s"`: it must have held throughout the last action.
    throughout: bool,
    hold: Option<Duration>,
}

impl Window {
    fn new(within: Duration, throughout: bool, hold: Option<Duration>) -> Window {
        Window {
            within,
            throughout,
            hold,
        }
    }
}

/// Dates a condition from the events since the last action began and the
/// table as it was then (`None`: unknown).
type Stamper<'a> = dyn Fn(&[RouteEvent], Option<&[Route]>) -> Stamp + 'a;
/// The first event (since an instant; the table as the action began, the
/// action's start) that broke a condition, described.
type Breaker<'a> = dyn Fn(&[RouteEvent], Option<&[Route]>, Instant) -> Option<String> + 'a;

/// What a route step found: how long the poll took to see it hold, since
/// when it holds as the events date it, and how finely.
struct Dated {
    took: Duration,
    held_at: Option<Instant>,
    resolution: Duration,
    note: String,
}

/// Reads the events of `log` since `since` with `stamp`, again for up to
/// [`DELIVERY`] while they lag the table.
fn date(log: Option<&RouteLog>, since: Instant, stamp: &Stamper<'_>) -> Stamp {
    let Some(log) = log else {
        return Stamp::Unknown("no route events recorded there".into());
    };
    let end = Instant::now() + DELIVERY;
    let marked = log.marked();
    loop {
        match stamp(&log.since(since), marked.as_deref()) {
            Stamp::Lagging(_) if Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(5))
            }
            s => return s,
        }
    }
}

/// Plays a route condition: reads the table with `check` every
/// [`ROUTE_POLL`] until it holds (the truth), dates it with `stamp` over
/// the events since the last action began (`trust_before`: no event means
/// it held already; a router's RIB may hold what its kernel never got, so
/// there only an event dates it), and fails it on a `brk`eaking event
/// where it had to hold throughout the action or through its hold.
fn dated(
    log: Option<&RouteLog>,
    action: Span,
    w: Window,
    trust_before: bool,
    check: &mut dyn FnMut() -> std::result::Result<(), String>,
    stamp: &Stamper<'_>,
    brk: &Breaker<'_>,
) -> Result<Dated> {
    let p = poll_every(w.within, ROUTE_POLL, &mut *check)?;
    let seen = Instant::now();
    if let (true, true, Some(log)) = (w.throughout, trust_before, log) {
        if let Some(b) = brk(
            &log.since(action.start),
            log.marked().as_deref(),
            action.start,
        ) {
            bail!("it holds now, but did not throughout the last action (within = \"0s\"): {b}");
        }
    }
    let (held_at, resolution, note) = match date(log, action.start, stamp) {
        Stamp::At(t, what) => (
            Some(t),
            EVENT_RESOLUTION,
            format!(
                "dated by a route event ({what}) {} ms after the last action began ({} ms after it ended)",
                t.saturating_duration_since(action.start).as_millis(),
                t.saturating_duration_since(action.end).as_millis()
            ),
        ),
        Stamp::Before if trust_before => (
            Some(action.start),
            EVENT_RESOLUTION,
            "no route event since the last action began: it held already".to_string(),
        ),
        Stamp::Before => (
            None,
            p.resolution,
            format!(
                "no route event dates it: read every {} ms",
                p.resolution.as_millis()
            ),
        ),
        Stamp::Lagging(why) | Stamp::Unknown(why) => (
            None,
            p.resolution,
            format!(
                "not dated by route events ({why}): read every {} ms",
                p.resolution.as_millis()
            ),
        ),
    };
    if let Some(h) = w.hold {
        let from = held_at.unwrap_or(seen);
        let until = seen + h;
        loop {
            check().map_err(|e| {
                anyhow!(
                    "held for {:?}, then changed within the {h:?} hold: {e}",
                    p.took
                )
            })?;
            if let Some(b) =
                log.and_then(|l| brk(&l.since(from), l.marked().as_deref(), action.start))
            {
                bail!(
                    "held for {:?}, then broke within the {h:?} hold: {b}",
                    p.took
                );
            }
            if Instant::now() >= until {
                break;
            }
            std::thread::sleep(ROUTE_POLL);
        }
    }
    Ok(Dated {
        took: p.took,
        held_at,
        resolution,
        note,
    })
}

/// The scenario family of a prefix.
fn family_of(p: &IpNet) -> crate::scenario::Family {
    match p {
        IpNet::V4(_) => crate::scenario::Family::Ipv4,
        IpNet::V6(_) => crate::scenario::Family::Ipv6,
    }
}

/// The kernel's family of a prefix (which table to dump).
fn kernel_family(p: &IpNet) -> Family {
    match p {
        IpNet::V4(_) => Family::V4,
        IpNet::V6(_) => Family::V6,
    }
}
