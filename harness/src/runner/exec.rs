//! `exec` steps: a command inside a running container, through the engine
//! (`docker exec` on the dockerd engine), e.g. to flip a health check.
//!
//! In: the step (container, argv). Out: `Ok(None)` or the engine's error.
//! Owns nothing; the engine runs the command.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::Runner;

impl Runner<'_> {
    pub(super) fn exec(&mut self, container: &str, command: &[String]) -> Result<Option<Duration>> {
        let c = self
            .running
            .get(container)
            .ok_or_else(|| anyhow!("{container} is not running"))?
            .clone();
        let out = self
            .engine
            .exec(&self.w, &c, command)
            .with_context(|| format!("`{}` in {container}", command.join(" ")))?;
        if !out.trim().is_empty() {
            self.note = Some(out.trim().to_string());
        }
        Ok(None)
    }
}
