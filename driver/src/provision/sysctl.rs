//! Forwarding for the networks whose host-side shim routes for its
//! containers.
//!
//! In: a network with an L2 shim, its parent and shim names, and a
//! [`LinkKernel`] to read and write sysctls with. Out: `ip_forward` on for
//! IPv4; for IPv6, forwarding on the shim and the parent only
//! (`force_forwarding`, Linux 6.17+), never the host-wide switch; a loud
//! warning where the kernel cannot do that and the operator must decide.
//! Logs, never fails.

use tracing::{info, warn};

use crate::kernel::LinkKernel;
use crate::model::network::NetworkSpec;

/// The host sysctls (paths under /proc/sys) that [`enable_forwarding`] may
/// change for `spec` on `parent`; the shim's own go with the shim.
pub fn planned(spec: &NetworkSpec, parent: &str) -> Vec<String> {
    let mut paths = Vec::new();
    if !spec.dataplane.is_l2() && !spec.parent.port {
        return paths;
    }
    if spec.subnet.is_some() {
        paths.push("net/ipv4/ip_forward".to_string());
    }
    if spec.subnet6.is_some() {
        paths.push(format!("net/ipv6/conf/{parent}/force_forwarding"));
    }
    paths
}

/// An L2 shim routes for its containers: the host must forward between
/// the shim and the parent. IPv4: `ip_forward`, host-wide and harmless.
/// IPv6: the host-wide switch, `conf/all/forwarding`, also makes every
/// interface a router that ignores router advertisements (accept_ra=1),
/// so a host that configures itself by SLAAC would lose its default
/// route: it is never flipped here. Linux 6.17+ forwards per ingress
/// interface (`force_forwarding`): set on the shim (from the containers)
/// and the parent (towards them). Older kernels: a warning says what
/// the operator must decide. Logs, never fails: the network still
/// serves its own host.
pub fn enable_forwarding<K: LinkKernel>(k: &mut K, spec: &NetworkSpec, parent: &str, shim: &str) {
    if spec.subnet.is_some() {
        if let Err(e) = k.set_sysctl("net/ipv4/ip_forward", "1") {
            warn!(error = %e, "could not enable net.ipv4.ip_forward; containers will not reach other hosts");
        }
    }
    if spec.subnet6.is_none() {
        return;
    }
    if k.sysctl("net/ipv6/conf/all/forwarding")
        .ok()
        .flatten()
        .as_deref()
        == Some("1")
    {
        return;
    }
    for link in [shim, parent] {
        let path = format!("net/ipv6/conf/{link}/force_forwarding");
        match k.sysctl(&path) {
            Ok(Some(v)) if v == "1" => {}
            Ok(Some(_)) => match k.set_sysctl(&path, "1") {
                Ok(()) => info!(
                    link,
                    "enabled IPv6 forwarding on this link only (force_forwarding)"
                ),
                Err(e) => {
                    warn!(link, error = %e, "could not enable IPv6 forwarding on this link; containers will not reach other hosts over IPv6")
                }
            },
            Ok(None) | Err(_) => {
                warn!(
                    network = %spec.short_id(),
                    "IPv6 FORWARDING IS OFF and this kernel cannot enable it per interface (force_forwarding needs Linux 6.17): \
                     containers of this network will not reach other hosts over IPv6 until the operator runs \
                     `sysctl -w net.ipv6.conf.all.forwarding=1` (first set accept_ra=2 on interfaces that use SLAAC, \
                     or they lose their default route). The driver does not flip this host-wide setting itself."
                );
                return;
            }
        }
    }
}
