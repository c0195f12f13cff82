//! GUE and GRE tunnels (issue 15), byte for byte through BPF_PROG_TEST_RUN on the real XDP
//! object, against frames built independently (tests/src/frames_tun.rs):
//!
//! - encapsulation of an IPv4 service's packets to IPv4 real servers for every tunnel type and
//!   checksum option IPVS has (GUE --tun-nocsum / --tun-csum / --tun-remcsum, GRE without and
//!   with its checksum, IPIP beside them): new connections (`xlb_fwd`), established ones
//!   (`xlb_xdp`), an ICMP error about a connection (`xlb_icmp`); the UDP and GRE checksums are
//!   also checked by summing the output;
//! - PMTU: a DF packet that no longer fits the route MTU less the tunnel's overhead gets ICMP
//!   "fragmentation needed" with that MTU, one that just fits is sent;
//! - the decap program: every tunnel type around IPv4 and IPv6 packets in IPv4 and IPv6, and
//!   what it must leave to the kernel untouched (lying checksums, truncated or unknown headers,
//!   another port or address).
//!
//! The director namespace is the fixtures' (tests/src/director.rs): route to 10.99.0.0/24 via
//! the router with MTU 1400.
use std::net::IpAddr;

use etherparse::{Icmpv4Type, icmpv4::DestUnreachableHeader};
use lb_common::tunnel::{TUN_F_CSUM, TUN_F_NOCSUM, TUN_F_REMCSUM, TUN_TYPE_GRE, TUN_TYPE_GUE, TUN_TYPE_IPIP};
use lb_user::{
    model::{Fwd, Proto, Tunnel},
    store::Store,
};
use xlb_tests::{
    director::*,
    frames::{self, ACK, Frame, PSH, SYN, icmp, icmp_error_reply, quote_of, sa},
    frames_tun::{self, Outer, Tun, ethernet, gue_sport, ipv6_tcp, ipv6_udp, ones_sum, tunnel},
    pins::TempPins,
    table::{service, table},
    xdp::{RunResult, XDP_PASS, XDP_TX, XdpUnderTest, verdict_name},
};

/// One tunnelled service: VIP_TUN:`port` (`proto`) to one real server `rs` through `tunnel`.
struct TunSvc {
    name: &'static str,
    proto: Proto,
    port: u16,
    rs: [u8; 4],
    tunnel: Tunnel,
}

fn services() -> Vec<TunSvc> {
    let gue = |port, flags| Tunnel { kind: TUN_TYPE_GUE, port, flags };
    let gre = |flags| Tunnel { kind: TUN_TYPE_GRE, port: 0, flags };
    vec![
        TunSvc { name: "gue nocsum", proto: Proto::Tcp, port: 1001, rs: [10, 99, 0, 11], tunnel: gue(6080, TUN_F_NOCSUM) },
        TunSvc { name: "gue csum", proto: Proto::Tcp, port: 1002, rs: [10, 99, 0, 12], tunnel: gue(6081, TUN_F_CSUM) },
        TunSvc { name: "gue remcsum", proto: Proto::Tcp, port: 1003, rs: [10, 99, 0, 13], tunnel: gue(5555, TUN_F_REMCSUM) },
        TunSvc { name: "gre nocsum", proto: Proto::Tcp, port: 1004, rs: [10, 99, 0, 14], tunnel: gre(TUN_F_NOCSUM) },
        TunSvc { name: "gre csum", proto: Proto::Tcp, port: 1005, rs: [10, 99, 0, 15], tunnel: gre(TUN_F_CSUM) },
        TunSvc {
            name: "ipip",
            proto: Proto::Tcp,
            port: 1006,
            rs: [10, 99, 0, 16],
            tunnel: Tunnel { kind: TUN_TYPE_IPIP, port: 0, flags: 0 },
        },
        TunSvc { name: "gue csum udp", proto: Proto::Udp, port: 1002, rs: [10, 99, 0, 12], tunnel: gue(6081, TUN_F_CSUM) },
        TunSvc { name: "gre csum udp", proto: Proto::Udp, port: 1005, rs: [10, 99, 0, 15], tunnel: gre(TUN_F_CSUM) },
    ]
}

fn tun_table() -> lb_user::model::Table {
    let svcs = services()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut svc = service(i as u32, s.proto, ip4(VIP_TUN), s.port, "rr", &[(ip4(s.rs), s.port, Fwd::Tunnel, 1)]);
            svc.dests[0].tunnel = s.tunnel;
            svc
        })
        .collect();
    table(svcs)
}

