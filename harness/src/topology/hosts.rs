//! The Docker hosts (and reflector hosts) of a topology: each a namespace
//! wired to its segment (a host with uplinks: later, by `uplinks.rs`),
//! addressed, its sysctls set, its run folder made, with the paths where
//! its daemons listen.
//!
//! In: the scenario's hosts, the switch. Out: [`HostRt`]s, several wired at
//! once (namespace, wire, addresses, sysctls; no daemon yet: daemons die
//! with the thread that started them and are started later, see
//! `host_daemons`). Owns each host's addresses, sockets and folders.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{anyhow, Context, Result};
use ipnet::{Ipv4Net, Ipv6Net};

use super::daemon::Daemon;
use super::wire::{make_ns, wire};
use crate::cleanup::Cleanup;
use crate::netns::Netns;
use crate::scenario::{Family, HostDef, Role, Scenario};

/// The underlay interface in every host.
pub const UNDERLAY_IF: &str = "eth1";

pub struct HostRt {
    pub def: HostDef,
    pub index: usize,
    pub ns: Netns,
    pub addr: Ipv4Net,
    /// The IPv6 underlay address (dual-stack segments).
    pub addr6: Option<Ipv6Net>,
    pub dir: PathBuf,
    pub gobgpd: Daemon,
    pub driver: Daemon,
    /// A second driver instance ([`crate::scenario::DaemonKind::Driver2`]).
    pub driver2: Daemon,
}

impl HostRt {
    /// Its underlay address of one family.
    pub fn addr_of(&self, family: Family) -> Result<std::net::IpAddr> {
        match family {
            Family::Ipv4 => Ok(self.addr.addr().into()),
            Family::Ipv6 => self.addr6.map(|a| a.addr().into()).ok_or_else(|| {
                anyhow!(
                    "host {} has no IPv6 underlay address (give underlay6)",
                    self.def.name
                )
            }),
        }
    }

    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.join("plugins")
    }
    /// The driver's socket: `plugins/ipvlan-bgp.sock` for a driver the
    /// harness runs; for the managed plugin, `plugin.sock`, the link
    /// [`crate::engine::dockerd`]'s plugin makes to the socket dockerd gives it
    /// (`plugins/<64 hex>/ipvlan-bgp.sock`, too long a path for a socket
    /// address).
    pub fn socket(&self) -> PathBuf {
        let link = self.dir.join("plugin.sock");
        if link.exists() {
            link
        } else {
            self.plugin_dir().join("ipvlan-bgp.sock")
        }
    }
    /// The second driver instance's socket and state directory.
    pub fn socket2(&self) -> PathBuf {
        self.dir.join("driver2.sock")
    }
    pub fn state2(&self) -> PathBuf {
        self.dir.join("state2")
    }
    /// gobgpd's API: a unix socket in the host's run folder and nothing
    /// else (no TCP port: any local user could announce through one). The
    /// driver, the harness's gRPC client and the `gobgp` CLI
    /// (`--target unix://...`, which 3.10 supports) all use it.
    pub fn gobgp_api(&self) -> PathBuf {
        self.dir.join("gobgpd.sock")
    }

    /// The `gobgp` CLI's arguments that reach this host's gobgpd.
    pub fn gobgp_target(&self) -> [String; 2] {
        [
            "--target".into(),
            format!("unix://{}", self.gobgp_api().display()),
        ]
    }
    /// Where this host's dockerd serves its API (dockerd engine;
    /// `{docker_sock}` in driver args).
    pub fn docker_api_socket(&self) -> PathBuf {
        self.dir.join("d").join("docker.sock")
    }

    /// The host's dockerd exec root as the host's processes see it (the
    /// sandboxes are in its `netns/`; `{docker_exec_root}` in a `run` step).
    pub fn docker_exec_root(&self) -> PathBuf {
        self.dir.join("d").join("x")
    }

    pub fn runs_driver(&self) -> bool {
        self.def.role == Role::Docker
    }
}

/// How many hosts [`wire_all`] wires at once.
const BUILD_THREADS: usize = 4;

