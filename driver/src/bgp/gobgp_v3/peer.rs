//! Peers on the 3.x wire: our settings encoded, gobgpd's view decoded.
//!
//! In: [`PeerSettings`] (address, ASN, timers, graceful restart, password)
//! and `apipb::Peer`s from ListPeer. Out: the `apipb::Peer` for
//! AddPeer/UpdatePeer (BFD refused: 3.x has none, the error names 4.x),
//! and [`PeerInfo`] (session state, End-of-RIB flags, NOTIFICATIONs sent,
//! the local address of the session).

use std::net::IpAddr;

use tonic::Status;

use super::super::gobgp_api::{Family, PeerInfo, PeerSettings, SessionState};
use super::api as apipb;
use super::path::family;

pub fn decode_peer(p: apipb::Peer) -> PeerInfo {
    let conf = p.conf.unwrap_or_default();
    let st = p.state.unwrap_or_default();
    let timers = p.timers.and_then(|t| t.config).unwrap_or_default();
    let mut gr_families = Vec::new();
    let mut end_of_rib = Vec::new();
    for a in &p.afi_safis {
        let Some(f) = a
            .config
            .as_ref()
            .and_then(|c| c.family)
            .and_then(|f| Family::from_afi_safi(f.afi, f.safi))
        else {
            continue;
        };
        if let Some(s) = a.mp_graceful_restart.as_ref().and_then(|m| m.state) {
            if s.received && s.advertised {
                gr_families.push(f);
            }
            if s.end_of_rib_received {
                end_of_rib.push(f);
            }
        }
    }
    PeerInfo {
        address: conf.neighbor_address,
        asn: conf.peer_asn,
        state: SessionState::from_number(st.session_state),
        bfd: None,
        graceful_restart: p
            .graceful_restart
            .filter(|g| g.enabled)
            .map(|g| g.restart_time),
        gr_families,
        end_of_rib,
        down_reason: None,
        notifications_sent: st
            .messages
            .and_then(|m| m.sent)
            .map_or(0, |s| s.notification),
        hold_time: timers.hold_time,
        keepalive: timers.keepalive_interval,
        local_address: p
            .transport
            .and_then(|t| t.local_address.parse::<IpAddr>().ok()),
    }
}

