//! Leaving gobgpd at shutdown.
//!
//! In: the shutdown (the stop signal, or the View's sender gone with the
//! API server) and `--stop-gobgpd-on-exit`. Out: on 4.x, StopBgp without a
//! NOTIFICATION, so peers keep our paths for their restart time; on 3.x a
//! warning that gobgpd is left running (it cannot stop without a Cease).
//! Without the flag, nothing: gobgpd runs on.

use tracing::{info, warn};

use super::Bgp;
use crate::bgp::gobgp::{self, ApiLine, Gobgp, GobgpApi};

impl Bgp {
    /// On shutdown with `--stop-gobgpd-on-exit`: stop BGP on gobgpd without
    /// a NOTIFICATION (4.x), so peers keep our paths while it restarts. 3.x
    /// cannot: it would send a Cease, which makes peers withdraw at once.
    pub(super) async fn stop_gobgpd(&mut self, client: &mut Gobgp) {
        if !self.cfg.stop_gobgpd_on_exit {
            return;
        }
        match client.line() {
            ApiLine::V4 => match client.stop_bgp(true).await {
                Ok(()) => info!("stopped BGP on gobgpd gracefully: peers keep this host's paths for the restart time"),
                Err(e) => warn!(error = %gobgp::describe(&e), "could not stop BGP on gobgpd gracefully"),
            },
            ApiLine::V3 => warn!("gobgpd 3.x cannot stop without a Cease to its peers; left running (killed with SIGKILL its peers keep our paths; SIGTERM would withdraw them)"),
        }
    }
}
