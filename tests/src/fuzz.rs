//! Hostile-frame fuzzing of the real XDP object: a deterministic frame generator (random bytes
//! and mutations of valid frames of every path), an independent reference classifier of inputs,
//! an independent checker of forwarded frames (etherparse's slice parsers plus checksums computed
//! here), and a director lab (namespace with real routes and neighbours, services of every
//! method) to run them in through BPF_PROG_TEST_RUN.
use anyhow::anyhow;
use etherparse::{
    Icmpv4Type, IcmpEchoHeader,
    icmpv4::{DestUnreachableHeader, TimeExceededCode},
};
use lb_common::{GlobalStats, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_TCP, IPPROTO_UDP};
use lb_user::{
    model::Table,
    store::{CreateOptions, Store},
};

use crate::{
    frames::{self, ACK, FIN, Frame, Frame6, PSH, RST, SYN, arp_request, icmp, quote_of, sa, sa6},
    pins::TempPins,
    xdp::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX, XdpUnderTest},
};

// ------------------------------------------------------------------------------------------
// Deterministic PRNG (splitmix64): the same seed gives the same frames on every machine.

#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.u64() % n as u64) as usize
    }

    pub fn u8(&mut self) -> u8 {
        self.u64() as u8
    }

    pub fn u16(&mut self) -> u16 {
        self.u64() as u16
    }

    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: usize) -> bool {
        self.below(100) < pct
    }

    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len())]
    }

    /// One of `v`, or (one time in `v.len() + 1`) `other()`.
    pub fn pick_or<T: Copy>(&mut self, v: &[T], other: impl FnOnce(&mut Rng) -> T) -> T {
        let i = self.below(v.len() + 1);
        if i == v.len() { other(self) } else { v[i] }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }
}

// ------------------------------------------------------------------------------------------
// Checksums, computed here (not by etherparse nor the data plane).

