//! The announcer: keeps gobgpd's locally originated paths equal to what
//! this host's networks should announce.
//!
//! In: the wanted prefixes (from the driver's [`crate::view::View`]) with
//! their next hop and BGP attributes ([`RouteAttrs`]; the announcer adds the
//! global `--community` values and reads our AS for a prepend). Out:
//! AddPath/AddPathStream and DeletePath calls for the difference with what
//! gobgpd holds. After a (re)connection it first reads gobgpd's local paths
//! so a restarted driver neither duplicates nor leaves behind what an
//! earlier run announced; paths it did not make (other prefixes, other next
//! hops) are never touched. A prefix whose attributes changed is announced
//! again (AddPath replaces the path). Every call carries the gobgpd
//! deadline, so a stuck gobgpd fails a sync instead of hanging it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use tracing::{debug, info, warn};

use super::gobgp::{Family, Gobgp, GobgpApi, OwnPath};
use crate::model::attrs::RouteAttrs;

/// Paths sent per AddPathStream message.
const STREAM_CHUNK: usize = 1000;
/// Below this many additions, unary AddPath calls are used.
const STREAM_THRESHOLD: usize = 16;

/// One prefix to announce: its next hop and its attributes as the view has
/// them (without the global communities, which [`Announcer`] adds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub next_hop: IpAddr,
    pub attrs: RouteAttrs,
}

/// Attributes no view asks for (a prepend beyond any allowed): what a path
/// found in gobgpd gets when it differs from what is wanted, so that the
/// next sync replaces it.
fn stale_attrs() -> RouteAttrs {
    RouteAttrs {
        as_path_prepend: Some(u8::MAX),
        ..RouteAttrs::default()
    }
}

#[derive(Debug, Default)]
pub struct Announcer {
    /// What gobgpd holds from us: prefix -> next hop and the (view's)
    /// attributes it was announced with; comparing these allocates nothing.
    announced: BTreeMap<IpNet, Announcement>,
    communities: Vec<u32>,
    /// gobgpd's AS (from GetBgp at each resync), for the prepend; 0 unknown.
    asn: u32,
    /// Deadline of each gobgpd call (and of each message of a list stream).
    limit: Duration,
    /// Paths gobgpd accepted from us (AddPath, one per prefix) and paths
    /// withdrawn (DeletePath), since this process started: a path announced
    /// for a moment shows here even when no reader saw it.
    added: u64,
    withdrawn: u64,
}

impl Announcer {
    pub fn new(communities: Vec<u32>, limit: Duration) -> Announcer {
        Announcer {
            announced: BTreeMap::new(),
            communities,
            asn: 0,
            limit,
            added: 0,
            withdrawn: 0,
        }
    }

    /// Paths announced and withdrawn so far (see the fields).
    pub fn sent(&self) -> (u64, u64) {
        (self.added, self.withdrawn)
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

    /// Forget what gobgpd holds (it went away), then learn it again from its
    /// local RIB (IPv4 and IPv6 unicast): local paths for `wanted`'s pools
    /// with our next hop are ours. One whose attributes differ from what
    /// `wanted` asks for is recorded as stale, so [`Announcer::sync`]
    /// replaces it (a driver restarted with other options re-announces).
    pub async fn resync(
        &mut self,
        client: &mut Gobgp,
        pools: &[IpNet],
        our_next_hops: &[IpAddr],
        wanted: &BTreeMap<IpNet, Announcement>,
    ) -> Result<(), tonic::Status> {
        self.announced.clear();
        self.asn = client.get_bgp().await?.asn;
        if self.asn == 0 && wanted.values().any(|w| w.attrs.as_path_prepend > Some(0)) {
            warn!("gobgpd runs no BGP yet (AS 0): bgp_as_path_prepend is not applied until it does and the driver reconnects");
        }
        for family in Family::ALL {
            let mut rib = client.open_rib(family, &[]).await?;
            while let Some(dest) = rib.next(self.limit).await? {
                for p in dest {
                    let lp = &p.path;
                    let ours = lp.peer.is_none()
                        && pools.iter().any(|pool| pool.contains(&lp.prefix))
                        && lp.next_hop.is_some_and(|nh| our_next_hops.contains(&nh));
                    if let (true, Some(next_hop)) = (ours, lp.next_hop) {
                        let attrs = match wanted.get(&lp.prefix) {
                            Some(w)
                                if w.attrs.effective(&self.communities)
                                    == p.attrs.as_ours(self.asn) =>
                            {
                                w.attrs.clone()
                            }
                            _ => stale_attrs(),
                        };
                        self.announced
                            .insert(lp.prefix, Announcement { next_hop, attrs });
                    }
                }
            }
        }
        if !self.announced.is_empty() {
            info!(
                count = self.announced.len(),
                "found our announcements still in gobgpd"
            );
        }
        Ok(())
    }

    /// Makes gobgpd's local paths equal `wanted`.
    pub async fn sync(
        &mut self,
        client: &mut Gobgp,
        wanted: &BTreeMap<IpNet, Announcement>,
    ) -> Result<(), tonic::Status> {
        let remove: Vec<(IpNet, Announcement)> = self
            .announced
            .iter()
            .filter(|(p, _)| !wanted.contains_key(p))
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        for (prefix, a) in remove {
            client.delete_path(&self.path(prefix, &a), self.asn).await?;
            self.announced.remove(&prefix);
            self.withdrawn += 1;
            debug!(prefix = %prefix, "withdrawn");
        }
        // A changed next hop or attributes: AddPath replaces the path.
        let add: Vec<(IpNet, Announcement)> = wanted
            .iter()
            .filter(|(p, a)| self.announced.get(p) != Some(a))
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        if add.len() < STREAM_THRESHOLD {
            for (prefix, a) in add {
                client.add_path(&self.path(prefix, &a), self.asn).await?;
                debug!(prefix = %prefix, next_hop = %a.next_hop, attrs = ?a.attrs, "announced");
                self.announced.insert(prefix, a);
                self.added += 1;
            }
        } else {
            let paths: Vec<OwnPath> = add.iter().map(|(p, a)| self.path(*p, a)).collect();
            // One deadline per STREAM_CHUNK paths: a large stream is slower
            // but must still end when gobgpd stops reading it.
            let chunks =
                u32::try_from(paths.len().div_ceil(STREAM_CHUNK).max(1)).unwrap_or(u32::MAX);
            let limit = self.limit.saturating_mul(chunks);
            client.add_paths(&paths, self.asn, limit).await?;
            let n = add.len();
            self.announced.extend(add);
            self.added += n as u64;
            info!(count = n, "announced in bulk");
        }
        Ok(())
    }
}
