//! Tunnel encapsulation facts shared by the data plane (encapsulation, PMTU, decap), userspace
//! and the tests: IPVS's numbering of tunnel types and checksum flags (`include/uapi/linux/ip_vs.h`,
//! what `Dest::tun_type` / `Dest::tun_flags` hold), the wire constants of GUE (`include/net/gue.h`)
//! and GRE (RFC 2784), and the header overhead each tunnel adds.

use crate::{AF_INET6, IPPROTO_IPIP, IPPROTO_IPV6};

/// `IP_VS_CONN_F_TUNNEL_TYPE_IPIP`: IP in IP (protocol 4, or 41 for an IPv6 inner packet).
pub const TUN_TYPE_IPIP: u8 = 0;
/// `IP_VS_CONN_F_TUNNEL_TYPE_GUE`: Generic UDP Encapsulation to the dest's `tun_port`.
pub const TUN_TYPE_GUE: u8 = 1;
/// `IP_VS_CONN_F_TUNNEL_TYPE_GRE`: GRE (protocol 47).
pub const TUN_TYPE_GRE: u8 = 2;

/// `IP_VS_TUNNEL_ENCAP_FLAG_NOCSUM` (`--tun-nocsum`, the default): no outer checksum.
pub const TUN_F_NOCSUM: u16 = 0;
/// `IP_VS_TUNNEL_ENCAP_FLAG_CSUM` (`--tun-csum`): GUE's UDP checksum / GRE's checksum field.
pub const TUN_F_CSUM: u16 = 1 << 0;
/// `IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM` (`--tun-remcsum`, GUE only): remote checksum offload. The
/// kernel writes the GUE option only for a packet whose own checksum is still to be computed
/// (`CHECKSUM_PARTIAL`, a locally sent packet); a forwarded packet, all XDP ever sees, gets a
/// full UDP checksum and no option, as with `--tun-csum`.
pub const TUN_F_REMCSUM: u16 = 1 << 1;

pub const IPPROTO_GRE: u8 = 47;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;

pub const IPV4_HDR_LEN: u32 = 20;
pub const IPV6_HDR_LEN: u32 = 40;
pub const UDP_HDR_LEN: u32 = 8;
/// The GUE version 0 base header: `hlen` (options, 4-byte words) in the first byte's low five
/// bits under version (2 bits) and control (1 bit), the inner protocol, 16 bits of flags.
pub const GUE_HDR_LEN: u32 = 4;
/// GUE flags (network order): a private-data word follows the header.
pub const GUE_FLAG_PRIV: u16 = 0x0001;
/// Private flags (network order, 32 bits): a remote checksum offload option (start, offset:
/// 16 bits each) follows.
pub const GUE_PFLAG_REMCSUM: u32 = 0x8000_0000;
/// GRE base header (flags and version, protocol); with the C bit, 4 more bytes (checksum and
/// reserved).
pub const GRE_HDR_LEN: u32 = 4;
pub const GRE_CSUM_LEN: u32 = 4;
/// GRE flag bits (first 16 bits, network order).
pub const GRE_F_CSUM: u16 = 0x8000;
pub const GRE_F_ROUTING: u16 = 0x4000;
pub const GRE_F_KEY: u16 = 0x2000;
pub const GRE_F_SEQ: u16 = 0x1000;
pub const GRE_VERSION_MASK: u16 = 0x0007;

/// The minimum IPv6 link MTU (`IPV6_MIN_MTU`).
pub const IPV6_MIN_MTU: u32 = 1280;
/// The smallest IPv4 MTU the kernel tunnels through (IPVS drops below it).
pub const IPV4_MIN_MTU: u32 = 68;

/// The source port range `udp_flow_src_port` spreads flows over when the tunnel gives none: the
/// default `net.ipv4.ip_local_port_range` (32768 60999).
pub const GUE_SPORT_MIN: u32 = 32768;
pub const GUE_SPORT_MAX: u32 = 60999;

/// Bytes the tunnel header adds between the outer IP header and the inner packet.
#[inline(always)]
pub const fn tun_hdr_len(tun_type: u8, tun_flags: u16) -> u32 {
    match tun_type {
        TUN_TYPE_GUE => UDP_HDR_LEN + GUE_HDR_LEN,
        TUN_TYPE_GRE if tun_flags & TUN_F_CSUM != 0 => GRE_HDR_LEN + GRE_CSUM_LEN,
        TUN_TYPE_GRE => GRE_HDR_LEN,
        _ => 0,
    }
}

/// What encapsulation adds to a packet toward a real server of family `outer_af`: what IPVS
/// takes off the route MTU before its PMTU check (`__ip_vs_get_out_rt{,_v6}`).
#[inline(always)]
pub const fn overhead(outer_af: u8, tun_type: u8, tun_flags: u16) -> u32 {
    let ip = if outer_af == AF_INET6 { IPV6_HDR_LEN } else { IPV4_HDR_LEN };
    ip + tun_hdr_len(tun_type, tun_flags)
}

