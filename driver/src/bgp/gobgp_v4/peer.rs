//! Peers on the 4.x wire: our settings encoded, gobgpd's view decoded.
//!
//! In: [`PeerSettings`] (address, ASN, timers, BFD, graceful restart,
//! password) and `api::Peer`s from ListPeer. Out: the `api::Peer` for
//! AddPeer/UpdatePeer (BFD in microseconds), and [`PeerInfo`] (session
//! state, BFD state, why it went down, the local address of the session).

use std::net::IpAddr;
use std::time::Duration;

use super::super::gobgp_api::{
    Bfd, BfdInfo, BfdState, DownReason, Family, PeerInfo, PeerSettings, SessionState,
};
use super::api;
use super::path::family;

/// BFD's UDP port (RFC 5881).
const BFD_PORT: u32 = 3784;

fn bfd_state(n: i32) -> BfdState {
    match api::BfdSessionState::try_from(n) {
        Ok(api::BfdSessionState::BfdUp) => BfdState::Up,
        Ok(api::BfdSessionState::BfdDown) => BfdState::Down,
        Ok(api::BfdSessionState::BfdAdminDown) => BfdState::AdminDown,
        Ok(api::BfdSessionState::BfdInit) => BfdState::Init,
        _ => BfdState::Unknown,
    }
}

fn down_reason(st: &api::PeerState) -> Option<DownReason> {
    use api::peer_state::DisconnectReason as R;
    let msg = st.disconnect_message.clone();
    Some(match R::try_from(st.disconnect_reason).ok()? {
        R::Unspecified => return None,
        R::HoldTimerExpired => DownReason::HoldTimerExpired,
        R::NotificationSent | R::HardReset => DownReason::NotificationSent(msg),
        R::NotificationReceived => DownReason::NotificationReceived(msg),
        R::ReadFailed | R::WriteFailed => DownReason::ConnectionLost,
        R::GracefulRestart => DownReason::GracefulRestart,
        R::AdminDownReason | R::Deconfigured => DownReason::Local,
        _ => DownReason::Other(format!("{} ({msg})", st.disconnect_reason)),
    })
}

pub(super) fn decode_peer(p: api::Peer) -> PeerInfo {
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
    let bfd = p.bfd.filter(|b| b.enabled).map(|b| BfdInfo {
        settings: Bfd {
            interval: Duration::from_micros(u64::from(b.desired_minimum_tx_interval)),
            multiplier: u8::try_from(b.detection_multiplier).unwrap_or(u8::MAX),
        },
        state: st
            .bfd_state
            .as_ref()
            .map_or(BfdState::Unknown, |s| bfd_state(s.session_state)),
    });
    PeerInfo {
        address: conf.neighbor_address,
        asn: conf.peer_asn,
        state: SessionState::from_number(st.session_state),
        down_reason: down_reason(&st),
        bfd,
        graceful_restart: p
            .graceful_restart
            .filter(|g| g.enabled)
            .map(|g| g.restart_time),
        gr_families,
        end_of_rib,
        notifications_sent: st
            .messages
            .as_ref()
            .and_then(|m| m.sent.as_ref())
            .map_or(0, |s| s.notification),
        hold_time: timers.hold_time,
        keepalive: timers.keepalive_interval,
        local_address: p
            .transport
            .and_then(|t| t.local_address.parse::<IpAddr>().ok()),
    }
}

