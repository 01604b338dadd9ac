//! The announcer: keeps gobgpd's locally originated paths equal to what
//! this host's networks should announce.
//!
//! In: the wanted prefixes (from the driver's [`crate::driver::View`]) with
//! their next hop. Out: AddPath/AddPathStream and DeletePath calls for the
//! difference with what gobgpd holds. After a (re)connection it first reads
//! gobgpd's local paths so a restarted driver neither duplicates nor leaves
//! behind what an earlier run announced; paths it did not make (other
//! prefixes, other next hops) are never touched. Every call carries the
//! gobgpd deadline, so a stuck gobgpd fails a sync instead of hanging it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use tracing::{debug, info};

use super::gobgp::apipb::{AddPathRequest, AddPathStreamRequest, DeletePathRequest, TableType};
use super::gobgp::{
    deadline, decode_path, families, family_of, local_path, next_within, open_global_rib, Client,
};

/// Paths sent per AddPathStream message.
const STREAM_CHUNK: usize = 1000;
/// Below this many additions, unary AddPath calls are used.
const STREAM_THRESHOLD: usize = 16;

#[derive(Debug, Default)]
pub struct Announcer {
    /// What gobgpd holds from us: prefix -> next hop.
    announced: BTreeMap<IpNet, IpAddr>,
    communities: Vec<u32>,
    /// Deadline of each gobgpd call (and of each message of a list stream).
    limit: Duration,
}

impl Announcer {
    pub fn new(communities: Vec<u32>, limit: Duration) -> Announcer {
        Announcer {
            announced: BTreeMap::new(),
            communities,
            limit,
        }
    }

    pub fn count(&self) -> usize {
        self.announced.len()
    }

    /// Forget what gobgpd holds (it went away), then learn it again from its
    /// local RIB (IPv4 and IPv6 unicast): local paths for `wanted`'s pools
    /// with our next hop are ours.
    pub async fn resync(
        &mut self,
        client: &mut Client,
        pools: &[IpNet],
        our_next_hops: &[IpAddr],
    ) -> Result<(), tonic::Status> {
        self.announced.clear();
        for family in families() {
            let mut rib = open_global_rib(client, family, self.limit).await?;
            while let Some(resp) = next_within("ListPath", self.limit, &mut rib).await? {
                let Some(dest) = resp.destination else {
                    continue;
                };
                for p in dest.paths {
                    let Ok(lp) = decode_path(&p) else { continue };
                    let ours = lp.peer.is_none()
                        && pools.iter().any(|pool| pool.contains(&lp.prefix))
                        && lp.next_hop.is_some_and(|nh| our_next_hops.contains(&nh));
                    if let (true, Some(nh)) = (ours, lp.next_hop) {
                        self.announced.insert(lp.prefix, nh);
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
        client: &mut Client,
        wanted: &BTreeMap<IpNet, IpAddr>,
    ) -> Result<(), tonic::Status> {
        let remove: Vec<(IpNet, IpAddr)> = self
            .announced
            .iter()
            .filter(|(p, nh)| wanted.get(p) != Some(nh))
            .map(|(p, nh)| (*p, *nh))
            .collect();
        for (prefix, nh) in remove {
            if wanted.contains_key(&prefix) {
                // Next hop changed: AddPath below replaces it.
                continue;
            }
            deadline(
                "DeletePath",
                self.limit,
                client.delete_path(DeletePathRequest {
                    table_type: TableType::Global as i32,
                    family: Some(family_of(&prefix)),
                    path: Some(local_path(prefix, nh, &self.communities)),
                    ..DeletePathRequest::default()
                }),
            )
            .await?;
            self.announced.remove(&prefix);
            debug!(prefix = %prefix, "withdrawn");
        }
        let add: Vec<(IpNet, IpAddr)> = wanted
            .iter()
            .filter(|(p, nh)| self.announced.get(p) != Some(nh))
            .map(|(p, nh)| (*p, *nh))
            .collect();
        if add.len() < STREAM_THRESHOLD {
            for (prefix, nh) in add {
                deadline(
                    "AddPath",
                    self.limit,
                    client.add_path(AddPathRequest {
                        table_type: TableType::Global as i32,
                        vrf_id: String::new(),
                        path: Some(local_path(prefix, nh, &self.communities)),
                    }),
                )
                .await?;
                self.announced.insert(prefix, nh);
                debug!(prefix = %prefix, next_hop = %nh, "announced");
            }
        } else {
            let msgs: Vec<AddPathStreamRequest> = add
                .chunks(STREAM_CHUNK)
                .map(|chunk| AddPathStreamRequest {
                    table_type: TableType::Global as i32,
                    vrf_id: String::new(),
                    paths: chunk
                        .iter()
                        .map(|(p, nh)| local_path(*p, *nh, &self.communities))
                        .collect(),
                })
                .collect();
            // One deadline per STREAM_CHUNK paths: a large stream is slower
            // but must still end when gobgpd stops reading it.
            let chunks = u32::try_from(msgs.len().max(1)).unwrap_or(u32::MAX);
            let limit = self.limit.saturating_mul(chunks);
            deadline(
                "AddPathStream",
                limit,
                client.add_path_stream(tokio_stream::iter(msgs)),
            )
            .await?;
            let n = add.len();
            self.announced.extend(add);
            info!(count = n, "announced in bulk");
        }
        Ok(())
    }
}
