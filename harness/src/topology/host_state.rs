//! What a host's daemons report: gobgpd's neighbours (`gobgp -j
//! neighbor`) and session states (its gRPC API), the driver's status
//! document (`/IpvlanBgp.Status` on its socket).
//!
//! In: a host index of the [`World`]. Out: parsed answers, or an error
//! naming the host. Owns nothing; reads only.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::world::World;

impl World {
    /// `gobgp -j neighbor` on host `i`: each session as gobgpd reports it.
    pub fn gobgp_neighbors(&self, i: usize) -> Result<Vec<serde_json::Value>> {
        let h = &self.hosts[i];
        let target = h.gobgp_target();
        let mut args: Vec<&str> = target.iter().map(String::as_str).collect();
        args.extend(["-j", "neighbor"]);
        let out = h.ns.exec("gobgp", &args, Duration::from_secs(10))?;
        if !out.status.success() {
            bail!(
                "gobgp neighbor on {}: {}",
                h.def.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("gobgp -j neighbor on {}", h.def.name))
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

    /// BGP session states on host `i` (address -> established).
    pub fn bgp_sessions(&self, i: usize) -> Result<Vec<(String, bool)>> {
        use ipvlan_bgp::bgp::gobgp::{apipb::ListPeerRequest, connect, GobgpAddr};
        let api = self.hosts[i].gobgp_api();
        self.rt.block_on(async {
            let mut c = connect(&GobgpAddr::Unix(api), Duration::from_secs(2)).await?;
            let mut s = c.list_peer(ListPeerRequest::default()).await?.into_inner();
            let mut out = Vec::new();
            while let Some(r) = s.message().await? {
                if let Some(p) = r.peer {
                    let addr = p.conf.map(|c| c.neighbor_address).unwrap_or_default();
                    let up = p.state.map(|s| s.session_state == 6).unwrap_or(false);
                    out.push((addr, up));
                }
            }
            Ok(out)
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