/// The IP protocol / next header that announces an inner packet of family `inner_af` (IPIP,
/// and GUE's protocol field).
#[inline(always)]
pub const fn inner_proto(inner_af: u8) -> u8 {
    if inner_af == AF_INET6 { IPPROTO_IPV6 } else { IPPROTO_IPIP }
}

/// The UDP source port of a GUE packet of a flow hashing to `hash`, as the kernel's
/// `udp_flow_src_port` maps a flow hash into the local port range (the hash folded onto its
/// upper half, then scaled). The flow hash itself is xlb's ([`flow_hash`]): the kernel's is
/// the skb's (a NIC's RSS hash or a keyed jhash), which no other host can reproduce anyway.
#[inline(always)]
pub const fn gue_src_port(hash: u32) -> u16 {
    let h = hash ^ (hash << 16);
    (((h as u64 * (GUE_SPORT_MAX - GUE_SPORT_MIN) as u64) >> 32) as u32 + GUE_SPORT_MIN) as u16
}

/// xlb's flow hash of an inner packet: every word of both addresses (as the packet has them,
/// IPv4 in the first word), both ports (network order, 0 for a packet without ports) and the
/// protocol, mixed by multiply-xorshift (deterministic: the same flow always leaves by the same
/// source port, so the real server's RSS keeps a flow on one queue, which is what the kernel's
/// hash is for).
#[inline(always)]
pub const fn flow_hash(saddr: &[u32; 4], daddr: &[u32; 4], sport: u16, dport: u16, proto: u8) -> u32 {
    let mut h = proto as u32;
    let mut i = 0;
    while i < 4 {
        h = flow_mix(h, saddr[i]);
        i += 1;
    }
    i = 0;
    while i < 4 {
        h = flow_mix(h, daddr[i]);
        i += 1;
    }
    flow_mix(h, (sport as u32) << 16 | dport as u32)
}

/// [`flow_hash`] of IPv4 addresses (the other words zero), without arrays (no stack in BPF).
#[inline(always)]
pub const fn flow_hash_v4(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8) -> u32 {
    let mut h = flow_mix(proto as u32, saddr);
    h = flow_mix(flow_mix(flow_mix(h, 0), 0), 0);
    h = flow_mix(h, daddr);
    h = flow_mix(flow_mix(flow_mix(h, 0), 0), 0);
    flow_mix(h, (sport as u32) << 16 | dport as u32)
}

/// One word into [`flow_hash`]: multiply-xorshift.
#[inline(always)]
const fn flow_mix(h: u32, w: u32) -> u32 {
    let h = (h ^ w).wrapping_mul(0x9e37_79b1);
    h ^ (h >> 15)
}

/// The name of the decap program's map of GUE ports (key: UDP port, network order; value
/// unused). Not pinned: each `lbd attach --program decap` fills its own from `--gue-port`.
pub const DECAP_GUE_PORTS: &str = "XLB_DECAP_GUE_PORTS";
/// Capacity of [`DECAP_GUE_PORTS`].
pub const DECAP_GUE_PORTS_MAX: u32 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overheads_as_ipvs_computes_them() {
        assert_eq!(overhead(crate::AF_INET, TUN_TYPE_IPIP, 0), 20);
        assert_eq!(overhead(crate::AF_INET, TUN_TYPE_GUE, TUN_F_NOCSUM), 32);
        assert_eq!(overhead(crate::AF_INET, TUN_TYPE_GUE, TUN_F_REMCSUM), 32);
        assert_eq!(overhead(crate::AF_INET, TUN_TYPE_GRE, TUN_F_NOCSUM), 24);
        assert_eq!(overhead(crate::AF_INET, TUN_TYPE_GRE, TUN_F_CSUM), 28);
        assert_eq!(overhead(AF_INET6, TUN_TYPE_IPIP, 0), 40);
        assert_eq!(overhead(AF_INET6, TUN_TYPE_GUE, TUN_F_CSUM), 52);
        assert_eq!(overhead(AF_INET6, TUN_TYPE_GRE, TUN_F_CSUM), 48);
    }

    #[test]
    fn gue_source_ports_stay_in_the_local_range() {
        for h in [0u32, 1, 0xffff, 0x1_0000, 0x8000_0000, u32::MAX, 0x1234_5678] {
            let p = gue_src_port(h) as u32;
            assert!((GUE_SPORT_MIN..GUE_SPORT_MAX).contains(&p), "{h:#x} -> {p}");
        }
        assert_eq!(gue_src_port(0), GUE_SPORT_MIN as u16);
    }

    #[test]
    fn the_ipv4_flow_hash_is_the_general_one() {
        for (s, d, sp, dp, p) in [(1u32, 2u32, 3u16, 4u16, 6u8), (0xc0a8_580a, 0xc0a8_5810, 41000, 80, 17), (0, 0, 0, 0, 0)] {
            assert_eq!(flow_hash_v4(s, d, sp, dp, p), flow_hash(&[s, 0, 0, 0], &[d, 0, 0, 0], sp, dp, p));
        }
        assert_ne!(flow_hash_v4(1, 2, 3, 4, 6), flow_hash_v4(1, 2, 4, 3, 6));
    }
}