/// AddPeer/UpdatePeer's message: both unicast families (as on 3.x), BFD in
/// microseconds (transmit and receive alike), graceful restart per family.
pub(super) fn encode_peer(p: &PeerSettings) -> api::Peer {
    let gr = p.graceful_restart;
    let micros = |d: Duration| u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
    api::Peer {
        conf: Some(api::PeerConf {
            auth_password: p
                .password
                .as_ref()
                .map(|s| s.expose().to_string())
                .unwrap_or_default(),
            description: "configured by ipvlan-bgp".into(),
            neighbor_address: p.address.to_string(),
            peer_asn: p.peer_asn,
            ..api::PeerConf::default()
        }),
        ebgp_multihop: p.multihop.map(|ttl| api::EbgpMultihop {
            enabled: true,
            multihop_ttl: ttl,
        }),
        route_reflector: p.rr_client.then(|| api::RouteReflector {
            route_reflector_client: true,
            route_reflector_cluster_id: String::new(),
        }),
        state: None,
        timers: Some(api::Timers {
            config: Some(api::TimersConfig {
                connect_retry: p.connect_retry,
                hold_time: p.hold_time,
                keepalive_interval: p.keepalive,
                idle_hold_time_after_reset: crate::bgp::gobgp_api::IDLE_HOLD_AFTER_RESET,
                ..api::TimersConfig::default()
            }),
            state: None,
        }),
        transport: Some(api::Transport {
            passive_mode: p.passive,
            ..api::Transport::default()
        }),
        graceful_restart: gr.map(|g| api::GracefulRestart {
            enabled: true,
            restart_time: g.restart_time,
            deferral_time: g.deferral_time,
            longlived_enabled: g.long_lived.is_some(),
            local_restarting: g.restarting,
            ..api::GracefulRestart::default()
        }),
        afi_safis: Family::ALL
            .into_iter()
            .map(|f| api::AfiSafi {
                config: Some(api::AfiSafiConfig {
                    family: Some(family(f)),
                    enabled: true,
                }),
                mp_graceful_restart: gr.map(|_| api::MpGracefulRestart {
                    config: Some(api::MpGracefulRestartConfig { enabled: true }),
                    state: None,
                }),
                long_lived_graceful_restart: gr.and_then(|g| g.long_lived).map(|t| {
                    api::LongLivedGracefulRestart {
                        config: Some(api::LongLivedGracefulRestartConfig {
                            enabled: true,
                            restart_time: t,
                        }),
                        state: None,
                    }
                }),
                ..api::AfiSafi::default()
            })
            .collect(),
        bfd: p.bfd.map(|b| api::BfdPeerConfig {
            enabled: true,
            port: BFD_PORT,
            desired_minimum_tx_interval: micros(b.interval),
            required_minimum_receive: micros(b.interval),
            detection_multiplier: u32::from(b.multiplier),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::gobgp_api::GracefulRestart;

    fn settings() -> PeerSettings {
        PeerSettings {
            address: "192.0.2.2".parse().unwrap(),
            peer_asn: 65001,
            password: None,
            passive: true,
            rr_client: false,
            multihop: None,
            hold_time: 9,
            keepalive: 3,
            connect_retry: 5,
            bfd: Some(Bfd {
                interval: Duration::from_millis(300),
                multiplier: 3,
            }),
            graceful_restart: Some(GracefulRestart {
                restart_time: 120,
                deferral_time: 5,
                restarting: false,
                long_lived: None,
            }),
        }
    }

    #[test]
    fn peers_carry_bfd_in_microseconds_and_graceful_restart() {
        let m = encode_peer(&settings());
        let t = m.timers.and_then(|t| t.config).unwrap();
        assert_eq!(t.idle_hold_time_after_reset, 1, "not gobgpd's 30 s");
        assert_eq!(
            m.bfd,
            Some(api::BfdPeerConfig {
                enabled: true,
                port: 3784,
                desired_minimum_tx_interval: 300_000,
                required_minimum_receive: 300_000,
                detection_multiplier: 3,
            })
        );
        let gr = m.graceful_restart.unwrap();
        assert!(gr.enabled && !gr.local_restarting && !gr.longlived_enabled);
        assert_eq!((gr.restart_time, gr.deferral_time), (120, 5));
        assert!(m.transport.unwrap().passive_mode);
        let fams: Vec<(i32, bool)> = m
            .afi_safis
            .iter()
            .map(|a| {
                (
                    a.config.unwrap().family.unwrap().afi,
                    a.mp_graceful_restart.unwrap().config.unwrap().enabled,
                )
            })
            .collect();
        assert_eq!(fams, [(1, true), (2, true)]);
        let mut s = settings();
        s.bfd = None;
        assert!(encode_peer(&s).bfd.is_none());
    }

    #[test]
    fn peers_decode_with_bfd_state_and_why_they_went_down() {
        let mut m = encode_peer(&settings());
        m.state = Some(api::PeerState {
            neighbor_address: "192.0.2.2".into(),
            peer_asn: 65001,
            session_state: api::peer_state::SessionState::Active as i32,
            disconnect_reason: api::peer_state::DisconnectReason::HoldTimerExpired as i32,
            bfd_state: Some(api::BfdPeerState {
                session_state: api::BfdSessionState::BfdDown as i32,
                ..api::BfdPeerState::default()
            }),
            ..api::PeerState::default()
        });
        let p = decode_peer(m.clone());
        assert!(!p.is_established());
        assert_eq!(p.down_reason, Some(DownReason::HoldTimerExpired));
        let bfd = p.bfd.unwrap();
        assert_eq!(bfd.state, BfdState::Down);
        assert_eq!(bfd.settings.interval, Duration::from_millis(300));
        assert_eq!(bfd.settings.detection(), Duration::from_millis(900));
        let st = m.state.as_mut().unwrap();
        st.disconnect_reason = api::peer_state::DisconnectReason::NotificationSent as i32;
        st.disconnect_message = "BFD is down".into();
        let p = decode_peer(m.clone());
        assert_eq!(
            p.down_reason,
            Some(DownReason::NotificationSent("BFD is down".into()))
        );
        assert!(p.down_reason.unwrap().is_hard());
        let st = m.state.as_mut().unwrap();
        st.disconnect_reason = api::peer_state::DisconnectReason::Deconfigured as i32;
        assert_eq!(decode_peer(m.clone()).down_reason, Some(DownReason::Local));
        m.state.as_mut().unwrap().disconnect_reason = 0;
        assert_eq!(decode_peer(m.clone()).down_reason, None);
        // What 4.8's ListPeer really gives after a hold expiry: no reason,
        // one more NOTIFICATION sent.
        m.state.as_mut().unwrap().messages = Some(api::Messages {
            sent: Some(api::Message {
                notification: 1,
                ..api::Message::default()
            }),
            received: None,
        });
        assert_eq!(decode_peer(m).notifications_sent, 1);
    }

    /// The password read from a file or the environment reaches AddPeer.
    #[test]
    fn the_password_reaches_add_peer() {
        let mut s = settings();
        s.password = Some(crate::bgp::gobgp_api::Secret("s3cret".into()));
        assert_eq!(encode_peer(&s).conf.unwrap().auth_password, "s3cret");
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    /// The session's own local address (the IPv6 next hop prefers it) is
    /// read from ListPeer's transport; an empty one is none.
    #[test]
    fn the_local_address_of_a_session_is_read() {
        let mut m = encode_peer(&settings());
        m.transport = Some(api::Transport {
            local_address: "2001:db8:a::1".into(),
            ..api::Transport::default()
        });
        assert_eq!(
            decode_peer(m.clone()).local_address,
            "2001:db8:a::1".parse().ok()
        );
        m.transport.as_mut().unwrap().local_address = String::new();
        assert_eq!(decode_peer(m).local_address, None);
    }
}