/// The overhead the tunnel adds to the inner packet (outer IPv4 header included).
fn overhead(t: &Tunnel) -> usize {
    20 + match t.kind {
        TUN_TYPE_GUE => 12,
        TUN_TYPE_GRE if t.flags & TUN_F_CSUM != 0 => 8,
        TUN_TYPE_GRE => 4,
        _ => 0,
    }
}

/// The tunnel header the real server at the end of `t` must receive, for a flow of
/// (`src`, `dst`, ports, `proto`).
fn tun_of(t: &Tunnel, src: [u8; 4], dst: [u8; 4], ports: (u16, u16), proto: u8) -> Tun {
    match t.kind {
        TUN_TYPE_GUE => Tun::Gue {
            sport: gue_sport(&src, &dst, ports.0, ports.1, proto),
            dport: t.port,
            // --tun-remcsum on a forwarded packet: a full UDP checksum, no option (as IPVS).
            csum: t.flags & (TUN_F_CSUM | TUN_F_REMCSUM) != 0,
        },
        TUN_TYPE_GRE => Tun::Gre { csum: t.flags & TUN_F_CSUM != 0 },
        _ => Tun::Ipip,
    }
}

/// What leaves the director for `f` (sent by the client to a service of `s`): `f` with TTL - 1
/// inside the tunnel, outer TTL = inner TTL, TOS with ECN encapsulated, DF copied, from the
/// director's address to the real server, via the router.
fn encapsulated(eth0_mac: [u8; 6], s: &TunSvc, f: &Frame) -> Vec<u8> {
    let inner = f.clone().ttl(f.ip.time_to_live - 1).bytes()[14..].to_vec();
    let tos = (f.ip.dscp.value() << 2) | f.ip.ecn.value();
    let tos = if tos & 3 == 3 { (tos & !3) | 2 } else { tos };
    let (sport, dport, proto) = match &f.l4 {
        frames::L4::Tcp(t) => (t.source_port, t.destination_port, 6),
        frames::L4::Udp(u) => (u.source_port, u.destination_port, 17),
    };
    let outer = Outer::V4 {
        src: DIP,
        dst: s.rs,
        ttl: f.ip.time_to_live - 1,
        tos,
        // IPIP (xlb's older choice) copies the id; GUE and GRE write IPVS's: 0 with DF (recorded
        // from the kernel, tests/golden/tunnels/ipvs-6.1.txt), else the inner id.
        id: if f.ip.dont_fragment && s.tunnel.kind != TUN_TYPE_IPIP { 0 } else { f.ip.identification },
        df: f.ip.dont_fragment,
    };
    tunnel((eth0_mac, ROUTER_MAC), outer, tun_of(&s.tunnel, f.ip.source, f.ip.destination, (sport, dport), proto), &inner)
}

/// The tunnel's own checksum in an encapsulated frame, summed again here: GUE's UDP with its
/// pseudo-header, GRE's over its header and payload. `None`: the frame carries none.
fn tunnel_checksum_verifies(frame: &[u8]) -> Option<bool> {
    let ip = &frame[14..];
    match ip[9] {
        17 if ip[26] | ip[27] != 0 => Some(frames_tun::udp4_checksum_ok(ip)),
        47 if ip[20] & 0x80 != 0 => Some(ones_sum(&ip[20..], 0) == 0xffff),
        _ => None,
    }
}

fn with_id(mut f: Frame, id: u16) -> Frame {
    f.ip.identification = id;
    f
}

struct Case {
    name: String,
    input: Vec<u8>,
    verdict: u32,
    output: Vec<u8>,
}

/// Runs `cases` through `xlb_xdp` in the director's namespace (BPF_PROG_TEST_RUN resolves the
/// ingress ifindex in the caller's namespace), as received on `ifindex`.
fn run_in(ns: &str, pins: &std::path::Path, ifindex: u32, inputs: Vec<Vec<u8>>) -> Vec<RunResult> {
    let (name, path) = (ns.to_string(), pins.to_path_buf());
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{name}")).expect("netns file");
        use std::os::fd::AsRawFd as _;
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
        let mut xdp = XdpUnderTest::load(&path, "xlb_xdp").expect("load");
        inputs.iter().map(|i| xdp.run_on(i, ifindex).expect("run")).collect::<Vec<_>>()
    })
    .join()
    .expect("test-run thread")
}

