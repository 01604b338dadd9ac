//! The gobgpd 3.x codec (package `apipb`, service `GobgpApi`).
//!
//! In: the neutral requests of [`GobgpApi`] (our paths with their
//! [`RouteAttrs`](crate::model::attrs::RouteAttrs), peers with their timers and graceful restart). Out:
//! `apipb` messages on the wire, and gobgpd's answers decoded into the
//! neutral values of [`super::gobgp_api`]. The 3.x encoding lives only here:
//! NLRI and attributes packed in `google.protobuf.Any` with
//! `type.googleapis.com/apipb.<Message>` URLs, enums whose zero is a real
//! value (GLOBAL 0, BEST 0), `"<nil>"` as the neighbour of our own paths.
//!
//! 3.x has no BFD (AddPeer with BFD is refused here, naming 4.x), no
//! graceful StopBgp (it always sends a Cease), no End-of-RIB events (the
//! flag in ListPeer is polled instead) and no disconnect reason (a hold
//! expiry shows as a NOTIFICATION we sent). With multipath its best-path
//! events carry the whole set of a prefix: [`Event::Best`](super::gobgp_api::Event::Best).
//!
//! Rooms, as in the 4.x codec: [`path`] (prefixes and attributes, ours
//! encoded and learned ones decoded), [`event`] (the WatchEvent stream
//! decoded), [`peer`] (peer settings encoded, peer state decoded); this
//! file holds the client and its calls.

pub mod api;
mod event;
mod path;
mod peer;

use std::time::Duration;

use ipnet::IpNet;
use tonic::transport::Channel;
use tonic::Status;

use super::gobgp_api::{
    deadline, next_within, EventStream, Family, GlobalInfo, GobgpApi, OwnPath, PeerInfo,
    PeerNextHop6, PeerSettings, RibStream, StartSettings, MAX_MESSAGE,
};
use super::gobgp_policies::{export_own, gshut_import, Direction, PolicyInstall, SetKind};
use futures::StreamExt;

use api as apipb;
use apipb::gobgp_api_client::GobgpApiClient;
pub use event::decode_event;
use path::family_of;
pub use path::{decode_destination, decode_path, encode_path, family};
use peer::{decode_peer, encode_peer};

/// A gobgpd 3.x client; every call waits at most `limit`.
#[derive(Clone)]
pub struct V3 {
    client: GobgpApiClient<Channel>,
    limit: Duration,
}

impl V3 {
    pub fn new(channel: Channel, limit: Duration) -> V3 {
        V3 {
            client: GobgpApiClient::new(channel).max_decoding_message_size(MAX_MESSAGE),
            limit,
        }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Opens a WatchEvent stream without a deadline (the keepalive test).
    #[cfg(test)]
    pub async fn raw_watch(&mut self) -> Result<(), Status> {
        self.client
            .watch_event(apipb::WatchEventRequest::default())
            .await
            .map(|_| ())
    }
}

impl GobgpApi for V3 {
    async fn get_bgp(&mut self) -> Result<GlobalInfo, Status> {
        let g = deadline(
            "GetBgp",
            self.limit,
            self.client.get_bgp(apipb::GetBgpRequest {}),
        )
        .await?
        .into_inner()
        .global
        .unwrap_or_default();
        Ok(GlobalInfo {
            asn: g.asn,
            router_id: g.router_id,
            use_multiple_paths: g.use_multiple_paths,
        })
    }

    async fn start_bgp(&mut self, s: &StartSettings) -> Result<(), Status> {
        let req = apipb::StartBgpRequest {
            global: Some(apipb::Global {
                asn: s.asn,
                router_id: s.router_id.clone(),
                listen_port: s.listen_port,
                listen_addresses: vec![],
                use_multiple_paths: s.use_multiple_paths,
            }),
        };
        deadline("StartBgp", self.limit, self.client.start_bgp(req)).await?;
        Ok(())
    }

    async fn stop_bgp(&mut self, graceful: bool) -> Result<(), Status> {
        if graceful {
            return Err(Status::failed_precondition(
                "gobgpd 3.x cannot stop without a Cease to its peers (no allow_graceful_restart before 4.x)",
            ));
        }
        let stop = self.client.stop_bgp(apipb::StopBgpRequest {});
        deadline("StopBgp", self.limit, stop).await?;
        Ok(())
    }

    async fn list_peers(&mut self, address: Option<&str>) -> Result<Vec<PeerInfo>, Status> {
        let req = apipb::ListPeerRequest {
            address: address.unwrap_or_default().to_string(),
            enable_advertised: false,
        };
        let mut s = deadline("ListPeer", self.limit, self.client.list_peer(req))
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(r) = next_within("ListPeer", self.limit, &mut s).await? {
            out.extend(r.peer.map(decode_peer));
        }
        Ok(out)
    }

