//! The announcer: keeps gobgpd's locally originated paths equal to what
//! this host's networks should announce, and touches no path it did not add.
//!
//! In: the wanted prefixes (from the driver's [`crate::view::View`]) with
//! their next hop and BGP attributes ([`RouteAttrs`](crate::model::attrs::RouteAttrs); the announcer adds the
//! global `--community` values and reads our AS for a prepend), and its
//! [`Ledger`] of the paths it added. Out: AddPath/AddPathStream and
//! DeletePath calls for the difference with what gobgpd holds from us, the
//! ledger kept (each addition recorded before it is made), and counters
//! ([`AnnouncerCounts`]). After a (re)connection it first reads gobgpd's local paths:
//! a path is adopted as ours only when the ledger proves the announcer added
//! it (see [`super::ledger`]), so a restarted driver neither duplicates nor
//! leaves behind what an earlier run announced, while an operator's own
//! path (in a pool, with our next hop) is left alone and counted. An adopted
//! path whose attributes differ from what is wanted is flagged for
//! replacement; one no longer wanted is withdrawn by its UUID where gobgpd
//! gave one, so a path someone else put in its place stays. A prefix whose
//! attributes changed is announced again (AddPath replaces the path). Every
//! call carries the gobgpd deadline, so a stuck gobgpd fails a sync instead
//! of hanging it. A caller that knows which prefixes changed since the last
//! sync names them: while that sync succeeded (what gobgpd holds from us is
//! then exactly what it wanted), only they are compared, so one Join costs
//! what it changed instead of a walk of everything announced.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use tracing::{debug, info, warn};

pub use super::announcement::Announcement;
use super::gobgp::{uuid_not_found, Family, Gobgp, GobgpApi, OwnPath};
use super::ledger::Ledger;
use crate::metrics::AnnouncerCounts;

/// Paths sent per AddPathStream message.
const STREAM_CHUNK: usize = 1000;
/// Below this many additions, unary AddPath calls are used (and their
/// UUIDs recorded).
const STREAM_THRESHOLD: usize = 16;
/// At most this many unproven paths are named in the log after a resync.
const FOREIGN_LOGGED: usize = 5;

/// A path gobgpd holds from us.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    announced: Announcement,
    /// Found in gobgpd with other attributes than wanted (a driver restarted
    /// with other options): the next sync replaces it.
    replace: bool,
    /// Adopted at a resync (added by an earlier run), not added by this one:
    /// withdrawn by its UUID where the ledger has one.
    adopted: bool,
}

#[derive(Debug, Default)]
pub struct Announcer {
    /// What gobgpd holds from us; comparing these allocates nothing.
    announced: BTreeMap<IpNet, Held>,
    communities: Vec<u32>,
    /// gobgpd's AS (from GetBgp at each resync), for the prepend; 0 unknown.
    asn: u32,
    /// Deadline of each gobgpd call (and of each message of a list stream).
    limit: Duration,
    ledger: Ledger,
    /// The last sync succeeded and nothing changed `announced` since: it
    /// equals that sync's `wanted`, none flagged for replacement, so a
    /// prefix no caller touched since needs no look.
    in_step: bool,
    pub counts: AnnouncerCounts,
}

impl Announcer {
    pub fn new(communities: Vec<u32>, limit: Duration, ledger: Ledger) -> Announcer {
        Announcer {
            announced: BTreeMap::new(),
            communities,
            asn: 0,
            limit,
            ledger,
            in_step: false,
            counts: AnnouncerCounts::default(),
        }
    }

    /// The path for `prefix` as gobgpd gets it.
    fn path(&self, prefix: IpNet, a: &Announcement) -> OwnPath {
        OwnPath {
            prefix,
            next_hop: a.next_hop,
            attrs: a.attrs.effective(&self.communities),
        }
    }

    pub fn count(&self) -> usize {
        self.announced.len()
    }

    /// Writes the ledger's changes, blocking in place (see
    /// [`super::ledger`]: appended, not flushed); a failure is logged and
    /// the next save rewrites the ledger whole (the paths stay announced: a
    /// live container matters more than the proof).
    async fn save_ledger(&mut self) {
        let Some(w) = self.ledger.take_write() else {
            return;
        };
        // On the driver's multi-threaded runtime the write runs on this
        // thread (`block_in_place` hands this worker's other tasks to a new
        // worker thread meanwhile): no trip to a blocking thread and back,
        // two wake-ups that a busy host can delay by milliseconds on the
        // announcement's way. A current-thread runtime (tests) cannot hand
        // its tasks over.
        let multi = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread;
        let saved = if multi {
            tokio::task::block_in_place(|| w.run()).map_err(|e| e.to_string())
        } else {
            tokio::task::spawn_blocking(move || w.run())
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        };
        if let Err(e) = saved {
            self.ledger.write_failed();
            warn!(error = %e, "could not write the announcer's ledger: after a restart these paths cannot be proven ours");
        }
    }

