//! What needs which engine: a scenario names at least one engine (each a
//! known [`Engine`]); health checks and the managed plugin need dockerd; an
//! embedded gobgpd needs the managed plugin, and so does a registry (on a
//! known host); dropped driver capabilities a driver the harness runs.
//!
//! In: the file's `engines` and the scenario so far. Out: the scenario's
//! engines, or the error naming the file.

use anyhow::{anyhow, Result};

use crate::scenario::locate::Here;
use crate::scenario::model::{RawScenario, Scenario};
use crate::scenario::schema::Engine;

/// Sets `s.engines` from the file, and checks what needs dockerd.
pub(in crate::scenario) fn engines(s: &mut Scenario, raw: &RawScenario, here: Here) -> Result<()> {
    let file = here.file;
    if raw.engines.is_empty() {
        return Err(anyhow!("{file}: engines must name at least one engine"));
    }
    s.engines = raw
        .engines
        .iter()
        .map(|e| e.parse::<Engine>().map_err(|m| anyhow!("{file}: {m}")))
        .collect::<Result<_>>()?;
    if let Some(h) = s.hosts.iter().find(|h| h.embedded_gobgpd) {
        if !s.driver.plugin {
            return Err(anyhow!(
                "{file}: host {}: embedded_gobgpd needs [driver] plugin = true",
                h.name
            ));
        }
    }
    if let Some(h) = s.hosts.iter().find(|h| !h.driver_drop_caps.is_empty()) {
        if s.driver.plugin {
            return Err(anyhow!(
                "{file}: host {}: driver_drop_caps needs a driver the harness runs, not [driver] plugin = true",
                h.name
            ));
        }
    }
    if s.engines.iter().any(|e| *e != Engine::Dockerd) {
        if let Some(c) = s.containers.iter().find(|c| c.health.is_some()) {
            return Err(anyhow!(
                "{file}: container {}: health needs engines = [\"dockerd\"]",
                c.name
            ));
        }
    }
    if s.driver.plugin && s.engines.iter().any(|e| *e != Engine::Dockerd) {
        return Err(anyhow!(
            "{file}: [driver] plugin = true needs engines = [\"dockerd\"]: only dockerd runs managed plugins"
        ));
    }
    if let Some(r) = &s.driver.registry {
        if !s.driver.plugin {
            return Err(anyhow!(
                "{file}: [driver] registry needs plugin = true: the registry serves the managed plugin"
            ));
        }
        if !s.hosts.iter().any(|h| &h.name == r) {
            return Err(anyhow!("{file}: [driver] registry: unknown host {r}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::scenario::fixtures::{parse, GOOD};

    #[test]
    fn plugin_mode_needs_dockerd_and_has_no_kill() {
        let on = |engines: &str, extra: &str| {
            let src = format!(
                "engines = {engines}\n{}",
                GOOD.replacen("[[hosts]]", "[driver]\nplugin = true\n\n[[hosts]]", 1)
                    .replace("name = \"h2\"", "name = \"h2\"\nembedded_gobgpd = true")
            );
            parse(&format!("{src}{extra}"))
        };
        let e = on("[\"emulator\"]", "").unwrap_err().to_string();
        assert!(e.contains("plugin = true needs engines"), "{e}");
        assert!(on("[\"dockerd\"]", "").is_ok());
        let kill = "\n[[steps]]\ndo = \"kill\"\nhost = \"h1\"\ndaemon = \"driver\"\n";
        let e = on("[\"dockerd\"]", kill).unwrap_err().to_string();
        assert!(e.contains("kill is not supported"), "{e}");
        let gobgpd = kill.replace("\"driver\"", "\"gobgpd\"").replace("h1", "h2");
        let e = on("[\"dockerd\"]", &gobgpd).unwrap_err().to_string();
        assert!(e.contains("runs inside the plugin"), "{e}");
        let e = parse(&GOOD.replace("name = \"h2\"", "name = \"h2\"\nembedded_gobgpd = true"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("embedded_gobgpd needs [driver] plugin"), "{e}");
    }

    #[test]
    fn health_checks_and_exec_need_dockerd() {
        let on = |engines: &str, extra: &str| {
            let src = format!(
                "engines = {engines}\n{}",
                GOOD.replacen(
                    "network = \"blue\"\n\n",
                    "network = \"blue\"\nhealth = { cmd = \"test -f /ok\", interval = \"1s\", retries = 1 }\n\n",
                    1
                )
            );
            parse(&format!("{src}{extra}"))
        };
        let exec =
            "\n[[steps]]\ndo = \"exec\"\ncontainer = \"d\"\ncommand = [\"touch\", \"/ok\"]\n";
        let s = on("[\"dockerd\"]", exec).unwrap();
        let d = s.container("d").unwrap().health.as_ref().unwrap();
        assert_eq!((d.cmd.as_str(), d.retries), ("test -f /ok", Some(1)));
        assert!(s.container("c1").unwrap().health.is_none());
        let e = on("[\"emulator\"]", "").unwrap_err().to_string();
        assert!(e.contains("container d: health needs engines"), "{e}");
        let no_health = format!("engines = [\"emulator\"]\n{GOOD}{exec}");
        let e = parse(&no_health).unwrap_err().to_string();
        assert!(e.contains("exec needs engines"), "{e}");
        let e = on("[\"dockerd\"]", &exec.replace("\"d\"", "\"nobody\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown container nobody"), "{e}");
        let e = on("[\"dockerd\"]", &exec.replace("[\"touch\", \"/ok\"]", "[]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("command must not be empty"), "{e}");
    }
}
