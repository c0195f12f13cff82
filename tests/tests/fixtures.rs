//! The packet-fixture suite (Katran's way): one table of services of every method, the real XDP
//! object, and a sequence of fixtures — description, input frame, expected verdict and expected
//! output bytes — run through BPF_PROG_TEST_RUN. Expected frames are built independently with
//! the test frame builder (full checksums, where the data plane updates them incrementally).
//!
//! The program runs in a namespace made to look like a director: eth0 (client side,
//! 192.168.88.5/24, VIPs), eth1 (server side for NAT, 192.168.99.5/24), a route to the TUN real
//! servers' subnet 10.99.0.0/24 via a router 192.168.88.1 with MTU 1400, forwarding on, and
//! permanent neighbour entries: next hops come from the kernel's FIB as in production.

use etherparse::{
    Icmpv4Type,
    icmpv4::{DestUnreachableHeader, TimeExceededCode},
};
use lb_common::GlobalStats;
use lb_user::store::Store;
use xlb_tests::{
    director::*,
    fixture::{self, Fixture},
    frames::{self, ACK, Frame, PSH, RST, SYN, arp_request, icmp, icmp_error_reply, ipip, quote_of, sa},
    pins::TempPins,
    table::table,
    xdp::{XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX},
};

const CLIENT_MAC: [u8; 6] = frames::CLIENT_MAC;



/// The director's interfaces as the fixtures see them.
struct Director {
    eth0_mac: [u8; 6],
    eth1_mac: [u8; 6],
}

impl Director {
    /// DR: the same packet to the real server's MAC from the director's, TTL - 1.
    fn dr(&self, f: &Frame, rs_mac: [u8; 6]) -> Vec<u8> {
        f.clone().macs(self.eth0_mac, rs_mac).ttl(f.ip.time_to_live - 1).bytes()
    }

    /// TUN: IPIP to the real server via the router, outer TTL = inner TTL - 1, TOS with ECN
    /// encapsulated, DF copied, id copied, source = the director's address.
    fn tun(&self, f: &Frame, rs: [u8; 4]) -> Vec<u8> {
        let inner = f.clone().ttl(f.ip.time_to_live - 1);
        let tos = (f.ip.dscp.value() << 2) | f.ip.ecn.value();
        let tos = if tos & 3 == 3 { (tos & !3) | 2 } else { tos };
        ipip(
            (self.eth0_mac, ROUTER_MAC),
            DIP,
            rs,
            f.ip.time_to_live - 1,
            tos,
            f.ip.identification,
            f.ip.dont_fragment,
            &inner.ip_bytes(),
        )
    }

    /// NAT request: destination rewritten to the real server, out eth1.
    fn nat(&self, f: &Frame, rs: [u8; 4], rport: u16, rs_mac: [u8; 6]) -> Vec<u8> {
        f.clone().dst(sa(rs, rport)).macs(self.eth1_mac, rs_mac).ttl(f.ip.time_to_live - 1).bytes()
    }

    /// NAT reply: source rewritten to the VIP, out eth0 to the client.
    fn nat_reply(&self, f: &Frame, vip: [u8; 4], vport: u16) -> Vec<u8> {
        f.clone().src(sa(vip, vport)).macs(self.eth0_mac, CLIENT_MAC).ttl(f.ip.time_to_live - 1).bytes()
    }
}

