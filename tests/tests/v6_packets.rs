//! IPv6 packet fixtures (the IPv4 suite's way, fixtures.rs): one table of IPv6 services (DR,
//! NAT66 with port mapping, a persistent all-ports service with a /64 `-M` prefix), the real XDP
//! object (`xlb_xdp`, tail-calling `xlb_xdp6` and its programs), frames built independently
//! (tests/src/frames.rs's `Frame6`: full checksums over the IPv6 pseudo-header, where the data
//! plane updates them incrementally) and compared byte for byte.
//!
//! The program runs in a namespace made to look like an IPv6 director: eth0 (clients, VIPs, DR
//! real servers: 2001:db8:88::/64), eth1 (NAT real servers: 2001:db8:99::/64), forwarding on,
//! permanent neighbours: next hops come from the kernel's FIB (`bpf_fib_lookup` AF_INET6).
use std::net::{IpAddr, Ipv6Addr};

use lb_common::GlobalStats;
use lb_user::{
    model::{Fwd, Proto, Service, Table},
    store::Store,
};
use xlb_tests::{
    fixture::{self, Fixture},
    director::mac_str,
    frames::{ACK, CLIENT_MAC, DIRECTOR_MAC, Frame6, NEXTHDR_DEST, NEXTHDR_FRAGMENT, NEXTHDR_HOP, NEXTHDR_ROUTING, PSH, RST, SYN, sa6},
    netns::{Netns, unique_prefix},
    pins::TempPins,
    table::{service, table},
    xdp::{XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX, XdpUnderTest},
};

const CLIENT: &str = "2001:db8:88::10";
/// In the client's /64: the same persistence template as CLIENT under `-M 64`.
const CLIENT_SAME64: &str = "2001:db8:88::11";
/// Another /64, routed via the router.
const CLIENT_OTHER: &str = "2001:db8:77::10";
const ROUTER: &str = "2001:db8:88::1";
const VIP_DR: &str = "2001:db8:88::15";
const VIP_NAT: &str = "2001:db8:88::17";
const VIP_ALL: &str = "2001:db8:88::18";
const WEB1: &str = "2001:db8:88::100";
const WEB2: &str = "2001:db8:88::200";
const VIP_TUN: &str = "2001:db8:88::16";
const VIP_TUN4: &str = "2001:db8:88::19";
/// TUN real servers behind the router (a route with MTU 1400).
const TUN1: &str = "2001:db8:98::100";
const TUN2: &str = "2001:db8:98::200";
/// IPv4 TUN real servers of an IPv6 service (mixed families), behind the IPv4 router.
const TUN4_1: [u8; 4] = [10, 99, 0, 100];
const TUN4_2: [u8; 4] = [10, 99, 0, 200];
const DIP: &str = "2001:db8:88::5";
const DIP4: [u8; 4] = [192, 168, 88, 5];
const CLIENT4: [u8; 4] = [192, 168, 88, 10];
const VIP4_TUN46: [u8; 4] = [192, 168, 88, 20];
const TUN_MTU: usize = 1400;
const NAT1: &str = "2001:db8:99::100";
const NAT2: &str = "2001:db8:99::200";
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const WEB1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x64];
const WEB2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc8];
const NAT1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0x64];
const NAT2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0xc8];

fn ip6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().expect("IPv6 address"))
}

fn svc(id: u32, proto: Proto, vip: &str, port: u16, sched: &str, dests: &[(&str, u16, Fwd, i32)]) -> Service {
    let d: Vec<_> = dests.iter().map(|&(a, p, f, w)| (ip6(a), p, f, w)).collect();
    service(id, proto, ip6(vip), port, sched, &d)
}

/// DR (TCP, UDP), NAT66 with port mapping (TCP, UDP), and an all-ports DR service, persistent
/// per /64 (`-p 360 -M 64`); dest ids svc * 1024 + order, rr's first pick the last added.
fn v6_table() -> Table {
    let mut all = svc(4, Proto::Tcp, VIP_ALL, 0, "rr", &[(WEB1, 0, Fwd::Route, 1), (WEB2, 0, Fwd::Route, 1)]);
    all.flags = lb_common::SVC_F_PERSISTENT;
    all.timeout = 360;
    all.netmask = 64;
    table(vec![
        svc(0, Proto::Tcp, VIP_DR, 80, "rr", &[(WEB1, 80, Fwd::Route, 1), (WEB2, 80, Fwd::Route, 2)]),
        svc(1, Proto::Udp, VIP_DR, 53, "rr", &[(WEB1, 53, Fwd::Route, 1), (WEB2, 53, Fwd::Route, 1)]),
        svc(2, Proto::Tcp, VIP_NAT, 80, "rr", &[(NAT1, 8080, Fwd::Masq, 1), (NAT2, 8080, Fwd::Masq, 1)]),
        svc(3, Proto::Udp, VIP_NAT, 53, "rr", &[(NAT1, 5353, Fwd::Masq, 1), (NAT2, 53, Fwd::Masq, 1)]),
        all,
        svc(5, Proto::Tcp, VIP_TUN, 80, "rr", &[(TUN1, 80, Fwd::Tunnel, 1), (TUN2, 80, Fwd::Tunnel, 1)]),
        service(
            6,
            Proto::Tcp,
            ip6(VIP_TUN4),
            80,
            "rr",
            &[(IpAddr::from(TUN4_1), 80, Fwd::Tunnel, 1), (IpAddr::from(TUN4_2), 80, Fwd::Tunnel, 1)],
        ),
        // An IPv4 service with IPv6 tunnel real servers (mixed families the other way).
        service(7, Proto::Tcp, IpAddr::from(VIP4_TUN46), 80, "rr", &[(ip6(TUN1), 80, Fwd::Tunnel, 1), (ip6(TUN2), 80, Fwd::Tunnel, 1)]),
    ])
}

/// The IPv6 director namespace (see the module doc).
struct Director6 {
    ns: Netns,
    eth0: u32,
    eth1: u32,
    eth0_mac: [u8; 6],
    eth1_mac: [u8; 6],
}

