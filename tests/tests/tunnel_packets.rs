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
        if r.verdict != c.verdict || (c.verdict != xlb_tests::xdp::XDP_DROP && r.frame != c.output) {
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

// ---- IPv6 services: IPv6 real servers (IPv6 outer) and IPv4 ones (mixed families)

const DIR6_S: &str = "2001:db8:88::5";
const VIP6_S: &str = "2001:db8:88::16";
const CLIENT6_S: &str = "2001:db8:88::10";
const ROUTER6_S: &str = "2001:db8:88::1";

fn v6(s: &str) -> std::net::Ipv6Addr {
    s.parse().expect("an IPv6 address")
}

/// IPv6 services on VIP6_S:`port`, each to one real server through one tunnel: IPv6 ones in
/// 2001:db8:99::/64 and IPv4 ones in 10.99.0.0/24, both routed via the router with MTU 1400.
fn services6() -> Vec<(&'static str, u16, IpAddr, Tunnel)> {
    let gue = |port, flags| Tunnel { kind: TUN_TYPE_GUE, port, flags };
    let gre = |flags| Tunnel { kind: TUN_TYPE_GRE, port: 0, flags };
    let ipip = Tunnel { kind: TUN_TYPE_IPIP, port: 0, flags: 0 };
    let rs6 = |last: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, last));
    vec![
        ("ipv6-in-ipv6", 2001, rs6(0x11), ipip),
        ("gue csum over ipv6", 2002, rs6(0x12), gue(6080, TUN_F_CSUM)),
        ("gue nocsum over ipv6", 2003, rs6(0x13), gue(6081, TUN_F_NOCSUM)),
        ("gre csum over ipv6", 2004, rs6(0x14), gre(TUN_F_CSUM)),
        ("gre over ipv6", 2005, rs6(0x15), gre(TUN_F_NOCSUM)),
        ("ipv6-in-ipv4 (mixed)", 2006, ip4([10, 99, 0, 22]), ipip),
        ("gue remcsum over ipv4 (mixed)", 2007, ip4([10, 99, 0, 21]), gue(6082, TUN_F_REMCSUM)),
        ("gre csum over ipv4 (mixed)", 2008, ip4([10, 99, 0, 23]), gre(TUN_F_CSUM)),
    ]
}

/// A director namespace for IPv6 services: eth0 with 2001:db8:88::5/64, the VIP, and
/// 192.168.88.5/24; routes to the real servers' subnets via the router (MTU 1400, locked).
fn director6(tag: &str) -> (xlb_tests::netns::Netns, u32, [u8; 6]) {
    let ns = xlb_tests::netns::Netns::new(&xlb_tests::netns::unique_prefix(tag)).expect("netns");
    for key in ["net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"] {
        ns.sysctl(key, "0").expect("sysctl");
    }
    ns.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "peer0"]).expect("veth");
    ns.ip(&["link", "set", "eth0", "up"]).expect("up");
    ns.ip(&["link", "set", "peer0", "up"]).expect("up");
    ns.sysctl("net.ipv6.conf.all.forwarding", "1").expect("sysctl");
    ns.sysctl("net.ipv4.ip_forward", "1").expect("sysctl");
    ns.ip(&["-6", "addr", "add", &format!("{DIR6_S}/64"), "dev", "eth0", "nodad"]).expect("addr");
    ns.ip(&["-6", "addr", "add", &format!("{VIP6_S}/128"), "dev", "eth0", "nodad"]).expect("addr");
    ns.ip(&["addr", "add", "192.168.88.5/24", "dev", "eth0"]).expect("addr");
    ns.ip(&["addr", "add", "192.168.88.16/32", "dev", "eth0"]).expect("addr");
    let mtu = TUN_MTU.to_string();
    ns.ip(&["-6", "route", "add", "2001:db8:99::/64", "via", ROUTER6_S, "dev", "eth0", "mtu", "lock", &mtu]).expect("route");
    ns.ip(&["route", "add", "10.99.0.0/24", "via", "192.168.88.1", "mtu", "lock", &mtu]).expect("route");
    let mac = mac_str(ROUTER_MAC);
    ns.ip(&["-6", "neigh", "replace", ROUTER6_S, "lladdr", &mac, "dev", "eth0", "nud", "permanent"]).expect("neigh");
    ns.ip(&["neigh", "replace", "192.168.88.1", "lladdr", &mac, "dev", "eth0", "nud", "permanent"]).expect("neigh");
    let ifindex: u32 = ns.exec("cat", &["/sys/class/net/eth0/ifindex"]).expect("ifindex").trim().parse().expect("ifindex");
    let txt = ns.exec("cat", &["/sys/class/net/eth0/address"]).expect("mac");
    let v: Vec<u8> = txt.trim().split(':').filter_map(|h| u8::from_str_radix(h, 16).ok()).collect();
    (ns, ifindex, [v[0], v[1], v[2], v[3], v[4], v[5]])
}