    async fn add_peer(&mut self, p: &PeerSettings) -> Result<(), Status> {
        let peer = Some(encode_peer(p)?);
        let add = self.client.add_peer(apipb::AddPeerRequest { peer });
        deadline("AddPeer", self.limit, add).await?;
        Ok(())
    }

    async fn delete_peer(&mut self, address: &str) -> Result<(), Status> {
        let req = apipb::DeletePeerRequest {
            address: address.to_string(),
            interface: String::new(),
        };
        deadline("DeletePeer", self.limit, self.client.delete_peer(req)).await?;
        Ok(())
    }

    async fn update_peer(&mut self, p: &PeerSettings) -> Result<(), Status> {
        let req = apipb::UpdatePeerRequest {
            peer: Some(encode_peer(p)?),
            do_soft_reset_in: false,
        };
        deadline("UpdatePeer", self.limit, self.client.update_peer(req)).await?;
        Ok(())
    }

    async fn add_path(&mut self, p: &OwnPath, asn: u32) -> Result<Vec<u8>, Status> {
        let req = apipb::AddPathRequest {
            table_type: apipb::TableType::Global as i32,
            vrf_id: String::new(),
            path: Some(encode_path(p, asn)),
        };
        let answer = deadline("AddPath", self.limit, self.client.add_path(req)).await?;
        Ok(answer.into_inner().uuid)
    }

    async fn add_paths(
        &mut self,
        paths: &[OwnPath],
        asn: u32,
        limit: Duration,
    ) -> Result<(), Status> {
        let msgs: Vec<apipb::AddPathStreamRequest> = paths
            .chunks(1000)
            .map(|chunk| apipb::AddPathStreamRequest {
                table_type: apipb::TableType::Global as i32,
                vrf_id: String::new(),
                paths: chunk.iter().map(|p| encode_path(p, asn)).collect(),
            })
            .collect();
        let stream = self.client.add_path_stream(tokio_stream::iter(msgs));
        deadline("AddPathStream", limit, stream).await?;
        Ok(())
    }

    async fn delete_path(&mut self, p: &OwnPath, asn: u32) -> Result<(), Status> {
        let req = apipb::DeletePathRequest {
            table_type: apipb::TableType::Global as i32,
            family: Some(family_of(&p.prefix)),
            path: Some(encode_path(p, asn)),
            ..apipb::DeletePathRequest::default()
        };
        deadline("DeletePath", self.limit, self.client.delete_path(req)).await?;
        Ok(())
    }

    async fn delete_path_uuid(&mut self, f: Family, uuid: &[u8]) -> Result<(), Status> {
        let req = apipb::DeletePathRequest {
            table_type: apipb::TableType::Global as i32,
            family: Some(family(f)),
            uuid: uuid.to_vec(),
            ..apipb::DeletePathRequest::default()
        };
        deadline("DeletePath", self.limit, self.client.delete_path(req)).await?;
        Ok(())
    }

    async fn delete_family(&mut self, f: Family) -> Result<(), Status> {
        let req = apipb::DeletePathRequest {
            table_type: apipb::TableType::Global as i32,
            family: Some(family(f)),
            ..apipb::DeletePathRequest::default()
        };
        deadline("DeletePath", self.limit, self.client.delete_path(req)).await?;
        Ok(())
    }

    async fn open_rib(&mut self, f: Family, prefixes: &[IpNet]) -> Result<RibStream, Status> {
        let req = apipb::ListPathRequest {
            table_type: apipb::TableType::Global as i32,
            family: Some(family(f)),
            prefixes: prefixes
                .iter()
                .map(|p| apipb::TableLookupPrefix {
                    prefix: p.to_string(),
                    r#type: apipb::table_lookup_prefix::Type::Exact as i32,
                })
                .collect(),
            ..apipb::ListPathRequest::default()
        };
        let s = deadline("ListPath", self.limit, self.client.list_path(req)).await?;
        Ok(RibStream::new(
            s.into_inner().map(|r| r.map(decode_destination)),
        ))
    }

    async fn watch(&mut self, _multipath: bool) -> Result<EventStream, Status> {
        use apipb::watch_event_request::{table, PeerFilter, Table};
        let req = apipb::WatchEventRequest {
            peer: Some(PeerFilter {}),
            table: Some(Table {
                filters: vec![table::Filter {
                    r#type: table::filter::Type::Best as i32,
                    init: false,
                }],
            }),
        };
        let s = deadline("WatchEvent", self.limit, self.client.watch_event(req)).await?;
        Ok(EventStream::new(
            s.into_inner().map(|r| r.map(decode_event)),
        ))
    }