fn sum16(data: &[u8], mut s: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        s += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = chunks.remainder() {
        s += (*last as u64) << 8;
    }
    s
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// True when `data` (with its checksum field in place) sums to 0xffff.
pub fn csum_ok(data: &[u8], initial: u64) -> bool {
    fold(sum16(data, initial)) == 0xffff
}

/// The IPv4 pseudo-header sum for a transport segment of `len` bytes.
fn pseudo(ip_hdr: &[u8], proto: u8, len: usize) -> u64 {
    sum16(&ip_hdr[12..20], 0) + proto as u64 + len as u64
}

/// Recomputes the IPv4 header checksum of the header at `ip[0..ihl]` (ihl from the header,
/// clamped to what is there).
pub fn fix_ip_csum(ip: &mut [u8]) {
    if ip.len() < 20 {
        return;
    }
    let ihl = ((ip[0] & 0x0f) as usize * 4).clamp(20, ip.len().min(60));
    ip[10] = 0;
    ip[11] = 0;
    let c = !fold(sum16(&ip[..ihl], 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

// ------------------------------------------------------------------------------------------
// Reference classification of an input frame: independent of the data plane's parser, written
// from the protocol rules (what the kernel's ip_rcv and IPVS need before they look at ports).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Not IPv4, or not a protocol/ICMP type the balancer handles.
    Other,
    /// Claims IPv4 but is truncated, inconsistent or a fragment: must never be forwarded.
    Malformed,
    /// Fully parsed TCP/UDP, or an ICMP error quoting a TCP/UDP packet.
    Ok,
}

#[derive(Clone, Copy, Debug)]
pub struct Input {
    pub class: Class,
    /// IPv4 header checksum valid (the kernel's ip_rcv drops the packet otherwise).
    pub ip_csum_ok: bool,
    /// Transport checksum valid (UDP 0 counts as valid).
    pub l4_csum_ok: bool,
    /// UDP length field consistent with the IP payload (IPVS does not check it).
    pub udp_len_ok: bool,
    pub proto: u8,
}

fn ipv4_hdr_ok(ip: &[u8]) -> Option<(usize, usize)> {
    if ip.len() < 20 {
        return None;
    }
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let tot = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    if ip[0] >> 4 != 4 || ihl < 20 || tot < ihl {
        return None;
    }
    Some((ihl, tot))
}

/// Where an IPv6 frame's transport header is, by RFC 8200's rules as the data plane applies
/// them (lb-ebpf parse6.rs: hop-by-hop first only, routing without segments left, destination
/// options, at most three; anything else goes to the kernel): `Ok((next header, its offset in
/// the frame, end of the datagram))`, or the class the frame has before its transport header.
fn ipv6_walk(f: &[u8]) -> Result<(u8, usize, usize), Class> {
    if f.len() < 14 + 8 || f[14] >> 4 != 6 {
        return Err(Class::Malformed);
    }
    let end = 54 + u16::from_be_bytes([f[18], f[19]]) as usize;
    if end > f.len() {
        return Err(Class::Malformed);
    }
    let (mut next, mut off) = (f[20], 54);
    for i in 0..3 {
        let walked = (next == 0 && i == 0) || next == 43 || next == 60;
        if !walked {
            break;
        }
        if off + 8 > end {
            return Err(Class::Malformed);
        }
        if next == 43 && f[off + 3] != 0 {
            return Err(Class::Other);
        }
        let len = (f[off + 1] as usize + 1) * 8;
        next = f[off];
        off += len;
        if off > end {
            return Err(Class::Malformed);
        }
    }
    if next != IPPROTO_TCP && next != IPPROTO_UDP && next != IPPROTO_ICMPV6 {
        return Err(Class::Other);
    }
    Ok((next, off, end))
}

/// [`classify6`] for ICMPv6 at `off`: an error (destination unreachable, packet too big, time
/// exceeded) quoting at least an IPv6 header and 8 bytes is `Ok` when the quote is TCP/UDP
/// (`l4_csum_ok`: the ICMPv6 checksum), `Other` otherwise; a shorter quote is malformed;
/// anything else ICMPv6 is the kernel's.
fn classify_icmp6(f: &[u8], off: usize, end: usize, r: &mut Input) {
    if off + 2 > f.len() {
        return;
    }
    if !matches!(f[off], 1..=3) {
        r.class = Class::Other;
        return;
    }
    let q = off + 8;
    if q + 48 > end || f[q] >> 4 != 6 {
        return;
    }
    if !matches!(f[q + 6], IPPROTO_TCP | IPPROTO_UDP) {
        r.class = Class::Other;
        return;
    }
    r.l4_csum_ok = csum_ok(&f[off..end], sum16(&f[22..54], 0) + IPPROTO_ICMPV6 as u64 + (end - off) as u64);
    r.class = Class::Ok;
}

/// [`classify`] for an IPv6 frame (no header checksum; UDP's is mandatory).
fn classify6(f: &[u8]) -> Input {
    let mut r = Input { class: Class::Malformed, ip_csum_ok: true, l4_csum_ok: false, udp_len_ok: true, proto: 0 };
    let (next, off, end) = match ipv6_walk(f) {
        Ok(w) => w,
        Err(c) => {
            r.class = c;
            return r;
        }
    };
    r.proto = next;
    if next == IPPROTO_ICMPV6 {
        classify_icmp6(f, off, end, &mut r);
        return r;
    }
    let l4 = &f[off..end];
    if next == IPPROTO_TCP {
        if l4.len() < 20 || ((l4[12] >> 4) as usize * 4) < 20 || (l4[12] >> 4) as usize * 4 > l4.len() {
            return r;
        }
    } else {
        if l4.len() < 8 {
            return r;
        }
        let ulen = u16::from_be_bytes([l4[4], l4[5]]) as usize;
        r.udp_len_ok = ulen == l4.len();
        if ulen < 8 || ulen > l4.len() || (l4[6] == 0 && l4[7] == 0) {
            return r;
        }
    }
    r.l4_csum_ok = csum_ok(l4, sum16(&f[22..54], 0) + next as u64 + l4.len() as u64);
    r.class = Class::Ok;
    r
}

pub fn classify(f: &[u8]) -> Input {
    let mut r = Input { class: Class::Other, ip_csum_ok: false, l4_csum_ok: false, udp_len_ok: true, proto: 0 };
    if f.len() >= 14 && u16::from_be_bytes([f[12], f[13]]) == 0x86dd {
        return classify6(f);
    }
    if f.len() < 14 || u16::from_be_bytes([f[12], f[13]]) != 0x0800 {
        return r;
    }
    let ip = &f[14..];
    r.class = Class::Malformed;
    let Some((ihl, tot)) = ipv4_hdr_ok(ip) else { return r };
    if tot > ip.len() {
        return r;
    }
    let ip = &ip[..tot];
    r.proto = ip[9];
    r.ip_csum_ok = csum_ok(&ip[..ihl], 0);
    // The data plane refuses an option-less header whose checksum is wrong (as ip_rcv does).
    if ihl == 20 && !r.ip_csum_ok {
        return r;
    }
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return r; // fragment
    }
    let l4 = &ip[ihl..];
    match ip[9] {
        IPPROTO_TCP => {
            if l4.len() < 20 {
                return r;
            }
            let doff = (l4[12] >> 4) as usize * 4;
            if doff < 20 || doff > l4.len() {
                return r;
            }
            r.l4_csum_ok = csum_ok(l4, pseudo(ip, IPPROTO_TCP, l4.len()));
            r.class = Class::Ok;
        }
        IPPROTO_UDP => {
            if l4.len() < 8 {
                return r;
            }
            let ulen = u16::from_be_bytes([l4[4], l4[5]]) as usize;
            r.udp_len_ok = ulen == l4.len();
            // A UDP length shorter than its header or past the datagram: refused (udp_rcv).
            if ulen < 8 || ulen > l4.len() {
                return r;
            }
            let has = u16::from_be_bytes([l4[6], l4[7]]) != 0;
            r.l4_csum_ok = !has || csum_ok(l4, pseudo(ip, IPPROTO_UDP, l4.len()));
            r.class = Class::Ok;
        }
        IPPROTO_ICMP => {
            // The ICMP header may lie in the frame's padding beyond the datagram: only the
            // error types that quote a packet matter here.
            let icmp_at = 14 + ihl;
            if f.len() < icmp_at + 8 {
                return r;
            }
            let ty = f[icmp_at];
            if !matches!(ty, 3 | 4 | 11) {
                r.class = Class::Other;
                return r;
            }
            let inner = &f[icmp_at + 8..];
            let Some((iihl, _)) = ipv4_hdr_ok(inner) else { return r };
            if ihl + 8 + iihl + 8 > tot {
                return r;
            }
            if !matches!(inner[9], IPPROTO_TCP | IPPROTO_UDP) || u16::from_be_bytes([inner[6], inner[7]]) & 0x1fff != 0 {
                r.class = Class::Other;
                return r;
            }
            r.l4_csum_ok = csum_ok(l4, 0);
            r.class = Class::Ok;
        }
        _ => r.class = Class::Other,
    }
    r
}

/// The reference of the data plane's gate (lb-common's `GATE_*`): the gate slots of the
/// table's service addresses and NAT real servers, taken from the configuration (not from the
/// gate map). A TCP/UDP packet whose destination slot holds no service address and whose
/// source slot holds no NAT real server goes to the kernel before its checksum and transport
/// header are looked at: it is `Other`, whatever else is wrong with it.
#[derive(Clone, Debug, Default)]
pub struct RefGate {
    to_service: std::collections::HashSet<u32>,
    from_nat: std::collections::HashSet<u32>,
}

impl RefGate {
    pub fn of(t: &lb_user::model::Table) -> RefGate {
        let v4 = |a: std::net::IpAddr| match a {
            std::net::IpAddr::V4(a) => Some(lb_common::gate_slot(u32::from_ne_bytes(a.octets()))),
            std::net::IpAddr::V6(a) => Some(gate_slot6(&a.octets())),
        };
        let mut g = RefGate::default();
        for s in &t.services {
            if let lb_user::model::SvcKey::Inet { addr, .. } = s.key {
                g.to_service.extend(v4(addr));
            }
            for d in s.dests.iter().filter(|d| d.fwd == lb_user::model::Fwd::Masq) {
                g.from_nat.extend(v4(d.addr));
            }
        }
        g
    }

    /// Whether the gate sends frame `f` to the kernel unparsed (TCP/UDP whose addresses it
    /// reads, to no service and from no NAT real server).
    pub fn gated_out(&self, f: &[u8]) -> bool {
        if f.len() >= 14 && u16::from_be_bytes([f[12], f[13]]) == 0x86dd {
            // Asked once the extension headers are walked, before the transport header (not
            // of ICMPv6).
            return ipv6_walk(f).is_ok_and(|(next, _, _)| next != IPPROTO_ICMPV6)
                && !self.to_service.contains(&gate_slot6(&f[38..54]))
                && !self.from_nat.contains(&gate_slot6(&f[22..38]));
        }
        if f.len() < 14 || u16::from_be_bytes([f[12], f[13]]) != 0x0800 {
            return false;
        }
        let ip = &f[14..];
        let Some((_, tot)) = ipv4_hdr_ok(ip) else { return false };
        if tot > ip.len() || ip[9] == IPPROTO_ICMP {
            return false;
        }
        let word = |o: usize| u32::from_ne_bytes([ip[o], ip[o + 1], ip[o + 2], ip[o + 3]]);
        !self.to_service.contains(&lb_common::gate_slot(word(16))) && !self.from_nat.contains(&lb_common::gate_slot(word(12)))
    }
}

/// An ICMPv6 error of type `ty` (code 0) from `src` to `dst` quoting `quote`, its checksum
/// computed here (or `corrupt`).
fn icmp6_error(macs: ([u8; 6], [u8; 6]), src: &str, dst: &str, hop: u8, ty: u8, quote: &[u8], corrupt: bool) -> Vec<u8> {
    let (s, d): (std::net::Ipv6Addr, std::net::Ipv6Addr) = (src.parse().unwrap_or(std::net::Ipv6Addr::LOCALHOST), dst.parse().unwrap_or(std::net::Ipv6Addr::LOCALHOST));
    let mut m = vec![ty, 0, 0, 0, 0, 0, 5, 0];
    m.extend_from_slice(quote);
    let sum = sum16(&m, sum16(&s.octets(), 0) + sum16(&d.octets(), 0) + IPPROTO_ICMPV6 as u64 + m.len() as u64);
    let c = !fold(sum) ^ if corrupt { 0x1234 } else { 0 };
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&macs.1);
    f.extend_from_slice(&macs.0);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(m.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, hop]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&d.octets());
    f.extend_from_slice(&m);
    f
}

