//! gobgpd's event stream, in batches to the learner.
//!
//! In: a message of events and what is already queued behind it in the
//! stream (up to [`EVENT_BATCH`] paths). Out: peer states to status at
//! once; learned paths (4.x per-path changes turned back into whole sets,
//! only each prefix's latest set, a failed peer's stale ones left out,
//! withdrawals possibly held back: [`crate::bgp::withdrawals`]) to the
//! learner in batches of at most [`EVENT_BATCH`] with a yield between
//! them; then the peers' falls and End-of-RIB to [`super::peer_watch`].

use std::collections::HashMap;
use std::time::Instant;

use ipnet::IpNet;
use tracing::{debug, info};

use super::{Bgp, Ended, EVENT_BATCH};
use crate::bgp::gobgp::{self, Event, EventStream, Family, Gobgp, GobgpApi, LearnedPath};
use crate::bgp::withdrawals::{self, HeldWithdrawals};
use crate::metrics::PeerStatus;

/// Up to this many paths in one message get a debug line each.
const STAMPED: usize = 8;

impl Bgp {
    /// A message of events, and what is already queued behind it (up to
    /// one batch; the rest waits in the stream, bounded by HTTP/2 flow
    /// control): learned paths first, then the peers' falls and
    /// End-of-RIB, which may remove routes the same batch confirmed.
    pub(super) async fn on_events(
        &mut self,
        client: &mut Gobgp,
        first: Vec<Event>,
        events: &mut EventStream,
        held: &mut HeldWithdrawals,
    ) -> Result<(), Ended> {
        let arrived = Instant::now();
        let arrived_us = crate::clock::mono_us();
        let mut c = Collected::default();
        self.collect(first, &mut c);
        while c.paths.len() + c.deltas.len() < EVENT_BATCH {
            match futures::FutureExt::now_or_never(events.next()) {
                Some(Some(Ok(m))) => self.collect(m, &mut c),
                Some(Some(Err(e))) => return Err(Ended::Lost(stream_error(&e))),
                Some(None) | None => break,
            }
        }
        let mut paths = c.paths;
        if !c.deltas.is_empty() {
            // 4.x with multipath: per-path changes become the prefixes'
            // whole sets of best paths again (the latest word on them).
            let latest = c.events + 1;
            paths.extend(
                client
                    .best_sets(c.deltas)
                    .await
                    .map_err(|e| format!("list paths: {}", gobgp::describe(&e)))?
                    .into_iter()
                    .map(|p| (latest, p)),
            );
        }
        let mut paths = latest_sets(paths);
        // A stamp per path only for a few (a container's route), not for a
        // peer's whole table.
        if paths.len() <= STAMPED {
            for p in &paths {
                debug!(prefix = %p.prefix, withdraw = p.withdraw, mono_us = arrived_us, "paths arrived");
            }
        }
        // A peer that failed hard: its stale paths stay out.
        paths.retain(|p| p.withdraw || !self.peers.ignores(p.peer.as_deref()));
        // One message may itself carry more than a batch; a prefix's set
        // never straddles two (the learner takes each batch's paths of a
        // prefix as its whole set).
        let mut paths = paths.into_iter().peekable();
        while paths.peek().is_some() {
            let mut batch: Vec<LearnedPath> = paths.by_ref().take(EVENT_BATCH).collect();
            while let Some(last) = batch.last().map(|p| p.prefix) {
                match paths.next_if(|p| p.prefix == last) {
                    Some(p) => batch.push(p),
                    None => break,
                }
            }
            let now_apply = withdrawals::sort(client, batch, held)
                .await
                .map_err(|e| format!("list peers: {}", gobgp::describe(&e)))?;
            // Waits when the learner's queue is full: the rest stays in
            // gobgpd's stream (HTTP/2 flow control).
            self.learner.learn(now_apply, arrived).await?;
            tokio::task::yield_now().await;
        }
        let mut actions = Vec::new();
        for peer in c.fell {
            // Why it fell decides whether its routes stay (a restart) or go.
            match client.list_peers(Some(&peer)).await {
                Ok(infos) => {
                    for info in &infos {
                        actions.extend(self.peers.fell(info));
                    }
                }
                Err(e) => {
                    debug!(peer, error = %gobgp::describe(&e), "could not ask why the peer fell; the next refresh will")
                }
            }
        }
        for (peer, family) in c.end_of_rib {
            actions.extend(self.peers.end_of_rib(&peer, family));
        }
        self.apply(client, actions).await
    }

