//! gobgpd 3.x's WatchEvent stream decoded.
//!
//! In: `WatchEventResponse` messages (table and peer events). Out: neutral
//! [`Event`]s: best paths with replace semantics ([`Event::Best`]: with
//! multipath the whole set of a prefix) and peer state changes. 3.x sends
//! no End-of-RIB events (the flag in ListPeer is polled instead).

use super::super::gobgp_api::{Event, LearnedPath, SessionState};
use super::api as apipb;
use super::path::decode_path;

/// One WatchEvent message: peer states, and best paths with replace
/// semantics (with multipath the whole set of each prefix). An empty table
/// event (a path that joined no set) decodes to nothing.
pub fn decode_event(m: apipb::WatchEventResponse) -> Vec<Event> {
    use apipb::watch_event_response::Event as E;
    match m.event {
        Some(E::Table(t)) => {
            let paths: Vec<LearnedPath> = t
                .paths
                .iter()
                .filter_map(|p| decode_path(p).ok())
                .map(|p| p.path)
                .collect();
            if paths.is_empty() {
                vec![]
            } else {
                vec![Event::Best(paths)]
            }
        }
        Some(E::Peer(pe)) => pe
            .peer
            .and_then(|p| p.state)
            .map(|st| Event::Peer {
                address: st.neighbor_address,
                asn: st.peer_asn,
                state: SessionState::from_number(st.session_state),
            })
            .into_iter()
            .collect(),
        None => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::super::path::{encode_path, own};
    use super::*;
    use crate::model::attrs::RouteAttrs;

    #[test]
    fn learned_paths_and_peer_events_decode() {
        let mut p = encode_path(&own("10.1.2.0/24", "192.0.2.2", RouteAttrs::default()), 0);
        p.neighbor_ip = "192.0.2.2".into();
        p.is_withdraw = true;
        let own_path = {
            let mut o = encode_path(&own("10.1.1.2/32", "192.0.2.1", RouteAttrs::default()), 0);
            o.neighbor_ip = "<nil>".into();
            o
        };
        let ev = decode_event(apipb::WatchEventResponse {
            event: Some(apipb::watch_event_response::Event::Table(
                apipb::watch_event_response::TableEvent {
                    paths: vec![p, own_path],
                },
            )),
        });
        let [Event::Best(paths)] = &ev[..] else {
            panic!("{ev:?}")
        };
        assert_eq!(paths[0].peer.as_deref(), Some("192.0.2.2"));
        assert!(paths[0].withdraw);
        assert_eq!(paths[1].peer, None, "\"<nil>\" is our own");
        // An empty table event (a path that joined no multipath set): nothing.
        let empty = decode_event(apipb::WatchEventResponse {
            event: Some(apipb::watch_event_response::Event::Table(
                apipb::watch_event_response::TableEvent { paths: vec![] },
            )),
        });
        assert!(empty.is_empty());
        let peer = decode_event(apipb::WatchEventResponse {
            event: Some(apipb::watch_event_response::Event::Peer(
                apipb::watch_event_response::PeerEvent {
                    r#type: 3,
                    peer: Some(apipb::Peer {
                        state: Some(apipb::PeerState {
                            neighbor_address: "192.0.2.2".into(),
                            peer_asn: 65001,
                            session_state: 6,
                            ..apipb::PeerState::default()
                        }),
                        ..apipb::Peer::default()
                    }),
                },
            )),
        });
        assert_eq!(
            peer,
            [Event::Peer {
                address: "192.0.2.2".into(),
                asn: 65001,
                state: SessionState::Established
            }]
        );
    }
}
