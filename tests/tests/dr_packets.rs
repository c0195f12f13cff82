//! Packet-level tests of the DR path: the real XDP object, loaded into the kernel, run with
//! BPF_PROG_TEST_RUN on crafted frames; verdicts and output bytes compared exactly, counters
//! read back through the same store `ipvsadm -Ln --stats` uses.
use std::net::{IpAddr, Ipv4Addr};

use etherparse::{Icmpv4Type, icmpv4::TimeExceededCode};
use lb_common::TailProgram;

use lb_user::{
    model::{Fwd, Proto, Table},
    store::Store,
};
use xlb_tests::{
    frames::{ACK, DIRECTOR_MAC, FIN, Frame, RST, SYN, arp_request, icmp_error_reply, sa, slow_path_marked},
    netns::Netns,
    pins::TempPins,
    table::{service, table},
    xdp::{LOOPBACK_IFINDEX, XDP_DROP, XDP_PASS, XDP_TX, XdpUnderTest, set_next_hop, verdict_name},
};

const VIP: [u8; 4] = [192, 168, 88, 15];
const CLIENT: [u8; 4] = [192, 168, 88, 10];
const WEB1: [u8; 4] = [192, 168, 88, 100];
const WEB2: [u8; 4] = [192, 168, 88, 200];
const WEB1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x64];
const WEB2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc8];
// service() numbers dests svc_id * 1024 + position of the `-a`.
const WEB1_ID: u32 = 0;
const WEB2_ID: u32 = 1;
const UDP_WEB1_ID: u32 = 1024;
const UDP_WEB2_ID: u32 = 1025;

fn ip(o: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(o))
}

fn seed_table() -> Table {
    let dests = [(ip(WEB1), 80, Fwd::Route, 1), (ip(WEB2), 80, Fwd::Route, 2)];
    let udp = [(ip(WEB1), 53, Fwd::Route, 1), (ip(WEB2), 53, Fwd::Route, 1)];
    table(vec![service(0, Proto::Tcp, ip(VIP), 80, "rr", &dests), service(1, Proto::Udp, ip(VIP), 53, "rr", &udp)])
}

/// What the seed's services take: IPv4, rr (new connections), a first packet, ICMP errors.
const DR_TAILS: [TailProgram; 3] = [TailProgram::New, TailProgram::Fwd, TailProgram::Icmp];

/// Pins with the seed's DR table committed and the next hops cached as the loopback
/// interface BPF_PROG_TEST_RUN reports as ingress.
struct Setup {
    xdp: XdpUnderTest,
    pins: TempPins,
}

fn setup(tag: &str) -> Setup {
    let pins = TempPins::new(tag).expect("pin dir");
    {
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        store.commit(&before, &seed_table()).expect("commit");
    }
    for (id, mac) in [(WEB1_ID, WEB1_MAC), (WEB2_ID, WEB2_MAC), (UDP_WEB1_ID, WEB1_MAC), (UDP_WEB2_ID, WEB2_MAC)] {
        set_next_hop(pins.path(), id, mac, DIRECTOR_MAC, LOOPBACK_IFINDEX).expect("next hop");
    }
    let xdp = XdpUnderTest::load_tails(pins.path(), &DR_TAILS).expect("load xlb_xdp");
    Setup { xdp, pins }
}

/// The frame as DR must send it: to the real server's MAC, from the director's, TTL - 1.
fn dr_out(f: &Frame, rs_mac: [u8; 6]) -> Vec<u8> {
    f.clone().macs(DIRECTOR_MAC, rs_mac).ttl(f.ip.time_to_live - 1).bytes()
}

fn expect(s: &mut Setup, f: &[u8], verdict: u32, out: &[u8], what: &str) {
    let r = s.xdp.run(f).expect("test run");
    assert_eq!(verdict_name(r.verdict), verdict_name(verdict), "{what}: verdict");
    assert_eq!(r.frame, out, "{what}: output bytes");
}

fn load(s: &Setup) -> Table {
    Store::open_at(s.pins.path(), Default::default()).and_then(|st| st.load()).expect("load table")
}

#[test]
fn dr_rewrites_macs_and_ttl_in_rr_order() {
    let mut s = setup("rr");
    // List order is newest first: web2 (added second) is picked first, then web1, ...
    for (port, mac) in [(40001, WEB2_MAC), (40002, WEB1_MAC), (40003, WEB2_MAC), (40004, WEB1_MAC)] {
        let f = Frame::tcp(sa(CLIENT, port), sa(VIP, 80), SYN);
        expect(&mut s, &f.bytes(), XDP_TX, &dr_out(&f, mac), &format!("SYN from port {port}"));
    }
}