fn fixtures(d: &Director) -> Vec<Fixture> {
    let mut v = Vec::new();
    let mut add = |name: &str, input: Vec<u8>, from_servers: bool, verdict: u32, output: Vec<u8>| {
        v.push(Fixture { name: name.to_string(), input, from_servers, verdict, output, malformed: false });
    };
    let pass = |f: &Vec<u8>| f.clone();

    // ---- DR (web2 was added last: first in IPVS's list, first rr pick)
    let dr1 = Frame::tcp(sa(CLIENT, 40001), sa(VIP_DR, 80), SYN);
    add("dr tcp: new connection (SYN) -> web2, MACs rewritten, TTL-1", dr1.bytes(), false, XDP_TX, d.dr(&dr1, WEB2_MAC));
    let dr2 = Frame::tcp(sa(CLIENT, 40002), sa(VIP_DR, 80), SYN);
    add("dr tcp: next new connection -> web1 (rr)", dr2.bytes(), false, XDP_TX, d.dr(&dr2, WEB1_MAC));
    let dr1d = Frame::tcp(sa(CLIENT, 40001), sa(VIP_DR, 80), ACK | PSH).payload(b"GET / HTTP/1.0\r\n\r\n");
    add("dr tcp: established flow keeps web2", dr1d.bytes(), false, XDP_TX, d.dr(&dr1d, WEB2_MAC));
    let dru = Frame::udp(sa(CLIENT, 5000), sa(VIP_DR, 53)).payload(b"dns-query");
    add("dr udp: new flow -> web2", dru.bytes(), false, XDP_TX, d.dr(&dru, WEB2_MAC));
    add("dr udp: same flow again -> web2", dru.bytes(), false, XDP_TX, d.dr(&dru, WEB2_MAC));
    let dro = Frame::tcp(sa(CLIENT, 40003), sa(VIP_DR, 80), SYN).ip_options(&[1, 1, 1, 0]);
    add("dr tcp: IP options (IHL 6) forwarded intact", dro.bytes(), false, XDP_TX, d.dr(&dro, WEB2_MAC));
    let ttl1 = Frame::tcp(sa(CLIENT, 40004), sa(VIP_DR, 80), SYN).ttl(1).bytes();
    add(
        "dr tcp: TTL 1 -> ICMP time exceeded to the client from the VIP",
        ttl1.clone(),
        false,
        XDP_TX,
        icmp_error_reply(&ttl1, Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit)),
    );
    for (what, flags) in [("ACK", ACK), ("RST", RST), ("SYN+RST", SYN | RST)] {
        let f = Frame::tcp(sa(CLIENT, 40100), sa(VIP_DR, 80), flags).bytes();
        add(&format!("dr tcp: {what} without a connection -> kernel, untouched"), f.clone(), false, XDP_PASS, pass(&f));
    }

    // ---- TUN
    let t1 = Frame::tcp(sa(CLIENT, 41001), sa(VIP_TUN, 80), SYN).tos(0x12);
    add("tun tcp: new connection -> IPIP to tun2 via the router", t1.bytes(), false, XDP_TX, d.tun(&t1, TUN2));
    let t2 = Frame::tcp(sa(CLIENT, 41002), sa(VIP_TUN, 80), SYN).tos(0x03);
    add("tun tcp: next -> tun1; ECN CE encapsulated as ECT(0)", t2.bytes(), false, XDP_TX, d.tun(&t2, TUN1));
    let t1d = Frame::tcp(sa(CLIENT, 41001), sa(VIP_TUN, 80), ACK).payload(&[7u8; 300]);
    add("tun tcp: established flow keeps tun2", t1d.bytes(), false, XDP_TX, d.tun(&t1d, TUN2));
    let tu = Frame::udp(sa(CLIENT, 5001), sa(VIP_TUN, 53)).payload(b"q").no_df();
    add("tun udp: new flow -> tun2, no DF copied", tu.bytes(), false, XDP_TX, d.tun(&tu, TUN2));
    let big_len = TUN_MTU - 20 + 1 - 20 - 20; // IP packet of MTU-19 bytes: too big once wrapped
    let tbig = Frame::tcp(sa(CLIENT, 41001), sa(VIP_TUN, 80), ACK).payload(&vec![1u8; big_len]);
    add(
        "tun tcp: DF packet too big for the tunnel -> ICMP frag needed, MTU 1380",
        tbig.bytes(),
        false,
        XDP_TX,
        icmp_error_reply(
            &tbig.bytes(),
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: (TUN_MTU - 20) as u16,
            }),
        ),
    );
    let tfit = Frame::tcp(sa(CLIENT, 41001), sa(VIP_TUN, 80), ACK).payload(&vec![2u8; big_len - 1]);
    add("tun tcp: DF packet that just fits is encapsulated", tfit.bytes(), false, XDP_TX, d.tun(&tfit, TUN2));
    let tttl = Frame::tcp(sa(CLIENT, 41001), sa(VIP_TUN, 80), ACK).ttl(1).bytes();
    add(
        "tun tcp: TTL 1 -> ICMP time exceeded",
        tttl.clone(),
        false,
        XDP_TX,
        icmp_error_reply(&tttl, Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit)),
    );

    // ---- NAT (port mapping 80 -> 8080)
    let n1 = Frame::tcp(sa(CLIENT, 42001), sa(VIP_NAT, 80), SYN);
    add("nat tcp: new connection -> nat2:8080 out eth1", n1.bytes(), false, XDP_REDIRECT, d.nat(&n1, NAT2, 8080, NAT2_MAC));
    let n2 = Frame::tcp(sa(CLIENT, 42002), sa(VIP_NAT, 80), SYN);
    add("nat tcp: next -> nat1:8080", n2.bytes(), false, XDP_REDIRECT, d.nat(&n2, NAT1, 8080, NAT1_MAC));
    let r1 = Frame::tcp(sa(NAT2, 8080), sa(CLIENT, 42001), SYN | ACK).macs(NAT2_MAC, d.eth1_mac);
    add("nat tcp: reply SYN-ACK from nat2:8080 -> VIP:80 to the client", r1.bytes(), true, XDP_REDIRECT, d.nat_reply(&r1, VIP_NAT, 80));
    let n1d = Frame::tcp(sa(CLIENT, 42001), sa(VIP_NAT, 80), ACK | PSH).payload(b"GET / HTTP/1.0\r\n\r\n");
    add("nat tcp: established request -> nat2:8080", n1d.bytes(), false, XDP_REDIRECT, d.nat(&n1d, NAT2, 8080, NAT2_MAC));
    let r1d = Frame::tcp(sa(NAT2, 8080), sa(CLIENT, 42001), ACK | PSH).payload(b"HTTP/1.0 200 OK\r\n\r\nhi");
    add("nat tcp: reply data rewritten back to VIP:80", r1d.bytes(), true, XDP_REDIRECT, d.nat_reply(&r1d, VIP_NAT, 80));
    let nu = Frame::udp(sa(CLIENT, 5002), sa(VIP_NAT, 53)).payload(b"query-1");
    add("nat udp: new flow -> nat2:53", nu.bytes(), false, XDP_REDIRECT, d.nat(&nu, NAT2, 53, NAT2_MAC));
    let nu2 = Frame::udp(sa(CLIENT, 5003), sa(VIP_NAT, 53)).payload(b"query-2").udp_no_checksum();
    add(
        "nat udp: no checksum -> computed one, to nat1:5353",
        nu2.bytes(),
        false,
        XDP_REDIRECT,
        Frame { udp_no_checksum: false, ..nu2.clone() }.dst(sa(NAT1, 5353)).macs(d.eth1_mac, NAT1_MAC).ttl(63).bytes(),
    );
    let ru = Frame::udp(sa(NAT2, 53), sa(CLIENT, 5002)).payload(b"answer");
    add("nat udp: reply from nat2:53 -> VIP:53", ru.bytes(), true, XDP_REDIRECT, d.nat_reply(&ru, VIP_NAT, 53));
    let stray = Frame::tcp(sa(NAT1, 8080), sa(CLIENT, 49999), ACK).bytes();
    add("nat tcp: server packet of no connection -> kernel, untouched", stray.clone(), true, XDP_PASS, stray);
    let nttl = Frame::tcp(sa(CLIENT, 42001), sa(VIP_NAT, 80), ACK).ttl(1).bytes();
    add(
        "nat tcp: TTL 1 -> ICMP time exceeded",
        nttl.clone(),
        false,
        XDP_TX,
        icmp_error_reply(&nttl, Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit)),
    );

    // ---- port 0 ("all ports", persistent)
    let p1 = Frame::tcp(sa(CLIENT, 43001), sa(VIP_ALL, 22), SYN);
    add("port-0 service: first connection (port 22) -> web2", p1.bytes(), false, XDP_TX, d.dr(&p1, WEB2_MAC));
    let p2 = Frame::tcp(sa(CLIENT, 43002), sa(VIP_ALL, 443), SYN);
    add("port-0 service: same client, port 443 -> same real server (template)", p2.bytes(), false, XDP_TX, d.dr(&p2, WEB2_MAC));
    let p3 = Frame::tcp(sa([192, 168, 88, 11], 43003), sa(VIP_ALL, 443), SYN).macs(CLIENT_MAC, frames::DIRECTOR_MAC);
    add("port-0 service: another client -> rr picks web1", p3.bytes(), false, XDP_TX, d.dr(&p3, WEB1_MAC));

    // ---- ICMP errors about connections
    let reply_dr = Frame::tcp(sa(VIP_DR, 80), sa(CLIENT, 40001), ACK).payload(&[0u8; 1400]);
    let frag_dr = icmp(
        (ROUTER_MAC, d.eth0_mac),
        ROUTER,
        VIP_DR,
        64,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1300 }),
        &quote_of(&reply_dr.bytes()),
        false,
    );
    let mut frag_dr_out = frag_dr.clone();
    frag_dr_out[0..6].copy_from_slice(&WEB2_MAC);
    frag_dr_out[6..12].copy_from_slice(&d.eth0_mac);
    let out_ip = Frame::tcp(sa(ROUTER, 1), sa(VIP_DR, 1), 0); // only for the TTL rewrite below
    let _ = out_ip;
    dec_ttl(&mut frag_dr_out);
    add("icmp: frag needed about a DR reply -> to its real server (web2)", frag_dr, false, XDP_TX, frag_dr_out);
    let reply_tun = Frame::tcp(sa(VIP_TUN, 80), sa(CLIENT, 41001), ACK);
    let unr_tun = icmp(
        (ROUTER_MAC, d.eth0_mac),
        ROUTER,
        VIP_TUN,
        64,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Host),
        &quote_of(&reply_tun.bytes()),
        false,
    );
    let mut inner = unr_tun[14..].to_vec();
    inner[8] -= 1;
    fix_ip_checksum(&mut inner);
    add(
        "icmp: host unreachable about a TUN reply -> encapsulated to tun2",
        unr_tun,
        false,
        XDP_TX,
        ipip((d.eth0_mac, ROUTER_MAC), DIP, TUN2, 63, 0, 0, false, &inner),
    );
    // About a NAT reply (VIP:80 -> client): to the real server, quoting it as the server sent it.
    let reply_nat = Frame::tcp(sa(VIP_NAT, 80), sa(CLIENT, 42001), ACK);
    let as_sent = Frame::tcp(sa(NAT2, 8080), sa(CLIENT, 42001), ACK);
    let ty = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
    add(
        "icmp: port unreachable about a NAT reply -> to nat2, outer and quote rewritten",
        icmp((ROUTER_MAC, d.eth0_mac), ROUTER, VIP_NAT, 64, ty.clone(), &quote_of(&reply_nat.bytes()), false),
        false,
        XDP_REDIRECT,
        icmp((d.eth1_mac, NAT2_MAC), ROUTER, NAT2, 63, ty.clone(), &quote_of(&as_sent.bytes()), false),
    );
    // From a NAT real server about the client's datagram (client -> nat2:53): to the client,
    // from the VIP, quoting what the client sent (to VIP:53).
    // (IPVS rewrites the quoted addresses and ports, not the quoted UDP checksum.)
    let to_rs = Frame::udp(sa(CLIENT, 5002), sa(NAT2, 53)).payload(b"query-1");
    let mut as_client_sent = quote_of(&to_rs.bytes());
    as_client_sent[16..20].copy_from_slice(&VIP_NAT);
    fix_ip_checksum(&mut as_client_sent);
    add(
        "icmp: a NAT real server's port unreachable -> to the client from the VIP",
        icmp((NAT2_MAC, d.eth1_mac), NAT2, CLIENT, 64, ty.clone(), &quote_of(&to_rs.bytes()), false),
        true,
        XDP_REDIRECT,
        icmp((d.eth0_mac, CLIENT_MAC), VIP_NAT, CLIENT, 63, ty.clone(), &as_client_sent, false),
    );
    let unknown = Frame::tcp(sa(VIP_DR, 80), sa(CLIENT, 1), ACK);
    let no_conn = icmp((ROUTER_MAC, d.eth0_mac), ROUTER, VIP_DR, 64, ty.clone(), &quote_of(&unknown.bytes()), false);
    add("icmp: about no connection -> kernel, untouched", no_conn.clone(), false, XDP_PASS, no_conn);
    let bad = icmp((ROUTER_MAC, d.eth0_mac), ROUTER, VIP_DR, 64, ty.clone(), &quote_of(&reply_dr.bytes()), true);
    add("icmp: about a connection but bad ICMP checksum -> dropped", bad, false, XDP_DROP, Vec::new());
    let echo = icmp(
        (CLIENT_MAC, d.eth0_mac),
        CLIENT,
        VIP_DR,
        64,
        Icmpv4Type::EchoRequest(etherparse::IcmpEchoHeader { id: 1, seq: 1 }),
        b"ping",
        false,
    );
    add("icmp: echo request to the VIP -> kernel, untouched", echo.clone(), false, XDP_PASS, echo);
    let mut cut = frag_like_quote_cut(d);
    let cut_copy = cut.clone();
    cut.truncate(cut.len());
    add("icmp: quote cut short (no ports) -> kernel, untouched", cut, false, XDP_PASS, cut_copy);

    // ---- not ours / not parsable: the kernel gets them untouched
    let syn = Frame::tcp(sa(CLIENT, 44000), sa(VIP_DR, 80), SYN).bytes();
    let udp = Frame::udp(sa(CLIENT, 44000), sa(VIP_DR, 53)).bytes();
    let mut ipv6 = syn.clone();
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    let mut ihl4 = syn.clone();
    ihl4[14] = 0x44;
    let mut long_len = syn.clone();
    long_len[16..18].copy_from_slice(&1000u16.to_be_bytes());
    let mut doff4 = syn.clone();
    doff4[14 + 20 + 12] = 0x40;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("non-VIP TCP", Frame::tcp(sa(CLIENT, 1), sa([192, 168, 88, 99], 80), SYN).bytes()),
        ("VIP, port without service", Frame::tcp(sa(CLIENT, 1), sa(VIP_DR, 8080), SYN).bytes()),
        ("ARP request for the VIP", arp_request(CLIENT, VIP_DR)),
        ("IPv6 ethertype", ipv6),
        ("Ethernet header alone", syn[..14].to_vec()),
        ("IPv4 header cut", syn[..14 + 19].to_vec()),
        ("TCP header cut", syn[..14 + 20 + 19].to_vec()),
        ("UDP header cut", udp[..14 + 20 + 7].to_vec()),
        ("IHL 4", ihl4),
        ("IP total length beyond the frame", long_len),
        ("TCP data offset 4", doff4),
        ("fragment: MF set", Frame::tcp(sa(CLIENT, 44001), sa(VIP_DR, 80), SYN).fragment(true, 0).bytes()),
        ("fragment: offset", Frame::udp(sa(CLIENT, 44001), sa(VIP_DR, 53)).fragment(false, 185).bytes()),
    ];
    for (what, f) in cases {
        add(&format!("pass: {what} -> kernel, untouched"), f.clone(), false, XDP_PASS, f);
    }
    v
}

