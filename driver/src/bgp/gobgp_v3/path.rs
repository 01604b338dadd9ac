//! Paths on the 3.x wire: prefixes and attributes packed in
//! `google.protobuf.Any` (`type.googleapis.com/apipb.<Message>`).
//!
//! In: our [`OwnPath`]s (prefix, next hop, [`RouteAttrs`](crate::model::attrs::RouteAttrs)) and our ASN;
//! gobgpd's `apipb::Path`s and `ListPath` answers. Out: `apipb::Path`s to
//! add or delete, [`RibPath`]s decoded from what gobgpd holds, and a
//! community as policy sets write it.

use ipnet::IpNet;
use prost::Message;
use prost_types::Any;

use super::super::gobgp_api::{
    mp_next_hop, parse_prefix, path_peer, DecodeError, Family, LearnedPath, OwnPath, PathAttrs,
    RibPath,
};
use super::api as apipb;
use apipb::{
    family, AsPathAttribute, AsSegment, CommunitiesAttribute, IpAddressPrefix,
    LargeCommunitiesAttribute, LargeCommunity, LocalPrefAttribute, MpReachNlriAttribute,
    MultiExitDiscAttribute, NextHopAttribute, OriginAttribute, Path,
};

const TYPE_PREFIX: &str = "type.googleapis.com/apipb.";
/// AS_SEQUENCE in an [`AsSegment`].
const AS_SEQUENCE: u32 = 2;

fn pack<M: Message>(name: &str, m: &M) -> Any {
    Any {
        type_url: format!("{TYPE_PREFIX}{name}"),
        value: m.encode_to_vec(),
    }
}

fn type_name(a: &Any) -> &str {
    a.type_url
        .rsplit('/')
        .next()
        .unwrap_or("")
        .trim_start_matches("apipb.")
}

pub fn family(f: Family) -> apipb::Family {
    apipb::Family {
        afi: match f {
            Family::Ipv4 => family::Afi::Ip as i32,
            Family::Ipv6 => family::Afi::Ip6 as i32,
        },
        safi: family::Safi::Unicast as i32,
    }
}

pub fn family_of(prefix: &IpNet) -> apipb::Family {
    family(Family::of(prefix))
}

/// A path for AddPath/DeletePath: prefix, next hop, ORIGIN IGP, and the
/// attributes of `p` in type-code order. IPv4 carries its next hop in
/// NEXT_HOP; IPv6 (AFI 2, SAFI 1) in an MP_REACH_NLRI attribute holding the
/// family, the next hop and the NLRI (gobgpd refuses an IPv6 path without
/// one: "nexthop not found"). The prepend is our own AS `asn` n times;
/// gobgpd adds it once more towards eBGP peers, as for any path it
/// originates. Without an AS (`asn` 0: BGP not started) there is nothing to
/// prepend.
pub fn encode_path(p: &OwnPath, asn: u32) -> Path {
    let attrs = &p.attrs;
    let nlri = pack(
        "IPAddressPrefix",
        &IpAddressPrefix {
            prefix_len: u32::from(p.prefix.prefix_len()),
            prefix: p.prefix.network().to_string(),
        },
    );
    let mut pattrs = vec![pack("OriginAttribute", &OriginAttribute { origin: 0 })];
    match attrs.as_path_prepend {
        Some(n) if n > 0 && asn != 0 => pattrs.push(pack(
            "AsPathAttribute",
            &AsPathAttribute {
                segments: vec![AsSegment {
                    r#type: AS_SEQUENCE,
                    numbers: vec![asn; usize::from(n)],
                }],
            },
        )),
        _ => {}
    }
    match p.prefix {
        IpNet::V4(_) => pattrs.push(pack(
            "NextHopAttribute",
            &NextHopAttribute {
                next_hop: p.next_hop.to_string(),
            },
        )),
        IpNet::V6(_) => pattrs.push(pack(
            "MpReachNLRIAttribute",
            &MpReachNlriAttribute {
                family: Some(family_of(&p.prefix)),
                next_hops: vec![p.next_hop.to_string()],
                nlris: vec![nlri.clone()],
            },
        )),
    }
    if let Some(med) = attrs.med {
        pattrs.push(pack(
            "MultiExitDiscAttribute",
            &MultiExitDiscAttribute { med },
        ));
    }
    if let Some(local_pref) = attrs.local_pref {
        pattrs.push(pack(
            "LocalPrefAttribute",
            &LocalPrefAttribute { local_pref },
        ));
    }
    if !attrs.communities.is_empty() {
        pattrs.push(pack(
            "CommunitiesAttribute",
            &CommunitiesAttribute {
                communities: attrs.communities.clone(),
            },
        ));
    }
    if !attrs.large_communities.is_empty() {
        pattrs.push(pack(
            "LargeCommunitiesAttribute",
            &LargeCommunitiesAttribute {
                communities: attrs
                    .large_communities
                    .iter()
                    .map(|&[global_admin, local_data1, local_data2]| LargeCommunity {
                        global_admin,
                        local_data1,
                        local_data2,
                    })
                    .collect(),
            },
        ));
    }
    Path {
        nlri: Some(nlri),
        pattrs,
        family: Some(family_of(&p.prefix)),
        ..Path::default()
    }
}

