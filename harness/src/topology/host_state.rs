//! What a host's daemons report: gobgpd's neighbours (`gobgp -j
//! neighbor`, or `gobgp-v4` on 4.x), session states (3.x: its gRPC API;
//! 4.x: its CLI) and BFD states (4.x), the driver's status document
//! (`/IpvlanBgp.Status` on its socket).
//!
//! In: a host index of the [`World`]. Out: parsed answers, or an error
//! naming the host. Owns nothing; reads only.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::world::World;
use crate::scenario::GobgpLine;

impl World {
    /// `gobgp -j ARGS...` (the CLI of the run's line) on host `i`'s
    /// gobgpd, parsed; an empty answer is null. Both lines' CLIs write the
    /// same JSON for what the harness reads (`neighbor`, `global rib`).
    pub fn gobgp_cli_json(&self, i: usize, args: &[&str]) -> Result<serde_json::Value> {
        let h = &self.hosts[i];
        let cli = self.gobgp_line().cli();
        let target = h.gobgp_target();
        let mut all: Vec<&str> = target.iter().map(String::as_str).collect();
        all.push("-j");
        all.extend(args);
        let out = h.ns.exec(cli, &all, Duration::from_secs(10))?;
        if !out.status.success() {
            bail!(
                "{cli} {} on {}: {}{}",
                args.join(" "),
                h.def.name,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{cli} -j {} on {}", args.join(" "), h.def.name))
    }

    /// Destinations in host `i`'s gobgpd RIB for `afi` (`gobgp global rib
    /// summary -a AFI`): the routes a router holding that RIB would install.
    pub fn gobgp_rib_destinations(&self, i: usize, afi: &str) -> Result<usize> {
        let h = &self.hosts[i];
        let cli = self.gobgp_line().cli();
        let target = h.gobgp_target();
        let mut all: Vec<&str> = target.iter().map(String::as_str).collect();
        all.extend(["global", "rib", "summary", "-a", afi]);
        let out = h.ns.exec(cli, &all, Duration::from_secs(10))?;
        let text = String::from_utf8_lossy(&out.stdout);
        match super::diagnostics::rib_destinations(&text) {
            Some(n) if out.status.success() => Ok(n),
            _ => bail!(
                "{cli} global rib summary -a {afi} on {}: {}{}",
                h.def.name,
                String::from_utf8_lossy(&out.stderr).trim(),
                text.trim()
            ),
        }
    }

    /// `gobgp -j neighbor` on host `i`: each session as gobgpd reports it.
    pub fn gobgp_neighbors(&self, i: usize) -> Result<Vec<serde_json::Value>> {
        match self.gobgp_cli_json(i, &["neighbor"])? {
            serde_json::Value::Null => Ok(Vec::new()),
            v => serde_json::from_value(v)
                .with_context(|| format!("gobgp -j neighbor on {}", self.hosts[i].def.name)),
        }
    }

    /// BFD state per neighbour address on host `i` (true = up), for the
    /// neighbours whose BFD is enabled (4.x only; 3.x has none).
    pub fn bfd_sessions(&self, i: usize) -> Result<Vec<(String, bool)>> {
        if self.gobgp_line() != GobgpLine::V4 {
            return Ok(Vec::new());
        }
        Ok(self
            .gobgp_neighbors(i)?
            .iter()
            .filter(|n| n.pointer("/bfd/enabled").and_then(|v| v.as_bool()) == Some(true))
            .map(|n| {
                let addr = n
                    .pointer("/conf/neighbor_address")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?")
                    .to_string();
                // BfdSessionState: UP = 1.
                let up = n
                    .pointer("/state/bfd_state/session_state")
                    .and_then(|v| v.as_u64())
                    == Some(1);
                (addr, up)
            })
            .collect())
    }

    /// The driver's status document for host `i`.
    pub fn driver_status(&self, i: usize) -> Result<serde_json::Value> {
        let r = self.rt.block_on(ipvlan_bgp::api::client::post(
            &self.hosts[i].socket(),
            "/IpvlanBgp.Status",
            Vec::new(),
            Duration::from_secs(5),
        ))?;
        r.json()
    }

    /// BGP session states on host `i` (address -> established), over
    /// gRPC on either GoBGP line.
    pub fn bgp_sessions(&self, i: usize) -> Result<Vec<(String, bool)>> {
        use ipvlan_bgp::bgp::gobgp::{Gobgp, GobgpAddr, GobgpApi};
        let api = self.hosts[i].gobgp_api();
        self.rt.block_on(async {
            let mut c = Gobgp::connect(&GobgpAddr::Unix(api), Duration::from_secs(2)).await?;
            let peers = c.list_peers(None).await?;
            Ok(peers
                .into_iter()
                .map(|p| {
                    let up = p.is_established();
                    (p.address, up)
                })
                .collect())
        })
    }
}

impl World {
    /// The driver's `ipam show` document for host `i` (etcd's pools and
    /// blocks as that host reads them, its own blocks and strays).
    pub fn driver_ipam_show(&self, i: usize) -> Result<serde_json::Value> {
        let r = self.rt.block_on(ipvlan_bgp::api::client::post(
            &self.hosts[i].socket(),
            "/IpvlanBgp.IpamShow",
            Vec::new(),
            Duration::from_secs(15),
        ))?;
        let v = r.json()?;
        if let Some(e) = v.get("Err").and_then(|e| e.as_str()) {
            bail!("ipam show on {}: {e}", self.hosts[i].def.name);
        }
        Ok(v)
    }
}
