//! Bounds-checked parsing of Ethernet / IPv4 / TCP / UDP / ICMP. Nothing is assumed about the
//! IPv4 header length; a packet is "parsed" only when every header it claims fits in the frame.
use core::mem::size_of;

use lb_common::{Addr, AF_INET, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, tcp::TcpHdr, udp::UdpHdr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_HLEN: usize = size_of::<EthHdr>();
pub const IPV4_HLEN: usize = size_of::<Ipv4Hdr>();

pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_SOURCE_QUENCH: u8 = 4;
pub const ICMP_TIME_EXCEEDED: u8 = 11;

/// A parsed TCP/UDP packet: the fields the load balancer keys on. Addresses and ports are in
/// network byte order, as in the packet.
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
    /// Offset of the transport header from the start of the frame.
    pub l4_off: usize,
    /// What the gate said of the addresses (see [`parse_gated`]; `u8::MAX` when not asked).
    pub gate: u8,
}

/// An ICMP error about a TCP/UDP packet, with the embedded packet's addresses and ports.
#[derive(Clone, Copy)]
pub struct IcmpErr {
    /// Destination of the ICMP message (the VIP, or the client for a NAT real server's).
    pub daddr: Addr,
    pub ip_len: u16,
    pub ttl: u8,
    /// Offset of the ICMP header from the start of the frame.
    pub icmp_off: usize,
    /// The embedded (quoted) packet.
    pub inner: Quoted,
}

#[derive(Clone, Copy)]
pub struct Quoted {
    pub proto: u8,
    pub saddr: Addr,
    pub daddr: Addr,
    pub sport: u16,
    pub dport: u16,
    /// Offset of the embedded IP header and of its transport header from the frame start.
    pub ip_off: usize,
    pub l4_off: usize,
}

pub enum Parsed {
    /// Not ours to look at: not IP, or a protocol/ICMP type the balancer does not handle.
    Other,
    /// An IPv6 frame: for `xlb_xdp6` (parse6.rs), not parsed here.
    V6,
    /// Claims to be IPv4 but does not parse (truncated, bad version/IHL/length) or is a
    /// fragment: never forwarded.
    Malformed,
    Ok(Pkt),
    Icmp(IcmpErr),
}

/// The header at `data + off` if it lies entirely inside `[data, data_end)`.
///
/// `data_end` is read through a volatile load so that LLVM cannot drop this comparison as
/// implied by earlier length checks: the verifier only trusts comparisons it sees.
///
/// Dereferencing the pointer is sound while the frame is not moved (`bpf_xdp_adjust_head`,
/// `_tail`): the kernel keeps `[data, data_end)` readable and writable for the program, and the
/// types read through it are byte arrays or headers the frame holds at their natural alignment.
#[inline(always)]
pub fn header<T>(data: usize, data_end: usize, off: usize) -> Option<*mut T> {
    // SAFETY: reads a local variable.
    let end = unsafe { core::ptr::read_volatile(&data_end) };
    let start = data + off;
    if start + size_of::<T>() > end { None } else { Some(start as *mut T) }
}

/// A copy of the `T` at `data + off` if it lies entirely inside the frame.
#[inline(always)]
pub fn read<T: Copy>(data: usize, data_end: usize, off: usize) -> Option<T> {
    let p = header::<T>(data, data_end, off)?;
    // SAFETY: `header` checked that the `T` lies inside the frame (see there).
    Some(unsafe { *p })
}

/// Validated IPv4 header at `off`: (header, its length, total length). The pointer is good
/// while the frame is not moved (see [`header`]): parsing never moves it.
#[inline(always)]
fn ipv4(data: usize, data_end: usize, off: usize) -> Option<(*const Ipv4Hdr, usize, u16)> {
    let p = header::<Ipv4Hdr>(data, data_end, off)?;
    // SAFETY: `header` checked that the header is in the frame.
    let ip = unsafe { &*p };
    let ihl = (ip.vihl & 0x0f) as usize * 4;
    let len = u16::from_be_bytes(ip.tot_len);
    if ip.vihl >> 4 != 4 || ihl < IPV4_HLEN || (len as usize) < ihl {
        return None;
    }
    Some((p, ihl, len))
}