fn check(cases: &[Case], results: &[RunResult]) {
    let mut failures = Vec::new();
    for (i, (c, r)) in cases.iter().zip(results).enumerate() {
        println!("{:>2} {:<9} {}", i + 1, verdict_name(c.verdict), c.name);
        if r.verdict != c.verdict || r.frame != c.output {
            failures.push(format!(
                "#{} {}: got {} {:02x?}\n   want {} {:02x?}",
                i + 1,
                c.name,
                verdict_name(r.verdict),
                r.frame,
                verdict_name(c.verdict),
                c.output
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn gue_and_gre_encapsulation_and_pmtu() {
    let pins = TempPins::new("tunp").expect("pins");
    {
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        store.commit(&before, &tun_table()).expect("commit");
    }
    let dir = DirectorNs::new("tunp", &[VIP_TUN]).expect("director namespace");
    let eth0_mac = dir.eth0_mac;
    let mut cases = Vec::new();
    for (i, s) in services().iter().enumerate() {
        let cport = 41000 + i as u16;
        let (first, next) = match s.proto {
            Proto::Udp => (
                Frame::udp(sa(CLIENT, cport), sa(VIP_TUN, s.port)).payload(b"odd-length query").tos(0x03),
                Frame::udp(sa(CLIENT, cport), sa(VIP_TUN, s.port)).payload(&[0x5a; 333]),
            ),
            _ => (
                Frame::tcp(sa(CLIENT, cport), sa(VIP_TUN, s.port), SYN).tos(0x12),
                Frame::tcp(sa(CLIENT, cport), sa(VIP_TUN, s.port), ACK | PSH).payload(&[7u8; 301]).tos(0x03),
            ),
        };
        let (first, next) = (with_id(first, 0x1234 + i as u16), with_id(next, 0x4321 + i as u16));
        let mut add = |name: String, f: &Frame, verdict: u32, output: Vec<u8>| {
            cases.push(Case { name, input: f.bytes(), verdict, output });
        };
        add(format!("{}: new flow -> encapsulated to {:?}", s.name, s.rs), &first, XDP_TX, encapsulated(eth0_mac, s, &first));
        add(format!("{}: same flow again (ECN CE -> ECT(0) outside for TCP)", s.name), &next, XDP_TX, encapsulated(eth0_mac, s, &next));
        let nodf = next.clone().no_df();
        add(format!("{}: no DF -> none outside", s.name), &nodf, XDP_TX, encapsulated(eth0_mac, s, &nodf));
        // PMTU: the largest DF packet the route (MTU 1400) carries in this tunnel, and one more.
        let room = TUN_MTU - overhead(&s.tunnel);
        let l4 = if s.proto == Proto::Udp { 8 } else { 20 };
        let fits = next.clone().payload(&vec![3u8; room - 20 - l4]);
        add(format!("{}: DF packet of {room} bytes just fits", s.name), &fits, XDP_TX, encapsulated(eth0_mac, s, &fits));
        let big = next.clone().payload(&vec![4u8; room - 20 - l4 + 1]);
        let frag = icmp_error_reply(
            &big.bytes(),
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: room as u16 }),
        );
        add(format!("{}: DF packet of {} bytes -> frag needed, MTU {room}", s.name, room + 1), &big, XDP_TX, frag);
    }
    // ICMP errors about a connection of a tunnelled service: to its real server, in its tunnel
    // (the flow of the ICMP packet itself: router -> VIP, protocol 1).
    for (i, s) in services().iter().enumerate().filter(|(_, s)| s.proto == Proto::Tcp && s.tunnel.kind != TUN_TYPE_IPIP) {
        let reply = Frame::tcp(sa(VIP_TUN, s.port), sa(CLIENT, 41000 + i as u16), ACK);
        let err = icmp(
            (ROUTER_MAC, eth0_mac),
            ROUTER,
            VIP_TUN,
            64,
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Host),
            &quote_of(&reply.bytes()),
            false,
        );
        let mut inner = err[14..].to_vec();
        inner[8] -= 1;
        inner[10] = 0;
        inner[11] = 0;
        let c = frames_tun::inet_csum(&inner[..20]);
        inner[10..12].copy_from_slice(&c.to_be_bytes());
        let outer = Outer::V4 { src: DIP, dst: s.rs, ttl: 63, tos: 0, id: 0, df: false };
        let out = tunnel((eth0_mac, ROUTER_MAC), outer, tun_of(&s.tunnel, ROUTER, VIP_TUN, (0, 0), 1), &inner);
        cases.push(Case {
            name: format!("{}: ICMP host unreachable about a reply -> in the tunnel to the real server", s.name),
            input: err,
            verdict: XDP_TX,
            output: out,
        });
    }
    let results = run_in(&dir.ns.name, pins.path(), dir.eth0, cases.iter().map(|c| c.input.clone()).collect());
    check(&cases, &results);
    // The tunnel checksums, summed again over what was sent (not over the expectation).
    let mut summed = 0;
    for (c, r) in cases.iter().zip(&results) {
        // (Not the ICMP answers: outer protocol 1.)
        if r.verdict == XDP_TX
            && r.frame[14 + 9] != 1
            && let Some(ok) = tunnel_checksum_verifies(&r.frame)
        {
            assert!(ok, "{}: the tunnel checksum does not verify", c.name);
            summed += 1;
        }
    }
    // GUE csum (tcp, udp), remcsum, GRE csum (tcp, udp): 4 forwarded packets each, and 3 ICMP errors.
    assert_eq!(summed, 5 * 4 + 3, "checksummed tunnel frames");
}

const OURS4: [u8; 4] = [10, 99, 0, 11];
const OURS6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];
const DIR6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x05];
const CLIENT6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
const VIP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16];
const GUE_PORT: u16 = 6080;
const MACS: ([u8; 6], [u8; 6]) = (ROUTER_MAC, [0x02, 0, 0, 0, 0x99, 0x11]);