/// The gate slot of the IPv6 address in `o` (16 bytes, network order).
fn gate_slot6(o: &[u8]) -> u32 {
    let w: [u32; 4] = std::array::from_fn(|i| u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]));
    lb_common::gate_slot6(&w)
}

// ------------------------------------------------------------------------------------------
// Checking a frame the data plane sends out.

/// Checks an IPv4 packet (header, then its transport or, once, an IPIP inner packet).
fn check_ip_packet(pkt: &[u8], inp: &Input, depth: u32) -> Result<&'static str, String> {
    let ip = etherparse::Ipv4Slice::from_slice(pkt).map_err(|e| format!("etherparse IPv4: {e}"))?;
    let h = ip.header().slice();
    if !csum_ok(h, 0) && inp.ip_csum_ok {
        return Err("bad IPv4 header checksum".into());
    }
    let pl = ip.payload();
    if pl.fragmented {
        return Err("forwarded a fragment".into());
    }
    let l4 = pl.payload;
    match h[9] {
        IPPROTO_TCP => {
            etherparse::TcpSlice::from_slice(l4).map_err(|e| format!("etherparse TCP: {e}"))?;
            if !csum_ok(l4, pseudo(h, IPPROTO_TCP, l4.len())) && inp.l4_csum_ok {
                return Err("bad TCP checksum".into());
            }
            Ok("tcp")
        }
        IPPROTO_UDP => {
            if !inp.udp_len_ok {
                // Forwarded as received (IPVS does not check UDP's length field either).
                return if l4.len() >= 8 { Ok("udp (bad length field, as received)") } else { Err("UDP header cut".into()) };
            }
            etherparse::UdpSlice::from_slice(l4).map_err(|e| format!("etherparse UDP: {e}"))?;
            let zero = l4[6] == 0 && l4[7] == 0;
            if !zero && !csum_ok(l4, pseudo(h, IPPROTO_UDP, l4.len())) && inp.l4_csum_ok {
                return Err("bad UDP checksum".into());
            }
            Ok("udp")
        }
        IPPROTO_ICMP => {
            etherparse::Icmpv4Slice::from_slice(l4).map_err(|e| format!("etherparse ICMP: {e}"))?;
            if !csum_ok(l4, 0) {
                return Err("bad ICMP checksum".into());
            }
            Ok("icmp")
        }
        IPPROTO_IPIP if depth == 0 => check_ip_packet(l4, inp, 1).map(|k| if k == "tcp" { "ipip(tcp)" } else { "ipip" }),
        IPPROTO_IPV6 if depth == 0 => check_ip6_packet(l4, inp, 1).map(|_| "ip6 in ipv4"),
        p => Err(format!("unexpected protocol {p}")),
    }
}

/// Checks an IPv6 packet: its header and the extension headers the data plane walks, then its
/// transport (checksum over the pseudo-header valid wherever the received one was) or, once, an
/// IPv6-in-IPv6 inner packet.
fn check_ip6_packet(pkt: &[u8], inp: &Input, depth: u32) -> Result<&'static str, String> {
    if pkt.len() < 40 || pkt[0] >> 4 != 6 {
        return Err("not an IPv6 header".into());
    }
    let end = 40 + u16::from_be_bytes([pkt[4], pkt[5]]) as usize;
    if end > pkt.len() {
        return Err("IPv6 payload length past the frame".into());
    }
    let (mut next, mut off) = (pkt[6], 40);
    while matches!(next, 0 | 43 | 60) {
        if off + 8 > end {
            return Err("extension header cut".into());
        }
        let len = (pkt[off + 1] as usize + 1) * 8;
        next = pkt[off];
        off += len;
        if off > end {
            return Err("extension header past the payload".into());
        }
    }
    let l4 = &pkt[off..end];
    let pseudo6 = |proto: u8| sum16(&pkt[8..40], 0) + proto as u64 + l4.len() as u64;
    match next {
        IPPROTO_TCP => {
            etherparse::TcpSlice::from_slice(l4).map_err(|e| format!("etherparse TCP: {e}"))?;
            if !csum_ok(l4, pseudo6(IPPROTO_TCP)) && inp.l4_csum_ok {
                return Err("bad TCP checksum (IPv6)".into());
            }
            Ok("tcp6")
        }
        IPPROTO_UDP => {
            if !inp.udp_len_ok {
                return if l4.len() >= 8 { Ok("udp6 (bad length field, as received)") } else { Err("UDP header cut".into()) };
            }
            etherparse::UdpSlice::from_slice(l4).map_err(|e| format!("etherparse UDP: {e}"))?;
            if l4[6] == 0 && l4[7] == 0 {
                return Err("UDP without checksum in IPv6".into());
            }
            if !csum_ok(l4, pseudo6(IPPROTO_UDP)) && inp.l4_csum_ok {
                return Err("bad UDP checksum (IPv6)".into());
            }
            Ok("udp6")
        }
        IPPROTO_ICMPV6 => {
            if !csum_ok(l4, pseudo6(IPPROTO_ICMPV6)) {
                return Err("bad ICMPv6 checksum".into());
            }
            Ok("icmp6")
        }
        IPPROTO_IPV6 if depth == 0 => check_ip6_packet(l4, inp, 1).map(|k| if k == "icmp6" { "ip6ip6(icmp6)" } else { "ip6ip6" }),
        IPPROTO_IPIP if depth == 0 => check_ip_packet(l4, inp, 1).map(|_| "ipv4 in ip6"),
        p => Err(format!("unexpected next header {p}")),
    }
}

/// Checks a forwarded Ethernet frame with etherparse's slice parsers (Ethernet II, IPv4,
/// TCP/UDP/ICMP, or IPIP around such a packet) and checksums computed here: valid wherever the
/// received frame's were. Returns what it was.
pub fn check_forwarded(out: &[u8], inp: &Input) -> Result<&'static str, String> {
    let eth = etherparse::Ethernet2Slice::from_slice_without_fcs(out).map_err(|e| format!("etherparse Ethernet: {e}"))?;
    if eth.ether_type() == etherparse::EtherType::IPV6 {
        return check_ip6_packet(eth.payload_slice(), inp, 0);
    }
    if eth.ether_type() != etherparse::EtherType::IPV4 {
        return Err("not an IP frame".into());
    }
    check_ip_packet(eth.payload_slice(), inp, 0)
}