/// What the director sends for IPv6 packet `f` through tunnel `t` to `rs` from `src6` (the
/// route's source, or the VIP when the kernel gives none) or DIP: `f` with hop limit - 1 inside;
/// outer hop limit = the inner one, traffic class with ECN encapsulated, flow label 0; over IPv4
/// no DF and (IPv4 needs one, the packet has none) the id the output carries.
fn encapsulated6(eth0_mac: [u8; 6], f: &frames::Frame6, rs: IpAddr, t: &Tunnel, src6: std::net::Ipv6Addr, out: &[u8]) -> Vec<u8> {
    let inner = f.clone().hop_limit(f.hop_limit - 1).bytes()[14..].to_vec();
    let tc = if f.tc & 3 == 3 { (f.tc & !3) | 2 } else { f.tc };
    let (sport, dport, proto) = match &f.l4 {
        frames::L4::Tcp(t) => (t.source_port, t.destination_port, 6),
        frames::L4::Udp(u) => (u.source_port, u.destination_port, 17),
    };
    let tun = match t.kind {
        TUN_TYPE_GUE => Tun::Gue {
            sport: gue_sport(&f.src.octets(), &f.dst.octets(), sport, dport, proto),
            dport: t.port,
            csum: t.flags != TUN_F_NOCSUM,
        },
        TUN_TYPE_GRE => Tun::Gre { csum: t.flags & TUN_F_CSUM != 0 },
        _ => Tun::Ipip,
    };
    let outer = match rs {
        IpAddr::V6(rs) => Outer::V6 { src: src6.octets(), dst: rs.octets(), hop: f.hop_limit - 1, tclass: tc },
        IpAddr::V4(rs) => Outer::V4 {
            src: DIP,
            dst: rs.octets(),
            ttl: f.hop_limit - 1,
            tos: tc,
            id: out.get(18..20).map_or(0, |b| u16::from_be_bytes([b[0], b[1]])),
            df: false,
        },
    };
    tunnel((eth0_mac, ROUTER_MAC), outer, tun, &inner)
}

/// IPv4 services on VIP_TUN:`port` to IPv6 real servers (mixed families, tunnels only).
fn services4to6() -> Vec<(&'static str, u16, std::net::Ipv6Addr, Tunnel)> {
    let rs6 = |last: u16| std::net::Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, last);
    vec![
        ("ipv4-in-ipv6 (mixed)", 3001, rs6(0x31), Tunnel { kind: TUN_TYPE_IPIP, port: 0, flags: 0 }),
        ("gue csum over ipv6, ipv4 inside (mixed)", 3002, rs6(0x32), Tunnel { kind: TUN_TYPE_GUE, port: 6090, flags: TUN_F_CSUM }),
        ("gre csum over ipv6, ipv4 inside (mixed)", 3003, rs6(0x33), Tunnel { kind: TUN_TYPE_GRE, port: 0, flags: TUN_F_CSUM }),
    ]
}

