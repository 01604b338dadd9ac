//! What an engine is ([`ContainerEngine`]: networks and containers, not
//! libnetwork calls) and what it hands back and takes: a running container
//! as the probes see it ([`ContainerRt`]), a network's subnets on one host
//! ([`Subnets`]), and what a scenario can do to an engine's own daemon
//! ([`Control`]).
//!
//! In: what the runner asks of an engine. Out: the trait every engine
//! implements and plain data, shared by the runner, the benches and every
//! engine. Owns no I/O.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::scenario::{Engine, Family, NetworkDef};
use crate::topology::World;

/// A running container as the probes see it.
#[derive(Debug, Clone)]
pub struct ContainerRt {
    pub name: String,
    pub host: usize,
    pub network: String,
    /// Its IPv4 address (none on an IPv6-only network).
    pub address: Option<Ipv4Addr>,
    /// Its IPv6 address (on a network with an IPv6 subnet).
    pub address6: Option<Ipv6Addr>,
    /// The container's network namespace (a path to open).
    pub netns: PathBuf,
    /// Engine-private handle (the emulator's endpoint ID, dockerd's container ID).
    pub handle: String,
    /// The interface's host-side name (the driver's `SrcName`).
    pub src_name: String,
}

impl ContainerRt {
    /// Its address of one family, or an error that says it has none.
    pub fn addr_of(&self, family: Family) -> Result<std::net::IpAddr> {
        match family {
            Family::Ipv4 => self.address.map(Into::into),
            Family::Ipv6 => self.address6.map(Into::into),
        }
        .ok_or_else(|| anyhow!("container {} has no {family:?} address", self.name))
    }

    /// Its first address: IPv4 where it has one, else IPv6.
    pub fn any_addr(&self) -> std::net::IpAddr {
        self.address
            .map(Into::into)
            .or(self.address6.map(Into::into))
            .unwrap_or(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    /// Its host routes: the /32 and the /128 it has.
    pub fn host_prefixes(&self) -> Vec<IpNet> {
        let mut v = Vec::new();
        if let Some(a) = self.address {
            v.push(IpNet::V4(Ipv4Net::from(a)));
        }
        if let Some(a) = self.address6 {
            v.push(IpNet::V6(Ipv6Net::from(a)));
        }
        v
    }
}

/// A network's subnets on one host: IPv4, IPv6 or both (dual stack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Subnets {
    pub v4: Option<Ipv4Net>,
    pub v6: Option<Ipv6Net>,
}

impl From<Ipv4Net> for Subnets {
    fn from(v4: Ipv4Net) -> Subnets {
        Subnets {
            v4: Some(v4),
            v6: None,
        }
    }
}

impl Subnets {
    /// The subnets of network `net` on host `host` (as the scenario gives them).
    pub fn of(net: &NetworkDef, host: &str) -> Subnets {
        Subnets {
            v4: net.subnets.get(host).copied(),
            v6: net.subnets6.get(host).copied(),
        }
    }
}

/// What a scenario can do to an engine's own daemon (dockerd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Kill,
    Stop,
    Start,
    Restart,
}

pub trait ContainerEngine {
    /// Which engine this is (its name in scenario files and reports).
    fn kind(&self) -> Engine;
    /// Starts whatever the engine needs on every host (after the drivers).
    fn setup(&mut self, _w: &World) -> Result<()> {
        Ok(())
    }
    /// Re-reads a container's namespace (its process may have restarted).
    fn refresh(&mut self, _w: &World, _c: &mut ContainerRt) -> Result<()> {
        Ok(())
    }
    /// Kills, stops, starts or restarts the engine's daemon on a host.
    fn control(&mut self, _w: &World, _host: usize, _action: Control) -> Result<()> {
        bail!("the {} engine has no daemon to control", self.kind())
    }
    /// Controls the driver when the engine runs it (the managed plugin).
    fn control_driver(&mut self, _w: &World, _host: usize, _action: Control) -> Result<()> {
        bail!("the {} engine does not run the driver", self.kind())
    }
    /// Upgrades the driver when the engine runs it (the managed plugin, from
    /// the run's registry); answers what now runs.
    fn upgrade_driver(&mut self, _w: &World, _host: usize) -> Result<String> {
        bail!("the {} engine does not run the driver", self.kind())
    }
    /// The engine's own view, for a failed scenario.
    fn diagnostics(&self, _w: &World) -> String {
        String::new()
    }
    fn create_network(
        &mut self,
        w: &World,
        host: usize,
        net: &NetworkDef,
        subnets: Subnets,
    ) -> Result<()>;
    fn delete_network(&mut self, w: &World, host: usize, net: &NetworkDef) -> Result<()>;
    fn start(
        &mut self,
        w: &World,
        host: usize,
        net: &NetworkDef,
        name: &str,
    ) -> Result<ContainerRt>;
    fn stop(&mut self, w: &World, c: &ContainerRt) -> Result<()>;
    /// Starts many containers, `(host, network, name)` each, and answers in
    /// the same order. Each host's containers start one after the other, as
    /// one dockerd starts them; an engine may run different hosts at once
    /// (separate dockerds would). The default starts them one by one.
    fn start_many(
        &mut self,
        w: &World,
        jobs: &[(usize, NetworkDef, String)],
    ) -> Vec<Result<ContainerRt>> {
        jobs.iter()
            .map(|(host, net, name)| self.start(w, *host, net, name))
            .collect()
    }
    /// Stops many containers (answers in the same order); like
    /// [`ContainerEngine::start_many`], hosts may run at once.
    fn stop_many(&mut self, w: &World, cs: &[ContainerRt]) -> Vec<Result<()>> {
        cs.iter().map(|c| self.stop(w, c)).collect()
    }
    /// Runs `command` inside the container; its output.
    fn exec(&mut self, _w: &World, _c: &ContainerRt, _command: &[String]) -> Result<String> {
        bail!(
            "the {} engine cannot run commands in a container",
            self.kind()
        )
    }
    /// The container's sandbox dies and nobody tells the driver now.
    fn kill(&mut self, _w: &World, _c: &ContainerRt) -> Result<()> {
        bail!("the {} engine cannot kill a container", self.kind())
    }
    /// After a kill: what the engine does later for the dead container
    /// (dockerd's forced Leave and DeleteEndpoint); driver errors are only
    /// reported, as dockerd only logs them.
    fn reap(&mut self, _w: &World, _c: &ContainerRt) -> Result<()> {
        Ok(())
    }
}
