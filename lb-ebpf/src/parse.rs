//! Bounds-checked parsing of Ethernet / IPv4 / TCP / UDP. Nothing is assumed about the IPv4
//! header length; a packet is "parsed" only when every header it claims fits in the frame.
use core::mem::size_of;

use lb_common::{Addr, AF_INET, IPPROTO_TCP, IPPROTO_UDP};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, tcp::TcpHdr, udp::UdpHdr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_HLEN: usize = size_of::<EthHdr>();

/// A parsed packet: the fields the load balancer keys on.
/// Addresses and ports are in network byte order, as in the packet.
#[derive(Clone, Copy)]
pub struct Pkt {
    pub af: u8,
    pub proto: u8,
    pub saddr: Addr,
    pub daddr: Addr,
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte (0 for UDP).
    pub tcp_flags: u8,
    /// IP total length (what IPVS counts as the packet's bytes).
    pub ip_len: u16,
    pub ttl: u8,
}

pub enum Parsed {
    /// Not IPv4 TCP/UDP addressed as a unicast packet (ARP, IPv6, ICMP, ...): not ours.
    Other,
    /// Claims to be IPv4 but does not parse (truncated, bad version/IHL/length) or is a
    /// fragment: never forwarded.
    Malformed,
    Ok(Pkt),
}

/// The header at `data + off` if it lies entirely inside `[data, data_end)`.
#[inline(always)]
pub fn header<T>(data: usize, data_end: usize, off: usize) -> Option<*mut T> {
    let start = data + off;
    if start + size_of::<T>() > data_end { None } else { Some(start as *mut T) }
}

#[inline(always)]
pub fn parse(data: usize, data_end: usize) -> Parsed {
    let Some(eth) = header::<EthHdr>(data, data_end, 0) else {
        return Parsed::Other;
    };
    if u16::from_be(unsafe { (*eth).ether_type }) != ETH_P_IP {
        return Parsed::Other;
    }
    let Some(ip) = header::<Ipv4Hdr>(data, data_end, ETH_HLEN) else {
        return Parsed::Malformed;
    };
    let ip = unsafe { &*ip };
    let ihl = (ip.vihl & 0x0f) as usize * 4;
    let ip_len = u16::from_be_bytes(ip.tot_len);
    if ip.vihl >> 4 != 4 || ihl < size_of::<Ipv4Hdr>() || (ip_len as usize) < ihl {
        return Parsed::Malformed;
    }
    if data + ETH_HLEN + ip_len as usize > data_end {
        return Parsed::Malformed;
    }
    // MF set or a non-zero offset: a fragment. Only a reassembled datagram has its ports.
    let frags = u16::from_be_bytes(ip.frags);
    if frags & 0x3fff != 0 {
        return Parsed::Malformed;
    }
    let proto = ip.proto;
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Parsed::Other;
    }
    let l4_off = ETH_HLEN + ihl;
    // The transport header must fit both in the frame and in the IP datagram.
    let (sport, dport, tcp_flags, l4_len) = if proto == IPPROTO_TCP {
        let Some(th) = header::<TcpHdr>(data, data_end, l4_off) else {
            return Parsed::Malformed;
        };
        let th = unsafe { &*th };
        let doff = (unsafe { *((th as *const TcpHdr as usize + 12) as *const u8) } >> 4) as usize * 4;
        let flags = unsafe { *((th as *const TcpHdr as usize + 13) as *const u8) };
        if doff < size_of::<TcpHdr>() {
            return Parsed::Malformed;
        }
        (u16::from_ne_bytes(th.source), u16::from_ne_bytes(th.dest), flags, doff)
    } else {
        let Some(uh) = header::<UdpHdr>(data, data_end, l4_off) else {
            return Parsed::Malformed;
        };
        let uh = unsafe { &*uh };
        (u16::from_ne_bytes(uh.src), u16::from_ne_bytes(uh.dst), 0, size_of::<UdpHdr>())
    };
    if ihl + l4_len > ip_len as usize {
        return Parsed::Malformed;
    }
    Parsed::Ok(Pkt {
        af: AF_INET,
        proto,
        saddr: Addr::v4(u32::from_ne_bytes(ip.src_addr)),
        daddr: Addr::v4(u32::from_ne_bytes(ip.dst_addr)),
        sport,
        dport,
        tcp_flags,
        ip_len,
        ttl: ip.ttl,
    })
}