impl Director6 {
    fn new(tag: &str) -> anyhow::Result<Director6> {
        let ns = Netns::new(&unique_prefix(tag))?;
        // Some hosts disable IPv6 by default (inherited by a new namespace).
        for key in ["net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"] {
            ns.sysctl(key, "0")?;
        }
        for (a, b) in [("eth0", "peer0"), ("eth1", "peer1")] {
            ns.ip(&["link", "add", a, "type", "veth", "peer", "name", b])?;
            ns.ip(&["link", "set", a, "up"])?;
            ns.ip(&["link", "set", b, "up"])?;
        }
        ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        ns.sysctl("net.ipv4.ip_forward", "1")?;
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.ip(&["-6", "addr", "add", &format!("{DIP}/64"), "dev", "eth0", "nodad"])?;
        ns.ip(&["-6", "addr", "add", "2001:db8:99::5/64", "dev", "eth1", "nodad"])?;
        ns.ip(&["addr", "add", "192.168.88.5/24", "dev", "eth0"])?;
        // The VIPs on lo: eth0's one global address is the route's source toward the tunnels.
        for vip in [VIP_DR, VIP_NAT, VIP_ALL, VIP_TUN, VIP_TUN4] {
            ns.ip(&["-6", "addr", "add", &format!("{vip}/128"), "dev", "lo", "nodad"])?;
        }
        ns.ip(&["-6", "route", "add", "2001:db8:77::/64", "via", ROUTER, "dev", "eth0"])?;
        // The FIB's forwarding view honours a route MTU only when locked.
        let mtu = TUN_MTU.to_string();
        ns.ip(&["-6", "route", "add", "2001:db8:98::/64", "via", ROUTER, "dev", "eth0", "mtu", "lock", &mtu])?;
        ns.ip(&["route", "add", "10.99.0.0/24", "via", "192.168.88.1", "mtu", "lock", &mtu])?;
        ns.ip(&["neigh", "replace", "192.168.88.1", "lladdr", &mac_str(ROUTER_MAC), "dev", "eth0", "nud", "permanent"])?;
        for (addr, mac, dev) in [
            (CLIENT, CLIENT_MAC, "eth0"),
            (CLIENT_SAME64, CLIENT_MAC, "eth0"),
            (ROUTER, ROUTER_MAC, "eth0"),
            (WEB1, WEB1_MAC, "eth0"),
            (WEB2, WEB2_MAC, "eth0"),
            (NAT1, NAT1_MAC, "eth1"),
            (NAT2, NAT2_MAC, "eth1"),
        ] {
            ns.ip(&["-6", "neigh", "replace", addr, "lladdr", &mac_str(mac), "dev", dev, "nud", "permanent"])?;
        }
        let read_mac = |dev: &str| -> anyhow::Result<[u8; 6]> {
            let txt = ns.exec("cat", &[&format!("/sys/class/net/{dev}/address")])?;
            let v: Vec<u8> = txt.trim().split(':').filter_map(|h| u8::from_str_radix(h, 16).ok()).collect();
            anyhow::ensure!(v.len() == 6, "bad MAC {txt}");
            Ok([v[0], v[1], v[2], v[3], v[4], v[5]])
        };
        let ifindex = |dev: &str| -> anyhow::Result<u32> {
            Ok(ns.exec("cat", &[&format!("/sys/class/net/{dev}/ifindex")])?.trim().parse()?)
        };
        Ok(Director6 { eth0: ifindex("eth0")?, eth1: ifindex("eth1")?, eth0_mac: read_mac("eth0")?, eth1_mac: read_mac("eth1")?, ns })
    }

    /// DR: the same packet to the real server's MAC from the director's, hop limit - 1.
    fn dr(&self, f: &Frame6, rs_mac: [u8; 6]) -> Vec<u8> {
        f.clone().macs(self.eth0_mac, rs_mac).hop_limit(f.hop_limit - 1).bytes()
    }

    /// TUN: IPv6-in-IPv6 to the real server via the router: outer hop limit = inner after the
    /// decrement, traffic class with ECN encapsulated, flow label 0, source = the director's
    /// address.
    fn tun(&self, f: &Frame6, rs: &str) -> Vec<u8> {
        let inner = f.clone().hop_limit(f.hop_limit - 1).bytes()[14..].to_vec();
        let mut out = Vec::new();
        out.extend_from_slice(&ROUTER_MAC);
        out.extend_from_slice(&self.eth0_mac);
        out.extend_from_slice(&[0x86, 0xdd]);
        let tc = encap_ecn(f.tc);
        out.extend_from_slice(&(0x6000_0000u32 | (tc as u32) << 20).to_be_bytes());
        out.extend_from_slice(&(inner.len() as u16).to_be_bytes());
        out.extend_from_slice(&[41, f.hop_limit - 1]);
        out.extend_from_slice(&DIP.parse::<Ipv6Addr>().expect("dip").octets());
        out.extend_from_slice(&rs.parse::<Ipv6Addr>().expect("rs").octets());
        out.extend_from_slice(&inner);
        out
    }