/// A path of gobgpd's RIB or events, decoded with all the attributes we read.
pub fn decode_path(p: &Path) -> Result<RibPath, DecodeError> {
    let nlri = p.nlri.as_ref().ok_or(DecodeError::NoNlri)?;
    if type_name(nlri) != "IPAddressPrefix" {
        return Err(DecodeError::NotPrefix(type_name(nlri).to_string()));
    }
    let pfx = IpAddressPrefix::decode(nlri.value.as_slice())
        .map_err(|_| DecodeError::Undecodable("IPAddressPrefix"))?;
    let prefix = parse_prefix(&pfx.prefix, pfx.prefix_len)?;
    let mut next_hop = None;
    let mut attrs = PathAttrs::default();
    for a in &p.pattrs {
        let v = a.value.as_slice();
        match type_name(a) {
            "NextHopAttribute" => {
                if let Ok(nh) = NextHopAttribute::decode(v) {
                    next_hop = nh.next_hop.parse().ok().or(next_hop);
                }
            }
            "MpReachNLRIAttribute" => {
                if let Ok(mp) = MpReachNlriAttribute::decode(v) {
                    next_hop = mp_next_hop(&mp.next_hops).or(next_hop);
                }
            }
            "AsPathAttribute" => {
                if let Ok(ap) = AsPathAttribute::decode(v) {
                    attrs.as_path = ap.segments.into_iter().flat_map(|s| s.numbers).collect();
                }
            }
            "MultiExitDiscAttribute" => {
                attrs.med = MultiExitDiscAttribute::decode(v).ok().map(|m| m.med);
            }
            "LocalPrefAttribute" => {
                attrs.local_pref = LocalPrefAttribute::decode(v).ok().map(|l| l.local_pref);
            }
            "CommunitiesAttribute" => {
                attrs.communities = CommunitiesAttribute::decode(v)
                    .map(|c| c.communities)
                    .unwrap_or_default();
                attrs.communities.sort_unstable();
            }
            "LargeCommunitiesAttribute" => {
                attrs.large_communities = LargeCommunitiesAttribute::decode(v)
                    .map(|c| {
                        c.communities
                            .iter()
                            .map(|l| [l.global_admin, l.local_data1, l.local_data2])
                            .collect()
                    })
                    .unwrap_or_default();
                attrs.large_communities.sort_unstable();
            }
            _ => {}
        }
    }
    Ok(RibPath {
        path: LearnedPath {
            prefix,
            next_hop,
            withdraw: p.is_withdraw,
            peer: path_peer(&p.neighbor_ip),
            as_path: attrs.as_path.clone(),
        },
        attrs,
        best: p.best,
        stale: p.stale,
    })
}

/// The decodable paths of one ListPath destination.
pub fn decode_destination(r: apipb::ListPathResponse) -> Vec<RibPath> {
    r.destination
        .map(|d| d.paths.iter().filter_map(|p| decode_path(p).ok()).collect())
        .unwrap_or_default()
}

