//! The real engine: one dockerd (20.10, Debian's `docker.io`) per host.
//!
//! Networks are made with `docker network create -d ipvlan-bgp`, containers
//! with `docker run -d` from a busybox image imported locally (no registry
//! is reachable), probes run in the containers' namespaces
//! (`/proc/<pid>/ns/net`). Everything is torn down at the end: containers,
//! daemons, mounts, cgroup folders, data.
//!
//! ```text
//! mod.rs (ContainerEngine: networks, containers, control) ─► host.rs (a dockerd per host, the docker CLI)
//!                                                              ├─► image.rs (busybox tar)
//!                                                              ├─► plugin.rs (the managed plugin)
//!                                                              ├─► registry.rs (the run's registry)
//!                                                              ├─► upgrade.rs (docker plugin upgrade through it)
//!                                                              └─► sweep.rs (shims, cgroups)
//! ```
//! In: the [`World`] and the scenario's networks and containers. Out:
//! [`ContainerRt`]s whose namespace is the container's process's.

use std::collections::BTreeMap;

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;

use crate::engine::container::{ContainerEngine, ContainerRt, Control, Subnets};
use crate::scenario::Engine;
use crate::scenario::{ContainerDef, IpamKind, NetworkDef};
use crate::topology::{World, UNDERLAY_IF};
use crate::util::tail;

mod host;
mod image;
mod plugin;
mod registry;
mod sweep;
mod upgrade;

pub use host::{available, Dockerd, DOCKER};
pub use image::IMAGE;
pub use sweep::sweep;

/// dockerd stops its containers before it exits (up to its 15 s shutdown timeout).
const DOCKERD_STOP: Duration = Duration::from_secs(30);

impl ContainerEngine for Dockerd {
    fn kind(&self) -> Engine {
        Engine::Dockerd
    }