#[test]
fn established_flow_keeps_its_real_server() {
    let mut s = setup("est");
    let a = sa(CLIENT, 41000);
    let syn = Frame::tcp(a, sa(VIP, 80), SYN);
    expect(&mut s, &syn.bytes(), XDP_TX, &dr_out(&syn, WEB2_MAC), "first SYN -> web2");
    for i in 0..3u16 {
        // Other clients' new connections move the rr cursor in between.
        let other = Frame::tcp(sa(CLIENT, 42000 + i), sa(VIP, 80), SYN);
        assert_eq!(s.xdp.run(&other.bytes()).expect("run").verdict, XDP_TX);
        let ack = Frame::tcp(a, sa(VIP, 80), ACK).payload(b"GET / HTTP/1.0\r\n\r\n");
        expect(&mut s, &ack.bytes(), XDP_TX, &dr_out(&ack, WEB2_MAC), "established packet");
    }
    let fin = Frame::tcp(a, sa(VIP, 80), FIN | ACK);
    expect(&mut s, &fin.bytes(), XDP_TX, &dr_out(&fin, WEB2_MAC), "FIN of the flow");
}

#[test]
fn non_vip_arp_and_truncated_frames_pass_untouched() {
    let mut s = setup("pass");
    let syn = Frame::tcp(sa(CLIENT, 40000), sa(VIP, 80), SYN).bytes();
    let mut bad_ihl = syn.clone();
    bad_ihl[14] = 0x44; // IHL 4 (16 bytes): impossible
    let mut long_len = syn.clone();
    long_len[16..18].copy_from_slice(&1000u16.to_be_bytes()); // claims more than the frame has
    let mut bad_version = syn.clone();
    bad_version[14] = 0x65;
    let mut short_doff = syn.clone();
    short_doff[14 + 20 + 12] = 0x40; // TCP data offset 4 words
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("TCP to another address", Frame::tcp(sa(CLIENT, 40000), sa([192, 168, 88, 99], 80), SYN).bytes()),
        ("TCP to the VIP on a port without service", Frame::tcp(sa(CLIENT, 40000), sa(VIP, 8080), SYN).bytes()),
        ("UDP to another address", Frame::udp(sa(CLIENT, 5353), sa([192, 168, 88, 99], 53)).bytes()),
        ("UDP to the VIP on a port without service", Frame::udp(sa(CLIENT, 5353), sa(VIP, 54)).bytes()),
        ("ARP request for the VIP", arp_request(CLIENT, VIP)),
        // (BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.)
        ("Ethernet header alone", syn[..14].to_vec()),
        ("IPv4 header cut", syn[..14 + 12].to_vec()),
        ("TCP header cut", syn[..14 + 20 + 10].to_vec()),
        ("IHL below 5", bad_ihl),
        ("IP total length beyond the frame", long_len),
        ("IP version 6 in an IPv4 ethertype", bad_version),
        ("TCP data offset below 5", short_doff),
    ];
    for (what, f) in cases {
        expect(&mut s, &f, XDP_PASS, &f, what);
    }
    assert!(load(&s).services.iter().all(|svc| svc.stats.conns == 0), "nothing was scheduled");
}

#[test]
fn only_a_syn_opens_a_tcp_connection() {
    let mut s = setup("syn");
    for (what, flags) in [("ACK", ACK), ("FIN", FIN | ACK), ("RST", RST), ("SYN+RST", SYN | RST)] {
        let f = Frame::tcp(sa(CLIENT, 43000), sa(VIP, 80), flags).bytes();
        expect(&mut s, &f, XDP_PASS, &f, &format!("{what} without a connection"));
    }
}

#[test]
fn ip_options_are_forwarded_intact() {
    let mut s = setup("opts");
    // IHL 7: NOP, NOP, then a record-route-like filler and EOL padding (8 bytes of options).
    let f = Frame::tcp(sa(CLIENT, 44000), sa(VIP, 80), SYN).ip_options(&[1, 1, 7, 3, 4, 0, 0, 0]);
    assert_eq!(f.bytes()[14] & 0x0f, 7, "IHL 7 in the fixture");
    expect(&mut s, &f.bytes(), XDP_TX, &dr_out(&f, WEB2_MAC), "SYN with IP options");
}

#[test]
fn ttl_one_is_answered_with_time_exceeded() {
    let mut s = setup("ttl");
    let f = Frame::tcp(sa(CLIENT, 45000), sa(VIP, 80), SYN).ttl(1).bytes();
    let want = icmp_error_reply(&f, Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit));
    expect(&mut s, &f, XDP_TX, &want, "TTL 1: ICMP time exceeded back to the client, from the VIP");
}

#[test]
fn fragments_are_not_forwarded() {
    let mut s = setup("frag");
    let first = Frame::tcp(sa(CLIENT, 46000), sa(VIP, 80), SYN).fragment(true, 0).bytes();
    let later = Frame::udp(sa(CLIENT, 5353), sa(VIP, 53)).fragment(false, 100).bytes();
    expect(&mut s, &first, XDP_PASS, &first, "first fragment (MF)");
    expect(&mut s, &later, XDP_PASS, &later, "later fragment (offset)");
    let g = Store::open_at(s.pins.path(), Default::default()).and_then(|st| st.global_stats()).expect("stats");
    assert_eq!(g.parse_fail, 2);
}

#[test]
fn udp_service_is_balanced_and_sticky() {
    let mut s = setup("udp");
    let a = Frame::udp(sa(CLIENT, 5000), sa(VIP, 53)).payload(b"query-a");
    let b = Frame::udp(sa(CLIENT, 5001), sa(VIP, 53)).payload(b"query-b");
    expect(&mut s, &a.bytes(), XDP_TX, &dr_out(&a, WEB2_MAC), "first UDP flow");
    expect(&mut s, &b.bytes(), XDP_TX, &dr_out(&b, WEB1_MAC), "second UDP flow");
    expect(&mut s, &a.bytes(), XDP_TX, &dr_out(&a, WEB2_MAC), "first UDP flow again");
}