/// An own path to encode (tests of this room and the event room).
#[cfg(test)]
pub(super) fn own(prefix: &str, nh: &str, attrs: crate::model::attrs::RouteAttrs) -> OwnPath {
    OwnPath {
        prefix: prefix.parse().unwrap(),
        next_hop: nh.parse().unwrap(),
        attrs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::attrs::RouteAttrs;

    #[test]
    fn own_paths_round_trip_through_decode() {
        let p = encode_path(
            &own(
                "10.1.1.2/32",
                "192.0.2.1",
                RouteAttrs {
                    communities: vec![0xfde8_0001],
                    ..RouteAttrs::default()
                },
            ),
            0,
        );
        assert_eq!(
            p.nlri.as_ref().unwrap().type_url,
            "type.googleapis.com/apipb.IPAddressPrefix"
        );
        let d = decode_path(&p).unwrap();
        assert_eq!(d.path.prefix, "10.1.1.2/32".parse::<IpNet>().unwrap());
        assert_eq!(d.path.next_hop, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(d.path.peer, None);
        assert!(!d.path.withdraw);
        assert_eq!(d.attrs.communities, [0xfde8_0001]);
    }

    /// Every attribute goes in type-code order, in the messages gobgpd 3.10
    /// takes (`gobgp global rib -j` then shows them; see tests/bgp_attrs.rs),
    /// and decodes back to what was asked for.
    #[test]
    fn attributes_are_encoded_and_decode_back() {
        let attrs = RouteAttrs {
            communities: vec![65000 << 16 | 100, 65000 << 16 | 200],
            large_communities: vec![[65000, 1, 2]],
            local_pref: Some(200),
            med: Some(50),
            as_path_prepend: Some(2),
        };
        let p = encode_path(&own("10.1.1.2/32", "192.0.2.1", attrs.clone()), 65000);
        let names: Vec<&str> = p.pattrs.iter().map(type_name).collect();
        assert_eq!(
            names,
            [
                "OriginAttribute",
                "AsPathAttribute",
                "NextHopAttribute",
                "MultiExitDiscAttribute",
                "LocalPrefAttribute",
                "CommunitiesAttribute",
                "LargeCommunitiesAttribute"
            ]
        );
        let ap = AsPathAttribute::decode(p.pattrs[1].value.as_slice()).unwrap();
        assert_eq!(ap.segments.len(), 1);
        assert_eq!(ap.segments[0].r#type, AS_SEQUENCE);
        assert_eq!(ap.segments[0].numbers, [65000, 65000]);
        let lc = LargeCommunitiesAttribute::decode(p.pattrs[6].value.as_slice()).unwrap();
        assert_eq!(
            (
                lc.communities[0].global_admin,
                lc.communities[0].local_data1,
                lc.communities[0].local_data2
            ),
            (65000, 1, 2)
        );
        let d = decode_path(&p).unwrap();
        assert_eq!(d.attrs.as_ours(65000), Some(attrs.clone()));
        assert_eq!(d.path.as_path, [65000, 65000]);
        // Without an AS there is nothing to prepend; no attributes, none sent.
        let p = encode_path(&own("10.1.1.2/32", "192.0.2.1", attrs), 0);
        assert!(!p.pattrs.iter().any(|a| type_name(a) == "AsPathAttribute"));
        let p = encode_path(
            &own("fd00::2/128", "2001:db8::1", RouteAttrs::default()),
            65000,
        );
        assert_eq!(p.pattrs.len(), 2);
        assert!(decode_path(&p)
            .unwrap()
            .attrs
            .as_ours(65000)
            .is_some_and(|a| a.is_empty()));
    }

    /// IPv6: family AFI 2 / SAFI 1 on the path, next hop in MP_REACH_NLRI
    /// (with the family and the NLRI), no NEXT_HOP attribute.
    #[test]
    fn ipv6_paths_carry_their_next_hop_in_mp_reach() {
        let p = encode_path(
            &own("fd00:1:1::5/128", "2001:db8::1", RouteAttrs::default()),
            0,
        );
        assert_eq!(p.family, Some(apipb::Family { afi: 2, safi: 1 }));
        let names: Vec<&str> = p.pattrs.iter().map(type_name).collect();
        assert_eq!(names, ["OriginAttribute", "MpReachNLRIAttribute"]);
        let mp = MpReachNlriAttribute::decode(p.pattrs[1].value.as_slice()).unwrap();
        assert_eq!(mp.family, Some(apipb::Family { afi: 2, safi: 1 }));
        assert_eq!(mp.next_hops, ["2001:db8::1"]);
        assert_eq!(mp.nlris.len(), 1);
        let d = decode_path(&p).unwrap();
        assert_eq!(d.path.prefix, "fd00:1:1::5/128".parse::<IpNet>().unwrap());
        assert_eq!(d.path.next_hop, Some("2001:db8::1".parse().unwrap()));
    }
}