/// AddPeer/UpdatePeer's message. Both IPv4 and IPv6 unicast are enabled,
/// whatever the family of the session's own addresses: a session over IPv4
/// carries IPv6 routes too (and the other way round), and a peer that does
/// not offer a family simply does not get it negotiated.
pub fn encode_peer(p: &PeerSettings) -> Result<apipb::Peer, Status> {
    if p.bfd.is_some() {
        return Err(Status::failed_precondition(format!(
            "peer {}: BFD needs gobgpd 4.6 or later (the 4.x API); this gobgpd speaks the 3.x API, which has no BFD",
            p.address
        )));
    }
    let gr = p.graceful_restart;
    Ok(apipb::Peer {
        conf: Some(apipb::PeerConf {
            auth_password: p
                .password
                .as_ref()
                .map(|s| s.expose().to_string())
                .unwrap_or_default(),
            description: "configured by ipvlan-bgp".into(),
            local_asn: 0,
            neighbor_address: p.address.to_string(),
            peer_asn: p.peer_asn,
        }),
        ebgp_multihop: p.multihop.map(|ttl| apipb::EbgpMultihop {
            enabled: true,
            multihop_ttl: ttl,
        }),
        route_reflector: p.rr_client.then(|| apipb::RouteReflector {
            route_reflector_client: true,
            route_reflector_cluster_id: String::new(),
        }),
        state: None,
        timers: Some(apipb::Timers {
            config: Some(apipb::TimersConfig {
                connect_retry: p.connect_retry,
                hold_time: p.hold_time,
                keepalive_interval: p.keepalive,
                minimum_advertisement_interval: 0,
                idle_hold_time_after_reset: super::super::gobgp_api::IDLE_HOLD_AFTER_RESET,
            }),
        }),
        transport: Some(apipb::Transport {
            passive_mode: p.passive,
            ..apipb::Transport::default()
        }),
        graceful_restart: gr.map(|g| apipb::GracefulRestart {
            enabled: true,
            restart_time: g.restart_time,
            deferral_time: g.deferral_time,
            longlived_enabled: g.long_lived.is_some(),
            local_restarting: g.restarting,
            ..apipb::GracefulRestart::default()
        }),
        afi_safis: Family::ALL
            .into_iter()
            .map(|f| apipb::AfiSafi {
                config: Some(apipb::AfiSafiConfig {
                    family: Some(family(f)),
                    enabled: true,
                }),
                mp_graceful_restart: gr.map(|_| apipb::MpGracefulRestart {
                    config: Some(apipb::MpGracefulRestartConfig { enabled: true }),
                    state: None,
                }),
                long_lived_graceful_restart: gr.and_then(|g| g.long_lived).map(|t| {
                    apipb::LongLivedGracefulRestart {
                        config: Some(apipb::LongLivedGracefulRestartConfig {
                            enabled: true,
                            restart_time: t,
                        }),
                    }
                }),
                use_multiple_paths: None,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings() -> PeerSettings {
        PeerSettings {
            address: "192.0.2.2".parse().unwrap(),
            peer_asn: 65001,
            password: None,
            passive: false,
            rr_client: false,
            multihop: None,
            hold_time: 9,
            keepalive: 3,
            connect_retry: 5,
            bfd: None,
            graceful_restart: Some(crate::bgp::gobgp_api::GracefulRestart {
                restart_time: 120,
                deferral_time: 5,
                restarting: true,
                long_lived: Some(300),
            }),
        }
    }

    #[test]
    fn peers_get_both_families_graceful_restart_and_no_bfd() {
        let m = encode_peer(&settings()).unwrap();
        let fams: Vec<(i32, i32, bool, bool)> = m
            .afi_safis
            .iter()
            .map(|a| {
                let c = a.config.unwrap_or_default();
                let f = c.family.unwrap_or_default();
                let mp = a
                    .mp_graceful_restart
                    .and_then(|m| m.config)
                    .is_some_and(|c| c.enabled);
                (f.afi, f.safi, c.enabled, mp)
            })
            .collect();
        assert_eq!(fams, [(1, 1, true, true), (2, 1, true, true)]);
        let gr = m.graceful_restart.unwrap();
        assert!(gr.enabled && gr.local_restarting && gr.longlived_enabled);
        assert_eq!((gr.restart_time, gr.deferral_time), (120, 5));
        let ll = m.afi_safis[0]
            .long_lived_graceful_restart
            .and_then(|l| l.config)
            .unwrap();
        assert_eq!((ll.enabled, ll.restart_time), (true, 300));
        let t = m.timers.unwrap().config.unwrap();
        assert_eq!(
            (t.hold_time, t.keepalive_interval, t.connect_retry),
            (9, 3, 5)
        );
        assert_eq!(t.idle_hold_time_after_reset, 1);
        // BFD cannot be expressed in 3.x: refused, naming the line that can.
        let mut s = settings();
        s.bfd = Some(crate::bgp::gobgp_api::Bfd {
            interval: Duration::from_millis(300),
            multiplier: 3,
        });
        let e = encode_peer(&s).unwrap_err();
        assert!(e.message().contains("4.6"), "{}", e.message());
        // No graceful restart: none of its settings.
        s.bfd = None;
        s.graceful_restart = None;
        let m = encode_peer(&s).unwrap();
        assert!(m.graceful_restart.is_none());
        assert!(m.afi_safis.iter().all(|a| a.mp_graceful_restart.is_none()));
    }

    #[test]
    fn peers_decode_with_end_of_rib_and_notifications() {
        let mut m = encode_peer(&settings()).unwrap();
        for a in &mut m.afi_safis {
            a.mp_graceful_restart.as_mut().unwrap().state = Some(apipb::MpGracefulRestartState {
                enabled: true,
                received: true,
                advertised: true,
                end_of_rib_received: a.config.unwrap().family.unwrap().afi == 1,
                end_of_rib_sent: true,
            });
        }
        m.state = Some(apipb::PeerState {
            neighbor_address: "192.0.2.2".into(),
            session_state: 6,
            messages: Some(apipb::Messages {
                received: None,
                sent: Some(apipb::Message {
                    notification: 2,
                    ..apipb::Message::default()
                }),
            }),
            ..apipb::PeerState::default()
        });
        let p = decode_peer(m);
        assert!(p.is_established());
        assert_eq!(p.gr_families, Family::ALL);
        assert_eq!(p.end_of_rib, [Family::Ipv4]);
        assert_eq!(p.notifications_sent, 2);
        assert_eq!(p.graceful_restart, Some(120));
        assert_eq!((p.hold_time, p.keepalive), (9, 3));
        assert!(p.bfd.is_none() && p.down_reason.is_none());
    }

    /// The password read from a file or the environment reaches AddPeer.
    #[test]
    fn the_password_reaches_add_peer() {
        let mut s = settings();
        s.password = Some(crate::bgp::gobgp_api::Secret("s3cret".into()));
        assert_eq!(
            encode_peer(&s).unwrap().conf.unwrap().auth_password,
            "s3cret"
        );
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    /// The session's own local address (the IPv6 next hop prefers it) is
    /// read from ListPeer's transport; an empty one is none.
    #[test]
    fn the_local_address_of_a_session_is_read() {
        let mut m = encode_peer(&settings()).unwrap();
        m.transport = Some(apipb::Transport {
            local_address: "2001:db8:a::1".into(),
            ..apipb::Transport::default()
        });
        assert_eq!(
            decode_peer(m.clone()).local_address,
            "2001:db8:a::1".parse().ok()
        );
        m.transport.as_mut().unwrap().local_address = String::new();
        assert_eq!(decode_peer(m).local_address, None);
    }
}