#[test]
fn quiesced_and_deleted_real_servers() {
    let mut s = setup("quiesce");
    let a = Frame::tcp(sa(CLIENT, 47000), sa(VIP, 80), SYN);
    expect(&mut s, &a.bytes(), XDP_TX, &dr_out(&a, WEB2_MAC), "before the edit");
    // Weight 0 on web2: new connections all go to web1; web2's existing flow continues.
    {
        let mut store = Store::open_at(s.pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        let mut after = before.clone();
        after.services[0].dests.iter_mut().filter(|d| d.id == WEB2_ID).for_each(|d| d.weight = 0);
        store.commit(&before, &after).expect("commit");
    }
    for port in 47001..47004 {
        let f = Frame::tcp(sa(CLIENT, port), sa(VIP, 80), SYN);
        expect(&mut s, &f.bytes(), XDP_TX, &dr_out(&f, WEB1_MAC), "new connection while web2 is quiesced");
    }
    let ack = Frame::tcp(sa(CLIENT, 47000), sa(VIP, 80), ACK);
    expect(&mut s, &ack.bytes(), XDP_TX, &dr_out(&ack, WEB2_MAC), "web2's existing flow");
    // Deleting web2: its connections' packets are dropped (expire_nodest_conn = 0).
    {
        let mut store = Store::open_at(s.pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        let mut after = before.clone();
        after.services[0].dests.retain(|d| d.id != WEB2_ID);
        store.commit(&before, &after).expect("commit");
    }
    let r = s.xdp.run(&ack.bytes()).expect("run");
    assert_eq!(verdict_name(r.verdict), verdict_name(XDP_DROP), "packet of a deleted server's connection");
}

#[test]
fn counters_match_what_was_sent() {
    let mut s = setup("stats");
    let mut sent = [(0u64, 0u64, 0u64); 2]; // per dest (web1, web2): conns, packets, bytes
    let flows = [(48000u16, 1usize), (48001, 0), (48002, 1)];
    for (port, dest) in flows {
        let syn = Frame::tcp(sa(CLIENT, port), sa(VIP, 80), SYN);
        let data = Frame::tcp(sa(CLIENT, port), sa(VIP, 80), ACK).payload(&vec![b'x'; 100 + port as usize % 7]);
        for (f, new) in [(&syn, true), (&data, false), (&data, false)] {
            assert_eq!(s.xdp.run(&f.bytes()).expect("run").verdict, XDP_TX);
            let e = &mut sent[dest];
            e.0 += new as u64;
            e.1 += 1;
            e.2 += f.ip_len();
        }
    }
    // Some frames that must not count.
    let _ = s.xdp.run(&Frame::tcp(sa(CLIENT, 1), sa([192, 168, 88, 99], 80), SYN).bytes());
    let _ = s.xdp.run(&arp_request(CLIENT, VIP));
    let t = load(&s);
    let svc = &t.services[0];
    let web1 = svc.dests.iter().find(|d| d.id == WEB1_ID).expect("web1");
    let web2 = svc.dests.iter().find(|d| d.id == WEB2_ID).expect("web2");
    assert_eq!((web1.stats.conns, web1.stats.inpkts, web1.stats.inbytes), sent[0]);
    assert_eq!((web2.stats.conns, web2.stats.inpkts, web2.stats.inbytes), sent[1]);
    assert_eq!(svc.stats.conns, sent[0].0 + sent[1].0);
    assert_eq!(svc.stats.inpkts, sent[0].1 + sent[1].1);
    assert_eq!(svc.stats.inbytes, sent[0].2 + sent[1].2);
    assert_eq!((svc.stats.outpkts, svc.stats.outbytes), (0, 0), "DR never sees replies");
    // SYN -> SYN_RECV (active), ACK -> ESTABLISHED (active): 3 active connections.
    assert_eq!((web1.active_conns, web1.inact_conns), (1, 0));
    assert_eq!((web2.active_conns, web2.inact_conns), (2, 0));
    let g = Store::open_at(s.pins.path(), Default::default()).and_then(|st| st.global_stats()).expect("stats");
    assert_eq!(g.tx, 9);
    assert_eq!(g.pass, 2);
    assert_eq!(g.rx, 11);
    assert_eq!((g.total.conns, g.total.inpkts), (3, 9));
}

/// The next hop from the kernel's FIB and neighbour table (no cache preset): in a namespace
/// with a real interface, a neighbour entry for web1 and none for web2.
#[test]
fn next_hop_comes_from_the_kernels_neighbour_table() {
    let pins = TempPins::new("fib").expect("pins");
    {
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        store.commit(&before, &seed_table()).expect("commit");
    }
    let ns = Netns::new(&xlb_tests::netns::unique_prefix("fib")).expect("netns");
    ns.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth1"]).expect("veth");
    ns.ip(&["addr", "add", "192.168.88.5/24", "dev", "eth0"]).expect("addr");
    ns.ip(&["link", "set", "eth0", "up"]).expect("up");
    ns.ip(&["link", "set", "eth1", "up"]).expect("up");
    // bpf_fib_lookup answers only for interfaces that forward (the seeds' directors do).
    ns.sysctl("net.ipv4.conf.eth0.forwarding", "1").expect("forwarding");
    ns.ip(&["neigh", "add", "192.168.88.100", "lladdr", "02:00:00:00:00:64", "dev", "eth0", "nud", "permanent"])
        .expect("neigh");
    let mac_out = ns.ip(&["-br", "link", "show", "eth0"]).expect("link");
    let mac_txt = mac_out.split_whitespace().nth(2).expect("mac").to_string();
    let dir_mac: Vec<u8> = mac_txt.split(':').map(|h| u8::from_str_radix(h, 16).expect("hex")).collect();
    let ifindex: u32 = ns.exec("cat", &["/sys/class/net/eth0/ifindex"]).expect("ifindex").trim().parse().expect("n");
    let name = ns.name.clone();
    let path = pins.path().to_path_buf();
    let tag = xlb_tests::xdp::slow_path_tag(pins.path()).expect("tag");
    // BPF_PROG_TEST_RUN resolves the ingress ifindex in the caller's namespace: run from a
    // thread that moved into the lab namespace.
    let results = std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{name}")).expect("netns file");
        use std::os::fd::AsRawFd as _;
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
        let mut xdp = XdpUnderTest::load_tails(&path, &DR_TAILS).expect("load");
        let to_web2 = Frame::tcp(sa(CLIENT, 49000), sa(VIP, 80), SYN);
        let to_web1 = Frame::tcp(sa(CLIENT, 49001), sa(VIP, 80), SYN);
        let r2 = xdp.run_on(&to_web2.bytes(), ifindex).expect("run");
        let r1 = xdp.run_on(&to_web1.bytes(), ifindex).expect("run");
        (to_web2, r2, to_web1, r1)
    })
    .join()
    .expect("thread");
    let (to_web2, r2, to_web1, r1) = results;
    // web2 has no neighbour entry: handed to the kernel with the slow-path mark for the tc program
    // (egress eth0, next hop web2), TTL already decremented, MACs left to the neighbour layer.
    assert_eq!(verdict_name(r2.verdict), "XDP_PASS");
    let want2 = slow_path_marked(to_web2.clone().ttl(63).bytes(), tag, ifindex, WEB2);
    assert_eq!(r2.frame, want2);
    // web1's MAC comes from the neighbour table, the source MAC from the interface.
    let mut smac = [0u8; 6];
    smac.copy_from_slice(&dir_mac);
    let want = to_web1.clone().macs(smac, [2, 0, 0, 0, 0, 0x64]).ttl(63).bytes();
    assert_eq!(verdict_name(r1.verdict), "XDP_TX");
    assert_eq!(r1.frame, want);
}