// ------------------------------------------------------------------------------------------
// The director lab (the fixture suite's): services of every method.

pub use crate::director::*;

/// A namespace made to look like a director (as the fixture suite's), the table committed to a
/// private pin directory with a connection table of `max_conns` entries.
pub struct Lab {
    pub director: DirectorNs,
    pub pins: TempPins,
    pub opts: CreateOptions,
}

impl Lab {
    pub fn new(tag: &str, t: &Table, max_conns: u32) -> anyhow::Result<Lab> {
        let pins = TempPins::new(tag)?;
        let opts = CreateOptions { max_conns };
        {
            let mut st = Store::open_at(pins.path(), opts)?;
            let before = st.load()?;
            st.commit(&before, t)?;
        }
        let director = DirectorNs::new(tag, &[VIP_DR, VIP_TUN, VIP_NAT, VIP_ALL, VIP_LOCAL])?;
        Ok(Lab { director, pins, opts })
    }

    /// Runs `f` on a thread inside the lab's network namespace (BPF_PROG_TEST_RUN resolves the
    /// ingress ifindex and the FIB in the caller's namespace) with `xlb_xdp` (and `xlb_new`)
    /// loaded.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce(&mut XdpUnderTest) -> R + Send + 'static) -> anyhow::Result<R> {
        let name = self.director.ns.name.clone();
        let path = self.pins.path().to_path_buf();
        let opts = self.opts;
        std::thread::spawn(move || -> anyhow::Result<R> {
            let file = std::fs::File::open(format!("/run/netns/{name}"))?;
            use std::os::fd::AsRawFd as _;
            anyhow::ensure!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == 0, "setns");
            let mut dut = XdpUnderTest::load_with(&path, opts, "xlb_xdp")?;
            Ok(f(&mut dut))
        })
        .join()
        .map_err(|_| anyhow!("lab thread panicked"))?
    }

    pub fn global(&self) -> anyhow::Result<GlobalStats> {
        Store::open_at(self.pins.path(), self.opts)?.global_stats()
    }

    pub fn table(&self) -> anyhow::Result<Table> {
        Store::open_at(self.pins.path(), self.opts)?.load()
    }

    /// The connection table as `ipvsadm -Lnc` lists it.
    pub fn connections(&self) -> anyhow::Result<Vec<lb_user::model::ConnEntry>> {
        Store::open_at(self.pins.path(), self.opts)?.connections()
    }
}

// ------------------------------------------------------------------------------------------
// The generator.

/// One generated input.
pub struct Case {
    pub frame: Vec<u8>,
    /// Arrives on eth1 (the NAT real servers' side) rather than eth0.
    pub from_servers: bool,
    /// What it was built as (for reports).
    pub kind: &'static str,
    /// Mutated after building (or random bytes).
    pub mutated: bool,
}

pub struct Gen {
    pub rng: Rng,
    eth0_mac: [u8; 6],
    eth1_mac: [u8; 6],
}

const KINDS: &[&str] = &[
    "dr-tcp", "dr-udp", "tun-tcp", "tun-udp", "nat-tcp", "nat-udp", "nat-reply-tcp", "nat-reply-udp", "port0", "local",
    "icmp-about-conn", "icmp-from-server", "other", "big", "options",
];

/// The IPv6 paths, a fifth of the valid frames (the IPv4 share still fills its connection
/// table).
const KINDS6: &[&str] = &[
    "dr6-tcp", "dr6-udp", "tun6-tcp", "tun6-mixed", "nat6-tcp", "nat6-udp", "nat6-reply-tcp", "nat6-reply-udp", "ext6", "other6",
    "icmp6-about-conn", "icmp6-from-server", "tun46",
];

impl Gen {
    pub fn new(seed: u64, lab: &Lab) -> Gen {
        Gen { rng: Rng::new(seed), eth0_mac: lab.director.eth0_mac, eth1_mac: lab.director.eth1_mac }
    }

    fn client(&mut self) -> [u8; 4] {
        match self.rng.below(10) {
            0..=4 => CLIENT,
            5..=6 => CLIENT2,
            7 => CLIENT3,
            // Anywhere: many flows (fills the connection table), routes that do not exist.
            _ => [self.rng.pick(&[10, 172, 203, 192]), self.rng.u8(), self.rng.u8(), self.rng.u8().max(1)],
        }
    }

    fn cport(&mut self) -> u16 {
        if self.rng.chance(80) { 40000 + self.rng.below(48) as u16 } else { self.rng.u16() }
    }

    fn tcp_flags(&mut self) -> u8 {
        self.rng.pick(&[SYN, SYN, SYN, ACK, ACK | PSH, FIN | ACK, RST, SYN | ACK, SYN | RST, 0, 0xff])
            | if self.rng.chance(5) { self.rng.u8() } else { 0 }
    }

    fn payload(&mut self) -> Vec<u8> {
        let n = match self.rng.below(10) {
            0..=5 => self.rng.below(16),
            6..=8 => self.rng.below(200),
            _ => self.rng.below(1500),
        };
        self.rng.bytes(n)
    }

    fn decorate(&mut self, f: Frame) -> Frame {
        let mut f = f.payload(&self.payload()).macs(frames::CLIENT_MAC, self.eth0_mac);
        if self.rng.chance(10) {
            f = f.ttl(self.rng.pick(&[0, 1, 2, 255]));
        }
        if self.rng.chance(10) {
            f = f.tos(self.rng.u8());
        }
        if self.rng.chance(20) {
            f = f.no_df();
        }
        if self.rng.chance(5) {
            f = f.udp_no_checksum();
        }
        if self.rng.chance(5) {
            let n = 4 * (1 + self.rng.below(10));
            let opts = self.rng.bytes(n);
            f = f.ip_options(&opts);
        }
        f
    }

    fn tcp(&mut self, vip: [u8; 4], port: u16) -> Frame {
        let (c, p, fl) = (self.client(), self.cport(), self.tcp_flags());
        self.decorate(Frame::tcp(sa(c, p), sa(vip, port), fl))
    }

    fn udp(&mut self, vip: [u8; 4], port: u16) -> Frame {
        let (c, p) = (self.client(), self.cport());
        self.decorate(Frame::udp(sa(c, p), sa(vip, port)))
    }

