//! When a route condition began to hold, and whether it broke for a
//! moment, read from the route events of its namespace (pure).
//!
//! In: the [`RouteEvent`]s since the start of the last action (the
//! subscription was open before it) and what a step wants: one prefix
//! present (through one of some next hops) or absent ([`RouteWant`]), or a
//! whole set. Out: a [`Stamp`]: the event since which it holds, "it held
//! already" (no event touched it), or why the events cannot tell (lost
//! notifications, or the table shows what no delivered event explains yet:
//! the caller waits a moment and asks again). The table itself is read by
//! the caller: the events date what the table shows, they never replace it.
//!
//! An IPv4 absence that no route event explains is dated by the last link
//! that went down (the kernel flushes the routes through a link without a
//! route event); with several such links the last one is taken, so the
//! figure is never earlier than the truth.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use ipnet::IpNet;

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
    /// It holds since this event.
    At(Instant),
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
            (Stamp::At(a), Stamp::At(b)) => Stamp::At(a.max(b)),
            (Stamp::At(a), Stamp::Before) | (Stamp::Before, Stamp::At(a)) => Stamp::At(a),
            (Stamp::Before, Stamp::Before) => Stamp::Before,
        }
    }
}

impl RouteWant {
    /// Whether `e` agrees with this want (`None`: it is not about it).
    fn agrees(&self, e: &RouteEvent) -> Option<bool> {
        match &e.what {
            Change::Route {
                dst,
                via,
                protocol,
                multipath,
                deleted,
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
            // A possible silent flush: only for IPv4 absences.
            Change::LinkDown if !self.present && self.dst.addr().is_ipv4() => Some(true),
            _ => None,
        }
    }

    fn is_route(e: &RouteEvent) -> bool {
        matches!(e.what, Change::Route { .. })
    }

    fn describe(&self, e: &RouteEvent, since: Instant) -> String {
        let when = e.at.saturating_duration_since(since).as_millis();
        match &e.what {
            Change::Route {
                via,
                protocol,
                deleted,
                ..
            } => format!(
                "{} {} {}proto {protocol} {when} ms after the action began",
                if *deleted { "deleted" } else { "added" },
                self.dst,
                via.map(|v| format!("via {v} ")).unwrap_or_default()
            ),
            Change::LinkDown => format!("a link went down {when} ms after the action began"),
            Change::Overrun => {
                format!("route notifications were lost {when} ms after the action began")
            }
        }
    }

    /// Since when the condition holds, given that the table shows it
    /// holding now and `events` are every event since the action began.
    pub fn stamp(&self, events: &[RouteEvent]) -> Stamp {
        if events.iter().any(|e| e.what == Change::Overrun) {
            return Stamp::Unknown("route notifications were lost (ENOBUFS)".into());
        }
        let rel: Vec<(&RouteEvent, bool)> = events
            .iter()
            .filter_map(|e| self.agrees(e).map(|a| (e, a)))
            .collect();
        let Some((last, agrees)) = rel.last() else {
            return Stamp::Before;
        };
        if !agrees {
            return Stamp::Lagging(format!(
                "the last route event ({:?}) disagrees with the table (not delivered yet?)",
                last.what
            ));
        }
        // The run of agreeing events at the end: its first route event is
        // when it began to hold; without one, the last link down (a flush).
        let run_start = rel.iter().rposition(|(_, a)| !a).map_or(0, |i| i + 1);
        let run = &rel[run_start..];
        match run.iter().find(|(e, _)| Self::is_route(e)) {
            Some((e, _)) => Stamp::At(e.at),
            None => run.last().map_or(Stamp::Before, |(e, _)| Stamp::At(e.at)),
        }
    }

    /// The first route event that broke the condition, described (for a
    /// condition that must have held throughout: `within = "0s"`, a hold);
    /// lost notifications count as a break that cannot be ruled out.
    pub fn first_break(&self, events: &[RouteEvent], since: Instant) -> Option<String> {
        events
            .iter()
            .find(|e| {
                e.what == Change::Overrun || (Self::is_route(e) && self.agrees(e) == Some(false))
            })
            .map(|e| self.describe(e, since))
    }
}

/// Since when a host holds exactly a set of routes of one protocol (each
/// wanted prefix through its next hop, nothing else of that protocol), given
/// that its table shows it now.
pub fn stamp_set(
    events: &[RouteEvent],
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
    let downs: Vec<&RouteEvent> = events
        .iter()
        .filter(|e| e.what == Change::LinkDown)
        .collect();
    // A prefix no event touched is as it was: wanted ones held already, and
    // a flush cannot add a route.
    let mut out = Stamp::Before;
    for (dst, mut mine) in by_dst {
        let want = RouteWant {
            dst,
            present: wanted.contains_key(&dst),
            via: wanted.get(&dst).copied().flatten().into_iter().collect(),
            protocol: Some(protocol),
        };
        if !want.present && !downs.is_empty() {
            mine.extend(downs.iter().map(|e| (*e).clone()));
            mine.sort_by_key(|e| e.at);
        }
        out = out.and(want.stamp(&mine));
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
            let want = RouteWant {
                dst,
                present: wanted.contains_key(&dst),
                via: wanted.get(&dst).copied().flatten().into_iter().collect(),
                protocol: Some(protocol),
            };
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
                protocol: 73,
                multipath: false,
                deleted,
            },
        }
    }

    fn want(dst: &str, present: bool, via: &[&str]) -> RouteWant {
        RouteWant {
            dst: dst.parse().unwrap(),
            present,
            via: via.iter().map(|v| v.parse().unwrap()).collect(),
            protocol: Some(73),
        }
    }

    #[test]
    fn a_route_is_dated_by_the_event_that_made_it_hold() {
        let t0 = Instant::now();
        let w = want("10.1.2.2/32", true, &["192.0.2.2"]);
        assert_eq!(w.stamp(&[]), Stamp::Before);
        let evs = vec![
            route(t0, 5, "10.1.2.2/32", "192.0.2.3", false),
            route(t0, 9, "10.9.9.9/32", "192.0.2.2", false),
            route(t0, 12, "10.1.2.2/32", "192.0.2.2", false),
            route(t0, 30, "10.1.2.2/32", "192.0.2.2", false),
        ];
        // Replaced through the right next hop at 12 ms; the rewrite at 30 ms
        // changed nothing.
        assert_eq!(w.stamp(&evs), Stamp::At(t0 + Duration::from_millis(12)));
        let b = w.first_break(&evs, t0).unwrap();
        assert!(
            b.starts_with("added 10.1.2.2/32 via 192.0.2.3 proto 73 5 ms"),
            "{b}"
        );
        // Events that disagree with the table are not delivered yet.
        let late = vec![route(t0, 40, "10.1.2.2/32", "192.0.2.2", true)];
        assert!(matches!(w.stamp(&late), Stamp::Lagging(_)));
    }

    #[test]
    fn an_absence_is_dated_by_its_deletion_or_by_a_flush() {
        let t0 = Instant::now();
        let w = want("10.1.2.2/32", false, &[]);
        let del = vec![
            route(t0, 3, "10.1.2.2/32", "192.0.2.2", false),
            route(t0, 201, "10.1.2.2/32", "192.0.2.2", true),
        ];
        assert_eq!(w.stamp(&del), Stamp::At(t0 + Duration::from_millis(201)));
        // Announced for a moment: the break is named.
        assert!(w.first_break(&del, t0).unwrap().starts_with("added"));
        let flush = vec![RouteEvent {
            at: t0 + Duration::from_millis(7),
            what: Change::LinkDown,
        }];
        assert_eq!(w.stamp(&flush), Stamp::At(t0 + Duration::from_millis(7)));
        assert_eq!(w.first_break(&flush, t0), None);
        // IPv6 routes get their own deletions: a link alone dates nothing.
        assert_eq!(want("fd00::2/128", false, &[]).stamp(&flush), Stamp::Before);
        let lost = vec![RouteEvent {
            at: t0,
            what: Change::Overrun,
        }];
        assert!(matches!(w.stamp(&lost), Stamp::Unknown(_)));
        assert!(w.first_break(&lost, t0).is_some());
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
        assert_eq!(stamp_set(&[], &wanted, 73), Stamp::Before);
        let evs = vec![
            route(t0, 4, "10.1.2.2/32", "192.0.2.2", false),
            route(t0, 8, "10.7.7.7/32", "192.0.2.7", false),
            route(t0, 20, "10.7.7.7/32", "192.0.2.7", true),
        ];
        // The extra route went at 20 ms.
        assert_eq!(
            stamp_set(&evs, &wanted, 73),
            Stamp::At(t0 + Duration::from_millis(20))
        );
        let b = set_break(&evs, &wanted, 73, t0).unwrap();
        assert!(b.starts_with("added 10.7.7.7/32 via 192.0.2.7"), "{b}");
        assert_eq!(set_break(&evs[..1], &wanted, 73, t0), None);
    }
}
