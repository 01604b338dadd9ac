//! When a route condition began to hold, and whether it broke for a
//! moment, read from the route events of its namespace (pure).
//!
//! In: the [`RouteEvent`]s since the start of the last action (the
//! subscription was open before it), the table as it was when the action
//! began (`RouteLog::mark`), and what a step wants: one prefix present
//! (through one of some next hops) or absent ([`RouteWant`]), or a whole set
//! of one protocol. Out: a [`Stamp`]: the event since which it holds, "it
//! held already" (no event touched it), "its event is on its way", or why
//! the events cannot tell (lost notifications); and the first event that
//! broke it. The table itself is read by the caller: the events date what
//! the table shows, they never replace it.
//!
//! An IPv4 route that goes with its link leaves no route event (the kernel
//! flushes it silently, facts/host.md): its absence is dated by the first
//! down event of the link it went out of, if it was there (added since,
//! or in the table when the action began).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use ipnet::IpNet;
use ipvlan_bgp::kernel::Route;

use crate::probe::routes::{Change, RouteEvent};

/// One prefix's wanted state.
#[derive(Debug, Clone)]
pub struct RouteWant {
    pub dst: IpNet,
    pub present: bool,
    /// Through one of these next hops (empty: any).
    pub via: Vec<IpAddr>,
    /// Only routes of this protocol count (`None`: any).
    pub protocol: Option<u8>,
}

/// What the events say about when a condition began to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stamp {
    /// It holds since this event (its time, and what it was).
    At(Instant, String),
    /// No event touched it: it held already.
    Before,
    /// The table shows what no delivered event explains yet (its event
    /// is on its way): ask again in a moment.
    Lagging(String),
    /// The events cannot date it (why).
    Unknown(String),
}

impl Stamp {
    /// The later of two stamps of parts of one condition.
    fn and(self, other: Stamp) -> Stamp {
        match (self, other) {
            (Stamp::Unknown(w), _) | (_, Stamp::Unknown(w)) => Stamp::Unknown(w),
            (Stamp::Lagging(w), _) | (_, Stamp::Lagging(w)) => Stamp::Lagging(w),
            (Stamp::At(a, x), Stamp::At(b, y)) => {
                if a >= b {
                    Stamp::At(a, x)
                } else {
                    Stamp::At(b, y)
                }
            }
            (Stamp::At(a, x), Stamp::Before) | (Stamp::Before, Stamp::At(a, x)) => Stamp::At(a, x),
            (Stamp::Before, Stamp::Before) => Stamp::Before,
        }
    }
}

/// The links a prefix's routes went out of when the action began (empty:
/// it had none), from a marked table; `None` when the table is unknown.
fn links_before(marked: Option<&[Route]>, dst: IpNet, protocol: Option<u8>) -> Option<Vec<u32>> {
    Some(
        marked?
            .iter()
            .filter(|r| r.dst == dst && protocol.is_none_or(|p| r.protocol == p))
            .map(|r| r.oif.unwrap_or(u32::MAX))
            .collect(),
    )
}

fn is_down_of(e: &RouteEvent, links: &[u32]) -> bool {
    matches!(e.what, Change::LinkDown { index } if links.contains(&index) || links.contains(&u32::MAX))
}

impl RouteWant {
    /// Whether route event `e` agrees with this want (`None`: it is not
    /// a route event about it).
    fn agrees(&self, e: &RouteEvent) -> Option<bool> {
        match &e.what {
            Change::Route {
                dst,
                via,
                protocol,
                multipath,
                deleted,
                ..
            } => {
                if *dst != self.dst || self.protocol.is_some_and(|p| p != *protocol) {
                    return None;
                }
                Some(if self.present {
                    !deleted
                        && (self.via.is_empty()
                            || *multipath
                            || via.is_some_and(|v| self.via.contains(&v)))
                } else {
                    *deleted
                })
            }
            _ => None,
        }
    }

    fn describe(&self, e: &RouteEvent, since: Instant) -> String {
        let when = e.at.saturating_duration_since(since).as_millis();
        format!("{} {when} ms after the action began", self.what(e))
    }

    /// What an event was, in words.
    fn what(&self, e: &RouteEvent) -> String {
        match &e.what {
            Change::Route {
                via,
                protocol,
                deleted,
                ..
            } => format!(
                "{} {} {}proto {protocol}",
                if *deleted { "deleted" } else { "added" },
                self.dst,
                via.map(|v| format!("via {v} ")).unwrap_or_default()
            ),
            Change::LinkDown { index } => {
                format!(
                    "{} flushed with its link (index {index}) going down",
                    self.dst
                )
            }
            Change::Overrun => "route notifications were lost".to_string(),
        }
    }