    /// Forget what gobgpd holds (it went away), then learn it again from its
    /// local RIB (IPv4 and IPv6 unicast): a local path is ours when the
    /// ledger proves the announcer added it (prefix and next hop). One whose
    /// attributes differ from what `wanted` asks for is flagged, so
    /// [`Announcer::sync`] replaces it. Local paths in `pools` with one of
    /// `our_next_hops` that the ledger does not prove ours are counted and
    /// left alone; ledger records of paths gobgpd no longer holds (it
    /// restarted) are dropped.
    pub async fn resync(
        &mut self,
        client: &mut Gobgp,
        pools: &[IpNet],
        our_next_hops: &[IpAddr],
        wanted: &BTreeMap<IpNet, Announcement>,
    ) -> Result<(), tonic::Status> {
        self.announced.clear();
        self.in_step = false;
        self.asn = client.get_bgp().await?.asn;
        if self.asn == 0 && wanted.values().any(|w| w.attrs.as_path_prepend > Some(0)) {
            warn!("gobgpd runs no BGP yet (AS 0): bgp_as_path_prepend is not applied until it does and the driver reconnects");
        }
        let mut foreign = Vec::new();
        for family in Family::ALL {
            let mut rib = client.open_rib(family, &[]).await?;
            while let Some(dest) = rib.next(self.limit).await? {
                for p in dest {
                    let lp = &p.path;
                    let (None, Some(next_hop)) = (&lp.peer, lp.next_hop) else {
                        continue;
                    };
                    if !self.ledger.proves(&lp.prefix, next_hop) {
                        if pools.iter().any(|pool| pool.contains(&lp.prefix))
                            && our_next_hops.contains(&next_hop)
                        {
                            foreign.push(lp.prefix);
                        }
                        continue;
                    }
                    let found = p.attrs.as_ours(self.asn);
                    let (attrs, replace) = match wanted.get(&lp.prefix) {
                        Some(w) if Some(w.attrs.effective(&self.communities)) == found => {
                            (w.attrs.clone(), false)
                        }
                        _ => (found.unwrap_or_default(), true),
                    };
                    self.announced.insert(
                        lp.prefix,
                        Held {
                            announced: Announcement { next_hop, attrs },
                            replace,
                            adopted: true,
                        },
                    );
                }
            }
        }
        let before = self.ledger.len();
        let announced = &self.announced;
        self.ledger.retain(|p| announced.contains_key(p));
        if self.ledger.len() != before {
            self.save_ledger().await;
        }
        self.counts.adopted = self.announced.len();
        self.counts.foreign = foreign.len();
        if !self.announced.is_empty() {
            info!(
                count = self.announced.len(),
                "found our announcements still in gobgpd"
            );
        }
        if !foreign.is_empty() {
            let sample: Vec<String> = foreign
                .iter()
                .take(FOREIGN_LOGGED)
                .map(|p| p.to_string())
                .collect();
            warn!(count = foreign.len(), sample = %sample.join(", "), "gobgpd holds local paths in our pools with our next hop that this driver did not add: left alone (an operator's own, or another instance's)");
        }
        Ok(())
    }

    /// Makes gobgpd's local paths from us equal `wanted`. With `touched`,
    /// the caller says only those prefixes can differ from the `wanted` of
    /// the last sync: only they are compared, when that sync succeeded and
    /// nothing came in between (else everything is, as without it).
    pub async fn sync(
        &mut self,
        client: &mut Gobgp,
        wanted: &BTreeMap<IpNet, Announcement>,
        touched: Option<&BTreeSet<IpNet>>,
    ) -> Result<(), tonic::Status> {
        let touched = touched.filter(|_| self.in_step);
        // Set again only when this sync succeeds.
        self.in_step = false;
        let result = self.sync_some(client, wanted, touched).await;
        self.in_step = result.is_ok();
        result
    }

