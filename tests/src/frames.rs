//! Frame builder for tests: Ethernet II + IPv4 (any options, TTL, fragment bits) + TCP/UDP with
//! correct checksums, on etherparse's headers.
use std::net::{Ipv4Addr, SocketAddrV4};

use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv4Options, TcpHeader, UdpHeader};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

#[derive(Clone, Debug)]
pub enum L4 {
    Tcp(TcpHeader),
    Udp(UdpHeader),
}

#[derive(Clone, Debug)]
pub struct Frame {
    pub eth: Ethernet2Header,
    pub ip: Ipv4Header,
    pub l4: L4,
    pub payload: Vec<u8>,
    /// UDP only: send without a checksum (0), as IPv4 allows.
    pub udp_no_checksum: bool,
}

fn tcp_header(sport: u16, dport: u16, flags: u8) -> TcpHeader {
    let mut t = TcpHeader::new(sport, dport, 1000, 64240);
    t.fin = flags & FIN != 0;
    t.syn = flags & SYN != 0;
    t.rst = flags & RST != 0;
    t.psh = flags & PSH != 0;
    t.ack = flags & ACK != 0;
    if t.ack {
        t.acknowledgment_number = 1;
    }
    t
}

impl Frame {
    pub fn tcp(src: SocketAddrV4, dst: SocketAddrV4, flags: u8) -> Frame {
        Frame::new(src, dst, L4::Tcp(tcp_header(src.port(), dst.port(), flags)))
    }

    pub fn udp(src: SocketAddrV4, dst: SocketAddrV4) -> Frame {
        Frame::new(src, dst, L4::Udp(UdpHeader { source_port: src.port(), destination_port: dst.port(), length: 0, checksum: 0 }))
    }

    fn new(src: SocketAddrV4, dst: SocketAddrV4, l4: L4) -> Frame {
        let proto = match l4 {
            L4::Tcp(_) => IpNumber::TCP,
            L4::Udp(_) => IpNumber::UDP,
        };
        let ip = Ipv4Header {
            time_to_live: 64,
            protocol: proto,
            source: src.ip().octets(),
            destination: dst.ip().octets(),
            dont_fragment: true,
            ..Default::default()
        };
        Frame {
            eth: Ethernet2Header { source: CLIENT_MAC, destination: DIRECTOR_MAC, ether_type: EtherType::IPV4 },
            ip,
            l4,
            payload: Vec::new(),
            udp_no_checksum: false,
        }
    }

    /// Source address and port.
    pub fn src(mut self, a: SocketAddrV4) -> Frame {
        self.ip.source = a.ip().octets();
        match &mut self.l4 {
            L4::Tcp(t) => t.source_port = a.port(),
            L4::Udp(u) => u.source_port = a.port(),
        }
        self
    }

    /// Destination address and port.
    pub fn dst(mut self, a: SocketAddrV4) -> Frame {
        self.ip.destination = a.ip().octets();
        match &mut self.l4 {
            L4::Tcp(t) => t.destination_port = a.port(),
            L4::Udp(u) => u.destination_port = a.port(),
        }
        self
    }

    pub fn no_df(mut self) -> Frame {
        self.ip.dont_fragment = false;
        self
    }

    /// The whole TOS byte (DSCP and ECN).
    pub fn tos(mut self, tos: u8) -> Frame {
        self.ip.dscp = etherparse::IpDscp::try_new(tos >> 2).unwrap_or_default();
        self.ip.ecn = etherparse::IpEcn::try_new(tos & 3).unwrap_or_default();
        self
    }

    pub fn udp_no_checksum(mut self) -> Frame {
        self.udp_no_checksum = true;
        self
    }

    /// The IP packet (no Ethernet header).
    pub fn ip_bytes(&self) -> Vec<u8> {
        self.bytes()[Ethernet2Header::LEN..].to_vec()
    }

    pub fn payload(mut self, p: &[u8]) -> Frame {
        self.payload = p.to_vec();
        self
    }

    pub fn ttl(mut self, ttl: u8) -> Frame {
        self.ip.time_to_live = ttl;
        self
    }

    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Frame {
        self.eth.source = src;
        self.eth.destination = dst;
        self
    }

    /// IPv4 options (a multiple of 4 bytes, at most 40).
    pub fn ip_options(mut self, opts: &[u8]) -> Frame {
        self.ip.options = Ipv4Options::try_from(opts).unwrap_or_default();
        self
    }