#[test]
fn ipv6_services_through_every_tunnel_with_pmtu() {
    let pins = TempPins::new("tun6").expect("pins");
    {
        let svcs = services6()
            .iter()
            .enumerate()
            .map(|(i, (_, port, rs, t))| {
                let mut svc = service(i as u32, Proto::Tcp, IpAddr::V6(v6(VIP6_S)), *port, "rr", &[(*rs, *port, Fwd::Tunnel, 1)]);
                svc.dests[0].tunnel = *t;
                svc
            })
            .collect::<Vec<_>>();
        let n6 = svcs.len() as u32;
        let mut svcs = svcs;
        for (i, (_, port, rs, t)) in services4to6().iter().enumerate() {
            let mut svc = service(n6 + i as u32, Proto::Tcp, ip4(VIP_TUN), *port, "rr", &[(IpAddr::V6(*rs), *port, Fwd::Tunnel, 1)]);
            svc.dests[0].tunnel = *t;
            svcs.push(svc);
        }
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        store.commit(&before, &table(svcs)).expect("commit");
    }
    let (ns, eth0, eth0_mac) = director6("tun6");
    let mut inputs = Vec::new();
    for (i, (_, port, rs, t)) in services6().iter().enumerate() {
        let c = frames::sa6(CLIENT6_S, 42000 + i as u16);
        let v = frames::sa6(VIP6_S, *port);
        let overhead = if rs.is_ipv6() { 40 } else { 20 } + overhead(t) - 20;
        let room = TUN_MTU - overhead;
        let fits_payload = room - 40 - 20;
        inputs.push(frames::Frame6::tcp(c, v, SYN).traffic(0x12, 0x12345));
        inputs.push(frames::Frame6::tcp(c, v, ACK | PSH).payload(&[7u8; 301]).traffic(0x03, 0));
        inputs.push(frames::Frame6::tcp(c, v, ACK).payload(&vec![3u8; fits_payload]));
        inputs.push(frames::Frame6::tcp(c, v, ACK).payload(&vec![4u8; fits_payload + 1]));
    }
    // (On the connection of the second service.)
    let hop1 = frames::Frame6::tcp(frames::sa6(CLIENT6_S, 42001), frames::sa6(VIP6_S, 2002), ACK).hop_limit(1);
    inputs.push(hop1.clone());
    let mut bytes: Vec<Vec<u8>> = inputs.iter().map(|f| f.bytes()).collect();
    // IPv4 services to IPv6 real servers.
    let mut inputs4 = Vec::new();
    for (i, (_, port, _, t)) in services4to6().iter().enumerate() {
        let (c, v) = (sa(CLIENT, 43000 + i as u16), sa(VIP_TUN, *port));
        let room = TUN_MTU - (40 + overhead(t) - 20);
        inputs4.push(with_id(Frame::tcp(c, v, SYN).tos(0x12), 0x777));
        inputs4.push(with_id(Frame::tcp(c, v, ACK | PSH).payload(&[7u8; 301]).tos(0x03), 0x778));
        inputs4.push(Frame::tcp(c, v, ACK).payload(&vec![3u8; room - 40]));
        inputs4.push(Frame::tcp(c, v, ACK).payload(&vec![4u8; room - 40 + 1]));
    }
    let first4 = bytes.len();
    bytes.extend(inputs4.iter().map(|f| f.bytes()));
    let results = run_in(&ns.name, pins.path(), eth0, bytes.clone());
    // The outer IPv6 source: the route's as the kernel selects it (`ip -6 route get`: what IPVS
    // uses) when the FIB lookup gives it (BPF_FIB_LOOKUP_SRC), else the VIP.
    let fib_src = Store::open_at(pins.path(), Default::default()).expect("store").config().expect("config").flags
        & lb_common::CFG_F_FIB_SRC
        != 0;
    let route = ns.ip(&["-6", "route", "get", "2001:db8:99::11"]).expect("route get");
    let kernel_src = route.split_whitespace().skip_while(|w| *w != "src").nth(1).expect("a source address").to_string();
    let src6 = v6(if fib_src { &kernel_src } else { VIP6_S });
    let mut cases = Vec::new();
    for (i, (name, _, rs, t)) in services6().iter().enumerate() {
        let room = TUN_MTU - (if rs.is_ipv6() { 40 } else { 20 } + overhead(t) - 20);
        for (k, what) in ["new connection", "established, ECN CE -> ECT(0) outside", "just fits", "too big"].iter().enumerate() {
            let n = 4 * i + k;
            let (verdict, output) = if k == 3 {
                let ptb = etherparse::Icmpv6Type::PacketTooBig { mtu: room as u32 };
                (XDP_TX, frames_tun::icmp6_error_reply(&bytes[n], ptb))
            } else {
                (XDP_TX, encapsulated6(eth0_mac, &inputs[n], *rs, t, src6, &results[n].frame))
            };
            let name = if k == 3 { format!("{name}: {} bytes -> packet too big, MTU {room}", room + 1) } else { format!("{name}: {what}") };
            cases.push(Case { name, input: bytes[n].clone(), verdict, output });
        }
    }
    let exceeded = etherparse::Icmpv6Type::TimeExceeded(etherparse::icmpv6::TimeExceededCode::HopLimitExceeded);
    cases.push(Case {
        name: "hop limit 1 -> ICMPv6 time exceeded".into(),
        input: bytes[first4 - 1].clone(),
        verdict: XDP_TX,
        output: frames_tun::icmp6_error_reply(&bytes[first4 - 1], exceeded),
    });
    for (i, (name, _, rs, t)) in services4to6().iter().enumerate() {
        let room = TUN_MTU - (40 + overhead(t) - 20);
        for (k, what) in ["new connection", "established, ECN CE -> ECT(0) outside", "just fits", "too big"].iter().enumerate() {
            let f = &inputs4[4 * i + k];
            let input = bytes[first4 + 4 * i + k].clone();
            let (verdict, output) = if k == 3 {
                let ty = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: room as u16 });
                (XDP_TX, icmp_error_reply(&input, ty))
            } else if !fib_src {
                // Without the kernel's source address an IPv4 service has none to send from over
                // IPv6 (no IPv6 VIP, no interface address known to the data plane): dropped.
                (xlb_tests::xdp::XDP_DROP, Vec::new())
            } else {
                let inner = f.clone().ttl(f.ip.time_to_live - 1).bytes()[14..].to_vec();
                let tos = (f.ip.dscp.value() << 2) | f.ip.ecn.value();
                let tc = if tos & 3 == 3 { (tos & !3) | 2 } else { tos };
                let (sp, dp) = match &f.l4 {
                    frames::L4::Tcp(t) => (t.source_port, t.destination_port),
                    frames::L4::Udp(u) => (u.source_port, u.destination_port),
                };
                let outer = Outer::V6 { src: v6(&kernel_src).octets(), dst: rs.octets(), hop: f.ip.time_to_live - 1, tclass: tc };
                let route6 = |t: &Tunnel| tun_of(t, f.ip.source, f.ip.destination, (sp, dp), 6);
                (XDP_TX, tunnel((eth0_mac, ROUTER_MAC), outer, route6(t), &inner))
            };
            let name = if k == 3 { format!("{name}: DF {} bytes -> frag needed, MTU {room}", room + 1) } else { format!("{name}: {what}") };
            cases.push(Case { name, input, verdict, output });
        }
    }
    check(&cases, &results);
    // The mixed-family packets' outer IPv4 checksums and the tunnel checksums, summed again.
    for (c, r) in cases.iter().zip(&results) {
        if r.frame[12..14] == [0x08, 0x00] {
            assert_eq!(frames_tun::inet_csum(&r.frame[14..34]), 0, "{}: outer IPv4 header checksum", c.name);
            if let Some(ok) = tunnel_checksum_verifies(&r.frame) {
                assert!(ok, "{}: tunnel checksum", c.name);
            }
        }
    }
}