/// Edits the table through the store (what lbadm does).
fn edit_table(s: &Setup, f: impl FnOnce(&mut Table)) {
    let mut store = Store::open_at(s.pins.path(), Default::default()).expect("store");
    let before = store.load().expect("load");
    let mut after = before.clone();
    f(&mut after);
    store.commit(&before, &after).expect("commit");
}

/// `lbd sysctl NAME=VALUE`, through the same code.
fn sysctl(s: &Setup, setting: &str) {
    let mut store = Store::open_at(s.pins.path(), Default::default()).expect("store");
    store.update_config(|c| lb_user::sysctl::apply(c, &[setting.to_string()])).expect("sysctl");
}

fn conns_of(s: &Setup) -> Vec<(u16, String, String)> {
    let store = Store::open_at(s.pins.path(), Default::default()).expect("store");
    let mut v: Vec<_> =
        store.connections().expect("conns").into_iter().map(|c| (c.cport, c.state.to_string(), c.daddr.to_string())).collect();
    v.sort();
    v
}

/// conn_reuse_mode (spec §5.4): a SYN finding a TIME_WAIT connection is scheduled anew (1, the
/// default) or reuses its real server (0); bit 2 extends that to a DR connection in FIN_WAIT.
#[test]
fn sysctl_conn_reuse_mode() {
    let mut s = setup("reuse");
    let syn = |port| Frame::tcp(sa(CLIENT, port), sa(VIP, 80), SYN);
    let fin = |port| Frame::tcp(sa(CLIENT, port), sa(VIP, 80), FIN | ACK);
    let ack = |port| Frame::tcp(sa(CLIENT, port), sa(VIP, 80), ACK);
    // Port 49000: SYN then FIN (input-only: SYN_RECV -> TIME_WAIT) on web2.
    expect(&mut s, &syn(49000).bytes(), XDP_TX, &dr_out(&syn(49000), WEB2_MAC), "first connection");
    expect(&mut s, &fin(49000).bytes(), XDP_TX, &dr_out(&fin(49000), WEB2_MAC), "its FIN");
    assert_eq!(conns_of(&s), [(49000, "TIME_WAIT".into(), "192.168.88.200".into())]);
    // Default 1: the reused port's SYN expires it and is scheduled: rr's next, web1.
    expect(&mut s, &syn(49000).bytes(), XDP_TX, &dr_out(&syn(49000), WEB1_MAC), "SYN on TIME_WAIT, mode 1");
    assert_eq!(conns_of(&s), [(49000, "SYN_RECV".into(), "192.168.88.100".into())]);
    let t = load(&s);
    let counts: Vec<(u32, u32)> = t.services[0].dests.iter().map(|d| (d.active_conns, d.inact_conns)).collect();
    assert_eq!(counts, [(0, 0), (1, 0)], "web2's entry gave back its count, web1 counts the new one (SYN_RECV is active)");
    // Mode 0: the same sequence reuses the old real server.
    sysctl(&s, "conn_reuse_mode=0");
    expect(&mut s, &fin(49000).bytes(), XDP_TX, &dr_out(&fin(49000), WEB1_MAC), "FIN");
    expect(&mut s, &syn(49000).bytes(), XDP_TX, &dr_out(&syn(49000), WEB1_MAC), "SYN on TIME_WAIT, mode 0");
    // FIN_WAIT (SYN, ACK, FIN): mode 1 keeps it, mode 3 (bit 2) reschedules a DR connection.
    sysctl(&s, "conn_reuse_mode=1");
    for (f, mac) in [(syn(49001), WEB2_MAC), (ack(49001), WEB2_MAC), (fin(49001), WEB2_MAC)] {
        expect(&mut s, &f.bytes(), XDP_TX, &dr_out(&f, mac), "to FIN_WAIT");
    }
    expect(&mut s, &syn(49001).bytes(), XDP_TX, &dr_out(&syn(49001), WEB2_MAC), "SYN on FIN_WAIT, mode 1");
    for (f, mac) in [(ack(49001), WEB2_MAC), (fin(49001), WEB2_MAC)] {
        expect(&mut s, &f.bytes(), XDP_TX, &dr_out(&f, mac), "back to FIN_WAIT");
    }
    sysctl(&s, "conn_reuse_mode=3");
    expect(&mut s, &syn(49001).bytes(), XDP_TX, &dr_out(&syn(49001), WEB1_MAC), "SYN on FIN_WAIT, mode 3");
    // CLOSE (a RST ended it once established; in SYN_RECV, input-only, a RST changes nothing)
    // is rescheduled too (`is_new_conn_expected`), in mode 1.
    sysctl(&s, "conn_reuse_mode=1");
    let rst = Frame::tcp(sa(CLIENT, 49002), sa(VIP, 80), RST);
    let state_of = |s: &Setup, port: u16| conns_of(s).into_iter().find(|c| c.0 == port).map(|c| c.1);
    for f in [syn(49002), ack(49002), rst] {
        let r = s.xdp.run(&f.bytes()).expect("run");
        assert_eq!(verdict_name(r.verdict), "XDP_TX");
    }
    assert_eq!(state_of(&s, 49002).as_deref(), Some("CLOSE"));
    let conns = load(&s).services[0].stats.conns;
    let r = s.xdp.run(&syn(49002).bytes()).expect("run");
    assert_eq!(verdict_name(r.verdict), "XDP_TX");
    assert_eq!(load(&s).services[0].stats.conns, conns + 1, "a SYN on CLOSE is a new connection");
    assert_eq!(state_of(&s, 49002).as_deref(), Some("SYN_RECV"));
}