    pub fn fragment(mut self, more: bool, offset_units: u16) -> Frame {
        self.ip.dont_fragment = false;
        self.ip.more_fragments = more;
        self.ip.fragment_offset = etherparse::IpFragOffset::try_new(offset_units).unwrap_or_default();
        self
    }

    /// The frame's bytes with every length and checksum computed.
    pub fn bytes(&self) -> Vec<u8> {
        let mut ip = self.ip.clone();
        let l4_len = match &self.l4 {
            L4::Tcp(t) => t.header_len(),
            L4::Udp(_) => 8,
        } + self.payload.len();
        let _ = ip.set_payload_len(l4_len);
        ip.header_checksum = ip.calc_header_checksum();
        let mut out = Vec::new();
        let _ = self.eth.write(&mut out);
        let _ = ip.write(&mut out);
        match &self.l4 {
            L4::Tcp(t) => {
                let mut t = t.clone();
                t.checksum = t.calc_checksum_ipv4(&ip, &self.payload).unwrap_or(0);
                let _ = t.write(&mut out);
            }
            L4::Udp(u) => {
                let mut u = UdpHeader::with_ipv4_checksum(u.source_port, u.destination_port, &ip, &self.payload)
                    .unwrap_or_else(|_| u.clone());
                if self.udp_no_checksum {
                    u.checksum = 0;
                }
                let _ = u.write(&mut out);
            }
        }
        out.extend_from_slice(&self.payload);
        out
    }

    /// Bytes of the IP packet (what IPVS counts).
    pub fn ip_len(&self) -> u64 {
        (self.bytes().len() - Ethernet2Header::LEN) as u64
    }
}

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x05];

pub fn sa(ip: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(ip), port)
}

/// An ARP request frame (who has `target`?).
pub fn arp_request(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&sender);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f
}

/// The ICMP error the director sends back about `orig` (a frame it received): to the sender's
/// MAC from its own, from the address `orig` was sent to, TOS 0xc0, TTL 64, quoting the IP
/// header and the first 8 bytes of payload. Built independently of the data plane.
pub fn icmp_error_reply(orig: &[u8], icmp_type: etherparse::Icmpv4Type) -> Vec<u8> {
    let ihl = (orig[14] & 0x0f) as usize * 4;
    let quote = &orig[14..(14 + ihl + 8).min(orig.len())];
    let mut src = [0u8; 4];
    let mut dst = [0u8; 4];
    src.copy_from_slice(&orig[14 + 16..14 + 20]);
    dst.copy_from_slice(&orig[14 + 12..14 + 16]);
    let icmp = etherparse::Icmpv4Header::with_checksum(icmp_type, quote);
    let mut ip = Ipv4Header {
        time_to_live: 64,
        protocol: IpNumber::ICMP,
        source: src,
        destination: dst,
        dscp: etherparse::IpDscp::try_new(0x30).unwrap_or_default(),
        // The kernel's ICMP socket does not set DF (IP_PMTUDISC_DONT).
        dont_fragment: false,
        ..Default::default()
    };
    let _ = ip.set_payload_len(icmp.header_len() + quote.len());
    ip.header_checksum = ip.calc_header_checksum();
    let mut eth_src = [0u8; 6];
    let mut eth_dst = [0u8; 6];
    eth_src.copy_from_slice(&orig[0..6]);
    eth_dst.copy_from_slice(&orig[6..12]);
    let mut out = Vec::new();
    let _ = Ethernet2Header { source: eth_src, destination: eth_dst, ether_type: EtherType::IPV4 }.write(&mut out);
    let _ = ip.write(&mut out);
    let _ = icmp.write(&mut out);
    out.extend_from_slice(quote);
    out
}