    /// Takes a message's events: peer state changes go to status at once,
    /// the rest is queued for the batch.
    fn collect(&mut self, events: Vec<Event>, c: &mut Collected) {
        for ev in events {
            match ev {
                Event::Best(p) => {
                    c.events += 1;
                    let n = c.events;
                    c.paths.extend(p.into_iter().map(|p| (n, p)));
                }
                Event::BestDelta(p) => c.deltas.extend(p),
                Event::Peer {
                    address,
                    asn,
                    state,
                } => {
                    info!(peer = %address, state = state.name(), "BGP peer state");
                    if self.peers.event(&address, state) {
                        c.fell.push(address.clone());
                    }
                    self.metrics.bgp(
                        |b| match b.peers.iter_mut().find(|p| p.address == address) {
                            Some(p) => p.state = state.name().to_string(),
                            None => b.peers.push(PeerStatus {
                                address: address.clone(),
                                asn,
                                state: state.name().to_string(),
                                ..PeerStatus::default()
                            }),
                        },
                    );
                }
                Event::EndOfRib { peer, family } => c.end_of_rib.push((peer, family)),
            }
        }
    }
}

/// What a batch of events holds, sorted by what the session does with it.
#[derive(Default)]
struct Collected {
    /// Each with the number of the event that carried it.
    paths: Vec<(u32, LearnedPath)>,
    events: u32,
    deltas: Vec<LearnedPath>,
    /// Peers that left Established.
    fell: Vec<String>,
    end_of_rib: Vec<(String, Family)>,
}

/// The event stream broke: say so in words an operator can act on.
pub(super) fn stream_error(e: &tonic::Status) -> String {
    format!(
        "event stream broke ({}: {}); gobgpd stopped, restarted or stopped answering keepalives",
        e.code(),
        gobgp::describe(e)
    )
}

/// Several events about one prefix in a batch: each carried the prefix's
/// whole set of best paths (or its withdrawal), so only the latest event's
/// word on it counts. Out: those paths, each prefix's together, prefixes in
/// the order they were first named.
fn latest_sets(paths: Vec<(u32, LearnedPath)>) -> Vec<LearnedPath> {
    let mut latest: HashMap<IpNet, (u32, usize)> = HashMap::new();
    for (k, (event, p)) in paths.iter().enumerate() {
        let e = latest.entry(p.prefix).or_insert((*event, k));
        e.0 = e.0.max(*event);
    }
    let mut kept: Vec<(usize, LearnedPath)> = paths
        .into_iter()
        .filter(|(event, p)| latest.get(&p.prefix).is_some_and(|l| l.0 == *event))
        .map(|(_, p)| (latest.get(&p.prefix).map_or(0, |l| l.1), p))
        .collect();
    kept.sort_by_key(|(first, _)| *first);
    kept.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prefix's set in two events of one batch: the later event's set
    /// replaces the earlier one (3.x sends the whole set each time), and a
    /// prefix's paths stay together.
    #[test]
    fn the_latest_event_names_a_prefixs_set() {
        let p = |prefix: &str, nh: &str, withdraw: bool| LearnedPath {
            prefix: n(prefix),
            next_hop: nh.parse().ok(),
            withdraw,
            peer: Some(nh.to_string()),
            as_path: vec![65010],
        };
        let got = latest_sets(vec![
            (1, p("10.9.0.1/32", "192.0.2.2", false)),
            (1, p("10.9.0.1/32", "192.0.2.3", false)),
            (2, p("10.9.0.2/32", "192.0.2.2", false)),
            (3, p("10.9.0.1/32", "192.0.2.3", false)),
            (4, p("10.9.0.2/32", "192.0.2.2", true)),
        ]);
        assert_eq!(
            got,
            vec![
                p("10.9.0.1/32", "192.0.2.3", false),
                p("10.9.0.2/32", "192.0.2.2", true)
            ]
        );
    }

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }
}