    async fn honour_graceful_shutdown(&mut self) -> Result<(), Status> {
        self.install(&gshut_import()).await
    }

    async fn export_only_own_paths(&mut self, v6: &[PeerNextHop6]) -> Result<(), Status> {
        self.install(&export_own(v6)).await
    }
}

impl V3 {
    /// A policy with its sets and its global assignment: the sets first
    /// (the policy names them), then the policy, then the assignment.
    async fn install(&mut self, p: &PolicyInstall) -> Result<(), Status> {
        let (sets, policy, assignment) = wire_policy(p);
        for set in sets {
            self.add_defined_set(set).await?;
        }
        self.add_policy_and_assign(policy, assignment).await
    }

    /// AddDefinedSet; one already there is fine (installing again changes
    /// nothing).
    async fn add_defined_set(&mut self, set: apipb::DefinedSet) -> Result<(), Status> {
        let r = deadline(
            "AddDefinedSet",
            self.limit,
            self.client.add_defined_set(apipb::AddDefinedSetRequest {
                defined_set: Some(set),
            }),
        )
        .await;
        tolerate_existing(r)
    }

    /// AddPolicy, then AddPolicyAssignment; either one already there is
    /// fine (installing again changes nothing).
    async fn add_policy_and_assign(
        &mut self,
        policy: apipb::Policy,
        assignment: apipb::PolicyAssignment,
    ) -> Result<(), Status> {
        let limit = self.limit;
        let r = deadline(
            "AddPolicy",
            limit,
            self.client.add_policy(apipb::AddPolicyRequest {
                policy: Some(policy),
                refer_existing_statements: false,
            }),
        )
        .await;
        tolerate_existing(r)?;
        let r = deadline(
            "AddPolicyAssignment",
            limit,
            self.client
                .add_policy_assignment(apipb::AddPolicyAssignmentRequest {
                    assignment: Some(assignment),
                }),
        )
        .await;
        tolerate_existing(r)?;
        Ok(())
    }
}

fn tolerate_existing<T>(r: Result<T, Status>) -> Result<(), Status> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if super::gobgp_api::policy_already_installed(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A [`PolicyInstall`] in this line's messages: the defined sets, the
/// policy, and its assignment to the global table (the policy named, its
/// statements not repeated).
fn wire_policy(
    p: &PolicyInstall,
) -> (
    Vec<apipb::DefinedSet>,
    apipb::Policy,
    apipb::PolicyAssignment,
) {
    let sets = p
        .sets
        .iter()
        .map(|s| apipb::DefinedSet {
            defined_type: match s.kind {
                SetKind::Neighbor => apipb::DefinedType::Neighbor,
                SetKind::Community => apipb::DefinedType::Community,
            } as i32,
            name: s.name.clone(),
            list: s.list.clone(),
        })
        .collect();
    let any = |set: &Option<String>| {
        set.as_ref().map(|name| apipb::MatchSet {
            r#type: apipb::match_set::Type::Any as i32,
            name: name.clone(),
        })
    };
    let statements = p
        .statements
        .iter()
        .map(|s| apipb::Statement {
            name: s.name.clone(),
            conditions: Some(apipb::Conditions {
                neighbor_set: any(&s.neighbor_set),
                community_set: any(&s.community_set),
                afi_safi_in: s.family.map(family).into_iter().collect(),
                route_type: if s.local_only {
                    apipb::conditions::RouteType::Local
                } else {
                    apipb::conditions::RouteType::None
                } as i32,
            }),
            actions: Some(apipb::Actions {
                route_action: apipb::RouteAction::Accept as i32,
                nexthop: s.next_hop.map(|a| apipb::NexthopAction {
                    address: a.to_string(),
                    ..apipb::NexthopAction::default()
                }),
                local_pref: s.local_pref.map(|value| apipb::LocalPrefAction { value }),
            }),
        })
        .collect();
    let policy = apipb::Policy {
        name: p.name.clone(),
        statements,
    };
    let assignment = apipb::PolicyAssignment {
        name: "global".into(),
        direction: match p.direction {
            Direction::Import => apipb::PolicyDirection::Import,
            Direction::Export => apipb::PolicyDirection::Export,
        } as i32,
        policies: vec![apipb::Policy {
            name: p.name.clone(),
            statements: vec![],
        }],
        default_action: if p.default_accept {
            apipb::RouteAction::Accept
        } else {
            apipb::RouteAction::Reject
        } as i32,
    };
    (sets, policy, assignment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::gobgp_api::{
        EXPORT_POLICY, EXPORT_STATEMENT, GSHUT_LOCAL_PREF, GSHUT_POLICY, GSHUT_SET, GSHUT_STATEMENT,
    };

    /// The export policy in this line's messages (what it says is tested in
    /// [`crate::bgp::gobgp_policies`]): an uplink peer's statement with its
    /// neighbour set, ipv6-unicast, LOCAL and its next hop, then the LOCAL
    /// one; assigned to the global export, REJECT by default, the policy
    /// referred to by name.
    #[test]
    fn the_export_policy_in_this_lines_messages() {
        let v6 = [PeerNextHop6 {
            peer: "203.0.113.1".parse().unwrap(),
            next_hop: "fd00:0:ff::2".parse().unwrap(),
        }];
        let local = apipb::conditions::RouteType::Local as i32;
        let accept = apipb::RouteAction::Accept as i32;
        let (sets, policy, assignment) = wire_policy(&export_own(&v6));
        assert_eq!(
            sets,
            [apipb::DefinedSet {
                defined_type: apipb::DefinedType::Neighbor as i32,
                name: "ipvlan-bgp-v6-next-hop-203.0.113.1".into(),
                list: vec!["203.0.113.1/32".into()],
            }]
        );
        assert_eq!(
            policy,
            apipb::Policy {
                name: EXPORT_POLICY.into(),
                statements: vec![
                    apipb::Statement {
                        name: v6[0].name(),
                        conditions: Some(apipb::Conditions {
                            neighbor_set: Some(apipb::MatchSet {
                                r#type: apipb::match_set::Type::Any as i32,
                                name: v6[0].name(),
                            }),
                            afi_safi_in: vec![apipb::Family { afi: 2, safi: 1 }],
                            route_type: local,
                            ..apipb::Conditions::default()
                        }),
                        actions: Some(apipb::Actions {
                            route_action: accept,
                            nexthop: Some(apipb::NexthopAction {
                                address: "fd00:0:ff::2".into(),
                                ..apipb::NexthopAction::default()
                            }),
                            ..apipb::Actions::default()
                        }),
                    },
                    apipb::Statement {
                        name: EXPORT_STATEMENT.into(),
                        conditions: Some(apipb::Conditions {
                            route_type: local,
                            ..apipb::Conditions::default()
                        }),
                        actions: Some(apipb::Actions {
                            route_action: accept,
                            ..apipb::Actions::default()
                        }),
                    },
                ],
            }
        );
        assert_eq!(
            assignment,
            apipb::PolicyAssignment {
                name: "global".into(),
                direction: apipb::PolicyDirection::Export as i32,
                policies: vec![apipb::Policy {
                    name: EXPORT_POLICY.into(),
                    statements: vec![],
                }],
                default_action: apipb::RouteAction::Reject as i32,
            }
        );
    }

    /// The GRACEFUL_SHUTDOWN import policy in this line's messages: the
    /// community set, the statement that sets LOCAL_PREF, assigned to the
    /// global import, ACCEPT by default.
    #[test]
    fn the_gshut_policy_in_this_lines_messages() {
        let (sets, policy, assignment) = wire_policy(&gshut_import());
        assert_eq!(
            sets,
            [apipb::DefinedSet {
                defined_type: apipb::DefinedType::Community as i32,
                name: GSHUT_SET.into(),
                list: vec!["65535:0".into()],
            }]
        );
        assert_eq!(
            policy.statements,
            [apipb::Statement {
                name: GSHUT_STATEMENT.into(),
                conditions: Some(apipb::Conditions {
                    community_set: Some(apipb::MatchSet {
                        r#type: apipb::match_set::Type::Any as i32,
                        name: GSHUT_SET.into(),
                    }),
                    ..apipb::Conditions::default()
                }),
                actions: Some(apipb::Actions {
                    route_action: apipb::RouteAction::Accept as i32,
                    local_pref: Some(apipb::LocalPrefAction {
                        value: GSHUT_LOCAL_PREF,
                    }),
                    ..apipb::Actions::default()
                }),
            }]
        );
        assert_eq!(policy.name, GSHUT_POLICY);
        assert_eq!(
            (assignment.direction, assignment.default_action),
            (
                apipb::PolicyDirection::Import as i32,
                apipb::RouteAction::Accept as i32
            )
        );
    }

    /// gobgpd's answers when the policy is there already (installed twice:
    /// no duplicate statement, no error); any other error still fails.
    #[test]
    fn installing_again_is_tolerated() {
        for m in [
            "statement ipvlan-bgp-own-paths already defined",
            "duplicated policy ipvlan-bgp-export-own",
            "already exists",
        ] {
            assert!(
                tolerate_existing::<()>(Err(Status::unknown(m))).is_ok(),
                "{m}"
            );
        }
        assert!(tolerate_existing::<()>(Err(Status::unknown("not found policy x"))).is_err());
    }
}
