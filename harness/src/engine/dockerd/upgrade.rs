//! `docker plugin upgrade` as an operator runs it, for the `upgrade-plugin`
//! step: a second version of the plugin ([`plugin::second_version`]) is
//! created on the host's dockerd as `REG/ipvlan-bgp:v2`, pushed to the run's
//! registry and removed again; then the host's disabled `ipvlan-bgp:latest`
//! is upgraded from the registry, keeping its name (networks use it), its
//! id and its `docker plugin set` settings.
//!
//! dockerd 20.10 keeps the plugin's environment settings (`docker plugin
//! set KEY=VALUE`) but takes the new version's mounts whole: mount sources
//! set with `docker plugin set NAME.source=` are set again after the
//! upgrade, as an operator must.
//!
//! In: a host whose plugin is disabled, the run's registry. Out: the plugin
//! upgraded and checked (the new reference, the new config, every setting
//! kept, the mounts as before), or the error as docker said it; a line
//! saying what now runs.

use anyhow::{anyhow, bail, Result};

use super::host::Dockerd;
use super::{plugin, registry};
use crate::topology::World;

/// The second version's tag in the registry.
const V2_TAG: &str = "ipvlan-bgp:v2";

/// What `docker plugin inspect` shows that an upgrade must change or keep.
#[derive(Debug, PartialEq)]
struct Seen {
    reference: String,
    description: String,
    settings: String,
    /// The mounts the plugin starts with: where `docker plugin set
    /// NAME.source=` lands (in the plugin's config, not its settings).
    mounts: String,
}

impl Dockerd {
    fn inspect_plugin(&self, host: usize, name: &str) -> Result<Seen> {
        let field = |f: &str| self.docker(host, &["plugin", "inspect", "-f", f, name]);
        Ok(Seen {
            reference: field("{{.PluginReference}}")?,
            description: field("{{.Config.Description}}")?,
            settings: field("{{json .Settings}}")?,
            mounts: field("{{json .Config.Mounts}}")?,
        })
    }

    /// Pushes the second version, upgrades host `host`'s (disabled) plugin
    /// to it and checks the result; answers what now runs.
    pub(super) fn upgrade_plugin(&self, w: &World, host: usize) -> Result<String> {
        let reg = registry::address(w)?
            .ok_or_else(|| anyhow!("no registry: give [driver] registry = HOST"))?;
        let remote = format!("{reg}/{V2_TAG}");
        let before = self.inspect_plugin(host, plugin::NAME)?;
        let v2 = plugin::second_version(w)?;
        // Built and pushed as a release would be, then gone from the host:
        // the upgrade must pull it from the registry.
        let _ = self.docker(host, &["plugin", "rm", "-f", &remote]);
        self.docker(
            host,
            &["plugin", "create", &remote, &v2.display().to_string()],
        )?;
        self.docker(host, &["plugin", "push", &remote])?;
        self.docker(host, &["plugin", "rm", &remote])?;
        self.docker(
            host,
            &[
                "plugin",
                "upgrade",
                "--grant-all-permissions",
                "--skip-remote-check",
                plugin::NAME,
                &remote,
            ],
        )?;
        let after = self.inspect_plugin(host, plugin::NAME)?;
        let name = &w.hosts[host].def.name;
        if after.reference != remote {
            bail!(
                "after docker plugin upgrade, {name}'s {} names {:?}, not {remote:?}",
                plugin::NAME,
                after.reference
            );
        }
        if !after.description.ends_with(plugin::V2_MARK) || after.description == before.description
        {
            bail!(
                "after docker plugin upgrade, {name}'s {} still has the old config (description {:?})",
                plugin::NAME,
                after.description
            );
        }
        if after.settings != before.settings {
            bail!(
                "docker plugin upgrade lost {name}'s settings:\nbefore {}\nafter  {}",
                before.settings,
                after.settings
            );
        }
        // dockerd 20.10 takes the new version's config whole, mount sources
        // too: what `docker plugin set X.source=` changed is back at the
        // default and must be set again before `enable`.
        let reset = after.mounts != before.mounts;
        if reset {
            let sources: Vec<String> = plugin::settings(w, host)?
                .into_iter()
                .filter(|s| s.split('=').next().is_some_and(|k| k.ends_with(".source")))
                .collect();
            let mut args = vec!["plugin", "set", plugin::NAME];
            args.extend(sources.iter().map(String::as_str));
            self.docker(host, &args)?;
            let again = self.inspect_plugin(host, plugin::NAME)?;
            if again.mounts != before.mounts {
                bail!(
                    "{name}'s plugin mounts after the upgrade and docker plugin set differ:\nbefore {}\nafter  {}",
                    before.mounts,
                    again.mounts
                );
            }
        }
        Ok(format!(
            "{} on {name}: {} -> {}; settings kept{}",
            plugin::NAME,
            before.reference,
            after.reference,
            if reset {
                "; mount sources reset to the new config's defaults by dockerd, set again"
            } else {
                ""
            }
        ))
    }
}