/// The (option-less) IPv4 header after the Ethernet header sums to 0xffff. Headers with options
/// are not checked here (a loop over them multiplies the verifier's paths); forwarding keeps
/// their checksum as wrong as it came, and the receiver drops them.
#[inline(always)]
fn ipv4_checksum_ok(data: usize, data_end: usize, ihl: usize) -> bool {
    if ihl != IPV4_HLEN {
        return true;
    }
    let Some(h) = header::<[u8; IPV4_HLEN]>(data, data_end, ETH_HLEN) else {
        return false;
    };
    // SAFETY: `header` checked the bytes are in the frame; nothing moves it while `h` lives.
    let h = unsafe { &*h };
    let mut s = 0u32;
    for i in 0..IPV4_HLEN / 2 {
        s += u16::from_ne_bytes([h[2 * i], h[2 * i + 1]]) as u32;
    }
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s == 0xffff
}

#[inline(always)]
fn ports(data: usize, data_end: usize, off: usize) -> Option<(u16, u16)> {
    let p = read::<[u16; 2]>(data, data_end, off)?;
    Some((p[0], p[1]))
}

#[inline(always)]
pub fn parse(data: usize, data_end: usize) -> Parsed {
    parse_gated(data, data_end, |_, _| u8::MAX)
}

/// [`parse`], asking `gate` (source, destination address in network order) about a TCP or UDP
/// packet as soon as its addresses are read: 0 makes it [`Parsed::Other`] before its checksum
/// or transport header is looked at; anything else is kept in [`Pkt::gate`]. ICMP is not
/// gated (its errors concern addresses inside).
#[inline(always)]
pub fn parse_gated(data: usize, data_end: usize, gate: impl FnOnce(u32, u32) -> u8) -> Parsed {
    let Some(eth) = header::<EthHdr>(data, data_end, 0) else {
        return Parsed::Other;
    };
    // SAFETY: `header` checked the Ethernet header is in the frame.
    let ether_type = u16::from_be(unsafe { (*eth).ether_type });
    if ether_type != ETH_P_IP {
        return if ether_type == ETH_P_IPV6 { Parsed::V6 } else { Parsed::Other };
    }
    let Some((ip, ihl, ip_len)) = ipv4(data, data_end, ETH_HLEN) else {
        return Parsed::Malformed;
    };
    // SAFETY: checked in the frame by `ipv4`; the frame does not move while parsing.
    let ip = unsafe { &*ip };
    if data + ETH_HLEN + ip_len as usize > data_end {
        return Parsed::Malformed;
    }
    let proto = ip.proto;
    let gated = if proto == IPPROTO_ICMP { u8::MAX } else { gate(u32::from_ne_bytes(ip.src_addr), u32::from_ne_bytes(ip.dst_addr)) };
    if gated == 0 {
        return Parsed::Other;
    }
    // A corrupt header (the kernel's ip_rcv drops it) is never forwarded.
    if !ipv4_checksum_ok(data, data_end, ihl) {
        return Parsed::Malformed;
    }
    // MF set or a non-zero offset: a fragment. Only a reassembled datagram has its ports.
    if u16::from_be_bytes(ip.frags) & 0x3fff != 0 {
        return Parsed::Malformed;
    }
    let l4_off = ETH_HLEN + ihl;
    let saddr = Addr::v4(u32::from_ne_bytes(ip.src_addr));
    let daddr = Addr::v4(u32::from_ne_bytes(ip.dst_addr));
    if proto == IPPROTO_ICMP {
        return parse_icmp(data, data_end, l4_off, daddr, ip_len, ihl, ip.ttl);
    }
    // The transport header must fit both in the frame and in the IP datagram.
    let (sport, dport, tcp_flags, l4_len) = if proto == IPPROTO_TCP {
        let Some(th) = header::<TcpHdr>(data, data_end, l4_off) else {
            return Parsed::Malformed;
        };
        // SAFETY: `header` checked the TCP header is in the frame; bytes 12 and 13 (the data
        // offset and the flags) are inside it.
        let (th, off_flags) = unsafe { (&*th, *((th as usize + 12) as *const [u8; 2])) };
        let (doff, flags) = ((off_flags[0] >> 4) as usize * 4, off_flags[1]);
        if doff < size_of::<TcpHdr>() {
            return Parsed::Malformed;
        }
        (u16::from_ne_bytes(th.source), u16::from_ne_bytes(th.dest), flags, doff)
    } else if proto == IPPROTO_UDP {
        let Some(uh) = header::<UdpHdr>(data, data_end, l4_off) else {
            return Parsed::Malformed;
        };
        // SAFETY: `header` checked the UDP header is in the frame, which parsing does not move.
        let uh = unsafe { &*uh };
        // The UDP length must be the datagram's (the kernel's udp_rcv drops others).
        let ulen = u16::from_be_bytes(uh.len) as usize;
        if ulen < size_of::<UdpHdr>() || ihl + ulen > ip_len as usize {
            return Parsed::Malformed;
        }
        (u16::from_ne_bytes(uh.src), u16::from_ne_bytes(uh.dst), 0, size_of::<UdpHdr>())
    } else {
        return Parsed::Other;
    };
    if ihl + l4_len > ip_len as usize {
        return Parsed::Malformed;
    }
    Parsed::Ok(Pkt { af: AF_INET, proto, saddr, daddr, sport, dport, tcp_flags, ip_len, ttl: ip.ttl, l4_off, gate: gated })
}

