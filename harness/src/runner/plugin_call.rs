//! `plugin-call` steps: one Docker plugin request straight to a host's
//! driver (or its second instance), the engine unaware, e.g. the networks
//! and endpoints of a second driver instance that no engine serves.
//!
//! In: the step (host, daemon, method, JSON body, expected error). Out:
//! `Ok(None)`, or the error that fails the step (the driver's answer when
//! it should have succeeded, or a success or another error when it should
//! have failed). Owns nothing.

use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::Value;

use super::Runner;
use crate::scenario::DaemonKind;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Runner<'_> {
    pub(super) fn plugin_call(
        &mut self,
        host: &str,
        daemon: DaemonKind,
        method: &str,
        body: &Value,
        expect_error: Option<&str>,
    ) -> Result<()> {
        let h = self.w.host(host)?;
        let sock = match daemon {
            DaemonKind::Driver2 => h.socket2(),
            _ => h.socket(),
        };
        let mut bytes = serde_json::to_vec(body)?;
        bytes.push(b'\n');
        let reply = self.w.rt.block_on(ipvlan_bgp::api::client::post(
            &sock,
            &format!("/NetworkDriver.{method}"),
            bytes,
            CALL_TIMEOUT,
        ))?;
        let error = reply
            .err()
            .or_else(|| (reply.status != 200).then(|| format!("HTTP {}", reply.status)));
        let what = format!("{method} on {host}'s {daemon:?}");
        match (error, expect_error) {
            (None, None) => Ok(()),
            (Some(e), None) => bail!("{what} failed: {e}"),
            (None, Some(want)) => {
                bail!("{what} succeeded; expected an error containing {want:?}")
            }
            (Some(e), Some(want)) if !e.contains(want) => {
                bail!("{what} failed with {e:?}, which does not contain {want:?}")
            }
            (Some(e), Some(_)) => {
                eprintln!("[{}] as expected, {what} failed: {e}", self.s.name);
                Ok(())
            }
        }
    }
}
