//! A host's gobgpd through its CLI (`gobgp`, or `gobgp-v4` on the 4.x
//! line): `gobgp -j ...` parsed, and paths added to or deleted from its
//! global RIB (`inject` and its withdrawal).
//!
//! In: a host and the CLI's arguments. Out: JSON, or the CLI's error with
//! its stderr.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Result};
use ipnet::IpNet;

use super::Runner;

impl Runner<'_> {
    /// `gobgp -j ARGS...` on a host's gobgpd (the CLI of the run's line),
    /// parsed. An empty answer is null.
    pub(super) fn gobgp_json(&self, host: &str, args: &[&str]) -> Result<serde_json::Value> {
        self.w.gobgp_cli_json(self.w.host_index(host)?, args)
    }

    /// `gobgp global rib add|del PREFIX nexthop NH -a ipv4|ipv6` on a host's gobgpd.
    pub(super) fn gobgp_rib(
        &self,
        host: &str,
        verb: &str,
        prefix: IpNet,
        nh: IpAddr,
    ) -> Result<()> {
        let (p, nh) = (prefix.to_string(), nh.to_string());
        let afi = if prefix.addr().is_ipv6() {
            "ipv6"
        } else {
            "ipv4"
        };
        let target = self.w.host(host)?.gobgp_target();
        let cli = self.w.gobgp_line().cli();
        let args = [
            &target[0], &target[1], "global", "rib", verb, "-a", afi, &p, "nexthop", &nh,
        ];
        let out = self
            .w
            .host(host)?
            .ns
            .exec(cli, &args, Duration::from_secs(10))?;
        if !out.status.success() {
            bail!(
                "{cli} global rib {verb} {p} nexthop {nh} on {host}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}
