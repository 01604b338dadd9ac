//! gobgpd 4.x's WatchEvent stream decoded.
//!
//! In: `WatchEventResponse` messages (table, peer and End-of-RIB events).
//! Out: neutral [`Event`]s: best paths as whole sets ([`Event::Best`]) or,
//! with multipath, per-path deltas ([`Event::BestDelta`]); peer state
//! changes; End-of-RIB markers per peer and family.

use super::super::gobgp_api::{path_peer, Event, Family, SessionState};
use super::api;
use super::path::decode_path;

/// One WatchEvent message. Table events: End-of-RIB markers (a path without
/// NLRI, from the EOR filter) become [`Event::EndOfRib`]; best paths become
/// [`Event::Best`], or [`Event::BestDelta`] when gobgpd runs with
/// `multipath` (per-path deltas). Peer events: the state of a peer (the
/// END_OF_INIT marker, which names no peer, is dropped).
pub fn decode_event(m: api::WatchEventResponse, multipath: bool) -> Vec<Event> {
    use api::watch_event_response::{peer_event, Event as E};
    match m.event {
        Some(E::Table(t)) => {
            let mut out = Vec::new();
            let mut paths = Vec::new();
            for p in &t.paths {
                if p.nlri.is_none() {
                    let fam = p.family.and_then(|f| Family::from_afi_safi(f.afi, f.safi));
                    if let (Some(family), Some(peer)) = (fam, path_peer(&p.neighbor_ip)) {
                        out.push(Event::EndOfRib { peer, family });
                    }
                    continue;
                }
                if let Ok(d) = decode_path(p) {
                    paths.push(d.path);
                }
            }
            if !paths.is_empty() {
                out.push(if multipath {
                    Event::BestDelta(paths)
                } else {
                    Event::Best(paths)
                });
            }
            out
        }
        Some(E::Peer(pe)) if pe.r#type != peer_event::Type::EndOfInit as i32 => pe
            .peer
            .and_then(|p| p.state)
            .map(|st| Event::Peer {
                address: st.neighbor_address,
                asn: st.peer_asn,
                state: SessionState::from_number(st.session_state),
            })
            .into_iter()
            .collect(),
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::super::api::Path;
    use super::super::path::{encode_path, family, own};
    use super::*;
    use crate::model::attrs::RouteAttrs;

    fn table_event(paths: Vec<Path>) -> api::WatchEventResponse {
        api::WatchEventResponse {
            event: Some(api::watch_event_response::Event::Table(
                api::watch_event_response::TableEvent { paths },
            )),
        }
    }

    fn learned(prefix: &str, peer: &str, withdraw: bool) -> Path {
        let mut p = encode_path(&own(prefix, "192.0.2.2", RouteAttrs::default()), 0);
        p.neighbor_ip = peer.into();
        p.is_withdraw = withdraw;
        p
    }

    #[test]
    fn best_events_are_sets_without_multipath_and_deltas_with_it() {
        let ev = || table_event(vec![learned("10.1.2.0/24", "192.0.2.2", true)]);
        let [Event::Best(p)] = &decode_event(ev(), false)[..] else {
            panic!()
        };
        assert!(p[0].withdraw && p[0].peer.as_deref() == Some("192.0.2.2"));
        let [Event::BestDelta(p)] = &decode_event(ev(), true)[..] else {
            panic!()
        };
        assert_eq!(p.len(), 1);
        assert!(decode_event(table_event(vec![]), true).is_empty());
    }

    #[test]
    fn end_of_rib_markers_and_peer_events_decode() {
        let eor = Path {
            family: Some(family(Family::Ipv6)),
            neighbor_ip: "192.0.2.2".into(),
            ..Path::default()
        };
        let ev = decode_event(
            table_event(vec![eor, learned("10.1.2.0/24", "192.0.2.2", false)]),
            false,
        );
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!(
            ev[0],
            Event::EndOfRib {
                peer: "192.0.2.2".into(),
                family: Family::Ipv6
            }
        );
        use api::watch_event_response::{peer_event, PeerEvent};
        let peer = |t: peer_event::Type, addr: &str| api::WatchEventResponse {
            event: Some(api::watch_event_response::Event::Peer(PeerEvent {
                r#type: t as i32,
                peer: Some(api::Peer {
                    state: Some(api::PeerState {
                        neighbor_address: addr.into(),
                        peer_asn: 65001,
                        session_state: api::peer_state::SessionState::Established as i32,
                        ..api::PeerState::default()
                    }),
                    ..api::Peer::default()
                }),
            })),
        };
        assert_eq!(
            decode_event(peer(peer_event::Type::State, "192.0.2.2"), false),
            [Event::Peer {
                address: "192.0.2.2".into(),
                asn: 65001,
                state: SessionState::Established
            }]
        );
        assert!(decode_event(peer(peer_event::Type::EndOfInit, "invalid IP"), false).is_empty());
    }
}