    /// [`Director6::tun`] of an already built IPv6 packet (`ip`: its bytes, hop limit already
    /// decremented, traffic class 0).
    fn tun_raw(&self, ip: &[u8], rs: &str) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&ROUTER_MAC);
        out.extend_from_slice(&self.eth0_mac);
        out.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        out.extend_from_slice(&(ip.len() as u16).to_be_bytes());
        out.extend_from_slice(&[41, ip[7]]);
        out.extend_from_slice(&DIP.parse::<Ipv6Addr>().expect("dip").octets());
        out.extend_from_slice(&rs.parse::<Ipv6Addr>().expect("rs").octets());
        out.extend_from_slice(ip);
        out
    }

    /// An IPv4 packet to an IPv6 tunnel real server: IPv4-in-IPv6 (next header 4), outer hop
    /// limit = inner TTL after the decrement, traffic class = TOS with ECN encapsulated.
    fn tun46(&self, f: &xlb_tests::frames::Frame, rs: &str) -> Vec<u8> {
        let inner = f.clone().ttl(f.ip.time_to_live - 1).ip_bytes();
        let tos = (f.ip.dscp.value() << 2) | f.ip.ecn.value();
        let tc = encap_ecn(tos);
        let mut out = Vec::new();
        out.extend_from_slice(&ROUTER_MAC);
        out.extend_from_slice(&self.eth0_mac);
        out.extend_from_slice(&[0x86, 0xdd]);
        out.extend_from_slice(&(0x6000_0000u32 | (tc as u32) << 20).to_be_bytes());
        out.extend_from_slice(&(inner.len() as u16).to_be_bytes());
        out.extend_from_slice(&[4, f.ip.time_to_live - 1]);
        out.extend_from_slice(&DIP.parse::<Ipv6Addr>().expect("dip").octets());
        out.extend_from_slice(&rs.parse::<Ipv6Addr>().expect("rs").octets());
        out.extend_from_slice(&inner);
        out
    }

    /// TUN to an IPv4 real server: IPv6-in-IPv4 (protocol 41), TTL = inner hop limit after the
    /// decrement, TOS = traffic class with ECN encapsulated, DF, id 0.
    fn tun4(&self, f: &Frame6, rs: [u8; 4]) -> Vec<u8> {
        let inner = f.clone().hop_limit(f.hop_limit - 1).bytes()[14..].to_vec();
        let tc = encap_ecn(f.tc);
        let mut ip = etherparse::Ipv4Header::new(inner.len() as u16, f.hop_limit - 1, etherparse::IpNumber(41), DIP4, rs)
            .expect("ipv4 header");
        // An IPv6 packet's IPv4 tunnel may be fragmented on the way (the kernel's df = 0 for an
        // IPv6 inner packet); its id is random (see `with_outer_id_of`).
        ip.dont_fragment = false;
        ip.dscp = etherparse::IpDscp::try_new(tc >> 2).expect("dscp");
        ip.ecn = etherparse::IpEcn::try_new(tc & 3).expect("ecn");
        ip.header_checksum = ip.calc_header_checksum();
        let mut out = Vec::new();
        out.extend_from_slice(&ROUTER_MAC);
        out.extend_from_slice(&self.eth0_mac);
        out.extend_from_slice(&[0x08, 0x00]);
        ip.write(&mut out).expect("write");
        out.extend_from_slice(&inner);
        out
    }

    /// NAT66 request: destination rewritten to the real server, out eth1.
    fn nat(&self, f: &Frame6, rs: &str, rport: u16, rs_mac: [u8; 6]) -> Vec<u8> {
        f.clone().dst(sa6(rs, rport)).macs(self.eth1_mac, rs_mac).hop_limit(f.hop_limit - 1).bytes()
    }

    /// NAT66 reply: source rewritten to the VIP, out eth0 to the client.
    fn nat_reply(&self, f: &Frame6, vip: &str, vport: u16) -> Vec<u8> {
        f.clone().src(sa6(vip, vport)).macs(self.eth0_mac, CLIENT_MAC).hop_limit(f.hop_limit - 1).bytes()
    }
}