/// ICMP errors that quote a TCP/UDP packet (IPVS treats DEST_UNREACH, SOURCE_QUENCH and
/// TIME_EXCEEDED as related to connections). Anything else ICMP is `Other`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn parse_icmp(
    data: usize,
    data_end: usize,
    icmp_off: usize,
    daddr: Addr,
    ip_len: u16,
    ihl: usize,
    ttl: u8,
) -> Parsed {
    let Some(icmp) = read::<[u8; 8]>(data, data_end, icmp_off) else {
        return Parsed::Malformed;
    };
    let ty = icmp[0];
    if ty != ICMP_DEST_UNREACH && ty != ICMP_SOURCE_QUENCH && ty != ICMP_TIME_EXCEEDED {
        return Parsed::Other;
    }
    let ip_off = icmp_off + 8;
    let Some((inner, inner_ihl, _)) = ipv4(data, data_end, ip_off) else {
        return Parsed::Malformed;
    };
    // SAFETY: as in `parse`: checked by `ipv4`, and the frame does not move while parsing.
    let inner = unsafe { &*inner };
    // The quote must hold the inner IP header and the first 8 bytes of its payload, within the
    // outer datagram.
    if ihl + 8 + inner_ihl + 8 > ip_len as usize {
        return Parsed::Malformed;
    }
    let proto = inner.proto;
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Parsed::Other;
    }
    if u16::from_be_bytes(inner.frags) & 0x1fff != 0 {
        return Parsed::Other;
    }
    let l4_off = ip_off + inner_ihl;
    let Some((sport, dport)) = ports(data, data_end, l4_off) else {
        return Parsed::Malformed;
    };
    Parsed::Icmp(IcmpErr {
        daddr,
        ip_len,
        ttl,
        icmp_off,
        inner: Quoted {
            proto,
            saddr: Addr::v4(u32::from_ne_bytes(inner.src_addr)),
            daddr: Addr::v4(u32::from_ne_bytes(inner.dst_addr)),
            sport,
            dport,
            ip_off,
            l4_off,
        },
    })
}