/// Every host of the scenario wired, a few at once (namespace, wire,
/// addresses, sysctls): hosts are independent until their daemons start.
pub fn wire_all(
    s: &Scenario,
    cleanup: &Cleanup,
    id: &str,
    dir: &Path,
    switch: &Netns,
) -> Result<Vec<HostRt>> {
    let next = AtomicUsize::new(0);
    let built: std::sync::Mutex<Vec<Option<Result<HostRt>>>> =
        std::sync::Mutex::new((0..s.hosts.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..s.hosts.len().clamp(1, BUILD_THREADS) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(def) = s.hosts.get(index) else { break };
                let r = wire_host(s, cleanup, id, dir, switch, index, def);
                built.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(r);
            });
        }
    });
    built
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow!("internal: host not built"))))
        .collect()
}

/// One host: its namespace wired to its segment, addressed, its sysctls
/// set, its run folder made (no daemon yet).
fn wire_host(
    s: &Scenario,
    cleanup: &Cleanup,
    id: &str,
    dir: &Path,
    switch: &Netns,
    index: usize,
    def: &HostDef,
) -> Result<HostRt> {
    let ns = make_ns(cleanup, &format!("{id}-{}", def.name))?;
    let addr = def
        .address
        .ok_or_else(|| anyhow!("host {} has no address", def.name))?;
    let hdir = dir.join(&def.name);
    std::fs::create_dir_all(hdir.join("plugins"))?;
    std::fs::create_dir_all(hdir.join("state"))?;
    let rt = HostRt {
        def: def.clone(),
        index,
        ns,
        addr,
        addr6: def.address6,
        gobgpd: Daemon::new(hdir.join("gobgpd.log")),
        driver: Daemon::new(hdir.join("driver.log")),
        driver2: Daemon::new(hdir.join("driver2.log")),
        dir: hdir,
    };
    // A host with uplinks has no segment: `uplinks.rs` wires it, once
    // its routers exist.
    if !def.uplink_links.is_empty() {
        return Ok(rt);
    }
    let ns = &rt.ns;
    let port = format!("p-{}", def.name);
    let seg = def
        .segment
        .clone()
        .unwrap_or_else(|| s.segments[0].name.clone());
    wire(ns, UNDERLAY_IF, switch, &port, &seg)
        .with_context(|| format!("wire host {} to segment {seg}", def.name))?;
    // IPv6 forwarding stays off, as on a host that configures itself by
    // SLAAC: the driver enables it where it needs it (force_forwarding on
    // the shim and the parent). A kernel older than 6.17 has no per-link
    // force_forwarding: there, for a network whose IPv6 goes through a
    // shim (macvlan, ipvlan L2), the harness takes the operator's step the
    // README prescribes (net.ipv6.conf.all.forwarding=1), so that these
    // scenarios run on such kernels too (the VM's, GitHub's runners).
    for (k, v) in [
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
        ("net.ipv4.conf.eth1.rp_filter", "0"),
    ] {
        ns.sysctl(k, v)?;
    }
    if s.ipv6_through_shims() && !per_link_ipv6_forwarding() {
        ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    }
    let mut lines = vec![
        format!("addr add {addr} dev {UNDERLAY_IF}"),
        format!("link set {UNDERLAY_IF} up"),
    ];
    // `nodad`: usable at once, as a real host's configured address is
    // after its DAD; BGP over IPv6 starts without waiting a second.
    if let Some(a6) = def.address6 {
        lines.push(format!("addr add {a6} dev {UNDERLAY_IF} nodad"));
    }
    if let Some(gw) = def
        .gateway
        .as_deref()
        .and_then(|g| s.shared_address(&def.name, g))
    {
        lines.push(format!("route add default via {}", gw.addr()));
    }
    if let Some(gw) = def
        .gateway
        .as_deref()
        .and_then(|g| s.shared_address_of(&def.name, g, Family::Ipv6))
    {
        lines.push(format!("route add default via {}", gw.addr()));
    }
    ns.ip_batch(&lines)?;
    Ok(rt)
}

/// Whether this kernel forwards IPv6 per link (`force_forwarding`, Linux 6.17+).
pub fn per_link_ipv6_forwarding() -> bool {
    std::path::Path::new("/proc/sys/net/ipv6/conf/all/force_forwarding").exists()
}