/// expire_nodest_conn: a deleted real server's connection drops its packets (0, the default) or
/// is expired at its next packet (1), which is then new: an ACK goes to the kernel, a SYN is
/// scheduled. With 1, a SYN finding a connection to a weight-0 server is scheduled anew.
#[test]
fn sysctl_expire_nodest_conn() {
    let mut s = setup("nodest");
    let syn = |port| Frame::tcp(sa(CLIENT, port), sa(VIP, 80), SYN);
    let ack = |port| Frame::tcp(sa(CLIENT, port), sa(VIP, 80), ACK);
    expect(&mut s, &syn(49100).bytes(), XDP_TX, &dr_out(&syn(49100), WEB2_MAC), "to web2");
    expect(&mut s, &ack(49100).bytes(), XDP_TX, &dr_out(&ack(49100), WEB2_MAC), "established");
    expect(&mut s, &syn(49101).bytes(), XDP_TX, &dr_out(&syn(49101), WEB1_MAC), "to web1");
    expect(&mut s, &ack(49101).bytes(), XDP_TX, &dr_out(&ack(49101), WEB1_MAC), "established");
    // web1 at weight 0, expire_nodest_conn 0: a SYN on its ESTABLISHED connection stays there.
    edit_table(&s, |t| t.services[0].dests.iter_mut().filter(|d| d.id == WEB1_ID).for_each(|d| d.weight = 0));
    expect(&mut s, &syn(49101).bytes(), XDP_TX, &dr_out(&syn(49101), WEB1_MAC), "SYN, weight 0, sysctl 0");
    sysctl(&s, "expire_nodest_conn=1");
    expect(&mut s, &syn(49101).bytes(), XDP_TX, &dr_out(&syn(49101), WEB2_MAC), "SYN, weight 0, sysctl 1: rescheduled");
    // Deleting web2: with 0 its connection's packets are dropped ...
    sysctl(&s, "expire_nodest_conn=0");
    edit_table(&s, |t| t.services[0].dests.retain(|d| d.id != WEB2_ID));
    let r = s.xdp.run(&ack(49100).bytes()).expect("run");
    assert_eq!(verdict_name(r.verdict), "XDP_DROP", "deleted server, sysctl 0");
    assert_eq!(conns_of(&s).iter().filter(|c| c.0 == 49100).count(), 1, "the entry stays");
    // ... with 1 the connection is expired: the ACK goes to the kernel, a SYN is scheduled.
    sysctl(&s, "expire_nodest_conn=1");
    expect(&mut s, &ack(49100).bytes(), XDP_PASS, &ack(49100).bytes(), "deleted server, sysctl 1: ACK to the kernel");
    assert_eq!(conns_of(&s).iter().filter(|c| c.0 == 49100).count(), 0, "the entry is gone");
    edit_table(&s, |t| t.services[0].dests.iter_mut().for_each(|d| d.weight = 1));
    expect(&mut s, &syn(49100).bytes(), XDP_TX, &dr_out(&syn(49100), WEB1_MAC), "a new SYN is scheduled");
}

