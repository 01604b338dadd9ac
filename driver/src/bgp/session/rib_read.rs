//! Reading gobgpd's global RIB for the learner.
//!
//! In: ListPath streams, IPv4 then IPv6 (the whole RIB, or the prefixes
//! asked for). Out: the best paths of each destination (only those gobgpd
//! marks best; a hard-failed peer's stale copy left out) to the learner in
//! batches of [`EVENT_BATCH`] with a yield between them: as its snapshot
//! at connect (what gobgpd does not hold becomes stale), or as a re-read
//! (the pools widened, room freed, a failed peer back); or, for prefixes a
//! failed peer held, the remaining best paths returned to the caller.

use std::time::Instant;

use ipnet::IpNet;

use super::{Bgp, Ended, EVENT_BATCH};
use crate::bgp::gobgp::{self, Family, Gobgp, GobgpApi, LearnedPath, RibPath};
use crate::bgp::learning::LearnerGone;

impl Bgp {
    /// Reads the best path of every IPv4 and IPv6 destination in gobgpd's global RIB
    /// and hands them to the learner in batches of [`EVENT_BATCH`], yielding
    /// between batches. With `snapshot`, the first batch is the learner's
    /// snapshot (what gobgpd does not hold becomes stale); otherwise it is a
    /// re-read after the pools widened ([`crate::bgp::learner::Learner::relisted`]: nothing becomes
    /// stale, refusals are not counted twice). Returns the count.
    pub(super) async fn list_best(
        &mut self,
        client: &mut Gobgp,
        snapshot: bool,
    ) -> Result<usize, Ended> {
        self.list_best_inner(client, snapshot)
            .await
            .map_err(|e| match e {
                ListError::Gobgp(e) => Ended::Lost(format!("list paths: {}", gobgp::describe(&e))),
                ListError::Learner => Ended::LearnerGone,
            })
    }

    async fn list_best_inner(
        &mut self,
        client: &mut Gobgp,
        snapshot: bool,
    ) -> Result<usize, ListError> {
        let limit = self.cfg.call_timeout;
        let started = Instant::now();
        let mut first = snapshot;
        let mut batch = Vec::with_capacity(EVENT_BATCH);
        let mut count = 0;
        // One stream per family (IPv4, then IPv6), read one after the other
        // as if they were one: the snapshot makes everything stale first and
        // every later batch confirms what it holds, of either family.
        let mut pending = vec![Family::Ipv6];
        let mut stream = client.open_rib(Family::Ipv4, &[]).await?;
        loop {
            let mut msg = stream.next(limit).await?;
            if msg.is_none() {
                if let Some(family) = pending.pop() {
                    stream = client.open_rib(family, &[]).await?;
                    msg = stream.next(limit).await?;
                }
            }
            let done = msg.is_none() && pending.is_empty();
            if let Some(dest) = msg {
                // A peer that failed hard: gobgpd's stale copies stay out.
                let ignored = |p: &RibPath| p.stale && self.peers.ignores(p.path.peer.as_deref());
                batch.extend(best_paths(dest, ignored));
            }
            if batch.len() >= EVENT_BATCH || (done && (first || !batch.is_empty())) {
                count += batch.len();
                let paths = std::mem::replace(&mut batch, Vec::with_capacity(EVENT_BATCH));
                if first {
                    self.learner.snapshot(paths, started).await?;
                } else {
                    self.learner.relisted(paths, started).await?;
                }
                first = false;
                tokio::task::yield_now().await;
            }
            if done {
                return Ok(count);
            }
        }
    }

