//! Counters and the live status that `ipvlan-bgp status` and `/metrics` show.
//!
//! The API layer counts requests and their errors; the BGP tasks record the
//! gobgpd connection, announcements, learned/installed routes and every
//! rejection by reason. Readers get a snapshot; nothing here blocks for long.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

#[derive(Debug, Default, Clone, Serialize)]
pub struct PeerStatus {
    pub address: String,
    pub asn: u32,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedSample {
    pub prefix: String,
    pub reason: &'static str,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct BgpStatus {
    /// Whether BGP is enabled at all (`--gobgp none` disables it).
    pub enabled: bool,
    pub gobgp: String,
    pub connected: bool,
    pub last_error: Option<String>,
    pub connects: u64,
    pub announced: usize,
    pub learned: usize,
    pub installed: usize,
    pub stale: usize,
    pub install_errors: u64,
    /// Installs refused because another owner's route holds the prefix
    /// (counted once per prefix each time it becomes blocked).
    pub route_conflicts: u64,
    /// Routes the reconciler re-added, replaced or removed because the kernel
    /// differed from the driver's decision.
    pub kernel_drift: u64,
    /// Prefixes currently wanted but held by another owner's route.
    pub conflicted: usize,
    pub rejected: BTreeMap<String, u64>,
    /// The last refused prefixes (bounded sample), newest last.
    pub recent_rejected: std::collections::VecDeque<RejectedSample>,
    pub peers: Vec<PeerStatus>,
    /// Unix time of the last change of installed routes.
    pub last_route_change: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String), u64>>,
    bgp: Mutex<BgpStatus>,
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Metrics {
    pub fn count_request(&self, method: &str, outcome: &str) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((method.to_string(), outcome.to_string()))
                .or_default() += 1;
        }
    }

    pub fn bgp<R>(&self, f: impl FnOnce(&mut BgpStatus) -> R) -> R {
        let mut guard = self.bgp.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    pub fn bgp_snapshot(&self) -> BgpStatus {
        self.bgp(|b| b.clone())
    }

    pub fn requests_snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.requests.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Prometheus text exposition.
    pub fn render(&self, networks: usize, endpoints: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# TYPE ipvlan_bgp_requests_total counter");
        for ((method, outcome), n) in self.requests_snapshot() {
            let _ = writeln!(
                out,
                "ipvlan_bgp_requests_total{{method=\"{method}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let b = self.bgp_snapshot();
        let gauges = [
            ("ipvlan_bgp_networks", networks as u64),
            ("ipvlan_bgp_endpoints", endpoints as u64),
            ("ipvlan_bgp_gobgp_connected", b.connected as u64),
            ("ipvlan_bgp_announced_prefixes", b.announced as u64),
            ("ipvlan_bgp_learned_prefixes", b.learned as u64),
            ("ipvlan_bgp_installed_routes", b.installed as u64),
            ("ipvlan_bgp_stale_routes", b.stale as u64),
            ("ipvlan_bgp_conflicted_routes", b.conflicted as u64),
        ];
        for (name, v) in gauges {
            let _ = writeln!(out, "# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# TYPE ipvlan_bgp_gobgp_connects_total counter\nipvlan_bgp_gobgp_connects_total {}",
            b.connects
        );
        let _ = writeln!(
            out,
            "# TYPE ipvlan_bgp_install_errors_total counter\nipvlan_bgp_install_errors_total {}",
            b.install_errors
        );
        let _ = writeln!(
            out,
            "# TYPE ipvlan_bgp_route_conflicts_total counter\nipvlan_bgp_route_conflicts_total {}",
            b.route_conflicts
        );
        let _ = writeln!(
            out,
            "# TYPE ipvlan_bgp_kernel_drift_total counter\nipvlan_bgp_kernel_drift_total {}",
            b.kernel_drift
        );
        let _ = writeln!(out, "# TYPE ipvlan_bgp_rejected_routes_total counter");
        for (reason, n) in &b.rejected {
            let _ = writeln!(
                out,
                "ipvlan_bgp_rejected_routes_total{{reason=\"{reason}\"}} {n}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.count_request("Join", "ok");
        m.count_request("Join", "ok");
        m.bgp(|b| {
            *b.rejected.entry("default-route".into()).or_default() += 1;
            b.route_conflicts = 3;
            b.kernel_drift = 4;
        });
        let text = m.render(1, 2);
        assert!(text.contains("ipvlan_bgp_requests_total{method=\"Join\",outcome=\"ok\"} 2"));
        assert!(text.contains("ipvlan_bgp_endpoints 2"));
        assert!(text.contains("ipvlan_bgp_rejected_routes_total{reason=\"default-route\"} 1"));
        assert!(text.contains("ipvlan_bgp_route_conflicts_total 3\n"));
        assert!(text.contains("ipvlan_bgp_kernel_drift_total 4\n"));
    }
}