/// `frame` as the XDP program hands it to the tc slow path: its MAC addresses replaced by the
/// mark (`lb_common::SlowPathMark`) naming the egress and the next hop.
pub fn slow_path_marked(mut frame: Vec<u8>, tag: u32, ifindex: u32, next_hop: [u8; 4]) -> Vec<u8> {
    frame[0..4].copy_from_slice(&tag.to_ne_bytes());
    frame[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    frame[8..12].copy_from_slice(&next_hop);
    frame
}

/// An IPIP frame: Ethernet, outer IPv4 (protocol 4) around `inner` (an IP packet).
#[allow(clippy::too_many_arguments)]
pub fn ipip(macs: ([u8; 6], [u8; 6]), src: [u8; 4], dst: [u8; 4], ttl: u8, tos: u8, id: u16, df: bool, inner: &[u8]) -> Vec<u8> {
    let mut ip = Ipv4Header {
        time_to_live: ttl,
        protocol: IpNumber::IPV4,
        source: src,
        destination: dst,
        dont_fragment: df,
        identification: id,
        dscp: etherparse::IpDscp::try_new(tos >> 2).unwrap_or_default(),
        ecn: etherparse::IpEcn::try_new(tos & 3).unwrap_or_default(),
        ..Default::default()
    };
    let _ = ip.set_payload_len(inner.len());
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = Vec::new();
    let _ = Ethernet2Header { source: macs.0, destination: macs.1, ether_type: EtherType::IPV4 }.write(&mut out);
    let _ = ip.write(&mut out);
    out.extend_from_slice(inner);
    out
}

/// An ICMP message frame quoting `quote` (an IP header and the start of its payload).
#[allow(clippy::too_many_arguments)]
pub fn icmp(macs: ([u8; 6], [u8; 6]), src: [u8; 4], dst: [u8; 4], ttl: u8, ty: etherparse::Icmpv4Type, quote: &[u8], corrupt: bool) -> Vec<u8> {
    let mut icmp = etherparse::Icmpv4Header::with_checksum(ty, quote);
    if corrupt {
        icmp.checksum ^= 0x5555;
    }
    let mut ip = Ipv4Header {
        time_to_live: ttl,
        protocol: IpNumber::ICMP,
        source: src,
        destination: dst,
        dont_fragment: false,
        ..Default::default()
    };
    let _ = ip.set_payload_len(icmp.header_len() + quote.len());
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = Vec::new();
    let _ = Ethernet2Header { source: macs.0, destination: macs.1, ether_type: EtherType::IPV4 }.write(&mut out);
    let _ = ip.write(&mut out);
    let _ = icmp.write(&mut out);
    out.extend_from_slice(quote);
    out
}

/// What an ICMP error quotes of a frame: its IP header and the first 8 bytes of payload.
pub fn quote_of(frame: &[u8]) -> Vec<u8> {
    let ihl = (frame[14] & 0x0f) as usize * 4;
    frame[14..(14 + ihl + 8).min(frame.len())].to_vec()
}

/// An IPv6 frame: Ethernet II + IPv6 (+ extension headers) + TCP/UDP, its lengths and transport
/// checksum computed here from RFC 8200's pseudo-header (independently of the data plane's
/// incremental updates).
#[derive(Clone, Debug)]
pub struct Frame6 {
    pub eth: Ethernet2Header,
    pub src: std::net::Ipv6Addr,
    pub dst: std::net::Ipv6Addr,
    pub hop_limit: u8,
    /// Traffic class and flow label (the header's first word past the version).
    pub tc: u8,
    pub flow: u32,
    /// Extension headers in order: (header type, its bytes from the third on; padded to a
    /// multiple of 8 with the two first bytes).
    pub ext: Vec<(u8, Vec<u8>)>,
    pub l4: L4,
    pub payload: Vec<u8>,
}

pub const NEXTHDR_HOP: u8 = 0;
pub const NEXTHDR_ROUTING: u8 = 43;
pub const NEXTHDR_FRAGMENT: u8 = 44;
pub const NEXTHDR_DEST: u8 = 60;

impl Frame6 {
    pub fn tcp(src: std::net::SocketAddrV6, dst: std::net::SocketAddrV6, flags: u8) -> Frame6 {
        Frame6::new(src, dst, L4::Tcp(tcp_header(src.port(), dst.port(), flags)))
    }

    pub fn udp(src: std::net::SocketAddrV6, dst: std::net::SocketAddrV6) -> Frame6 {
        Frame6::new(src, dst, L4::Udp(UdpHeader { source_port: src.port(), destination_port: dst.port(), length: 0, checksum: 0 }))
    }

    fn new(src: std::net::SocketAddrV6, dst: std::net::SocketAddrV6, l4: L4) -> Frame6 {
        Frame6 {
            eth: Ethernet2Header { source: CLIENT_MAC, destination: DIRECTOR_MAC, ether_type: EtherType::IPV6 },
            src: *src.ip(),
            dst: *dst.ip(),
            hop_limit: 64,
            tc: 0,
            flow: 0,
            ext: Vec::new(),
            l4,
            payload: Vec::new(),
        }
    }

    pub fn src(mut self, a: std::net::SocketAddrV6) -> Frame6 {
        self.src = *a.ip();
        match &mut self.l4 {
            L4::Tcp(t) => t.source_port = a.port(),
            L4::Udp(u) => u.source_port = a.port(),
        }
        self
    }

    pub fn dst(mut self, a: std::net::SocketAddrV6) -> Frame6 {
        self.dst = *a.ip();
        match &mut self.l4 {
            L4::Tcp(t) => t.destination_port = a.port(),
            L4::Udp(u) => u.destination_port = a.port(),
        }
        self
    }

    pub fn hop_limit(mut self, h: u8) -> Frame6 {
        self.hop_limit = h;
        self
    }

    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Frame6 {
        self.eth.source = src;
        self.eth.destination = dst;
        self
    }

    pub fn payload(mut self, p: &[u8]) -> Frame6 {
        self.payload = p.to_vec();
        self
    }

    pub fn traffic(mut self, tc: u8, flow: u32) -> Frame6 {
        self.tc = tc;
        self.flow = flow & 0xf_ffff;
        self
    }

    /// Appends an extension header of type `kind` whose bytes after the first two are `rest`
    /// (zero-padded to a multiple of 8 in all).
    pub fn ext(mut self, kind: u8, rest: &[u8]) -> Frame6 {
        self.ext.push((kind, rest.to_vec()));
        self
    }

    fn proto(&self) -> u8 {
        match self.l4 {
            L4::Tcp(_) => 6,
            L4::Udp(_) => 17,
        }
    }

    /// The transport segment with its checksum over the IPv6 pseudo-header.
    fn l4_bytes(&self) -> Vec<u8> {
        let mut seg = Vec::new();
        match &self.l4 {
            L4::Tcp(t) => {
                let mut t = t.clone();
                t.checksum = 0;
                let _ = t.write(&mut seg);
            }
            L4::Udp(u) => {
                let len = (8 + self.payload.len()) as u16;
                let u = UdpHeader { length: len, checksum: 0, ..u.clone() };
                let _ = u.write(&mut seg);
            }
        }
        seg.extend_from_slice(&self.payload);
        let mut s: u64 = 0;
        let mut add = |b: &[u8]| {
            for c in b.chunks(2) {
                s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u64;
            }
        };
        add(&self.src.octets());
        add(&self.dst.octets());
        add(&(seg.len() as u32).to_be_bytes());
        add(&[0, 0, 0, self.proto()]);
        add(&seg);
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        let mut c = !(s as u16);
        if c == 0 && self.proto() == 17 {
            c = 0xffff;
        }
        let at = if self.proto() == 6 { 16 } else { 6 };
        seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
        seg
    }

    /// The extension headers' bytes, chained to the transport header.
    fn ext_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (_, rest)) in self.ext.iter().enumerate() {
            let next = self.ext.get(i + 1).map_or(self.proto(), |e| e.0);
            let len = (2 + rest.len()).div_ceil(8) * 8;
            let mut h = vec![0u8; len];
            h[0] = next;
            h[1] = (len / 8 - 1) as u8;
            h[2..2 + rest.len()].copy_from_slice(rest);
            out.extend_from_slice(&h);
        }
        out
    }

    pub fn bytes(&self) -> Vec<u8> {
        let ext = self.ext_bytes();
        let l4 = self.l4_bytes();
        let mut out = Vec::new();
        let _ = self.eth.write(&mut out);
        let first = (0x6000_0000u32 | (self.tc as u32) << 20 | self.flow).to_be_bytes();
        out.extend_from_slice(&first);
        out.extend_from_slice(&((ext.len() + l4.len()) as u16).to_be_bytes());
        out.push(self.ext.first().map_or(self.proto(), |e| e.0));
        out.push(self.hop_limit);
        out.extend_from_slice(&self.src.octets());
        out.extend_from_slice(&self.dst.octets());
        out.extend_from_slice(&ext);
        out.extend_from_slice(&l4);
        out
    }

    /// Bytes of the IP packet (what IPVS counts).
    pub fn ip_len(&self) -> u64 {
        (self.bytes().len() - Ethernet2Header::LEN) as u64
    }
}

pub fn sa6(ip: &str, port: u16) -> std::net::SocketAddrV6 {
    std::net::SocketAddrV6::new(ip.parse().expect("an IPv6 address"), port, 0, 0)
}
