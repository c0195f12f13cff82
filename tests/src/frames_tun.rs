//! Tunnelled frames for tests, built independently of the data plane: Ethernet, an outer IPv4
//! (etherparse) or IPv6 header, then IPIP (nothing), GUE (UDP with etherparse's checksum, the
//! 4-byte GUE header) or GRE (RFC 2784, its checksum computed here), around an inner IP packet;
//! and IPv6 TCP/UDP packets for the inner side.
use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv6Header, UdpHeader};

/// The tunnel around the inner packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tun {
    Ipip,
    /// GUE in UDP from `sport` to `dport`; `csum`: with the UDP checksum (else 0).
    Gue { sport: u16, dport: u16, csum: bool },
    /// GRE, with its checksum field when `csum`.
    Gre { csum: bool },
}

/// The outer IP header's fields.
#[derive(Clone, Copy, Debug)]
pub enum Outer {
    V4 { src: [u8; 4], dst: [u8; 4], ttl: u8, tos: u8, id: u16, df: bool },
    V6 { src: [u8; 16], dst: [u8; 16], hop: u8, tclass: u8 },
}

/// RFC 1071 over `data` (big-endian words, an odd last byte padded): the one's-complement sum,
/// folded, not inverted.
pub fn ones_sum(data: &[u8], mut s: u32) -> u32 {
    for c in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        s = (s & 0xffff) + (s >> 16);
    }
    s
}

/// The Internet checksum of `data`.
pub fn inet_csum(data: &[u8]) -> u16 {
    !(ones_sum(data, 0) as u16)
}

/// The inner packet's family: (IP protocol number for IPIP/GUE, GRE protocol type).
fn inner_kind(inner: &[u8]) -> (u8, u16) {
    if inner[0] >> 4 == 6 { (41, 0x86dd) } else { (4, 0x0800) }
}

/// The tunnel header and the inner packet: what follows the outer IP header. For GUE the UDP
/// checksum is left 0 here (it needs the outer addresses: see [`tunnel`]).
fn tunnel_payload(tun: Tun, inner: &[u8]) -> (u8, Vec<u8>) {
    let (proto, ethertype) = inner_kind(inner);
    match tun {
        Tun::Ipip => (proto, inner.to_vec()),
        Tun::Gue { .. } => {
            let mut p = vec![0, proto, 0, 0];
            p.extend_from_slice(inner);
            (17, p)
        }
        Tun::Gre { csum } => {
            let mut p = vec![if csum { 0x80 } else { 0 }, 0];
            p.extend_from_slice(&ethertype.to_be_bytes());
            if csum {
                p.extend_from_slice(&[0, 0, 0, 0]);
            }
            p.extend_from_slice(inner);
            if csum {
                let c = inet_csum(&p);
                p[4..6].copy_from_slice(&c.to_be_bytes());
            }
            (47, p)
        }
    }
}

/// An Ethernet frame (`macs`: source, destination) carrying `inner` (an IP packet) in `tun`
/// inside `outer`.
pub fn tunnel(macs: ([u8; 6], [u8; 6]), outer: Outer, tun: Tun, inner: &[u8]) -> Vec<u8> {
    let (proto, payload) = tunnel_payload(tun, inner);
    let mut out = Vec::new();
    let ether_type = if matches!(outer, Outer::V6 { .. }) { EtherType::IPV6 } else { EtherType::IPV4 };
    let _ = Ethernet2Header { source: macs.0, destination: macs.1, ether_type }.write(&mut out);
    match outer {
        Outer::V4 { src, dst, ttl, tos, id, df } => {
            let mut ip = Ipv4Header {
                time_to_live: ttl,
                protocol: IpNumber(proto),
                source: src,
                destination: dst,
                dont_fragment: df,
                identification: id,
                dscp: etherparse::IpDscp::try_new(tos >> 2).unwrap_or_default(),
                ecn: etherparse::IpEcn::try_new(tos & 3).unwrap_or_default(),
                ..Default::default()
            };
            let _ = ip.set_payload_len(payload.len() + if matches!(tun, Tun::Gue { .. }) { 8 } else { 0 });
            ip.header_checksum = ip.calc_header_checksum();
            let _ = ip.write(&mut out);
            if let Tun::Gue { sport, dport, csum } = tun {
                let mut u = UdpHeader::with_ipv4_checksum(sport, dport, &ip, &payload).expect("udp");
                if !csum {
                    u.checksum = 0;
                }
                let _ = u.write(&mut out);
            }
        }
        Outer::V6 { src, dst, hop, tclass } => {
            let udp = if matches!(tun, Tun::Gue { .. }) { 8 } else { 0 };
            let ip = Ipv6Header {
                traffic_class: tclass,
                flow_label: Default::default(),
                payload_length: (payload.len() + udp) as u16,
                next_header: IpNumber(proto),
                hop_limit: hop,
                source: src,
                destination: dst,
            };
            let _ = ip.write(&mut out);
            if let Tun::Gue { sport, dport, csum } = tun {
                let mut u = UdpHeader::with_ipv6_checksum(sport, dport, &ip, &payload).expect("udp");
                if !csum {
                    u.checksum = 0;
                }
                let _ = u.write(&mut out);
            }
        }
    }
    out.extend_from_slice(&payload);
    out
}