    /// [`Announcer::sync`] over `touched`, or over everything.
    async fn sync_some(
        &mut self,
        client: &mut Gobgp,
        wanted: &BTreeMap<IpNet, Announcement>,
        touched: Option<&BTreeSet<IpNet>>,
    ) -> Result<(), tonic::Status> {
        let remove = self.withdrawals(wanted, touched);
        for (prefix, held) in &remove {
            self.withdraw(client, *prefix, held).await?;
        }
        if !remove.is_empty() {
            self.save_ledger().await;
        }
        let add = self.additions(wanted, touched);
        if add.is_empty() {
            return Ok(());
        }
        for (prefix, _) in add.iter().take(STREAM_THRESHOLD) {
            debug!(prefix = %prefix, mono_us = crate::clock::mono_us(), "to announce");
        }
        // Recorded before they are added: a crash in between leaves a
        // record of a path (harmless), never a path without one.
        self.ledger
            .intend(add.iter().map(|(p, a)| (*p, a.next_hop)));
        self.save_ledger().await;
        if add.len() < STREAM_THRESHOLD {
            debug!(mono_us = crate::clock::mono_us(), "intent recorded");
        }
        let result = self.add(client, add).await;
        self.save_ledger().await;
        result
    }

    /// Our paths no longer `wanted`: among `touched`, or all.
    fn withdrawals(
        &self,
        wanted: &BTreeMap<IpNet, Announcement>,
        touched: Option<&BTreeSet<IpNet>>,
    ) -> Vec<(IpNet, Held)> {
        let gone = |p: &IpNet| !wanted.contains_key(p);
        match touched {
            Some(t) => t
                .iter()
                .filter(|p| gone(p))
                .filter_map(|p| self.announced.get_key_value(p))
                .map(|(p, h)| (*p, h.clone()))
                .collect(),
            None => self
                .announced
                .iter()
                .filter(|(p, _)| gone(p))
                .map(|(p, h)| (*p, h.clone()))
                .collect(),
        }
    }

    /// The `wanted` prefixes (among `touched`, or all) gobgpd does not hold
    /// from us as wanted: new, or with a changed next hop or attributes
    /// (AddPath replaces the path), or flagged for replacement.
    fn additions(
        &self,
        wanted: &BTreeMap<IpNet, Announcement>,
        touched: Option<&BTreeSet<IpNet>>,
    ) -> Vec<(IpNet, Announcement)> {
        let differs = |p: &IpNet, a: &Announcement| {
            self.announced
                .get(p)
                .is_none_or(|h| h.replace || &h.announced != a)
        };
        match touched {
            Some(t) => t
                .iter()
                .filter_map(|p| wanted.get_key_value(p))
                .filter(|(p, a)| differs(p, a))
                .map(|(p, a)| (*p, a.clone()))
                .collect(),
            None => wanted
                .iter()
                .filter(|(p, a)| differs(p, a))
                .map(|(p, a)| (*p, a.clone()))
                .collect(),
        }
    }

    /// Withdraws our path of `prefix`: one this run added by its prefix and
    /// next hop; one adopted from an earlier run by its UUID where the
    /// ledger has one (gone already, or replaced by someone's path: left).
    async fn withdraw(
        &mut self,
        client: &mut Gobgp,
        prefix: IpNet,
        held: &Held,
    ) -> Result<(), tonic::Status> {
        debug!(prefix = %prefix, mono_us = crate::clock::mono_us(), "to withdraw");
        let by_uuid = held.adopted.then(|| self.ledger.uuid(&prefix)).flatten();
        let tried_uuid = by_uuid.is_some();
        let deleted = match by_uuid {
            Some(uuid) => client.delete_path_uuid(Family::of(&prefix), &uuid).await,
            None => {
                client
                    .delete_path(&self.path(prefix, &held.announced), self.asn)
                    .await
            }
        };
        match deleted {
            Ok(()) => {
                self.counts.withdrawals += 1;
                debug!(prefix = %prefix, mono_us = crate::clock::mono_us(), "withdrawn");
            }
            // gobgpd's answer (both lines) for a UUID it does not hold.
            Err(e) if tried_uuid && uuid_not_found(&e) => {
                info!(prefix = %prefix, "our earlier path is no longer in gobgpd (withdrawn, or replaced by someone else's): left alone");
            }
            Err(e) => return Err(e),
        }
        self.announced.remove(&prefix);
        self.ledger.removed(&prefix);
        Ok(())
    }