/// sloppy_tcp: without a connection, only a SYN opens one (0, the default); with 1 any TCP packet
/// but a RST does.
#[test]
fn sysctl_sloppy_tcp() {
    let mut s = setup("sloppy");
    let ack = Frame::tcp(sa(CLIENT, 49200), sa(VIP, 80), ACK).payload(b"mid-stream");
    let rst = Frame::tcp(sa(CLIENT, 49201), sa(VIP, 80), RST | ACK);
    expect(&mut s, &ack.bytes(), XDP_PASS, &ack.bytes(), "ACK without a connection, sloppy 0");
    sysctl(&s, "sloppy_tcp=1");
    expect(&mut s, &ack.bytes(), XDP_TX, &dr_out(&ack, WEB2_MAC), "ACK without a connection, sloppy 1");
    expect(&mut s, &rst.bytes(), XDP_PASS, &rst.bytes(), "RST, sloppy 1");
    assert_eq!(conns_of(&s), [(49200, "ESTABLISHED".into(), "192.168.88.200".into())]);
}

/// expire_quiescent_template: a persistence template to a weight-0 server keeps its client there
/// (0, the default) or is expired so the client is scheduled anew (1).
#[test]
fn sysctl_expire_quiescent_template() {
    let mut s = setup("quiesced");
    edit_table(&s, |t| {
        t.services[0].flags |= lb_common::SVC_F_PERSISTENT;
        t.services[0].timeout = 300;
    });
    let syn = |port| Frame::tcp(sa(CLIENT, port), sa(VIP, 80), SYN);
    expect(&mut s, &syn(49300).bytes(), XDP_TX, &dr_out(&syn(49300), WEB2_MAC), "template to web2");
    edit_table(&s, |t| t.services[0].dests.iter_mut().filter(|d| d.id == WEB2_ID).for_each(|d| d.weight = 0));
    expect(&mut s, &syn(49301).bytes(), XDP_TX, &dr_out(&syn(49301), WEB2_MAC), "weight 0, sysctl 0: template holds");
    sysctl(&s, "expire_quiescent_template=1");
    expect(&mut s, &syn(49302).bytes(), XDP_TX, &dr_out(&syn(49302), WEB1_MAC), "weight 0, sysctl 1: scheduled anew");
    expect(&mut s, &syn(49303).bytes(), XDP_TX, &dr_out(&syn(49303), WEB1_MAC), "the new template");
    // A connection made through a template is never rescheduled by conn_reuse_mode: its SYN in
    // TIME_WAIT is no new connection (the service's connection count stays).
    let fin = Frame::tcp(sa(CLIENT, 49302), sa(VIP, 80), FIN | ACK);
    expect(&mut s, &fin.bytes(), XDP_TX, &dr_out(&fin, WEB1_MAC), "FIN: TIME_WAIT");
    let conns = load(&s).services[0].stats.conns;
    expect(&mut s, &syn(49302).bytes(), XDP_TX, &dr_out(&syn(49302), WEB1_MAC), "controlled: kept");
    assert_eq!(load(&s).services[0].stats.conns, conns, "a controlled connection was rescheduled");
    // Without persistence the same SYN would be a new connection.
    edit_table(&s, |t| t.services[0].flags &= !lb_common::SVC_F_PERSISTENT);
    let fin = Frame::tcp(sa(CLIENT, 49304), sa(VIP, 80), FIN | ACK);
    expect(&mut s, &syn(49304).bytes(), XDP_TX, &dr_out(&syn(49304), WEB1_MAC), "uncontrolled");
    expect(&mut s, &fin.bytes(), XDP_TX, &dr_out(&fin, WEB1_MAC), "FIN: TIME_WAIT");
    let conns = load(&s).services[0].stats.conns;
    let r = s.xdp.run(&syn(49304).bytes()).expect("run");
    assert_eq!(verdict_name(r.verdict), "XDP_TX");
    assert_eq!(load(&s).services[0].stats.conns, conns + 1, "an uncontrolled connection in TIME_WAIT is rescheduled");
}