    fn icmp_type(&mut self) -> Icmpv4Type {
        match self.rng.below(5) {
            0 => Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: self.rng.pick(&[0, 68, 576, 1300, 1500, 9000, 65535]),
            }),
            1 => Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Host),
            2 => Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
            3 => Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit),
            _ => Icmpv4Type::Unknown { type_u8: 4, code_u8: 0, bytes5to8: [0; 4] },
        }
    }

    fn client6(&mut self) -> String {
        match self.rng.below(10) {
            0..=4 => CLIENT6.to_string(),
            5..=6 => CLIENT6_2.to_string(),
            // Anywhere: many flows, routes that do not exist.
            _ => format!("2001:db8:{:x}::{:x}", self.rng.u16(), self.rng.u16().max(1)),
        }
    }

    fn decorate6(&mut self, f: Frame6) -> Frame6 {
        let mut f = f.payload(&self.payload()).macs(frames::CLIENT_MAC, self.eth0_mac);
        if self.rng.chance(10) {
            f = f.hop_limit(self.rng.pick(&[0, 1, 2, 255]));
        }
        if self.rng.chance(10) {
            f = f.traffic(self.rng.u8(), self.rng.u16() as u32);
        }
        if self.rng.chance(10) {
            // Extension headers the data plane walks (or one it does not).
            for _ in 0..1 + self.rng.below(4) {
                let kind = self.rng.pick(&[0, 43, 60, 60, 44, 135]);
                let n = if self.rng.chance(70) { 6 } else { 6 + 8 * self.rng.below(4) };
                let mut rest = self.rng.bytes(n);
                if kind == 43 && self.rng.chance(70) {
                    rest[1] = 0;
                }
                f = f.ext(kind, &rest);
            }
        }
        f
    }

    fn tcp6(&mut self, vip: &str, port: u16) -> Frame6 {
        let (c, p, fl) = (self.client6(), self.cport(), self.tcp_flags());
        self.decorate6(Frame6::tcp(sa6(&c, p), sa6(vip, port), fl))
    }

    fn udp6(&mut self, vip: &str, port: u16) -> Frame6 {
        let (c, p) = (self.client6(), self.cport());
        self.decorate6(Frame6::udp(sa6(&c, p), sa6(vip, port)))
    }

    /// A valid frame of one of the paths.
    pub fn valid(&mut self) -> (Vec<u8>, bool, &'static str) {
        let kind = if self.rng.chance(20) { self.rng.pick(KINDS6) } else { self.rng.pick(KINDS) };
        let e0 = self.eth0_mac;
        let e1 = self.eth1_mac;
        let bytes = match kind {
            "dr-tcp" => self.tcp(VIP_DR, 80).bytes(),
            "dr-udp" => self.udp(VIP_DR, 53).bytes(),
            "tun-tcp" => self.tcp(VIP_TUN, 80).bytes(),
            "tun-udp" => self.udp(VIP_TUN, 53).bytes(),
            "nat-tcp" => self.tcp(VIP_NAT, 80).bytes(),
            "nat-udp" => self.udp(VIP_NAT, 53).bytes(),
            "nat-reply-tcp" => {
                let (c, p, fl) = (self.client(), self.cport(), self.tcp_flags());
                let rs = self.rng.pick(&[NAT1, NAT2]);
                let f = self.decorate(Frame::tcp(sa(rs, 8080), sa(c, p), fl));
                f.macs(NAT1_MAC, e1).bytes()
            }
            "nat-reply-udp" => {
                let (c, p) = (self.client(), self.cport());
                let (rs, port) = self.rng.pick(&[(NAT1, 5353), (NAT2, 53)]);
                let f = self.decorate(Frame::udp(sa(rs, port), sa(c, p)));
                f.macs(NAT2_MAC, e1).bytes()
            }
            "port0" => {
                let port = self.rng.u16();
                self.tcp(VIP_ALL, port).bytes()
            }
            "local" => self.tcp(VIP_LOCAL, 80).bytes(),
            "dr6-tcp" => self.tcp6(VIP6_DR, 80).bytes(),
            "dr6-udp" => self.udp6(VIP6_DR, 53).bytes(),
            "tun6-tcp" => self.tcp6(VIP6_TUN, 80).bytes(),
            "tun6-mixed" => self.tcp6(VIP6_TUN, 8080).bytes(),
            "nat6-tcp" => self.tcp6(VIP6_NAT, 80).bytes(),
            "nat6-udp" => self.udp6(VIP6_NAT, 53).bytes(),
            "nat6-reply-tcp" => {
                let (c, p, fl) = (self.client6(), self.cport(), self.tcp_flags());
                let rs = self.rng.pick(&[NAT1_6, NAT2_6]);
                let f = self.decorate6(Frame6::tcp(sa6(rs, 8080), sa6(&c, p), fl));
                f.macs(NAT1_MAC, e1).bytes()
            }
            "nat6-reply-udp" => {
                let (c, p) = (self.client6(), self.cport());
                let (rs, port) = self.rng.pick(&[(NAT1_6, 5353), (NAT2_6, 53)]);
                let f = self.decorate6(Frame6::udp(sa6(rs, port), sa6(&c, p)));
                f.macs(NAT2_MAC, e1).bytes()
            }
            "ext6" => {
                let vip = self.rng.pick(&[VIP6_DR, VIP6_TUN, VIP6_NAT]);
                let mut f = self.tcp6(vip, 80);
                for _ in 0..1 + self.rng.below(3) {
                    let kind = self.rng.pick(&[0, 43, 60]);
                    f = f.ext(kind, &[0; 6]);
                }
                f.bytes()
            }
            "tun46" => self.tcp(VIP_TUN46, 80).bytes(),
            "icmp6-about-conn" => {
                // About a reply of some flow (VIP:port -> client): a router tells the VIP.
                let (vip, vport, udp) = self.rng.pick(&[(VIP6_DR, 80, false), (VIP6_DR, 53, true), (VIP6_TUN, 80, false), (VIP6_TUN, 8080, false), (VIP6_NAT, 80, false), (VIP6_NAT, 53, true)]);
                let (c, p) = (self.client6(), self.cport());
                let reply = if udp { Frame6::udp(sa6(vip, vport), sa6(&c, p)) } else { Frame6::tcp(sa6(vip, vport), sa6(&c, p), ACK) };
                let reply = reply.payload(&self.payload());
                let quote = reply.bytes()[14..].to_vec();
                let n = quote.len().min(self.rng.pick(&[48, 60, 200, 1184]));
                icmp6_error((ROUTER_MAC, e0), ROUTER6, vip, self.rng.pick(&[64, 64, 1]), self.rng.pick(&[1, 2, 3]), &quote[..n], self.rng.chance(5))
            }
            "icmp6-from-server" => {
                // A NAT real server about what the client sent it.
                let (c, p) = (self.client6(), self.cport());
                let (rs, port) = self.rng.pick(&[(NAT1_6, 5353), (NAT2_6, 53), (NAT1_6, 8080)]);
                let sent = if port == 8080 { Frame6::tcp(sa6(&c, p), sa6(rs, port), ACK) } else { Frame6::udp(sa6(&c, p), sa6(rs, port)) };
                let quote = sent.payload(&self.payload()).bytes()[14..].to_vec();
                icmp6_error((NAT2_MAC, e1), rs, &c, 64, 1, &quote, false)
            }
            "other6" => {
                let mut f = self.tcp6(DIP6, 22).bytes();
                if self.rng.chance(50) && f.len() > 20 {
                    // ICMPv6 (neighbour discovery, echo) or a protocol the balancer leaves alone.
                    f[20] = self.rng.pick(&[58, 50, 59, 132]);
                }
                f
            }
            "icmp-about-conn" => {
                // About a reply of some flow (VIP:port -> client): a router tells the VIP.
                let (vip, vport, udp) =
                    self.rng.pick(&[(VIP_DR, 80, false), (VIP_DR, 53, true), (VIP_TUN, 80, false), (VIP_NAT, 80, false), (VIP_NAT, 53, true), (VIP_ALL, 22, false)]);
                let (c, p) = (self.client(), self.cport());
                let reply =
                    if udp { Frame::udp(sa(vip, vport), sa(c, p)) } else { Frame::tcp(sa(vip, vport), sa(c, p), ACK) };
                let reply = reply.payload(&self.payload());
                let ty = self.icmp_type();
                let corrupt = self.rng.chance(5);
                icmp((ROUTER_MAC, e0), ROUTER, vip, self.rng.pick(&[64, 64, 1]), ty, &quote_of(&reply.bytes()), corrupt)
            }
            "icmp-from-server" => {
                // A NAT real server about what the client sent it.
                let (c, p) = (self.client(), self.cport());
                let (rs, port) = self.rng.pick(&[(NAT1, 5353), (NAT2, 53), (NAT1, 8080)]);
                let sent = if port == 8080 { Frame::tcp(sa(c, p), sa(rs, port), ACK) } else { Frame::udp(sa(c, p), sa(rs, port)) };
                let ty = self.icmp_type();
                let mut q = quote_of(&sent.bytes());
                if self.rng.chance(30) {
                    // Quote more than 8 bytes of payload, as Linux does.
                    let n = self.rng.below(64);
                    q.extend(self.rng.bytes(n));
                }
                icmp((NAT2_MAC, e1), rs, c, 64, ty, &q, false)
            }
            "other" => match self.rng.below(5) {
                0 => arp_request(CLIENT, VIP_DR),
                1 => icmp(
                    (frames::CLIENT_MAC, e0),
                    CLIENT,
                    VIP_DR,
                    64,
                    Icmpv4Type::EchoRequest(IcmpEchoHeader { id: 1, seq: self.rng.u16() }),
                    b"ping",
                    false,
                ),
                2 => self.tcp([192, 168, 88, 99], 80).bytes(),
                3 => {
                    let port = self.rng.u16();
                    self.tcp(VIP_DR, port).bytes()
                }
                _ => frames::ipip((ROUTER_MAC, e0), ROUTER, VIP_TUN, 64, 0, 0, true, &self.tcp(VIP_DR, 80).ip_bytes()),
            },
            "big" => {
                // At most ~2.9 KB: BPF_PROG_TEST_RUN puts what exceeds its linear area (about 3.5 KB) in
                // fragments the program (not frags-aware) does not see, as a NIC would not hand it.
                let n = 1300 + self.rng.below(1500);
                let (vip, port, udp) =
                    self.rng.pick(&[(VIP_TUN, 80, false), (VIP_DR, 80, false), (VIP_NAT, 80, false), (VIP_NAT, 53, true), (VIP_TUN, 53, true)]);
                let c = self.client();
                let p = self.cport();
                let f = if udp { Frame::udp(sa(c, p), sa(vip, port)) } else { Frame::tcp(sa(c, p), sa(vip, port), ACK) };
                let f = if udp && self.rng.chance(50) { f.udp_no_checksum() } else { f };
                f.payload(&self.rng.bytes(n)).macs(frames::CLIENT_MAC, e0).bytes()
            }
            _ => {
                // IP options of every length, then a path.
                let n = 4 * (1 + self.rng.below(10));
                let opts = self.rng.bytes(n);
                let vip = self.rng.pick(&[VIP_DR, VIP_TUN, VIP_NAT]);
                let f = self.tcp(vip, 80);
                f.ip_options(&opts).bytes()
            }
        };
        let from_servers = matches!(
            kind,
            "nat-reply-tcp" | "nat-reply-udp" | "icmp-from-server" | "nat6-reply-tcp" | "nat6-reply-udp" | "icmp6-from-server"
        );
        (bytes, from_servers, kind)
    }

    /// One mutation of IPv6 frame `f` in place: its length and next-header fields, hop limit,
    /// an extension header's length, the transport header (or any of [`Gen::mutate`]'s).
    fn mutate6(&mut self, f: &mut [u8]) {
        if f.len() < 54 {
            return;
        }
        match self.rng.below(6) {
            0 => {
                let cur = u16::from_be_bytes([f[18], f[19]]);
                let v = match self.rng.below(3) {
                    0 => self.rng.u16(),
                    1 => cur.wrapping_add(1 + self.rng.below(8) as u16),
                    _ => cur.wrapping_sub(1 + self.rng.below(8) as u16),
                };
                f[18..20].copy_from_slice(&v.to_be_bytes());
            }
            1 => f[20] = self.rng.pick_or(&[0, 6, 17, 43, 44, 58, 59, 60, 135], Rng::u8),
            2 => f[21] = self.rng.pick(&[0, 1, 2, 255]),
            3 => {
                // The first extension header's length, or the TCP data offset, or the UDP length.
                if f.len() > 56 {
                    f[55] = self.rng.u8();
                }
            }
            4 => {
                if f.len() > 66 {
                    f[54 + 12] = self.rng.u8();
                    f[54 + 4] = self.rng.u8();
                }
            }
            _ => {
                if f.len() > 61 {
                    f[60] = 0;
                    f[61] = 0;
                }
            }
        }
    }

    /// One mutation of `f` in place.
    pub fn mutate(&mut self, f: &mut Vec<u8>) {
        let v6 = f.len() > 14 && f[12..14] == [0x86, 0xdd];
        if v6 && self.rng.chance(50) {
            self.mutate6(f);
            return;
        }
        let fix = self.rng.chance(60);
        let ihl = if f.len() > 14 { (f[14] & 0x0f) as usize * 4 } else { 20 };
        let l4 = 14 + ihl.max(20);
        match self.rng.below(16) {
            0 => {
                let n = self.rng.below(f.len() + 1);
                f.truncate(n)
            }
            1 => {
                let n = 1 + self.rng.below(64);
                let extra = self.rng.bytes(n);
                f.extend(extra)
            }
            2 => {
                if !f.is_empty() {
                    let i = if self.rng.chance(70) { self.rng.below(f.len().min(80)) } else { self.rng.below(f.len()) };
                    f[i] ^= 1 << self.rng.below(8);
                }
            }
            3 => {
                if f.len() > 14 {
                    f[14] = (f[14] & 0xf0) | self.rng.below(16) as u8;
                }
            }
            4 => {
                if f.len() > 17 {
                    let cur = u16::from_be_bytes([f[16], f[17]]);
                    let v = match self.rng.below(4) {
                        0 => self.rng.u16(),
                        1 => cur.wrapping_add(1 + self.rng.below(8) as u16),
                        2 => cur.wrapping_sub(1 + self.rng.below(8) as u16),
                        _ => self.rng.pick(&[0, 1, 19, 20, 27, 28, 39, 40, 65535]),
                    };
                    f[16..18].copy_from_slice(&v.to_be_bytes());
                }
            }
            5 => {
                if f.len() > 21 {
                    let v = match self.rng.below(3) {
                        0 => 0x2000,
                        1 => self.rng.u16() & 0x1fff,
                        _ => self.rng.u16(),
                    };
                    f[20..22].copy_from_slice(&v.to_be_bytes());
                }
            }
            6 => {
                if f.len() > 14 {
                    f[14] = (self.rng.u8() & 0xf0) | (f[14] & 0x0f);
                }
            }
            7 => {
                if f.len() > 25 {
                    f[24] ^= 1 + self.rng.u8() % 255;
                }
                return;
            }
            8 => {
                // Transport checksum (TCP offset 16, UDP 6, ICMP 2).
                let off = match f.get(23) {
                    Some(&6) => 16,
                    Some(&17) => 6,
                    _ => 2,
                };
                if f.len() > l4 + off + 1 {
                    f[l4 + off] ^= 1 + self.rng.u8() % 255;
                }
                return;
            }
            9 => {
                if f.len() > l4 + 12 && f.get(23) == Some(&6) {
                    f[l4 + 12] = (self.rng.below(16) as u8) << 4 | (f[l4 + 12] & 0x0f);
                }
            }
            10 => {
                if f.len() > l4 + 5 && f.get(23) == Some(&17) {
                    let v = self.rng.pick_or(&[0u16, 7, 8, 9], Rng::u16);
                    f[l4 + 4..l4 + 6].copy_from_slice(&v.to_be_bytes());
                }
            }
            11 => {
                if f.len() > 23 {
                    f[23] = self.rng.pick_or(&[0, 1, 4, 6, 17, 41, 47, 132], Rng::u8);
                }
            }
            12 => {
                if f.len() > 13 {
                    let t: u16 = self.rng.pick_or(&[0x86dd, 0x0806, 0x8100, 0x88a8, 0x0801], Rng::u16);
                    f[12..14].copy_from_slice(&t.to_be_bytes());
                }
            }
            13 => {
                // The quoted packet of an ICMP error: its header length, length, or cut short.
                let inner = l4 + 8;
                if f.len() > inner + 3 {
                    match self.rng.below(3) {
                        0 => f[inner] = self.rng.u8(),
                        1 => f[inner + 2..inner + 4].copy_from_slice(&self.rng.u16().to_be_bytes()),
                        _ => {
                            let n = inner + self.rng.below(f.len() - inner);
                            f.truncate(n);
                        }
                    }
                }
            }
            14 => {
                if f.len() > 22 {
                    f[22] = self.rng.pick(&[0, 1, 2]);
                }
            }
            _ => {
                // Random bytes over a stretch of the headers.
                if !f.is_empty() {
                    let at = self.rng.below(f.len().min(100));
                    let n = (1 + self.rng.below(8)).min(f.len() - at);
                    for b in &mut f[at..at + n] {
                        *b = self.rng.u8();
                    }
                }
            }
        }
        if fix && !v6 && f.len() >= 34 {
            fix_ip_csum(&mut f[14..]);
        }
    }

    pub fn case(&mut self) -> Case {
        match self.rng.below(100) {
            0..=4 => {
                // Random bytes of any length (BPF_PROG_TEST_RUN refuses less than 14).
                let n = self.rng.pick(&[0usize, 1, 13, 14, 15, 33, 34, 42, 54, 60, 64, 128, 1514]).max(self.rng.below(100));
                let frame = self.rng.bytes(n);
                Case { frame, from_servers: self.rng.chance(20), kind: "random", mutated: true }
            }
            5..=11 => {
                // An Ethernet IPv4 frame with random contents, often with a plausible first byte
                // and a valid header checksum.
                let n = 14 + self.rng.below(120);
                let mut frame = self.rng.bytes(n);
                frame[0..6].copy_from_slice(&self.eth0_mac);
                frame[12..14].copy_from_slice(&[0x08, 0x00]);
                if n > 14 && self.rng.chance(70) {
                    frame[14] = 0x45;
                    if n > 23 && self.rng.chance(60) {
                        frame[23] = self.rng.pick(&[1, 6, 17]);
                        frame[20] &= 0x40;
                        frame[21] = 0;
                        let tot = (n - 14) as u16;
                        frame[16..18].copy_from_slice(&tot.to_be_bytes());
                    }
                    if n >= 34 {
                        fix_ip_csum(&mut frame[14..]);
                    }
                }
                Case { frame, from_servers: self.rng.chance(20), kind: "random-ipv4", mutated: true }
            }
            45..=49 => {
                // An Ethernet IPv6 frame with random contents, often with a plausible version,
                // payload length and next header, and a VIP as destination.
                let n = 14 + self.rng.below(140);
                let mut frame = self.rng.bytes(n);
                frame[0..6].copy_from_slice(&self.eth0_mac);
                frame[12..14].copy_from_slice(&[0x86, 0xdd]);
                if n > 54 && self.rng.chance(80) {
                    frame[14] = 0x60 | (frame[14] & 0x0f);
                    let plen = (n - 54) as u16;
                    frame[18..20].copy_from_slice(&plen.to_be_bytes());
                    frame[20] = self.rng.pick(&[0, 6, 17, 43, 44, 58, 60]);
                    if self.rng.chance(70) {
                        let vip = self.rng.pick(&[VIP6_DR, VIP6_TUN, VIP6_NAT]);
                        frame[38..54].copy_from_slice(&vip.parse::<std::net::Ipv6Addr>().map(|a| a.octets()).unwrap_or([0; 16]));
                    }
                }
                Case { frame, from_servers: self.rng.chance(20), kind: "random-ipv6", mutated: true }
            }
            12..=44 => {
                let (frame, from_servers, kind) = self.valid();
                Case { frame, from_servers, kind, mutated: false }
            }
            _ => {
                let (mut frame, from_servers, kind) = self.valid();
                for _ in 0..1 + self.rng.below(3) {
                    self.mutate(&mut frame);
                }
                Case { frame, from_servers, kind, mutated: true }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Running and judging.

/// Verdict and outcome counts of a run.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub runs: u64,
    /// Frames BPF_PROG_TEST_RUN refused (shorter than an Ethernet header, larger than a page).
    pub refused: u64,
    pub verdicts: [u64; 5],
    pub classes: [u64; 3],
    /// Forwarded frames (TX/REDIRECT, and the slow path's marked PASS) checked.
    pub forwarded_checked: u64,
    pub slow_path: u64,
    /// The table's `Config::slow_path_tag`: a passed frame that starts with it was handed to
    /// the tc slow path (its MAC addresses replaced by the mark).
    pub slow_path_tag: u32,
    /// Forwarded although the received IPv4 header checksum was wrong (the kernel's ip_rcv,
    /// in front of IPVS, drops such packets): only headers with options, which the data plane
    /// does not check (lb-ebpf parse.rs `ipv4_checksum_ok`; their checksum goes on as wrong as
    /// it came). An option-less one is `Malformed` and forwarding it is a violation.
    pub forwarded_bad_ip_csum: u64,
    pub forwarded_bad_l4_csum: u64,
    pub forwarded_bad_udp_len: u64,
    pub forwarded_kinds: std::collections::BTreeMap<&'static str, u64>,
    pub violations: Vec<String>,
    pub violation_count: u64,
    /// Violations by kind: (count, first example).
    pub violation_kinds: std::collections::BTreeMap<String, u64>,
    /// What the gate lets through, from the lab's configuration.
    pub gate: RefGate,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Tally {
    fn violation(&mut self, what: String, case: &Case, out: &[u8]) {
        self.violation_count += 1;
        let kind: String = what.split(':').next().unwrap_or_default().to_string();
        let n = self.violation_kinds.entry(kind).or_default();
        *n += 1;
        if *n <= 2 && self.violations.len() < 40 {
            self.violations.push(format!(
                "{what} [{}{}{}]\n   in:  {}\n   out: {}",
                case.kind,
                if case.mutated { ", mutated" } else { "" },
                if case.from_servers { ", from eth1" } else { "" },
                hex(&case.frame),
                hex(out)
            ));
        }
    }

    /// Judges one run of `case` that returned `verdict` and `out`.
    pub fn judge(&mut self, case: &Case, verdict: u32, out: &[u8]) {
        self.runs += 1;
        let mut inp = classify(&case.frame);
        if inp.class != Class::Other && self.gate.gated_out(&case.frame) {
            inp.class = Class::Other;
        }
        self.classes[inp.class as usize] += 1;
        if let Some(v) = self.verdicts.get_mut(verdict as usize) {
            *v += 1;
        }
        let tag = self.slow_path_tag.to_ne_bytes();
        let forwarded = match verdict {
            XDP_TX | XDP_REDIRECT => Some(out),
            XDP_PASS if out.len() >= 14 && out[..4] == tag => {
                self.slow_path += 1;
                Some(out)
            }
            XDP_PASS => {
                if out != case.frame.as_slice() {
                    self.violation("XDP_PASS without the slow-path mark but the frame was changed".into(), case, out);
                }
                None
            }
            XDP_DROP => None,
            XDP_ABORTED => {
                self.violation("XDP_ABORTED".into(), case, out);
                None
            }
            v => {
                self.violation(format!("unknown verdict {v}"), case, out);
                None
            }
        };
        let Some(fwd) = forwarded else { return };
        if inp.class != Class::Ok {
            self.violation(format!("forwarded (verdict {verdict}) a frame classified {:?}", inp.class), case, out);
            return;
        }
        self.forwarded_checked += 1;
        if !inp.ip_csum_ok {
            self.forwarded_bad_ip_csum += 1;
        }
        if !inp.l4_csum_ok {
            self.forwarded_bad_l4_csum += 1;
        }
        if !inp.udp_len_ok {
            self.forwarded_bad_udp_len += 1;
        }
        match check_forwarded(fwd, &inp) {
            Ok(k) => *self.forwarded_kinds.entry(k).or_default() += 1,
            Err(e) => self.violation(format!("forwarded frame (verdict {verdict}) is not well formed: {e}"), case, out),
        }
    }

    /// Counter consistency: every run counted once (rx), by the verdict it returned, and every
    /// frame the reference calls malformed counted as a parse failure.
    pub fn check_counters(&self, g: &GlobalStats, before: &GlobalStats) -> Vec<String> {
        let mut v = Vec::new();
        let d = |a: u64, b: u64| a - b;
        let ran = self.runs;
        let [ab, dr, pa, tx, rd] = self.verdicts;
        let mut eq = |what: &str, got: u64, want: u64| {
            if got != want {
                v.push(format!("{what}: counter {got}, verdicts {want}"));
            }
        };
        eq("rx", d(g.rx, before.rx), ran);
        eq("pass", d(g.pass, before.pass), pa);
        eq("tx", d(g.tx, before.tx), tx);
        eq("redirect", d(g.redirect, before.redirect), rd);
        eq("drop (incl. aborted)", d(g.drop, before.drop), dr + ab);
        eq("parse_fail", d(g.parse_fail, before.parse_fail), self.classes[Class::Malformed as usize]);
        if d(g.conn_new, before.conn_new) > self.classes[Class::Ok as usize] {
            v.push(format!("conn_new {} > fully parsed frames", d(g.conn_new, before.conn_new)));
        }
        v
    }

    pub fn summary(&self) -> String {
        format!(
            "{} frames run ({} refused by BPF_PROG_TEST_RUN); classes other/malformed/ok = {:?}; verdicts aborted/drop/pass/tx/redirect = {:?}; {} forwarded frames checked ({} via the slow path) {:?}; forwarded with a bad received IPv4 checksum (header with options): {}, bad L4 checksum: {}, bad UDP length: {}; {} violations {:?}",
            self.runs,
            self.refused,
            self.classes,
            self.verdicts,
            self.forwarded_checked,
            self.slow_path,
            self.forwarded_kinds,
            self.forwarded_bad_ip_csum,
            self.forwarded_bad_l4_csum,
            self.forwarded_bad_udp_len,
            self.violation_count,
            self.violation_kinds
        )
    }
}

/// Runs `n` generated frames from `seed` through the lab's data plane and judges each.
pub fn fuzz(lab: &Lab, seed: u64, n: u64) -> anyhow::Result<Tally> {
    let mut g = Gen::new(seed, lab);
    let (eth0, eth1) = (lab.director.eth0, lab.director.eth1);
    let store = Store::open_at(lab.pins.path(), lab.opts)?;
    let slow_path_tag = store.config()?.slow_path_tag;
    let gate = RefGate::of(&store.load()?);
    drop(store);
    lab.run(move |dut| {
        let mut t = Tally { slow_path_tag, gate, ..Tally::default() };
        let mut done = 0;
        while done < n {
            let case = g.case();
            let ingress = if case.from_servers { eth1 } else { eth0 };
            match dut.run_on(&case.frame, ingress) {
                Ok(r) => {
                    t.judge(&case, r.verdict, &r.frame);
                    done += 1;
                }
                Err(_) => {
                    // Only sizes the kernel cannot take may be refused.
                    if (14..=3000).contains(&case.frame.len()) {
                        t.violation("BPF_PROG_TEST_RUN refused a frame of an acceptable size".into(), &case, &[]);
                    }
                    t.refused += 1;
                }
            }
        }
        t
    })
}

/// The number of frames to run: `XLB_FUZZ_FRAMES`, else `default`.
pub fn frames_from_env(default: u64) -> u64 {
    std::env::var("XLB_FUZZ_FRAMES").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// The seed: `XLB_FUZZ_SEED`, else `default`.
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var("XLB_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}