    async fn add(
        &mut self,
        client: &mut Gobgp,
        add: Vec<(IpNet, Announcement)>,
    ) -> Result<(), tonic::Status> {
        let held = |announced| Held {
            announced,
            replace: false,
            adopted: false,
        };
        if add.len() < STREAM_THRESHOLD {
            for (prefix, a) in add {
                let uuid = client.add_path(&self.path(prefix, &a), self.asn).await?;
                self.ledger.added(prefix, &uuid);
                self.counts.additions += 1;
                debug!(prefix = %prefix, next_hop = %a.next_hop, attrs = ?a.attrs, mono_us = crate::clock::mono_us(), "announced");
                self.announced.insert(prefix, held(a));
            }
            return Ok(());
        }
        let paths: Vec<OwnPath> = add.iter().map(|(p, a)| self.path(*p, a)).collect();
        // One deadline per STREAM_CHUNK paths: a large stream is slower
        // but must still end when gobgpd stops reading it.
        let chunks = u32::try_from(paths.len().div_ceil(STREAM_CHUNK).max(1)).unwrap_or(u32::MAX);
        let limit = self.limit.saturating_mul(chunks);
        client.add_paths(&paths, self.asn, limit).await?;
        let n = add.len();
        self.counts.additions += n as u64;
        self.announced
            .extend(add.into_iter().map(|(p, a)| (p, held(a))));
        info!(count = n, "announced in bulk");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::attrs::RouteAttrs;

    fn wanted_of(steps: &mut u64, n: usize) -> BTreeMap<IpNet, Announcement> {
        let mut next = || {
            *steps ^= *steps << 13;
            *steps ^= *steps >> 7;
            *steps ^= *steps << 17;
            *steps
        };
        let mut w = BTreeMap::new();
        for i in 0..n {
            let r = next();
            if r % 3 == 0 {
                continue;
            }
            let a = Announcement {
                next_hop: if r % 5 == 0 {
                    "192.0.2.2".parse().unwrap()
                } else {
                    "192.0.2.1".parse().unwrap()
                },
                attrs: RouteAttrs {
                    med: (r % 7 == 0).then_some(1),
                    ..RouteAttrs::default()
                },
            };
            w.insert(format!("10.1.0.{i}/32").parse().unwrap(), a);
        }
        w
    }

    /// What a successful sync leaves: the withdrawn gone, the added held.
    fn apply(a: &mut Announcer, remove: &[(IpNet, Held)], add: &[(IpNet, Announcement)]) {
        for (p, _) in remove {
            a.announced.remove(p);
        }
        for (p, w) in add {
            let held = Held {
                announced: w.clone(),
                replace: false,
                adopted: false,
            };
            a.announced.insert(*p, held);
        }
    }

    /// In step with the last sync, comparing only the prefixes whose wanted
    /// announcement changed finds the same withdrawals and additions as
    /// comparing everything.
    #[test]
    fn comparing_only_the_touched_prefixes_finds_what_comparing_all_finds() {
        let mut a = Announcer::default();
        let mut seed = 11;
        let mut last = BTreeMap::new();
        for _ in 0..300 {
            let wanted = wanted_of(&mut seed, 40);
            let touched: BTreeSet<IpNet> = last
                .keys()
                .chain(wanted.keys())
                .filter(|p| last.get(*p) != wanted.get(*p))
                .copied()
                .collect();
            let remove = a.withdrawals(&wanted, None);
            assert_eq!(remove, a.withdrawals(&wanted, Some(&touched)));
            apply(&mut a, &remove, &[]);
            let add = a.additions(&wanted, None);
            assert_eq!(add, a.additions(&wanted, Some(&touched)));
            apply(&mut a, &[], &add);
            let held: BTreeMap<IpNet, Announcement> = a
                .announced
                .iter()
                .map(|(p, h)| (*p, h.announced.clone()))
                .collect();
            assert_eq!(held, wanted);
            last = wanted;
        }
    }

    /// Out of step (paths adopted at a resync, one flagged for
    /// replacement), only a full comparison finds the flagged path: why
    /// [`Announcer::sync`] ignores `touched` until a sync has succeeded.
    #[test]
    fn a_path_flagged_for_replacement_is_found_only_by_comparing_all() {
        let mut a = Announcer::default();
        let p: IpNet = "10.1.0.1/32".parse().unwrap();
        let w = Announcement {
            next_hop: "192.0.2.1".parse().unwrap(),
            attrs: RouteAttrs::default(),
        };
        a.announced.insert(
            p,
            Held {
                announced: w.clone(),
                replace: true,
                adopted: true,
            },
        );
        let wanted: BTreeMap<IpNet, Announcement> = [(p, w)].into();
        assert_eq!(a.additions(&wanted, None).len(), 1);
        assert!(a.additions(&wanted, Some(&BTreeSet::new())).is_empty());
        assert!(!a.in_step);
    }
}

/// The ignored measurement of one endpoint's change at 1,000 endpoints.
#[cfg(test)]
mod measure;