    /// The links this prefix's route went out of after `upto` events (the
    /// last added route's, else the marked table's), if it was there.
    fn links_after(
        &self,
        route_events: &[&RouteEvent],
        before: Option<&[u32]>,
    ) -> Option<Vec<u32>> {
        match route_events.last().map(|e| &e.what) {
            Some(Change::Route {
                deleted: false,
                oif,
                ..
            }) => Some(vec![oif.unwrap_or(u32::MAX)]),
            Some(_) => Some(Vec::new()),
            None => before.map(<[u32]>::to_vec),
        }
    }

    /// Since when the condition holds, given that the table shows it
    /// holding now, `events` are every event since the action began and
    /// `marked` the table then.
    pub fn stamp(&self, events: &[RouteEvent], marked: Option<&[Route]>) -> Stamp {
        let before = links_before(marked, self.dst, self.protocol);
        self.stamp_with(events, before.as_deref())
    }

    /// [`RouteWant::stamp`] given the links its routes had when the action
    /// began (`None`: unknown).
    fn stamp_with(&self, events: &[RouteEvent], before: Option<&[u32]>) -> Stamp {
        if events.iter().any(|e| e.what == Change::Overrun) {
            return Stamp::Unknown("route notifications were lost (ENOBUFS)".into());
        }
        let mine: Vec<(&RouteEvent, bool)> = events
            .iter()
            .filter_map(|e| self.agrees(e).map(|a| (e, a)))
            .collect();
        match mine.last() {
            Some((_, true)) => {
                // The run of agreeing events at the end: its first is when
                // it began to hold.
                let start = mine.iter().rposition(|(_, a)| !a).map_or(0, |i| i + 1);
                let e = mine[start].0;
                Stamp::At(e.at, self.what(e))
            }
            // Present: only a route event can make it so.
            Some((last, false)) if self.present => Stamp::Lagging(format!(
                "the last route event ({}) disagrees with the table",
                self.what(last)
            )),
            None if self.present => Stamp::Before,
            // Absent, and the last route event (if any) left it there:
            // gone silently with its link, or its deletion is on its way.
            _ => {
                let routes: Vec<&RouteEvent> = mine.iter().map(|m| m.0).collect();
                let Some(links) = self.links_after(&routes, before) else {
                    return Stamp::Unknown("the table when the action began is unknown".into());
                };
                if links.is_empty() {
                    return Stamp::Before;
                }
                let after = routes.last().map(|e| e.at);
                let flush = self.dst.addr().is_ipv4().then(|| {
                    events
                        .iter()
                        .find(|e| after.is_none_or(|t| e.at >= t) && is_down_of(e, &links))
                });
                match flush.flatten() {
                    Some(e) => Stamp::At(e.at, self.what(e)),
                    None => Stamp::Lagging(format!(
                        "{} is gone from the table, but no event said so yet",
                        self.dst
                    )),
                }
            }
        }
    }

    /// The first event that broke the condition, described (for a
    /// condition that must have held throughout: `within = "0s"`, a hold):
    /// a route event against it, or, for a present IPv4 route, its link
    /// going down (it went with it); lost notifications count as a break
    /// that cannot be ruled out.
    pub fn first_break(
        &self,
        events: &[RouteEvent],
        marked: Option<&[Route]>,
        since: Instant,
    ) -> Option<String> {
        let mut links = links_before(marked, self.dst, self.protocol).unwrap_or_default();
        for e in events {
            match &e.what {
                Change::Overrun => return Some(self.describe(e, since)),
                Change::Route { oif, deleted, .. } => match self.agrees(e) {
                    Some(false) => return Some(self.describe(e, since)),
                    Some(true) if !deleted => links = vec![oif.unwrap_or(u32::MAX)],
                    _ => {}
                },
                Change::LinkDown { .. }
                    if self.present && self.dst.addr().is_ipv4() && is_down_of(e, &links) =>
                {
                    return Some(self.describe(e, since))
                }
                Change::LinkDown { .. } => {}
            }
        }
        None
    }
}

/// The wanted state of `dst` in a set of routes of one protocol.
fn set_want(wanted: &BTreeMap<IpNet, Option<IpAddr>>, dst: IpNet, protocol: u8) -> RouteWant {
    RouteWant {
        dst,
        present: wanted.contains_key(&dst),
        via: wanted.get(&dst).copied().flatten().into_iter().collect(),
        protocol: Some(protocol),
    }
}