/// An ICMP error whose quote stops inside the quoted IP header (no transport ports).
fn frag_like_quote_cut(d: &Director) -> Vec<u8> {
    let reply = Frame::tcp(sa(VIP_DR, 80), sa(CLIENT, 40001), ACK).bytes();
    let q = &reply[14..14 + 20];
    icmp((ROUTER_MAC, d.eth0_mac), ROUTER, VIP_DR, 64, Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Host), q, false)
}

fn fix_ip_checksum(ip: &mut [u8]) {
    ip[10] = 0;
    ip[11] = 0;
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let mut s: u32 = 0;
    for i in (0..ihl).step_by(2) {
        s += u16::from_be_bytes([ip[i], ip[i + 1]]) as u32;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    ip[10..12].copy_from_slice(&(!(s as u16)).to_be_bytes());
}

/// Decrements the TTL of the IP packet in an Ethernet frame, recomputing its checksum.
fn dec_ttl(frame: &mut [u8]) {
    frame[14 + 8] -= 1;
    fix_ip_checksum(&mut frame[14..]);
}

fn global(pins: &TempPins) -> GlobalStats {
    Store::open_at(pins.path(), Default::default()).and_then(|s| s.global_stats()).expect("stats")
}

#[test]
fn packet_fixtures() {
    let pins = TempPins::new("fix").expect("pins");
    {
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        store.commit(&before, &table(director_services())).expect("commit");
    }
    let dir = DirectorNs::new("fix", &[VIP_DR, VIP_TUN, VIP_NAT, VIP_ALL]).expect("director namespace");
    let d = Director { eth0_mac: dir.eth0_mac, eth1_mac: dir.eth1_mac };
    let (if0, if1) = (dir.eth0, dir.eth1);
    let ns = dir.ns;
    let list = fixtures(&d);
    assert!(list.len() >= 40, "{} fixtures", list.len());
    let results = fixture::run_in(&ns.name, pins.path(), list, if0, if1);
    fixture::assert_all(&results, |fx, _| fx.output.clone());
    // Counters agree with the verdicts.
    let g = global(&pins);
    let n = |v: u32| results.iter().filter(|(fx, _)| fx.verdict == v).count() as u64;
    assert_eq!(g.rx, results.len() as u64);
    assert_eq!((g.tx, g.redirect, g.pass, g.drop), (n(XDP_TX), n(XDP_REDIRECT), n(XDP_PASS), n(XDP_DROP)), "{g:?}");
    let t = Store::open_at(pins.path(), Default::default()).and_then(|s| s.load()).expect("table");
    let conns: Vec<u64> = t.services.iter().map(|s| s.stats.conns).collect();
    // New connections per service: DR tcp 3 (+ the TTL-1 SYN), DR udp 1, TUN tcp 2, TUN udp 1,
    // NAT tcp 2, NAT udp 2, port-0 3.
    assert_eq!(conns, vec![4, 1, 2, 1, 2, 2, 3], "{t:#?}");
    let nat_tcp = &t.services[4].stats;
    assert_eq!((nat_tcp.outpkts, nat_tcp.outbytes > 0), (2, true), "NAT replies counted as OutPkts");
}