/// An IPv6 TCP packet (no Ethernet), SYN, with `payload`.
pub fn ipv6_tcp(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, hop: u8, payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ip(etherparse::IpHeaders::Ipv6(
        Ipv6Header { hop_limit: hop, source: src, destination: dst, ..Default::default() },
        Default::default(),
    ))
    .tcp(sport, dport, 1000, 64240)
    .syn();
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("ipv6 tcp");
    out
}

/// An IPv6 UDP packet (no Ethernet) with `payload`.
pub fn ipv6_udp(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, hop: u8, payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ip(etherparse::IpHeaders::Ipv6(
        Ipv6Header { hop_limit: hop, source: src, destination: dst, ..Default::default() },
        Default::default(),
    ))
    .udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("ipv6 udp");
    out
}

/// `inner` (an IP packet) in an Ethernet frame of its family, `macs`: (source, destination).
pub fn ethernet(macs: ([u8; 6], [u8; 6]), inner: &[u8]) -> Vec<u8> {
    let ether_type = if inner[0] >> 4 == 6 { EtherType::IPV6 } else { EtherType::IPV4 };
    let mut out = Vec::new();
    let _ = Ethernet2Header { source: macs.0, destination: macs.1, ether_type }.write(&mut out);
    out.extend_from_slice(inner);
    out
}

/// The GUE source port xlb picks for a flow, recomputed here from the documented rule
/// (`lb_common::tunnel::flow_hash` then `gue_src_port`): words of both addresses and the ports
/// as the packet holds them, read in the machine's (little-endian) order, mixed by
/// `(h ^ w) * 0x9e3779b1; h ^= h >> 15` starting from the protocol; then `h ^= h << 16` and
/// `32768 + (h * (60999 - 32768)) >> 32`.
pub fn gue_sport(saddr: &[u8], daddr: &[u8], sport: u16, dport: u16, proto: u8) -> u16 {
    let word = |a: &[u8], i: usize| -> u32 {
        a.get(4 * i..4 * i + 4).map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
    };
    let swap = |p: u16| u16::from_le_bytes(p.to_be_bytes()) as u32;
    let mut words: Vec<u32> = (0..4).map(|i| word(saddr, i)).collect();
    words.extend((0..4).map(|i| word(daddr, i)));
    words.push(swap(sport) << 16 | swap(dport));
    let mut h = proto as u32;
    for w in words {
        h = (h ^ w).wrapping_mul(0x9e37_79b1);
        h ^= h >> 15;
    }
    let h = h ^ (h << 16);
    (32768 + ((h as u64 * (60999 - 32768)) >> 32)) as u16
}

/// Whether the UDP (in IPv4 `ip`, from its header on) or GRE checksum of an encapsulated frame
/// verifies: summed with its pseudo-header (UDP) it gives all ones.
pub fn udp4_checksum_ok(ip: &[u8]) -> bool {
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let udp = &ip[ihl..];
    let len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    let mut pseudo = ip[12..20].to_vec();
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(len as u16).to_be_bytes());
    ones_sum(&udp[..len], ones_sum(&pseudo, 0)) == 0xffff
}

/// The ICMPv6 error the director sends back about `orig` (an Ethernet + IPv6 frame it received),
/// built independently of the data plane (etherparse's ICMPv6 checksum): to the sender's MAC
/// from its own, from the address `orig` was sent to, hop limit 64, traffic class and flow label
/// 0, quoting as much of the packet as fits in 1280 bytes.
pub fn icmp6_error_reply(orig: &[u8], ty: etherparse::Icmpv6Type) -> Vec<u8> {
    let plen = u16::from_be_bytes([orig[18], orig[19]]) as usize;
    let quote = &orig[14..(14 + 40 + plen).min(orig.len()).min(14 + 1280 - 48)];
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&orig[14 + 24..14 + 40]);
    dst.copy_from_slice(&orig[14 + 8..14 + 24]);
    let icmp = etherparse::Icmpv6Header::with_checksum(ty, src, dst, quote).expect("icmpv6");
    let ip = Ipv6Header {
        traffic_class: 0,
        flow_label: Default::default(),
        payload_length: (icmp.header_len() + quote.len()) as u16,
        next_header: IpNumber::IPV6_ICMP,
        hop_limit: 64,
        source: src,
        destination: dst,
    };
    let mut eth_src = [0u8; 6];
    let mut eth_dst = [0u8; 6];
    eth_src.copy_from_slice(&orig[0..6]);
    eth_dst.copy_from_slice(&orig[6..12]);
    let mut out = Vec::new();
    let _ = Ethernet2Header { source: eth_src, destination: eth_dst, ether_type: EtherType::IPV6 }.write(&mut out);
    let _ = ip.write(&mut out);
    let _ = icmp.write(&mut out);
    out.extend_from_slice(quote);
    out
}
