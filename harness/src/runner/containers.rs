//! Networks and containers through the engine: a network created or
//! deleted on a host, containers started one by one or many at once
//! (several hosts in parallel, each host's in order), as the runner
//! records them.
//!
//! In: names from a step or the scenario. Out: the runner's running
//! containers and networks updated, or the engine's error naming the
//! container.

use anyhow::{anyhow, bail, Context, Result};

use super::Runner;
use crate::engine::{ContainerRt, Subnets};
use crate::scenario::NetworkDef;

impl Runner<'_> {
    pub(super) fn network_def(&self, net: &str) -> Result<NetworkDef> {
        self.s
            .networks
            .iter()
            .find(|n| n.name == net)
            .cloned()
            .ok_or_else(|| anyhow!("unknown network {net}"))
    }

    pub(super) fn create_network(&mut self, net: &str, host: &str) -> Result<()> {
        let def = self.network_def(net)?;
        if !def.on(host) {
            bail!("network {net} has no subnet on {host}");
        }
        let hi = self.w.host_index(host)?;
        self.engine
            .create_network(&self.w, hi, &def, Subnets::of(&def, host))?;
        self.networks.insert((hi, net.to_string()));
        Ok(())
    }

    pub(super) fn delete_network(&mut self, net: &str, host: &str) -> Result<()> {
        let def = self.network_def(net)?;
        let hi = self.w.host_index(host)?;
        self.engine.delete_network(&self.w, hi, &def)?;
        self.networks.remove(&(hi, net.to_string()));
        Ok(())
    }

    /// One attempt to start a container through the engine.
    pub(super) fn start_one(&mut self, name: &str) -> Result<ContainerRt> {
        let def = self
            .s
            .container(name)
            .ok_or_else(|| anyhow!("unknown container {name}"))?
            .clone();
        let hi = self.w.host_index(&def.host)?;
        let net = self.network_def(&def.network)?;
        self.engine
            .start(&self.w, hi, &net, name)
            .with_context(|| format!("start {name}"))
    }

    /// Starts every named container through the engine's `start_many`
    /// (several hosts at once); those that started are running even when
    /// another failed, and the first failure is the error.
    pub(super) fn start_all(&mut self, names: &[String]) -> Result<()> {
        let mut jobs = Vec::new();
        for name in names {
            if self.running.contains_key(name) {
                bail!("{name} is already running");
            }
            let def = self
                .s
                .container(name)
                .ok_or_else(|| anyhow!("unknown container {name}"))?;
            let hi = self.w.host_index(&def.host)?;
            jobs.push((hi, self.network_def(&def.network)?, name.clone()));
        }
        let results = self.engine.start_many(&self.w, &jobs);
        let mut first_error = None;
        for ((_, _, name), r) in jobs.iter().zip(results) {
            match r {
                Ok(c) => {
                    self.running.insert(name.clone(), c);
                }
                Err(e) if first_error.is_none() => {
                    first_error = Some(e.context(format!("start {name}")))
                }
                Err(_) => {}
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub(super) fn hosts_of(
        &self,
        network: &str,
        hosts: &Option<Vec<String>>,
    ) -> Result<Vec<String>> {
        Ok(match hosts {
            Some(h) => h.clone(),
            None => self
                .s
                .networks
                .iter()
                .find(|n| n.name == network)
                .ok_or_else(|| anyhow!("unknown network {network}"))?
                .hosts_on(),
        })
    }
}