    /// Every Docker host's folders and mount holder one after the other,
    /// then their dockerd, image and plugin side by side (dockerd's start
    /// and `docker plugin create` are slow, above all under emulation).
    fn setup(&mut self, w: &World) -> Result<()> {
        available()?;
        registry::start(w).context("start the run's docker registry")?;
        let hosts: Vec<usize> = w
            .hosts
            .iter()
            .filter(|h| h.runs_driver())
            .map(|h| h.index)
            .collect();
        for &i in &hosts {
            let h = &w.hosts[i];
            self.live_restore.insert(i, h.def.dockerd_live_restore);
            self.prepare_host(w, i)
                .with_context(|| format!("prepare dockerd on {}", h.def.name))?;
        }
        let (tar, plugin) = Self::shared_files(w)?;
        let this = &*self;
        let results: Vec<Result<()>> = std::thread::scope(|scope| {
            let running: Vec<_> = hosts
                .iter()
                .map(|&i| {
                    let (tar, plugin) = (&tar, plugin.as_deref());
                    scope.spawn(move || {
                        this.bring_up(w, i, tar, plugin)
                            .with_context(|| format!("start dockerd on {}", w.hosts[i].def.name))
                    })
                })
                .collect();
            running
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(anyhow!("a dockerd start-up thread panicked")))
                })
                .collect()
        });
        // A dockerd that gave up on a slow containerd starts again here, on
        // the main thread (it must outlive the start-up threads).
        for (&i, r) in hosts.iter().zip(results) {
            if let Err(e) = r {
                self.again_after_slow_containerd(w, i, e, |this| {
                    this.bring_up(w, i, &tar, plugin.as_deref())
                })?;
            }
        }
        Ok(())
    }

    fn create_network(
        &mut self,
        w: &World,
        host: usize,
        net: &NetworkDef,
        subnets: Subnets,
    ) -> Result<()> {
        // dockerd 20.10 always gives a network an IPv4 pool (Docker 28
        // added `--ipv4=false`): an IPv6-only network is the emulator's.
        let subnet = subnets.v4.ok_or_else(|| {
            anyhow!(
                "network {}: dockerd 20.10 cannot create an IPv6-only network (no --ipv4=false before Docker 28); run it on the emulator",
                net.name
            )
        })?;
        let gateway = match net.gateways.get(&w.hosts[host].def.name) {
            Some(g) => g.to_string(),
            None => std::net::Ipv4Addr::from(u32::from(subnet.network()) + 1).to_string(),
        };
        let subnet_s = subnet.to_string();
        let mut opts: BTreeMap<String, String> = net.options.clone();
        // A dual-homed host's networks take no parent (the driver's container port).
        if w.hosts[host].def.uplink_links.is_empty() {
            opts.entry("parent".into())
                .or_insert_with(|| UNDERLAY_IF.into());
        }
        let opts: Vec<String> = opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let cluster = net.ipam == IpamKind::Cluster;
        let block = net.block_size.map(|b| format!("block-size={b}"));
        let mut args = vec!["network", "create", "-d", Self::driver_name(w)];
        if cluster {
            // The driver's own IPAM picks each host's gateway: no --gateway.
            args.extend(["--ipam-driver", Self::driver_name(w), "--subnet", &subnet_s]);
            if let Some(b) = &block {
                args.extend(["--ipam-opt", b.as_str()]);
            }
        } else {
            args.extend(["--subnet", &subnet_s]);
            // As the README makes it, Docker picks the gateway (the same first address).
            if !w.driver_as_deployed() || net.gateways.contains_key(&w.hosts[host].def.name) {
                args.extend(["--gateway", &gateway]);
            }
        }
        // Dual stack: `--ipv6` and the second subnet with its gateway (the
        // first address, as Docker's IPAM would pick).
        let v6 = subnets.v6.map(|n| {
            (
                n.to_string(),
                std::net::Ipv6Addr::from(u128::from(n.network()) + 1).to_string(),
            )
        });
        if let Some((sub6, gw6)) = &v6 {
            args.extend(["--ipv6", "--subnet", sub6]);
            if !cluster {
                args.extend(["--gateway", gw6]);
            }
        }
        for o in &opts {
            args.extend(["-o", o.as_str()]);
        }
        args.push(&net.name);
        self.docker(host, &args)?;
        Ok(())
    }

    fn delete_network(&mut self, _w: &World, host: usize, net: &NetworkDef) -> Result<()> {
        self.docker(host, &["network", "rm", &net.name])?;
        Ok(())
    }

    fn start(
        &mut self,
        w: &World,
        host: usize,
        net: &NetworkDef,
        name: &str,
    ) -> Result<ContainerRt> {
        let network = network_arg(&net.name, w.container_def(name));
        let ip = w
            .container_def(name)
            .and_then(|c| c.ip)
            .map(|a| a.to_string());
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            &network,
            "--restart",
            "unless-stopped",
        ];
        if let Some(ip) = &ip {
            args.extend(["--ip", ip.as_str()]);
        }
        let health = w.container_def(name).and_then(|c| c.health.as_ref());
        let (interval, retries) = health
            .map(|h| {
                let i = h.interval.map(|d| format!("{}ms", d.0.as_millis()));
                (i, h.retries.map(|r| r.to_string()))
            })
            .unwrap_or_default();
        if let Some(h) = health {
            args.extend(["--health-cmd", h.cmd.as_str()]);
        }
        if let Some(i) = &interval {
            args.extend(["--health-interval", i.as_str()]);
        }
        if let Some(r) = &retries {
            args.extend(["--health-retries", r.as_str()]);
        }
        args.extend([IMAGE, "sleep", "2147483647"]);
        if let Err(e) = self.docker(host, &args) {
            // `docker run` leaves a container that did not start behind
            // (Created): removed, so the name can be started again.
            let _ = self.docker(host, &["rm", "-f", name]);
            return Err(e);
        }
        let (address, address6) = self.addresses(
            host,
            name,
            net.subnets6.contains_key(&w.hosts[host].def.name),
        )?;
        Ok(ContainerRt {
            name: name.to_string(),
            host,
            network: net.name.clone(),
            address,
            address6,
            netns: self.pid_netns(host, name)?,
            handle: name.to_string(),
            src_name: String::new(),
        })
    }

    fn exec(&mut self, _w: &World, c: &ContainerRt, command: &[String]) -> Result<String> {
        let mut args = vec!["exec", c.handle.as_str()];
        args.extend(command.iter().map(String::as_str));
        self.docker(c.host, &args)
    }

    fn stop(&mut self, _w: &World, c: &ContainerRt) -> Result<()> {
        self.docker(c.host, &["stop", "-t", "0", &c.handle])?;
        self.docker(c.host, &["rm", &c.handle])?;
        Ok(())
    }

    /// `docker kill` (its restart policy off first, or dockerd would start
    /// it again); dockerd's own network cleanup runs whenever it can.
    fn kill(&mut self, _w: &World, c: &ContainerRt) -> Result<()> {
        self.docker(c.host, &["update", "--restart", "no", &c.handle])?;
        self.docker(c.host, &["kill", &c.handle])?;
        Ok(())
    }

    fn reap(&mut self, _w: &World, c: &ContainerRt) -> Result<()> {
        self.docker(c.host, &["rm", "-f", &c.handle])?;
        Ok(())
    }

    fn refresh(&mut self, _w: &World, c: &mut ContainerRt) -> Result<()> {
        c.netns = self.pid_netns(c.host, &c.handle)?;
        // Restarted by dockerd, it may have got another address from the IPAM.
        (c.address, c.address6) = self.addresses(c.host, &c.handle, c.address6.is_some())?;
        Ok(())
    }

    fn control(&mut self, w: &World, host: usize, action: Control) -> Result<()> {
        let d = self
            .hosts
            .get(&host)
            .ok_or_else(|| anyhow!("no dockerd on {}", w.hosts[host].def.name))?
            .dockerd
            .clone();
        match action {
            Control::Kill => d.signal(Signal::SIGKILL),
            Control::Stop => d.signal_within(Signal::SIGTERM, DOCKERD_STOP),
            Control::Start => self.start_daemon(w, host),
            Control::Restart => {
                d.signal_within(Signal::SIGTERM, DOCKERD_STOP)?;
                self.start_daemon(w, host)
            }
        }
    }

    fn control_driver(&mut self, w: &World, host: usize, action: Control) -> Result<()> {
        let disable = ["plugin", "disable", "-f", plugin::NAME];
        match action {
            Control::Kill => {
                bail!("the managed plugin is stopped with docker plugin disable, not killed")
            }
            Control::Stop => self.docker(host, &disable).map(drop),
            Control::Start => self.enable_plugin(w, host),
            Control::Restart => {
                self.docker(host, &disable)?;
                self.enable_plugin(w, host)
            }
        }
    }

    fn upgrade_driver(&mut self, w: &World, host: usize) -> Result<String> {
        self.upgrade_plugin(w, host)
    }

    fn diagnostics(&self, _w: &World) -> String {
        let mut out = String::new();
        for (host, dh) in &self.hosts {
            out.push_str(&format!("\n===== dockerd on host #{host} =====\n"));
            if let Ok(ps) = self.docker(
                *host,
                &[
                    "ps",
                    "-a",
                    "--format",
                    "{{.Names}} {{.Status}} {{.Networks}}",
                ],
            ) {
                out.push_str(&format!("$ docker ps -a\n{ps}\n"));
            }
            if let Ok(n) = self.docker(*host, &["network", "ls"]) {
                out.push_str(&format!("$ docker network ls\n{n}\n"));
            }
            out.push_str(&format!(
                "--- dockerd log (tail) {} ---\n{}\n",
                dh.dockerd.log.display(),
                tail(&dh.dockerd.log, 25)
            ));
        }
        out
    }
}

