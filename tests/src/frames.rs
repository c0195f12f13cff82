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