/// Spec §4: a template that expires while it still controls a live connection is re-armed for
/// 60 s (lbd's expiry pass), one that controls none is freed; new connections of the client
/// keep using the re-armed one.
#[test]
fn expiring_template_with_live_connections_is_rearmed() {
    let mut s = setup("rearm");
    edit_table(&s, |t| {
        t.services[0].flags |= lb_common::SVC_F_PERSISTENT;
        t.services[0].timeout = 1;
    });
    const CLIENT2: [u8; 4] = [192, 168, 88, 11];
    let a = Frame::tcp(sa(CLIENT, 50000), sa(VIP, 80), SYN);
    expect(&mut s, &a.bytes(), XDP_TX, &dr_out(&a, WEB2_MAC), "client 1 -> web2");
    let a2 = Frame::tcp(sa(CLIENT, 50000), sa(VIP, 80), ACK);
    expect(&mut s, &a2.bytes(), XDP_TX, &dr_out(&a2, WEB2_MAC), "established");
    let b = Frame::tcp(sa(CLIENT2, 50001), sa(VIP, 80), SYN);
    expect(&mut s, &b.bytes(), XDP_TX, &dr_out(&b, WEB1_MAC), "client 2 -> web1");
    // Client 2's connection ends (its entry is gone); its template controls nothing.
    {
        let data = aya::maps::MapData::from_pin(s.pins.path().join(lb_common::names::CONNS)).expect("pin");
        let mut conns: aya::maps::HashMap<_, lb_common::ConnKey, lb_common::Conn> =
            aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data)).expect("hash");
        let k = conns.keys().filter_map(|k| k.ok()).find(|k| k.cport == 50001u16.to_be()).expect("client 2's entry");
        conns.remove(&k).expect("remove");
    }
    std::thread::sleep(std::time::Duration::from_millis(1300));
    expire_pass(&s, std::time::Duration::ZERO);
    let store = Store::open_at(s.pins.path(), Default::default()).expect("store");
    let templates: Vec<(String, u32)> = store
        .connections()
        .expect("conns")
        .into_iter()
        .filter(|c| c.cport == 0)
        .map(|c| (c.caddr.to_string(), c.expires))
        .collect();
    assert_eq!(templates.len(), 1, "{templates:?}");
    assert_eq!(templates[0].0, "192.168.88.10", "client 1's template stays");
    assert!((58..=60).contains(&templates[0].1), "re-armed for 60 s: {templates:?}");
    let c = Frame::tcp(sa(CLIENT, 50002), sa(VIP, 80), SYN);
    expect(&mut s, &c.bytes(), XDP_TX, &dr_out(&c, WEB2_MAC), "client 1's next connection: still web2");
}

/// One expiry pass of lbd, `ahead` being the time to its next pass.
fn expire_pass(s: &Setup, ahead: std::time::Duration) {
    Store::open_at(s.pins.path(), Default::default()).and_then(|mut st| st.expire_connections(ahead)).expect("expire");
}

/// The template of client `caddr`: the seconds `-Lnc` shows.
fn template_expires(s: &Setup, caddr: &str) -> Option<u32> {
    let store = Store::open_at(s.pins.path(), Default::default()).expect("store");
    store.connections().expect("conns").into_iter().find(|c| c.cport == 0 && c.caddr.to_string() == caddr).map(|c| c.expires)
}

/// The kernel re-arms a template at the moment it expires; lbd's pass runs every interval. A
/// template that will expire before the next pass while a connection it controls outlives that
/// moment is re-armed by this pass already, so no new connection of its client falls into the
/// gap between its expiry and the next pass (and is scheduled afresh, where the kernel would
/// still use the template). `-Lnc` still shows the time to the original expiry.
#[test]
fn template_expiring_before_the_next_pass_is_rearmed_ahead() {
    let mut s = setup("rearm-ahead");
    edit_table(&s, |t| {
        t.services[0].flags |= lb_common::SVC_F_PERSISTENT;
        t.services[0].timeout = 2;
    });
    let a = Frame::tcp(sa(CLIENT, 50100), sa(VIP, 80), SYN);
    expect(&mut s, &a.bytes(), XDP_TX, &dr_out(&a, WEB2_MAC), "client -> web2");
    let a2 = Frame::tcp(sa(CLIENT, 50100), sa(VIP, 80), ACK);
    expect(&mut s, &a2.bytes(), XDP_TX, &dr_out(&a2, WEB2_MAC), "established (900 s)");
    // A pass whose next one is 5 s away: the 2 s template is re-armed now.
    expire_pass(&s, std::time::Duration::from_secs(5));
    let shown = template_expires(&s, "192.168.88.10").expect("template");
    assert!(shown <= 2, "-Lnc shows the time to the original expiry: {shown}");
    // Past the original expiry, before any other pass: the template still holds.
    std::thread::sleep(std::time::Duration::from_millis(2300));
    let shown = template_expires(&s, "192.168.88.10").expect("template re-armed");
    assert!((57..=60).contains(&shown), "re-armed for 60 s from its expiry: {shown}");
    let b = Frame::tcp(sa(CLIENT, 50101), sa(VIP, 80), SYN);
    expect(&mut s, &b.bytes(), XDP_TX, &dr_out(&b, WEB2_MAC), "the client's next connection: still web2");
    // Without the pass ahead, the same gap reschedules (rr's next pick is web1).
    let mut s = setup("rearm-gap");
    edit_table(&s, |t| {
        t.services[0].flags |= lb_common::SVC_F_PERSISTENT;
        t.services[0].timeout = 1;
    });
    expect(&mut s, &a.bytes(), XDP_TX, &dr_out(&a, WEB2_MAC), "client -> web2");
    expect(&mut s, &a2.bytes(), XDP_TX, &dr_out(&a2, WEB2_MAC), "established");
    std::thread::sleep(std::time::Duration::from_millis(1300));
    expect(&mut s, &b.bytes(), XDP_TX, &dr_out(&b, WEB1_MAC), "no pass: template lapsed, rescheduled");
}

