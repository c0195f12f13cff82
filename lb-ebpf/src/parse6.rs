//! Bounds-checked parsing of Ethernet / IPv6 (with a bounded walk over extension headers) /
//! TCP / UDP. As the IPv4 parser: a packet is "parsed" only when every header it claims fits
//! both in the frame and in the IPv6 payload length; a claim that does not fit is
//! [`Parsed6::Malformed`] (passed to the kernel, counted).
//!
//! Extension headers walked (at most [`MAX_EXT_HDRS`]): hop-by-hop options (first only, as RFC
//! 8200 places it), routing with no segment left (the packet is at its final destination), and
//! destination options. A fragment header, a routing header with segments left, ESP/AH, "no
//! next header", any unknown header, or more headers than the walk takes: [`Parsed6::Other`],
//! to the kernel untouched (never forwarded half-parsed). ICMPv6 goes to the kernel too
//! (neighbour discovery, echo, ...), but for the errors that concern a connection
//! (destination unreachable, packet too big, time exceeded, quoting an IPv6 TCP/UDP packet
//! right after its header: [`Parsed6::Icmp`]).
use core::mem::size_of;

use lb_common::{Addr, AF_INET6, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use network_types::{tcp::TcpHdr, udp::UdpHdr};

use crate::parse::{header, read, Pkt, ETH_HLEN, ETH_P_IPV6};

pub const IPV6_HLEN: usize = 40;
pub const NEXTHDR_HOP: u8 = 0;
pub const NEXTHDR_ROUTING: u8 = 43;
pub const NEXTHDR_FRAGMENT: u8 = 44;
pub const NEXTHDR_DEST: u8 = 60;
/// How many extension headers the parser walks before giving the packet to the kernel.
pub const MAX_EXT_HDRS: usize = 3;
/// An extension header's largest length ((255 + 1) * 8 bytes).
const EXT_HDR_MAX: usize = 2048;
/// Where a parsed packet's transport header can be: after the IPv6 header and the walked
/// extension headers.
pub const L4_OFF_MIN: usize = ETH_HLEN + IPV6_HLEN;
pub const L4_OFF_MAX: usize = ETH_HLEN + IPV6_HLEN + MAX_EXT_HDRS * EXT_HDR_MAX;

/// Offsets of the IPv6 header's fields.
pub const IP6_PLEN: usize = 4;
pub const IP6_NEXT: usize = 6;
pub const IP6_HOP: usize = 7;
pub const IP6_SADDR: usize = 8;
pub const IP6_DADDR: usize = 24;

pub enum Parsed6 {
    /// Not ours: not IPv6 TCP/UDP at its final destination, or gated out (see module doc).
    Other,
    /// An ICMPv6 error (destination unreachable, packet too big, time exceeded) quoting a
    /// TCP/UDP packet: for `xlb_icmp6`.
    Icmp(IcmpErr6),
    /// Claims to be IPv6 but does not parse (truncated, bad version, lengths that do not fit,
    /// a UDP datagram without checksum): never forwarded.
    Malformed,
    Ok(Pkt),
}

/// ICMPv6 error types that concern a connection (IPVS's `ip_vs_in_icmp_v6` handles these).
pub const ICMPV6_DEST_UNREACH: u8 = 1;
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
pub const ICMPV6_TIME_EXCEED: u8 = 3;

/// An ICMPv6 error about a TCP/UDP packet (see `parse::IcmpErr`), by offsets: the addresses
/// are read from the frame where needed (copies of a structure holding them were moved byte by
/// byte over spilled registers, which the verifier refuses).
#[derive(Clone, Copy)]
pub struct IcmpErr6 {
    /// Offset of the ICMPv6 header from the frame start; the message runs to the datagram's
    /// end (`icmp_len` bytes).
    pub icmp_off: usize,
    pub icmp_len: usize,
    /// Offsets of the quoted IPv6 header and of its transport header.
    pub ip_off: usize,
    pub l4_off: usize,
    /// What IPVS counts (header included).
    pub ip_len: u16,
    /// The quoted packet's ports (network order).
    pub sport: u16,
    pub dport: u16,
    pub hop: u8,
    /// The quoted packet's protocol.
    pub proto: u8,
}

/// Where an ICMPv6 error's quoted IPv6 header can be (right after the outer headers and the
/// 8-byte ICMPv6 header).
pub const QUOTE_OFF_MAX: usize = L4_OFF_MAX + 8;

/// The four words (network order) of the address at `data + off`.
#[inline(always)]
fn addr(data: usize, data_end: usize, off: usize) -> Option<Addr> {
    read::<[u32; 4]>(data, data_end, off).map(Addr::v6)
}

/// Parses an IPv6 frame, asking `gate` (source, destination) about a TCP or UDP packet once its
/// headers are walked: 0 makes it [`Parsed6::Other`] before its transport header is looked at;
/// anything else is kept in [`Pkt::gate`].
#[inline(always)]
pub fn parse6_gated(data: usize, data_end: usize, gate: impl FnOnce(&Addr, &Addr) -> u8) -> Parsed6 {
    let Some(et) = read::<[u8; 2]>(data, data_end, 12) else {
        return Parsed6::Other;
    };
    if u16::from_be_bytes(et) != ETH_P_IPV6 {
        return Parsed6::Other;
    }
    let Some(h) = read::<[u8; 8]>(data, data_end, ETH_HLEN) else {
        return Parsed6::Malformed;
    };
    if h[0] >> 4 != 6 {
        return Parsed6::Malformed;
    }
    // Masked where the verifier sees it: 6.1's does not bound a byte swap's result, and the
    // length is added to the packet pointer below.
    let plen = lb_common::verifier::masked::<0xffff>(u16::from_be_bytes([h[IP6_PLEN], h[IP6_PLEN + 1]]) as usize);
    // The end of the datagram (the frame may carry padding after it, never less).
    let ip_end = L4_OFF_MIN + plen;
    if data + ip_end > data_end {
        return Parsed6::Malformed;
    }
    let (Some(saddr), Some(daddr)) = (addr(data, data_end, ETH_HLEN + IP6_SADDR), addr(data, data_end, ETH_HLEN + IP6_DADDR))
    else {
        return Parsed6::Malformed;
    };
    let mut next = h[IP6_NEXT];
    let mut off = L4_OFF_MIN;
    for i in 0..MAX_EXT_HDRS {
        if !(next == NEXTHDR_HOP && i == 0) && next != NEXTHDR_ROUTING && next != NEXTHDR_DEST {
            break;
        }
        // Every extension header is at least 8 bytes: next header, length, 6 more.
        if off + 8 > ip_end {
            return Parsed6::Malformed;
        }
        let Some(e) = read::<[u8; 8]>(data, data_end, off) else {
            return Parsed6::Malformed;
        };
        // Segments left: the packet is routed on by this host (the kernel's job), not for it.
        if next == NEXTHDR_ROUTING && e[3] != 0 {
            return Parsed6::Other;
        }
        off += (e[1] as usize + 1) * 8;
        if off > ip_end {
            return Parsed6::Malformed;
        }
        next = e[0];
    }
    if next == IPPROTO_ICMPV6 {
        return icmp6(data, data_end, off, ip_end, h[IP6_HOP]);
    }
    // Fragments, unknown or unwalked headers: the kernel's.
    if next != IPPROTO_TCP && next != IPPROTO_UDP {
        return Parsed6::Other;
    }
    let gated = gate(&saddr, &daddr);
    if gated == 0 {
        return Parsed6::Other;
    }
    let l4_len = if next == IPPROTO_TCP {
        let Some(b) = read::<[u8; 2]>(data, data_end, off + 12) else {
            return Parsed6::Malformed;
        };
        let doff = (b[0] >> 4) as usize * 4;
        if doff < size_of::<TcpHdr>() {
            return Parsed6::Malformed;
        }
        doff
    } else {
        let Some(uh) = read::<UdpHdr>(data, data_end, off) else {
            return Parsed6::Malformed;
        };
        let ulen = u16::from_be_bytes(uh.len) as usize;
        // A zero checksum is invalid in IPv6 (the kernel drops the datagram); a UDP length that
        // does not fit the payload, too.
        if ulen < size_of::<UdpHdr>() || off + ulen > ip_end || uh.check == [0, 0] {
            return Parsed6::Malformed;
        }
        size_of::<UdpHdr>()
    };
    if off + l4_len > ip_end {
        return Parsed6::Malformed;
    }
    let Some(ports) = read::<[u16; 2]>(data, data_end, off) else {
        return Parsed6::Malformed;
    };
    let tcp_flags = if next == IPPROTO_TCP {
        match header::<[u8; 14]>(data, data_end, off) {
            // SAFETY: `header` checked the bytes are in the frame; read at once.
            Some(t) => unsafe { (*t)[13] },
            None => return Parsed6::Malformed,
        }
    } else {
        0
    };
    Parsed6::Ok(Pkt {
        af: AF_INET6,
        proto: next,
        saddr,
        daddr,
        sport: ports[0],
        dport: ports[1],
        tcp_flags,
        // What IPVS counts as the packet's bytes (skb->len: header included).
        ip_len: (IPV6_HLEN + plen).min(u16::MAX as usize) as u16,
        ttl: h[IP6_HOP],
        l4_off: off,
        gate: gated,
    })
}

/// An ICMPv6 message at `off` (the datagram ends at `ip_end`): an error quoting a TCP/UDP
/// packet whose IPv6 header and first 8 transport bytes are inside the datagram is
/// [`Parsed6::Icmp`]; a quote cut shorter is malformed; anything else ICMPv6 (neighbour
/// discovery, echo, errors quoting other protocols or behind extension headers) is the
/// kernel's.
#[inline(always)]
fn icmp6(data: usize, data_end: usize, off: usize, ip_end: usize, hop: u8) -> Parsed6 {
    let Some(t) = read::<[u8; 2]>(data, data_end, off) else {
        return Parsed6::Malformed;
    };
    if t[0] != ICMPV6_DEST_UNREACH && t[0] != ICMPV6_PKT_TOOBIG && t[0] != ICMPV6_TIME_EXCEED {
        return Parsed6::Other;
    }
    let ip_off = off + 8;
    if ip_off + IPV6_HLEN + 8 > ip_end {
        return Parsed6::Malformed;
    }
    let Some(q) = read::<[u8; 8]>(data, data_end, ip_off) else {
        return Parsed6::Malformed;
    };
    if q[0] >> 4 != 6 {
        return Parsed6::Malformed;
    }
    let proto = q[IP6_NEXT];
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Parsed6::Other;
    }
    let l4_off = ip_off + IPV6_HLEN;
    let Some(ports) = read::<[u16; 2]>(data, data_end, l4_off) else {
        return Parsed6::Malformed;
    };
    Parsed6::Icmp(IcmpErr6 {
        icmp_off: off,
        icmp_len: ip_end - off,
        ip_off,
        l4_off,
        ip_len: (ip_end - ETH_HLEN).min(u16::MAX as usize) as u16,
        sport: ports[0],
        dport: ports[1],
        hop,
        proto,
    })
}

/// The IPv6 address at `data + off` (an error's outer or quoted address), if in the frame.
#[inline(always)]
pub fn addr_at(data: usize, data_end: usize, off: usize) -> Option<Addr> {
    addr(data, data_end, off)
}
