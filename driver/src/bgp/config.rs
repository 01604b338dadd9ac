//! The BGP side's settings, as the command line gives them.
//!
//! In: `--gobgp`, `--gobgp-timeout`, the speaker's flags, `--next-hop`,
//! `--community`, `--route-protocol`, `--accept-pool`, `--max-learned`,
//! `--max-rib`, `--max-rib-per-peer`, `--stale-routes-time`, `--parent`
//! (checked by [`crate::config`]). Out: one
//! [`BgpConfig`] the session, the host facts and the learner read.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::gobgp::GobgpAddr;
use super::learner::Limits;
use super::speaker::SpeakerConfig;

#[derive(Debug, Clone)]
pub struct BgpConfig {
    pub gobgp: GobgpAddr,
    /// Deadline of every gobgpd call (`--gobgp-timeout`).
    pub call_timeout: Duration,
    pub speaker: SpeakerConfig,
    /// `--next-hop`: at most one address per family (checked by the config).
    pub next_hops: Vec<IpAddr>,
    pub communities: Vec<u32>,
    pub protocol: u8,
    pub accept_pools: Vec<IpNet>,
    /// What the learner keeps and installs at most.
    pub limits: Limits,
    pub stale_time: Duration,
    pub default_parent: Option<String>,
    /// `--uplink`: the uplinks of dual-uplink mode (none, or two or more).
    /// Their connected subnets hold the accepted next hops, the first one's
    /// IPv4 address is the default router ID, and announcements carry an
    /// unspecified next hop (gobgpd gives each peer its session address).
    pub uplinks: Vec<String>,
    /// Stop BGP on gobgpd gracefully when the driver exits (`--stop-gobgpd-on-exit`).
    pub stop_gobgpd_on_exit: bool,
}

impl BgpConfig {
    /// The configured next hop for `prefix`'s family, if any.
    pub fn next_hop_for(&self, prefix: &IpNet) -> Option<IpAddr> {
        let v4 = matches!(prefix, IpNet::V4(_));
        self.next_hops.iter().copied().find(|a| a.is_ipv4() == v4)
    }
}