fn outer4(dst: [u8; 4]) -> Outer {
    Outer::V4 { src: DIP, dst, ttl: 63, tos: 0x10, id: 7, df: true }
}

fn outer6(dst: [u8; 16]) -> Outer {
    Outer::V6 { src: DIR6, dst, hop: 63, tclass: 0x10 }
}

#[test]
fn decap_strips_every_tunnel_and_leaves_the_rest() {
    let pins = TempPins::new("decap").expect("pins");
    let addrs = [IpAddr::from(OURS4), IpAddr::from(OURS6)];
    let mut xdp = XdpUnderTest::load_decap(pins.path(), &addrs, &[GUE_PORT]).expect("decap program");
    let inner4 = Frame::tcp(sa(CLIENT, 40000), sa(VIP_TUN, 80), SYN).ttl(63).bytes()[14..].to_vec();
    let inner4u = Frame::udp(sa(CLIENT, 40001), sa(VIP_TUN, 53)).payload(b"odd").ttl(63).bytes()[14..].to_vec();
    let inner6 = ipv6_tcp(CLIENT6, VIP6, 40000, 80, 63, b"");
    let inner6u = ipv6_udp(CLIENT6, VIP6, 40001, 53, 63, &[9u8; 77]);
    let tuns = [
        Tun::Ipip,
        Tun::Gue { sport: 40000, dport: GUE_PORT, csum: false },
        Tun::Gue { sport: 40001, dport: GUE_PORT, csum: true },
        Tun::Gre { csum: false },
        Tun::Gre { csum: true },
    ];
    let mut cases = Vec::new();
    for (oname, outer) in [("IPv4", outer4(OURS4)), ("IPv6", outer6(OURS6))] {
        for (iname, inner) in [("IPv4 TCP", &inner4), ("IPv4 UDP", &inner4u), ("IPv6 TCP", &inner6), ("IPv6 UDP", &inner6u)] {
            for t in tuns {
                cases.push(Case {
                    name: format!("{iname} in {t:?} in {oname} -> inner frame to the kernel"),
                    input: tunnel(MACS, outer, t, inner),
                    verdict: XDP_PASS,
                    output: ethernet(MACS, inner),
                });
            }
        }
    }
    let untouched = |name: &str, input: Vec<u8>| Case { name: name.to_string(), input: input.clone(), verdict: XDP_PASS, output: input };
    let gue = Tun::Gue { sport: 40000, dport: GUE_PORT, csum: true };
    let mut bad_gre = tunnel(MACS, outer4(OURS4), Tun::Gre { csum: true }, &inner4);
    bad_gre[14 + 20 + 4] ^= 0x01;
    cases.push(untouched("GRE checksum wrong (IPv4)", bad_gre));
    let mut bad_gre6 = tunnel(MACS, outer6(OURS6), Tun::Gre { csum: true }, &inner6);
    bad_gre6[14 + 40 + 5] ^= 0x80;
    cases.push(untouched("GRE checksum wrong (IPv6)", bad_gre6));
    let mut bad_udp = tunnel(MACS, outer4(OURS4), gue, &inner4);
    bad_udp[14 + 20 + 6] ^= 0x10;
    cases.push(untouched("GUE UDP checksum wrong (IPv4)", bad_udp));
    let mut bad_udp6 = tunnel(MACS, outer6(OURS6), gue, &inner6);
    bad_udp6[14 + 40 + 7] ^= 0x01;
    cases.push(untouched("GUE UDP checksum wrong (IPv6)", bad_udp6));
    let mut lying_inner = tunnel(MACS, outer4(OURS4), Tun::Gue { sport: 1, dport: GUE_PORT, csum: false }, &inner4);
    lying_inner[14 + 20 + 8 + 1] = 41;
    cases.push(untouched("GUE says IPv6, carries IPv4", lying_inner));
    // A GUE datagram whose UDP payload is 2 bytes (half a GUE header), lengths consistent.
    let short = {
        let mut f = tunnel(MACS, outer4(OURS4), Tun::Gue { sport: 1, dport: GUE_PORT, csum: false }, &inner4);
        f.truncate(14 + 20 + 8 + 2);
        f[14 + 2..14 + 4].copy_from_slice(&30u16.to_be_bytes());
        f[14 + 10] = 0;
        f[14 + 11] = 0;
        let c = frames_tun::inet_csum(&f[14..34]);
        f[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
        f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&10u16.to_be_bytes());
        f
    };
    cases.push(untouched("GUE truncated (UDP payload of 2 bytes)", short));
    let mut cut = tunnel(MACS, outer4(OURS4), gue, &inner4);
    cut.truncate(14 + 20 + 10);
    cases.push(untouched("GUE frame cut short (IP length beyond the frame)", cut));
    cases.push(untouched(
        "UDP to another port",
        tunnel(MACS, outer4(OURS4), Tun::Gue { sport: 40000, dport: 6099, csum: true }, &inner4),
    ));
    cases.push(untouched("IPIP to an address not ours", tunnel(MACS, outer4([10, 99, 0, 99]), Tun::Ipip, &inner4)));
    let mut not6 = OURS6;
    not6[15] = 0x99;
    cases.push(untouched("GRE in IPv6 to an address not ours", tunnel(MACS, outer6(not6), Tun::Gre { csum: false }, &inner6)));
    let mut keyed = tunnel(MACS, outer4(OURS4), Tun::Gre { csum: false }, &inner4);
    keyed[14 + 20] |= 0x20;
    cases.push(untouched("GRE with a key (someone else's tunnel)", keyed));
    let mut gre_v1 = tunnel(MACS, outer4(OURS4), Tun::Gre { csum: false }, &inner4);
    gre_v1[14 + 20 + 1] = 1;
    cases.push(untouched("GRE version 1", gre_v1));
    let mut gue_ctl = tunnel(MACS, outer4(OURS4), Tun::Gue { sport: 1, dport: GUE_PORT, csum: false }, &inner4);
    gue_ctl[14 + 20 + 8] = 0x20;
    cases.push(untouched("GUE control message", gue_ctl));
    let mut gue_opt = tunnel(MACS, outer4(OURS4), Tun::Gue { sport: 1, dport: GUE_PORT, csum: false }, &inner4);
    gue_opt[14 + 20 + 8] = 0x01;
    cases.push(untouched("GUE with an option its flags do not announce (hlen 1)", gue_opt));
    let mut v_mismatch = tunnel(MACS, outer4(OURS4), Tun::Ipip, &inner6);
    v_mismatch[14 + 9] = 4;
    v_mismatch[14 + 10] = 0;
    v_mismatch[14 + 11] = 0;
    let c = frames_tun::inet_csum(&v_mismatch[14..34]);
    v_mismatch[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    cases.push(untouched("protocol 4 carrying an IPv6 packet", v_mismatch));
    let mut frag = tunnel(MACS, outer4(OURS4), Tun::Ipip, &inner4);
    frag[14 + 6] |= 0x20;
    cases.push(untouched("outer fragment (MF)", frag));
    let mut long6 = tunnel(MACS, outer6(OURS6), Tun::Ipip, &inner4);
    long6[14 + 4..14 + 6].copy_from_slice(&2000u16.to_be_bytes());
    cases.push(untouched("IPv6 payload length beyond the frame", long6));
    cases.push(untouched("plain TCP to our address", frames::Frame::tcp(sa(CLIENT, 1), sa(OURS4, 22), SYN).bytes()));
    cases.push(untouched("ARP", frames::arp_request(CLIENT, OURS4)));
    let results: Vec<RunResult> = cases.iter().map(|c| xdp.run(&c.input).expect("run")).collect();
    check(&cases, &results);
    assert_eq!(cases.len(), 2 * 4 * 5 + 19);
}

#[test]
fn decap_takes_gue_only_on_the_ports_it_was_given() {
    let pins = TempPins::new("decapp").expect("pins");
    let mut xdp = XdpUnderTest::load_decap(pins.path(), &[IpAddr::from(OURS4)], &[]).expect("decap program");
    let inner = Frame::tcp(sa(CLIENT, 40000), sa(VIP_TUN, 80), SYN).bytes()[14..].to_vec();
    let f = tunnel(MACS, outer4(OURS4), Tun::Gue { sport: 40000, dport: GUE_PORT, csum: false }, &inner);
    let r = xdp.run(&f).expect("run");
    assert_eq!((r.verdict, &r.frame), (XDP_PASS, &f), "no --gue-port: UDP is UDP");
    let ipip = tunnel(MACS, outer4(OURS4), Tun::Ipip, &inner);
    let r = xdp.run(&ipip).expect("run");
    assert_eq!((r.verdict, &r.frame), (XDP_PASS, &ethernet(MACS, &inner)), "IPIP still stripped");
}

/// A GUE packet kernel IPVS sent with remote checksum offload (`--tun-remcsum`, a datagram whose
/// checksum was still partial), as captured in the oracle VM (tests/golden/tunnels/ipvs-6.1.txt,
/// to 10.0.2.12:6081, "hello54" from 10.0.1.2:44746 to VIP 10.0.0.1:54). On the capture's bridge
/// the outer UDP checksum is the pseudo-header's only (the device fills it in): it is completed
/// here as a NIC would. The decap program strips it and completes the inner UDP checksum, as the
/// kernel's `gue_remcsum` would: the result is the datagram the client sent (TTL - 1).
#[test]
fn decap_completes_a_remote_checksum_offload_as_ipvs_sent_it() {
    let hex = "de18bdd3769d4e7c994b1ac70800450000 4b00004000 3f112396 0a000201 0a00020c \
               bc7517c100371855 0204000180000000 0014001a \
               4500002328 8e40003f11fe39 0a000102 0a000001 aeca0036000f1523 68656c6c6f3534";
    let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
    let mut frame: Vec<u8> = digits
        .chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).expect("hex"), 16).expect("hex"))
        .collect();
    assert_eq!(frame.len(), 14 + 0x4b);
    // The outer UDP checksum as the director's NIC would have finished it.
    let finish_udp_checksum = |frame: &mut Vec<u8>| {
        frame[14 + 26] = 0;
        frame[14 + 27] = 0;
        let mut pseudo = frame[14 + 12..14 + 20].to_vec();
        pseudo.extend_from_slice(&[0, 17, 0, 0x37]);
        let c = !(ones_sum(&frame[14 + 20..], ones_sum(&pseudo, 0)) as u16);
        frame[14 + 26..14 + 28].copy_from_slice(&c.to_be_bytes());
        assert!(frames_tun::udp4_checksum_ok(&frame[14..]));
    };
    finish_udp_checksum(&mut frame);
    let pins = TempPins::new("decapr").expect("pins");
    let mut xdp = XdpUnderTest::load_decap(pins.path(), &[IpAddr::from([10, 0, 2, 12])], &[6081]).expect("decap program");
    let r = xdp.run(&frame).expect("run");
    let sent = with_id(Frame::udp(sa([10, 0, 1, 2], 44746), sa([10, 0, 0, 1], 54)).payload(b"hello54").ttl(63), 0x288e);
    let macs = ([0x4e, 0x7c, 0x99, 0x4b, 0x1a, 0xc7], [0xde, 0x18, 0xbd, 0xd3, 0x76, 0x9d]);
    let want = ethernet(macs, &sent.bytes()[14..]);
    assert_eq!((verdict_name(r.verdict), &r.frame), (verdict_name(XDP_PASS), &want));
    // The same packet with the option's offset past the datagram: left alone, unwritten.
    let mut lying = frame.clone();
    lying[14 + 20 + 18] = 0x40;
    finish_udp_checksum(&mut lying);
    let r = xdp.run(&lying).expect("run");
    assert_eq!((r.verdict, &r.frame), (XDP_PASS, &lying), "remcsum offset beyond the datagram");
}