    /// The best remaining paths of `prefixes` in gobgpd's RIB, leaving out
    /// the stale paths of peers that failed hard (gobgpd may still rank one
    /// of those best: then the next one is taken).
    pub(super) async fn usable_paths(
        &mut self,
        client: &mut Gobgp,
        prefixes: &[IpNet],
    ) -> Result<Vec<LearnedPath>, tonic::Status> {
        let limit = self.cfg.call_timeout;
        let mut out = Vec::new();
        for family in Family::ALL {
            let of: Vec<IpNet> = prefixes
                .iter()
                .filter(|p| Family::of(p) == family)
                .copied()
                .collect();
            for chunk in of.chunks(1000) {
                let mut rib = client.open_rib(family, chunk).await?;
                while let Some(dest) = rib.next(limit).await? {
                    let ignored =
                        |p: &RibPath| p.stale && self.peers.ignores(p.path.peer.as_deref());
                    out.extend(best_paths(dest, ignored));
                }
            }
        }
        Ok(out)
    }
}

/// A read of gobgpd's RIB failed: gobgpd, or the learner's thread.
enum ListError {
    Gobgp(tonic::Status),
    Learner,
}

impl From<tonic::Status> for ListError {
    fn from(e: tonic::Status) -> ListError {
        ListError::Gobgp(e)
    }
}

impl From<LearnerGone> for ListError {
    fn from(_: LearnerGone) -> ListError {
        ListError::Learner
    }
}

/// The best paths of a destination: only those gobgpd marks best (4.x
/// marks every member of an equal set; 3.x one). A destination without one
/// (no path selected, every next hop invalid) has nothing to install:
/// another path is never taken in its place. One exception: when every
/// marked path is `ignored` (the stale copy of a peer that failed hard,
/// which gobgpd may still rank best), the next usable path stands in, as
/// gobgpd will choose it once it flushes the stale one.
fn best_paths(dest: Vec<RibPath>, ignored: impl Fn(&RibPath) -> bool) -> Vec<LearnedPath> {
    let best_ignored = dest.iter().any(|p| p.best && ignored(p));
    let kept: Vec<RibPath> = dest.into_iter().filter(|p| !ignored(p)).collect();
    let marked: Vec<LearnedPath> = kept
        .iter()
        .filter(|p| p.best && !p.path.withdraw)
        .map(|p| p.path.clone())
        .collect();
    if marked.is_empty() && best_ignored {
        kept.into_iter()
            .find(|p| !p.path.withdraw)
            .map(|p| p.path)
            .into_iter()
            .collect()
    } else {
        marked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn rib_path(nh: &str, best: bool, stale: bool) -> RibPath {
        RibPath {
            path: LearnedPath {
                prefix: n("10.1.2.5/32"),
                next_hop: nh.parse().ok(),
                withdraw: false,
                peer: Some(nh.into()),
                as_path: vec![65010],
            },
            attrs: Default::default(),
            best,
            stale,
        }
    }

    /// A ListPath destination (either line): only the paths gobgpd marks
    /// best are taken; without one, nothing (never the first path in its
    /// place), unless the marked one is a failed peer's ignored stale copy.
    #[test]
    fn only_the_paths_marked_best_are_taken() {
        let none = |_: &RibPath| false;
        let hops = |v: Vec<LearnedPath>| v.into_iter().map(|p| p.next_hop).collect::<Vec<_>>();
        let d = vec![
            rib_path("192.0.2.2", false, false),
            rib_path("192.0.2.3", true, false),
        ];
        assert_eq!(hops(best_paths(d, none)), ["192.0.2.3".parse().ok()]);
        // 4.x with multipath: every member of the equal set.
        let d = vec![
            rib_path("192.0.2.2", true, false),
            rib_path("192.0.2.3", true, false),
        ];
        assert_eq!(best_paths(d, none).len(), 2);
        let d = vec![
            rib_path("192.0.2.2", false, false),
            rib_path("192.0.2.3", false, false),
        ];
        assert!(best_paths(d, none).is_empty(), "no path marked best");
        assert!(best_paths(vec![], none).is_empty());
        // The best is the stale copy of a peer that failed hard.
        let failed = |p: &RibPath| p.stale && p.path.peer.as_deref() == Some("192.0.2.2");
        let d = vec![
            rib_path("192.0.2.2", true, true),
            rib_path("192.0.2.3", false, false),
        ];
        assert_eq!(hops(best_paths(d, failed)), ["192.0.2.3".parse().ok()]);
    }
}