/// `want` with the id of `got`'s outer IPv4 header (its checksum redone) when `want` is an
/// IPv6 packet in IPv4 without DF: the kernel picks that id at random (`ip_select_ident`), and
/// so does the data plane. Every other frame is compared as it is.
fn with_outer_id_of(want: &[u8], got: &[u8]) -> Vec<u8> {
    let mut w = want.to_vec();
    let v6_in_v4 = w.len() >= 34 && got.len() >= 34 && w[12..14] == [0x08, 0x00] && w[23] == 41 && w[20] & 0x40 == 0;
    if v6_in_v4 {
        w[18..20].copy_from_slice(&got[18..20]);
        w[24..26].copy_from_slice(&[0, 0]);
        let mut sum = 0u32;
        for c in w[14..34].chunks(2) {
            sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        w[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
    w
}

fn fixtures(d: &Director6) -> Vec<Fixture> {
    let mut v = Vec::new();
    let mut add = |name: &str, input: Vec<u8>, from_servers: bool, verdict: u32, output: Vec<u8>, malformed: bool| {
        v.push(Fixture { name: name.to_string(), input, from_servers, verdict, output, malformed });
    };

    // ---- DR6 (web2 was added last: first in IPVS's list, rr's first pick)
    let dr1 = Frame6::tcp(sa6(CLIENT, 40001), sa6(VIP_DR, 80), SYN).traffic(0x28, 0x12345);
    add("dr6 tcp: new connection (SYN) -> web2, MACs rewritten, hop limit - 1", dr1.bytes(), false, XDP_TX, d.dr(&dr1, WEB2_MAC), false);
    let dr2 = Frame6::tcp(sa6(CLIENT, 40002), sa6(VIP_DR, 80), SYN);
    add("dr6 tcp: next new connection -> web1 (rr)", dr2.bytes(), false, XDP_TX, d.dr(&dr2, WEB1_MAC), false);
    let dr1d = Frame6::tcp(sa6(CLIENT, 40001), sa6(VIP_DR, 80), ACK | PSH).payload(b"GET / HTTP/1.0\r\n\r\n");
    add("dr6 tcp: established flow keeps web2", dr1d.bytes(), false, XDP_TX, d.dr(&dr1d, WEB2_MAC), false);
    let dru = Frame6::udp(sa6(CLIENT, 5000), sa6(VIP_DR, 53)).payload(b"dns-query");
    add("dr6 udp: new flow -> web2", dru.bytes(), false, XDP_TX, d.dr(&dru, WEB2_MAC), false);
    add("dr6 udp: same flow again -> web2", dru.bytes(), false, XDP_TX, d.dr(&dru, WEB2_MAC), false);
    let ext = Frame6::tcp(sa6(CLIENT, 40003), sa6(VIP_DR, 80), SYN)
        .ext(NEXTHDR_HOP, &[1, 4, 0, 0, 0, 0])
        .ext(NEXTHDR_ROUTING, &[0, 0, 0, 0, 0, 0])
        .ext(NEXTHDR_DEST, &[1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    add(
        "dr6 tcp: hop-by-hop, routing (no segment left), destination options walked, forwarded intact -> web2",
        ext.bytes(),
        false,
        XDP_TX,
        d.dr(&ext, WEB2_MAC),
        false,
    );
    let hop1 = Frame6::tcp(sa6(CLIENT, 40001), sa6(VIP_DR, 80), ACK).hop_limit(1);
    let exceeded = xlb_tests::frames_tun::icmp6_error_reply(
        &hop1.bytes(),
        etherparse::Icmpv6Type::TimeExceeded(etherparse::icmpv6::TimeExceededCode::HopLimitExceeded),
    );
    add("dr6 tcp: hop limit 1 -> ICMPv6 time exceeded to the client from the VIP", hop1.bytes(), false, XDP_TX, exceeded, false);
    for (what, flags) in [("ACK", ACK), ("RST", RST), ("SYN+RST", SYN | RST)] {
        let f = Frame6::tcp(sa6(CLIENT, 40100), sa6(VIP_DR, 80), flags).bytes();
        add(&format!("dr6 tcp: {what} without a connection -> kernel, untouched"), f.clone(), false, XDP_PASS, f, false);
    }

    // ---- what goes to the kernel untouched
    let untouched = |f: Vec<u8>| (f.clone(), f);
    let frag = Frame6::tcp(sa6(CLIENT, 40004), sa6(VIP_DR, 80), SYN).ext(NEXTHDR_FRAGMENT, &[0, 1, 0, 0, 0, 7]).bytes();
    let (i, o) = untouched(frag);
    add("v6: fragment header -> kernel, untouched", i, false, XDP_PASS, o, false);
    let routed = Frame6::tcp(sa6(CLIENT, 40005), sa6(VIP_DR, 80), SYN).ext(NEXTHDR_ROUTING, &[0, 1, 0, 0, 0, 0]).bytes();
    let (i, o) = untouched(routed);
    add("v6: routing header with a segment left -> kernel, untouched", i, false, XDP_PASS, o, false);
    let unknown = Frame6::tcp(sa6(CLIENT, 40006), sa6(VIP_DR, 80), SYN).ext(135, &[0, 0, 0, 0, 0, 0]).bytes();
    let (i, o) = untouched(unknown);
    add("v6: unknown extension header (mobility) -> kernel, untouched", i, false, XDP_PASS, o, false);
    let four = Frame6::tcp(sa6(CLIENT, 40007), sa6(VIP_DR, 80), SYN)
        .ext(NEXTHDR_HOP, &[0; 6])
        .ext(NEXTHDR_DEST, &[0; 6])
        .ext(NEXTHDR_ROUTING, &[0; 6])
        .ext(NEXTHDR_DEST, &[0; 6])
        .bytes();
    let (i, o) = untouched(four);
    add("v6: four extension headers (more than walked) -> kernel, untouched", i, false, XDP_PASS, o, false);
    let late_hop = Frame6::tcp(sa6(CLIENT, 40008), sa6(VIP_DR, 80), SYN).ext(NEXTHDR_DEST, &[0; 6]).ext(NEXTHDR_HOP, &[0; 6]).bytes();
    let (i, o) = untouched(late_hop);
    add("v6: hop-by-hop after another header (invalid) -> kernel, untouched", i, false, XDP_PASS, o, false);
    let (i, o) = untouched(icmp6(CLIENT, VIP_DR, 135, &[0; 20]));
    add("v6: neighbour solicitation for a VIP -> kernel, untouched", i, false, XDP_PASS, o, false);
    let (i, o) = untouched(icmp6(CLIENT, VIP_DR, 128, &[0, 1, 0, 1]));
    add("v6: echo request to a VIP -> kernel, untouched", i, false, XDP_PASS, o, false);
    let other = Frame6::tcp(sa6(CLIENT, 40009), sa6("2001:db8:88::5", 22), SYN).bytes();
    let (i, o) = untouched(other);
    add("v6: TCP to the director's own address (no service) -> kernel, untouched", i, false, XDP_PASS, o, false);
    let noport = Frame6::udp(sa6(CLIENT, 5001), sa6(VIP_DR, 54)).payload(b"x").bytes();
    let (i, o) = untouched(noport);
    add("v6: UDP to a VIP's port without a service -> kernel, untouched", i, false, XDP_PASS, o, false);

    // ---- malformed: passed, counted, never forwarded
    let good = Frame6::tcp(sa6(CLIENT, 40010), sa6(VIP_DR, 80), SYN).bytes();
    let mut longer = good.clone();
    longer[18..20].copy_from_slice(&((good.len() - 54 + 1) as u16).to_be_bytes());
    add("v6 malformed: payload length past the frame", longer.clone(), false, XDP_PASS, longer, true);
    let mut short = good.clone();
    short[18..20].copy_from_slice(&10u16.to_be_bytes());
    add("v6 malformed: payload length shorter than the TCP header", short.clone(), false, XDP_PASS, short, true);
    let mut version = good.clone();
    version[14] = 0x40;
    add("v6 malformed: version 4 under ethertype 0x86DD", version.clone(), false, XDP_PASS, version, true);
    let cut = good[..14 + 30].to_vec();
    add("v6 malformed: truncated IPv6 header", cut.clone(), false, XDP_PASS, cut, true);
    let mut doff = good.clone();
    doff[54 + 12] = 0x40;
    add("v6 malformed: TCP data offset 4", doff.clone(), false, XDP_PASS, doff, true);
    let mut zero = Frame6::udp(sa6(CLIENT, 5002), sa6(VIP_DR, 53)).payload(b"q").bytes();
    zero[54 + 6] = 0;
    zero[54 + 7] = 0;
    add("v6 malformed: UDP without checksum (invalid in IPv6)", zero.clone(), false, XDP_PASS, zero, true);
    let mut ulen = Frame6::udp(sa6(CLIENT, 5003), sa6(VIP_DR, 53)).payload(b"q").bytes();
    ulen[54 + 4..54 + 6].copy_from_slice(&100u16.to_be_bytes());
    add("v6 malformed: UDP length past the payload", ulen.clone(), false, XDP_PASS, ulen, true);
    let mut ext_long = Frame6::tcp(sa6(CLIENT, 40011), sa6(VIP_DR, 80), SYN).ext(NEXTHDR_DEST, &[0; 6]).bytes();
    ext_long[54 + 1] = 200;
    add("v6 malformed: extension header longer than the payload", ext_long.clone(), false, XDP_PASS, ext_long, true);

    // ---- NAT66 (port mapping 80 -> 8080)
    let n1 = Frame6::tcp(sa6(CLIENT, 42001), sa6(VIP_NAT, 80), SYN);
    add("nat66 tcp: new connection -> nat2:8080 out eth1", n1.bytes(), false, XDP_REDIRECT, d.nat(&n1, NAT2, 8080, NAT2_MAC), false);
    let n2 = Frame6::tcp(sa6(CLIENT, 42002), sa6(VIP_NAT, 80), SYN);
    add("nat66 tcp: next -> nat1:8080", n2.bytes(), false, XDP_REDIRECT, d.nat(&n2, NAT1, 8080, NAT1_MAC), false);
    let r1 = Frame6::tcp(sa6(NAT2, 8080), sa6(CLIENT, 42001), SYN | ACK).macs(NAT2_MAC, d.eth1_mac);
    add("nat66 tcp: reply SYN-ACK from nat2:8080 -> VIP:80 to the client", r1.bytes(), true, XDP_REDIRECT, d.nat_reply(&r1, VIP_NAT, 80), false);
    let n1d = Frame6::tcp(sa6(CLIENT, 42001), sa6(VIP_NAT, 80), ACK | PSH).payload(b"GET / HTTP/1.0\r\n\r\n");
    add("nat66 tcp: established request -> nat2:8080", n1d.bytes(), false, XDP_REDIRECT, d.nat(&n1d, NAT2, 8080, NAT2_MAC), false);
    let r1d = Frame6::tcp(sa6(NAT2, 8080), sa6(CLIENT, 42001), ACK | PSH).payload(b"HTTP/1.0 200 OK\r\n\r\nhi");
    add("nat66 tcp: reply data rewritten back to VIP:80", r1d.bytes(), true, XDP_REDIRECT, d.nat_reply(&r1d, VIP_NAT, 80), false);
    let nu = Frame6::udp(sa6(CLIENT, 5002), sa6(VIP_NAT, 53)).payload(b"query-1");
    add("nat66 udp: new flow -> nat2:53", nu.bytes(), false, XDP_REDIRECT, d.nat(&nu, NAT2, 53, NAT2_MAC), false);
    let nu2 = Frame6::udp(sa6(CLIENT, 5003), sa6(VIP_NAT, 53)).payload(b"query-2!");
    add("nat66 udp: next -> nat1:5353 (port mapped)", nu2.bytes(), false, XDP_REDIRECT, d.nat(&nu2, NAT1, 5353, NAT1_MAC), false);
    let ru = Frame6::udp(sa6(NAT1, 5353), sa6(CLIENT, 5003)).payload(b"answer");
    add("nat66 udp: reply from nat1:5353 -> VIP:53", ru.bytes(), true, XDP_REDIRECT, d.nat_reply(&ru, VIP_NAT, 53), false);
    let stray = Frame6::tcp(sa6(NAT1, 8080), sa6(CLIENT, 49999), ACK).bytes();
    add("nat66 tcp: server packet of no connection -> kernel, untouched", stray.clone(), true, XDP_PASS, stray, false);

    // ---- persistence by /64 (-M 64) on an all-ports service
    let p1 = Frame6::tcp(sa6(CLIENT, 43001), sa6(VIP_ALL, 22), SYN);
    add("persistent /64: first connection (port 22) -> web2", p1.bytes(), false, XDP_TX, d.dr(&p1, WEB2_MAC), false);
    let p2 = Frame6::tcp(sa6(CLIENT_SAME64, 43002), sa6(VIP_ALL, 443), SYN);
    add("persistent /64: another host of the same /64, port 443 -> web2 (template)", p2.bytes(), false, XDP_TX, d.dr(&p2, WEB2_MAC), false);
    let p3 = Frame6::tcp(sa6(CLIENT_OTHER, 43003), sa6(VIP_ALL, 443), SYN).macs(ROUTER_MAC, DIRECTOR_MAC);
    add("persistent /64: a client of another /64 -> rr picks web1", p3.bytes(), false, XDP_TX, d.dr(&p3, WEB1_MAC), false);

    // ---- TUN: IPv6-in-IPv6, and IPv6-in-IPv4 to IPv4 real servers
    let t1 = Frame6::tcp(sa6(CLIENT, 41001), sa6(VIP_TUN, 80), SYN).traffic(0x2b, 0xabcde);
    add("tun6 tcp: new connection -> ip6ip6 to tun2 via the router; CE encapsulated as ECT(0)", t1.bytes(), false, XDP_TX, d.tun(&t1, TUN2), false);
    let t2 = Frame6::tcp(sa6(CLIENT, 41002), sa6(VIP_TUN, 80), SYN).traffic(0x12, 0);
    add("tun6 tcp: next -> tun1", t2.bytes(), false, XDP_TX, d.tun(&t2, TUN1), false);
    // Inner packet of MTU - 40 + 1 bytes: too big once wrapped.
    let big = TUN_MTU - 40 + 1 - 40 - 20;
    let tbig = Frame6::tcp(sa6(CLIENT, 41001), sa6(VIP_TUN, 80), ACK).payload(&vec![1u8; big]);
    // Packet Too Big with the route's MTU less the outer header, from the VIP to the client.
    let ptb = xlb_tests::frames_tun::icmp6_error_reply(&tbig.bytes(), etherparse::Icmpv6Type::PacketTooBig { mtu: (TUN_MTU - 40) as u32 });
    add("tun6 tcp: too big for the tunnel -> ICMPv6 packet too big (MTU less 40)", tbig.bytes(), false, XDP_TX, ptb, false);
    let tfit = Frame6::tcp(sa6(CLIENT, 41001), sa6(VIP_TUN, 80), ACK).payload(&vec![2u8; big - 1]);
    add("tun6 tcp: a packet that just fits is encapsulated", tfit.bytes(), false, XDP_TX, d.tun(&tfit, TUN2), false);
    let m1 = Frame6::tcp(sa6(CLIENT, 41003), sa6(VIP_TUN4, 80), SYN).traffic(0x03, 0);
    add("tun6 mixed: IPv6 service, IPv4 real server -> IPv6-in-IPv4 to 10.99.0.200", m1.bytes(), false, XDP_TX, d.tun4(&m1, TUN4_2), false);
    let m1d = Frame6::tcp(sa6(CLIENT, 41003), sa6(VIP_TUN4, 80), ACK).payload(b"data");
    add("tun6 mixed: established flow keeps 10.99.0.200", m1d.bytes(), false, XDP_TX, d.tun4(&m1d, TUN4_2), false);

    // ---- an IPv4 service, IPv6 tunnel real servers: IPv4-in-IPv6
    use xlb_tests::frames::{Frame, sa};
    let f46 = Frame::tcp(sa(CLIENT4, 45001), sa(VIP4_TUN46, 80), SYN).tos(0x03);
    add("tun46: IPv4 service, IPv6 real server -> IPv4-in-IPv6 to tun2; CE as ECT(0)", f46.bytes(), false, XDP_TX, d.tun46(&f46, TUN2), false);
    let f46d = Frame::tcp(sa(CLIENT4, 45001), sa(VIP4_TUN46, 80), ACK).payload(b"more");
    add("tun46: established flow keeps tun2", f46d.bytes(), false, XDP_TX, d.tun46(&f46d, TUN2), false);
    let f46b = Frame::tcp(sa(CLIENT4, 45002), sa(VIP4_TUN46, 80), SYN);
    add("tun46: next connection -> tun1", f46b.bytes(), false, XDP_TX, d.tun46(&f46b, TUN1), false);

    // ---- ICMPv6 errors about connections
    let dr_reply = Frame6::tcp(sa6(VIP_DR, 80), sa6(CLIENT, 40001), ACK).payload(&[5u8; 1400]);
    let ptb = icmp6_msg((ROUTER_MAC, d.eth0_mac), ROUTER, VIP_DR, 64, 2, 0, &error_body(1300, &dr_reply, 1184));
    let mut ptb_out = ptb.clone();
    ptb_out[0..6].copy_from_slice(&WEB2_MAC);
    ptb_out[6..12].copy_from_slice(&d.eth0_mac);
    ptb_out[21] -= 1;
    add("icmp6: packet too big about a DR reply -> to its real server (web2), hop limit - 1", ptb, false, XDP_TX, ptb_out, false);
    let mut bad = icmp6_msg((ROUTER_MAC, d.eth0_mac), ROUTER, VIP_DR, 64, 2, 0, &error_body(1300, &dr_reply, 200));
    bad[56] ^= 0x55;
    add("icmp6: about a DR connection with a bad checksum -> dropped", bad, false, XDP_DROP, vec![], false);
    let tun_reply = Frame6::tcp(sa6(VIP_TUN, 80), sa6(CLIENT, 41001), ACK);
    let unr = icmp6_msg((ROUTER_MAC, d.eth0_mac), ROUTER, VIP_TUN, 64, 1, 3, &error_body(0, &tun_reply, 1000));
    let mut inner = unr[14..].to_vec();
    inner[7] -= 1;
    add("icmp6: address unreachable about a TUN reply -> ip6ip6 to tun2", unr, false, XDP_TX, d.tun_raw(&inner, TUN2), false);
    // About a NAT reply (VIP:80 -> client): to the real server, quoting it as the server sent it
    // (source and port rewritten; the quoted TCP checksum left as it was, as IPVS leaves it).
    let nat_reply = Frame6::tcp(sa6(VIP_NAT, 80), sa6(CLIENT, 42001), ACK);
    let mut as_sent = nat_reply.bytes()[14..].to_vec();
    as_sent[8..24].copy_from_slice(&NAT2.parse::<Ipv6Addr>().expect("nat2").octets());
    as_sent[40..42].copy_from_slice(&8080u16.to_be_bytes());
    let mut sent_body = vec![0u8; 4];
    sent_body.extend_from_slice(&as_sent);
    add(
        "icmp6: time exceeded about a NAT reply -> to nat2, outer destination and quote rewritten",
        icmp6_msg((ROUTER_MAC, d.eth0_mac), ROUTER, VIP_NAT, 64, 3, 0, &error_body(0, &nat_reply, 1000)),
        false,
        XDP_REDIRECT,
        icmp6_msg((d.eth1_mac, NAT2_MAC), ROUTER, NAT2, 63, 3, 0, &sent_body),
        false,
    );
    // From a NAT real server about what the client sent it: to the client from the VIP,
    // quoting what the client sent (to VIP:53). (The quoted UDP checksum is left as it was.)
    let to_rs = Frame6::udp(sa6(CLIENT, 5003), sa6(NAT1, 5353)).payload(b"query-2!");
    let mut as_client_sent = to_rs.bytes()[14..].to_vec();
    as_client_sent[24..40].copy_from_slice(&VIP_NAT.parse::<Ipv6Addr>().expect("vip").octets());
    as_client_sent[42..44].copy_from_slice(&53u16.to_be_bytes());
    let mut body = vec![0u8; 4];
    body.extend_from_slice(&as_client_sent);
    let mut body_in = vec![0u8; 4];
    body_in.extend_from_slice(&to_rs.bytes()[14..]);
    add(
        "icmp6: port unreachable from nat1 about the client's datagram -> to the client from the VIP",
        icmp6_msg((NAT1_MAC, d.eth1_mac), NAT1, CLIENT, 64, 1, 4, &body_in),
        true,
        XDP_REDIRECT,
        icmp6_msg((d.eth0_mac, CLIENT_MAC), VIP_NAT, CLIENT, 63, 1, 4, &body),
        false,
    );
    let stranger = Frame6::tcp(sa6(VIP_DR, 80), sa6(CLIENT, 49999), ACK);
    let (i, o) = untouched(icmp6_msg((ROUTER_MAC, d.eth0_mac), ROUTER, VIP_DR, 64, 1, 0, &error_body(0, &stranger, 100)));
    add("icmp6: about no connection -> kernel, untouched", i, false, XDP_PASS, o, false);
    let cut = icmp6_msg((ROUTER_MAC, d.eth0_mac), ROUTER, VIP_DR, 64, 1, 0, &error_body(0, &dr_reply, 44));
    add("icmp6 malformed: quote shorter than the IPv6 header and 8 bytes", cut.clone(), false, XDP_PASS, cut, true);
    v
}

/// RFC 6040: ECN copied to the outer header, except CE which becomes ECT(0).
fn encap_ecn(tc: u8) -> u8 {
    if tc & 3 == 3 { (tc & !3) | 2 } else { tc }
}

/// An ICMPv6 message of type `ty` to a VIP from the client (checksum computed over the
/// pseudo-header).
fn icmp6(src: &str, dst: &str, ty: u8, body: &[u8]) -> Vec<u8> {
    icmp6_msg((CLIENT_MAC, DIRECTOR_MAC), src, dst, 255, ty, 0, body)
}

/// An ICMPv6 message (`body`: what follows type, code and checksum) in an Ethernet frame.
fn icmp6_msg(macs: ([u8; 6], [u8; 6]), src: &str, dst: &str, hop: u8, ty: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let (s, d): (Ipv6Addr, Ipv6Addr) = (src.parse().expect("src"), dst.parse().expect("dst"));
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(body);
    let mut sum: u64 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u64;
        }
    };
    add(&s.octets());
    add(&d.octets());
    add(&(m.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(&m);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    m[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
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

/// An ICMPv6 error body: the 4 bytes after the checksum (`word`: the MTU of Packet Too Big),
/// then the quoted packet (at most `max` bytes of it).
fn error_body(word: u32, quoted: &Frame6, max: usize) -> Vec<u8> {
    let ip = &quoted.bytes()[14..];
    let mut b = word.to_be_bytes().to_vec();
    b.extend_from_slice(&ip[..ip.len().min(max)]);
    b
}

fn global(pins: &TempPins) -> GlobalStats {
    Store::open_at(pins.path(), Default::default()).and_then(|s| s.global_stats()).expect("stats")
}

#[test]
fn v6_packet_fixtures() {
    let pins = TempPins::new("fix6").expect("pins");
    {
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        store.commit(&before, &v6_table()).expect("commit");
    }
    let dir = Director6::new("fix6").expect("director namespace");
    let list = fixtures(&dir);
    let (if0, if1) = (dir.eth0, dir.eth1);
    let results = fixture::run_in(&dir.ns.name, pins.path(), list, if0, if1);
    fixture::assert_all(&results, |fx, got| with_outer_id_of(&fx.output, got));
    // The IPv4 counters, field for field.
    let g = global(&pins);
    let n = |v: u32| results.iter().filter(|(fx, _)| fx.verdict == v).count() as u64;
    assert_eq!(g.rx, results.len() as u64);
    assert_eq!((g.tx, g.redirect, g.pass, g.drop), (n(XDP_TX), n(XDP_REDIRECT), n(XDP_PASS), n(XDP_DROP)), "{g:?}");
    assert_eq!(g.parse_fail, results.iter().filter(|(fx, _)| fx.malformed).count() as u64, "{g:?}");
    assert_eq!(g.nat_reply, 3, "{g:?}");
    assert_eq!(g.icmp_related, 4, "{g:?}");
    let store = Store::open_at(pins.path(), Default::default()).expect("store");
    let t = store.load().expect("table");
    let conns: Vec<u64> = t.services.iter().map(|s| s.stats.conns).collect();
    // New connections per service: DR tcp 3, DR udp 1, NAT tcp 2, NAT udp 2, all-ports 3, TUN
    // 2, mixed TUN 1, IPv4 service with IPv6 tunnels 2.
    assert_eq!(conns, vec![3, 1, 2, 2, 3, 2, 1, 2], "{t:#?}");
    let nat_tcp = &t.services[2].stats;
    assert_eq!((nat_tcp.outpkts, nat_tcp.outbytes), (2, r1_bytes()), "NAT66 replies counted as OutPkts");
    // -Lnc lists the IPv6 connections and the /64 template as IPVS does.
    let listed = store.connections().expect("connections");
    let find = |c: &str, cport: u16| listed.iter().find(|e| e.caddr == ip6(c) && e.cport == cport);
    let dr = find(CLIENT, 40001).expect("the DR connection is listed");
    assert_eq!((dr.proto, dr.state, dr.vaddr, dr.vport, dr.daddr, dr.dport), ("TCP", "ESTABLISHED", ip6(VIP_DR), 80, ip6(WEB2), 80));
    let nat = find(CLIENT, 42001).expect("the NAT connection is listed");
    assert_eq!((nat.state, nat.daddr, nat.dport), ("ESTABLISHED", ip6(NAT2), 8080));
    let tmpl = find("2001:db8:88::", 0).expect("the /64 template is listed");
    assert_eq!((tmpl.proto, tmpl.state, tmpl.vaddr, tmpl.vport, tmpl.daddr), ("TCP", "NONE", ip6(VIP_ALL), 0, ip6(WEB2)));
    assert!(listed.iter().all(|e| e.caddr.is_ipv6() || e.caddr == IpAddr::from(CLIENT4)), "{listed:?}");
    let dests: Vec<(IpAddr, u32, u32)> = t.services[0].dests.iter().map(|d| (d.addr, d.active_conns, d.inact_conns)).collect();
    // web2: 40001 (established), 40003 (SYN_RECV); web1: 40002 (SYN_RECV): active, as the
    // IPv4 path counts them (dr_packets.rs).
    assert_eq!(dests, vec![(ip6(WEB2), 2, 0), (ip6(WEB1), 1, 0)], "DR6 ActiveConn/InActConn");
}

/// The IP bytes of the two NAT66 TCP replies the fixtures send.
fn r1_bytes() -> u64 {
    Frame6::tcp(sa6(NAT2, 8080), sa6(CLIENT, 42001), SYN | ACK).ip_len()
        + Frame6::tcp(sa6(NAT2, 8080), sa6(CLIENT, 42001), ACK | PSH).payload(b"HTTP/1.0 200 OK\r\n\r\nhi").ip_len()
}

/// lbd's expiry pass over the IPv6 table, as over the IPv4 one: an expired NAT66 connection
/// goes with its reply side and gives its count back, a persistence template that expires
/// while it controls a live connection is re-armed for 60 s, and a deleted service's VIP is
/// closed in the gate once no connection points to it.
#[test]
fn v6_expiry_rearm_and_gate() {
    use xlb_tests::xdp::{LOOPBACK_IFINDEX, set_next_hop};
    let pins = TempPins::new("exp6").expect("pins");
    let mut dr = svc(0, Proto::Tcp, VIP_DR, 80, "rr", &[(WEB1, 80, Fwd::Route, 1), (WEB2, 80, Fwd::Route, 1)]);
    dr.flags = lb_common::SVC_F_PERSISTENT;
    dr.timeout = 2;
    let nat = svc(1, Proto::Tcp, VIP_NAT, 80, "rr", &[(NAT1, 8080, Fwd::Masq, 1)]);
    let both = table(vec![dr.clone(), nat]);
    {
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        store.commit(&before, &both).expect("commit");
        // Half-open connections live 1 s here (established ones keep their 900 s).
        store
            .update_config(|c| {
                c.timeouts[lb_common::tcp_state::STATE_SYN_RECV as usize] = 1;
                Ok(())
            })
            .expect("timeouts");
    }
    for (id, mac) in [(0, WEB1_MAC), (1, WEB2_MAC), (1024, NAT1_MAC)] {
        set_next_hop(pins.path(), id, mac, DIRECTOR_MAC, LOOPBACK_IFINDEX).expect("next hop");
    }
    let mut xdp = XdpUnderTest::load(pins.path(), "xlb_xdp").expect("load");
    let run = |xdp: &mut XdpUnderTest, f: Frame6| xdp.run(&f.bytes()).expect("run").verdict;
    assert_eq!(run(&mut xdp, Frame6::tcp(sa6(CLIENT, 50000), sa6(VIP_DR, 80), SYN)), XDP_TX);
    assert_eq!(run(&mut xdp, Frame6::tcp(sa6(CLIENT, 50000), sa6(VIP_DR, 80), ACK)), XDP_TX);
    assert_eq!(run(&mut xdp, Frame6::tcp(sa6(CLIENT, 50001), sa6(VIP_NAT, 80), SYN)), XDP_TX);
    let listed = |pins: &TempPins| {
        let store = Store::open_at(pins.path(), Default::default()).expect("store");
        let mut v: Vec<(u16, String, u32)> =
            store.connections().expect("conns").into_iter().map(|c| (c.cport, c.state.to_string(), c.expires)).collect();
        v.sort();
        v
    };
    let before: Vec<(u16, String)> = listed(&pins).into_iter().map(|(p, s, _)| (p, s)).collect();
    // The template is ASSURED: connection 50000 through it entered ESTABLISHED (IPVS's
    // `ip_vs_control_assure_ct`).
    assert_eq!(before, [(0, "ASSURED".into()), (50000, "ESTABLISHED".into()), (50001, "SYN_RECV".into())]);
    let entries = |pins: &TempPins| {
        use aya::maps::{HashMap, Map, MapData};
        let data = MapData::from_pin(pins.path().join(lb_common::names::CONNS6)).expect("pin");
        let m: HashMap<MapData, lb_common::ConnKey6, lb_common::Conn6> = HashMap::try_from(Map::HashMap(data)).expect("map");
        let mut kinds: Vec<u8> = m.keys().map(|k| k.expect("key").kind).collect();
        kinds.sort();
        kinds
    };
    assert_eq!(entries(&pins), [lb_common::CONN_KIND_IN, lb_common::CONN_KIND_IN, lb_common::CONN_KIND_OUT, lb_common::CONN_KIND_TEMPLATE]);
    std::thread::sleep(std::time::Duration::from_millis(2300));
    let removed =
        Store::open_at(pins.path(), Default::default()).and_then(|mut s| s.expire_connections(Default::default())).expect("expiry");
    assert_eq!(removed, 2, "the NAT66 connection and its reply side");
    let after = listed(&pins);
    assert_eq!(after.iter().map(|(p, s, _)| (*p, s.as_str())).collect::<Vec<_>>(), [(0, "ASSURED"), (50000, "ESTABLISHED")]);
    assert!((57..=60).contains(&after[0].2), "the template controlling a live connection is re-armed for 60 s: {after:?}");
    assert_eq!(entries(&pins), [lb_common::CONN_KIND_IN, lb_common::CONN_KIND_TEMPLATE]);
    let t = Store::open_at(pins.path(), Default::default()).and_then(|s| s.load()).expect("table");
    let counts: Vec<(IpAddr, u32, u32)> =
        t.services.iter().flat_map(|s| s.dests.iter()).map(|d| (d.addr, d.active_conns, d.inact_conns)).collect();
    assert!(counts.contains(&(ip6(NAT1), 0, 0)), "the expired connection's count is given back: {counts:?}");
    // The NAT service deleted: its VIP closes at the next pass (no connection left to it); the
    // DR VIP, still a service's, stays open.
    {
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        let mut after = before.clone();
        after.services.retain(|s| s.dests.iter().all(|d| d.fwd != Fwd::Masq));
        store.commit(&before, &after).expect("commit");
        store.expire_connections(Default::default()).expect("expiry");
    }
    let gate = lb_user::store::Gate::open(pins.path()).expect("gate");
    assert!(gate.has_ip(lb_common::GATE_VIP, ip6(VIP_DR)), "a service's IPv6 VIP stays open");
    assert!(!gate.has_ip(lb_common::GATE_VIP, ip6(VIP_NAT)), "a deleted service's IPv6 VIP is closed");
}

/// A SYN flood over IPv6 fills the IPv6 connection table; each new connection then evicts the
/// oldest remembered one still half-open (`conn6::evict_half_open6`), so new clients keep
/// being scheduled, and an established connection keeps its real server.
#[test]
fn v6_syn_flood_evicts_half_open_keeps_established() {
    use lb_user::store::CreateOptions;
    use xlb_tests::xdp::{LOOPBACK_IFINDEX, set_next_hop};
    let pins = TempPins::new("flood6").expect("pins");
    let opts = CreateOptions { max_conns: 64 };
    {
        let mut store = Store::open_at(pins.path(), opts).expect("store");
        let before = store.load().expect("load");
        let t = table(vec![svc(0, Proto::Tcp, VIP_DR, 80, "rr", &[(WEB1, 80, Fwd::Route, 1), (WEB2, 80, Fwd::Route, 1)])]);
        store.commit(&before, &t).expect("commit");
    }
    for (id, mac) in [(0, WEB1_MAC), (1, WEB2_MAC)] {
        set_next_hop(pins.path(), id, mac, DIRECTOR_MAC, LOOPBACK_IFINDEX).expect("next hop");
    }
    let mut xdp = XdpUnderTest::load_with(pins.path(), opts, "xlb_xdp").expect("load");
    let est = Frame6::tcp(sa6(CLIENT, 50000), sa6(VIP_DR, 80), SYN);
    assert_eq!(xdp.run(&est.bytes()).expect("run").verdict, XDP_TX);
    let ack = Frame6::tcp(sa6(CLIENT, 50000), sa6(VIP_DR, 80), ACK);
    let first = xdp.run(&ack.bytes()).expect("run");
    assert_eq!(first.verdict, XDP_TX);
    let mut refused = 0;
    for i in 0..300u32 {
        let c = format!("2001:db8:66::{:x}", i + 1);
        let r = xdp.run(&Frame6::tcp(sa6(&c, 1000), sa6(VIP_DR, 80), SYN).bytes()).expect("run");
        refused += (r.verdict != XDP_TX) as u32;
    }
    let g = global(&pins);
    assert_eq!((refused, g.conn_insert_fail), (0, 0), "every flood SYN was scheduled: {g:?}");
    assert!(g.conn_evicted >= 300 - 64, "half-open connections made room: {g:?}");
    let again = xdp.run(&ack.bytes()).expect("run");
    assert_eq!((again.verdict, &again.frame[..6]), (XDP_TX, &first.frame[..6]), "the established connection keeps its real server");
}