/// `-Lnc` lists a persistence template ASSURED once a connection through it entered
/// ESTABLISHED (IPVS `ip_vs_control_assure_ct`; the oracle shows it on 6.1 and 6.12), NONE
/// while none did, and keeps it ASSURED after that connection has gone (lbd's expiry marks the
/// template as the connection leaves).
#[test]
fn template_assured_by_an_established_connection() {
    let mut s = setup("assured");
    edit_table(&s, |t| {
        t.services[0].flags |= lb_common::SVC_F_PERSISTENT;
        t.services[0].timeout = 300;
    });
    // ESTABLISHED lasts 3 s here (`--set 3 0 0`), so the connection leaves during the test.
    Store::open_at(s.pins.path(), Default::default())
        .and_then(|mut store| {
            store.update_config(|c| {
                c.timeouts[lb_common::tcp_state::STATE_ESTABLISHED as usize] = 3;
                Ok(())
            })
        })
        .expect("timeouts");
    const CLIENT2: [u8; 4] = [192, 168, 88, 11];
    let templates = |s: &Setup| -> Vec<(String, String)> {
        let store = Store::open_at(s.pins.path(), Default::default()).expect("store");
        let mut v: Vec<_> = store
            .connections()
            .expect("conns")
            .into_iter()
            .filter(|c| c.cport == 0)
            .map(|c| (c.caddr.to_string(), c.state.to_string()))
            .collect();
        v.sort();
        v
    };
    let syn = Frame::tcp(sa(CLIENT, 50200), sa(VIP, 80), SYN);
    expect(&mut s, &syn.bytes(), XDP_TX, &dr_out(&syn, WEB2_MAC), "client 1 -> web2");
    let syn2 = Frame::tcp(sa(CLIENT2, 50201), sa(VIP, 80), SYN);
    expect(&mut s, &syn2.bytes(), XDP_TX, &dr_out(&syn2, WEB1_MAC), "client 2 -> web1");
    assert_eq!(templates(&s), [("192.168.88.10".into(), "NONE".into()), ("192.168.88.11".into(), "NONE".into())]);
    let ack = Frame::tcp(sa(CLIENT, 50200), sa(VIP, 80), ACK);
    expect(&mut s, &ack.bytes(), XDP_TX, &dr_out(&ack, WEB2_MAC), "client 1 established");
    // Client 2's connection never gets there: SYN_RECV, then FIN (input-only: TIME_WAIT).
    let fin2 = Frame::tcp(sa(CLIENT2, 50201), sa(VIP, 80), FIN | ACK);
    expect(&mut s, &fin2.bytes(), XDP_TX, &dr_out(&fin2, WEB1_MAC), "client 2 closes unestablished");
    assert_eq!(templates(&s), [("192.168.88.10".into(), "ASSURED".into()), ("192.168.88.11".into(), "NONE".into())]);
    // Client 1's connection expires (ESTABLISHED timeout 3 s) and leaves the table: its
    // template stays ASSURED.
    std::thread::sleep(std::time::Duration::from_millis(3200));
    expire_pass(&s, std::time::Duration::ZERO);
    assert!(!conns_of(&s).iter().any(|(port, _, _)| *port == 50200), "client 1's connection expired: {:?}", conns_of(&s));
    assert_eq!(templates(&s), [("192.168.88.10".into(), "ASSURED".into()), ("192.168.88.11".into(), "NONE".into())]);
    // A new template of the same client (after this one is gone) starts NONE again.
    let data = aya::maps::MapData::from_pin(s.pins.path().join(lb_common::names::CONNS)).expect("pin");
    let mut conns: aya::maps::HashMap<_, lb_common::ConnKey, lb_common::Conn> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data)).expect("hash");
    let t = conns
        .keys()
        .filter_map(|k| k.ok())
        .find(|k| k.kind == lb_common::CONN_KIND_TEMPLATE && k.caddr == u32::from_ne_bytes(CLIENT))
        .expect("client 1's template");
    conns.remove(&t).expect("remove");
    let syn = Frame::tcp(sa(CLIENT, 50202), sa(VIP, 80), SYN);
    expect(&mut s, &syn.bytes(), XDP_TX, &dr_out(&syn, WEB2_MAC), "client 1 scheduled anew (rr: web2 again)");
    assert_eq!(templates(&s), [("192.168.88.10".into(), "NONE".into()), ("192.168.88.11".into(), "NONE".into())]);
}