/// `docker run --network`: the name, or with `--driver-opt`s the long form
/// `name=N,driver-opt=k=v` (a value with a comma CSV-quoted, as the CLI reads it).
fn network_arg(net: &str, c: Option<&ContainerDef>) -> String {
    let opts = c.map(|c| &c.driver_opts).filter(|o| !o.is_empty());
    let Some(opts) = opts else {
        return net.to_string();
    };
    let mut out = format!("name={net}");
    for (k, v) in opts {
        let field = format!("driver-opt={k}={v}");
        if field.contains(',') {
            out.push_str(&format!(",\"{field}\""));
        } else {
            out.push_str(&format!(",{field}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_opts_take_the_long_network_form() {
        let mut c = ContainerDef {
            name: "c".into(),
            host: "h1".into(),
            hosts: None,
            network: "n".into(),
            count: None,
            driver_opts: BTreeMap::new(),
            health: None,
            ip: None,
        };
        assert_eq!(network_arg("n", Some(&c)), "n");
        c.driver_opts.insert("bgp_med".into(), "5".into());
        c.driver_opts
            .insert("bgp_communities".into(), "65000:1,65000:2".into());
        assert_eq!(
            network_arg("n", Some(&c)),
            r#"name=n,"driver-opt=bgp_communities=65000:1,65000:2",driver-opt=bgp_med=5"#
        );
    }
}