/// Since when a host holds exactly a set of routes of one protocol (each
/// wanted prefix through its next hop, nothing else of that protocol),
/// given that its table shows it now, `events` since the action began and
/// `marked` the table then.
pub fn stamp_set(
    events: &[RouteEvent],
    marked: Option<&[Route]>,
    wanted: &BTreeMap<IpNet, Option<IpAddr>>,
    protocol: u8,
) -> Stamp {
    if events.iter().any(|e| e.what == Change::Overrun) {
        return Stamp::Unknown("route notifications were lost (ENOBUFS)".into());
    }
    let mut by_dst: BTreeMap<IpNet, Vec<RouteEvent>> = BTreeMap::new();
    for e in events {
        if let Change::Route {
            dst, protocol: p, ..
        } = e.what
        {
            if p == protocol {
                by_dst.entry(dst).or_default().push(e.clone());
            }
        }
    }
    let mut before: HashMap<IpNet, Vec<u32>> = HashMap::new();
    for r in marked.unwrap_or_default() {
        if r.protocol == protocol {
            before
                .entry(r.dst)
                .or_default()
                .push(r.oif.unwrap_or(u32::MAX));
        }
    }
    // A prefix that was there and is not wanted went away: maybe silently.
    for dst in before.keys() {
        if !wanted.contains_key(dst) {
            by_dst.entry(*dst).or_default();
        }
    }
    let downs: Vec<&RouteEvent> = events
        .iter()
        .filter(|e| matches!(e.what, Change::LinkDown { .. }))
        .collect();
    // A wanted prefix no event touched held already (only a route event
    // adds a route).
    let mut out = Stamp::Before;
    for (dst, mut mine) in by_dst {
        let want = set_want(wanted, dst, protocol);
        if !want.present && !downs.is_empty() {
            mine.extend(downs.iter().map(|e| (*e).clone()));
            mine.sort_by_key(|e| e.at);
        }
        let was: Vec<u32> = before.get(&dst).cloned().unwrap_or_default();
        let known = marked.is_some().then_some(was.as_slice());
        out = out.and(want.stamp_with(&mine, known));
        if matches!(out, Stamp::Unknown(_)) {
            return out;
        }
    }
    out
}

/// Every event that broke a set of routes of one protocol (a wanted
/// prefix deleted or through another next hop, another prefix added), as
/// its prefix and its description; lost notifications count as a break
/// that cannot be ruled out (no prefix).
pub fn set_breaks(
    events: &[RouteEvent],
    wanted: &BTreeMap<IpNet, Option<IpAddr>>,
    protocol: u8,
    since: Instant,
) -> Vec<(Option<IpNet>, String)> {
    events
        .iter()
        .filter_map(|e| {
            let dst = match e.what {
                Change::Route {
                    dst, protocol: p, ..
                } if p == protocol => dst,
                Change::Overrun => {
                    return Some((None, "route notifications were lost".to_string()))
                }
                _ => return None,
            };
            let want = set_want(wanted, dst, protocol);
            (want.agrees(e) == Some(false)).then(|| (Some(dst), want.describe(e, since)))
        })
        .collect()
}

/// The first of [`set_breaks`], described.
pub fn set_break(
    events: &[RouteEvent],
    wanted: &BTreeMap<IpNet, Option<IpAddr>>,
    protocol: u8,
    since: Instant,
) -> Option<String> {
    set_breaks(events, wanted, protocol, since)
        .into_iter()
        .next()
        .map(|b| b.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn route(t0: Instant, ms: u64, dst: &str, via: &str, deleted: bool) -> RouteEvent {
        RouteEvent {
            at: t0 + Duration::from_millis(ms),
            what: Change::Route {
                dst: dst.parse().unwrap(),
                via: Some(via.parse().unwrap()),
                oif: Some(3),
                protocol: 73,
                multipath: false,
                deleted,
            },
        }
    }

    fn down(t0: Instant, ms: u64, index: u32) -> RouteEvent {
        RouteEvent {
            at: t0 + Duration::from_millis(ms),
            what: Change::LinkDown { index },
        }
    }

    fn table(dst: &str, oif: u32) -> Vec<Route> {
        vec![Route {
            dst: dst.parse().unwrap(),
            via: Some("192.0.2.2".parse().unwrap()),
            oif: Some(oif),
            protocol: 73,
        }]
    }

    fn want(dst: &str, present: bool, via: &[&str]) -> RouteWant {
        RouteWant {
            dst: dst.parse().unwrap(),
            present,
            via: via.iter().map(|v| v.parse().unwrap()).collect(),
            protocol: Some(73),
        }
    }

    fn at(s: &Stamp, t0: Instant, ms: u64) -> bool {
        matches!(s, Stamp::At(t, _) if *t == t0 + Duration::from_millis(ms))
    }

    #[test]
    fn a_route_is_dated_by_the_event_that_made_it_hold() {
        let t0 = Instant::now();
        let w = want("10.1.2.2/32", true, &["192.0.2.2"]);
        assert_eq!(w.stamp(&[], Some(&[])), Stamp::Before);
        let evs = vec![
            route(t0, 5, "10.1.2.2/32", "192.0.2.3", false),
            route(t0, 9, "10.9.9.9/32", "192.0.2.2", false),
            route(t0, 12, "10.1.2.2/32", "192.0.2.2", false),
            route(t0, 30, "10.1.2.2/32", "192.0.2.2", false),
        ];
        // Replaced through the right next hop at 12 ms; the rewrite at 30 ms
        // changed nothing.
        assert!(at(&w.stamp(&evs, None), t0, 12));
        let b = w.first_break(&evs, None, t0).unwrap();
        assert!(
            b.starts_with("added 10.1.2.2/32 via 192.0.2.3 proto 73 5 ms"),
            "{b}"
        );
        // Events that disagree with the table are not delivered yet.
        let late = vec![route(t0, 40, "10.1.2.2/32", "192.0.2.2", true)];
        assert!(matches!(w.stamp(&late, None), Stamp::Lagging(_)));
        // A present route whose link went down went with it.
        let flushed = vec![down(t0, 50, 3)];
        let b = w.first_break(&flushed, Some(&table("10.1.2.2/32", 3)), t0);
        assert!(b.unwrap().contains("flushed with its link (index 3)"));
        assert_eq!(
            w.first_break(&[down(t0, 50, 4)], Some(&table("10.1.2.2/32", 3)), t0),
            None
        );
    }

    #[test]
    fn an_absence_is_dated_by_its_deletion_or_by_its_link() {
        let t0 = Instant::now();
        let w = want("10.1.2.2/32", false, &[]);
        let del = vec![
            route(t0, 3, "10.1.2.2/32", "192.0.2.2", false),
            route(t0, 201, "10.1.2.2/32", "192.0.2.2", true),
        ];
        assert!(at(&w.stamp(&del, Some(&[])), t0, 201));
        // Announced for a moment: the break is named.
        assert!(w.first_break(&del, None, t0).unwrap().starts_with("added"));
        // Never there: another link going down dates nothing.
        let other = vec![down(t0, 7, 9)];
        assert_eq!(w.stamp(&other, Some(&[])), Stamp::Before);
        // There when the action began, gone with its link (no route event).
        let was = table("10.1.2.2/32", 3);
        let flush = vec![down(t0, 5, 9), down(t0, 7, 3), down(t0, 9, 3)];
        assert!(at(&w.stamp(&flush, Some(&was)), t0, 7));
        assert_eq!(w.first_break(&flush, Some(&was), t0), None);
        // Added since, then flushed with its link.
        let mut added = vec![route(t0, 2, "10.1.2.2/32", "192.0.2.2", false)];
        added.extend(flush.clone());
        assert!(at(&w.stamp(&added, Some(&[])), t0, 7));
        // Gone, and no event says so yet.
        assert!(matches!(w.stamp(&[], Some(&was)), Stamp::Lagging(_)));
        // IPv6 routes get their own deletions: a link alone dates nothing.
        let w6 = want("fd00::2/128", false, &[]);
        let was6 = table("fd00::2/128", 3);
        assert!(matches!(w6.stamp(&flush, Some(&was6)), Stamp::Lagging(_)));
        let lost = vec![RouteEvent {
            at: t0,
            what: Change::Overrun,
        }];
        assert!(matches!(w.stamp(&lost, None), Stamp::Unknown(_)));
        assert!(w.first_break(&lost, None, t0).is_some());
    }

    #[test]
    fn a_set_holds_since_its_last_part_arrived() {
        let t0 = Instant::now();
        let wanted: BTreeMap<IpNet, Option<IpAddr>> = [
            (
                "10.1.2.2/32".parse().unwrap(),
                Some("192.0.2.2".parse().unwrap()),
            ),
            (
                "10.1.3.2/32".parse().unwrap(),
                Some("192.0.2.3".parse().unwrap()),
            ),
        ]
        .into_iter()
        .collect();
        assert_eq!(stamp_set(&[], Some(&[]), &wanted, 73), Stamp::Before);
        let evs = vec![
            route(t0, 4, "10.1.2.2/32", "192.0.2.2", false),
            route(t0, 8, "10.7.7.7/32", "192.0.2.7", false),
            route(t0, 20, "10.7.7.7/32", "192.0.2.7", true),
        ];
        // The extra route went at 20 ms.
        assert!(at(&stamp_set(&evs, Some(&[]), &wanted, 73), t0, 20));
        let b = set_break(&evs, &wanted, 73, t0).unwrap();
        assert!(b.starts_with("added 10.7.7.7/32 via 192.0.2.7"), "{b}");
        assert_eq!(set_break(&evs[..1], &wanted, 73, t0), None);
        // An extra route there before, gone with its link.
        let was = table("10.7.7.7/32", 3);
        assert!(at(
            &stamp_set(&[down(t0, 6, 3)], Some(&was), &wanted, 73),
            t0,
            6
        ));
    }
}
