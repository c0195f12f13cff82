//! The gate (`XLB_GATE`, lb-common's `GATE_*`): the data plane's first question, "could this be
//! for a service?". Its bits follow the table lbadm commits; a packet whose addresses the gate
//! shuts out reaches the kernel untouched before its checksum or transport header is looked at;
//! an address that only shares a gate slot with a VIP is still passed (the gate narrows, the
//! exact lookups decide). The real XDP object, run with BPF_PROG_TEST_RUN on crafted frames.
use std::net::{IpAddr, Ipv4Addr};

use lb_common::{GATE_FWMARK, GATE_NAT_RS, GATE_VIP, GlobalStats, gate_slot};
use lb_user::{
    model::{Fwd, Proto, Table},
    store::{Gate, Store},
};
use xlb_tests::{
    frames::{DIRECTOR_MAC, Frame, SYN, sa},
    pins::TempPins,
    table::{service, table},
    xdp::{LOOPBACK_IFINDEX, XDP_PASS, XDP_TX, XdpUnderTest, set_next_hop, verdict_name},
};

const VIP: [u8; 4] = [192, 168, 88, 15];
const CLIENT: [u8; 4] = [192, 168, 88, 10];
const WEB1: [u8; 4] = [192, 168, 88, 100];
const NAT_VIP: [u8; 4] = [192, 168, 88, 16];
const NAT_RS: [u8; 4] = [192, 168, 99, 100];
const WEB1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x64];

fn ip(o: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(o))
}

fn with_nat() -> Table {
    table(vec![
        service(0, Proto::Tcp, ip(VIP), 80, "rr", &[(ip(WEB1), 80, Fwd::Route, 1)]),
        service(1, Proto::Tcp, ip(NAT_VIP), 80, "rr", &[(ip(NAT_RS), 8080, Fwd::Masq, 1)]),
    ])
}

fn commit(pins: &TempPins, t: &Table) {
    let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
    let before = store.load().expect("load");
    store.commit(&before, t).expect("commit");
}

fn global(pins: &TempPins) -> GlobalStats {
    Store::open_at(pins.path(), Default::default()).and_then(|s| s.global_stats()).expect("stats")
}

fn v4(o: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(o)
}

/// An address of 10.0.0.0/8 (no service there) whose gate slot is `addr`'s.
fn slot_twin(addr: [u8; 4]) -> [u8; 4] {
    let want = gate_slot(u32::from_ne_bytes(addr));
    (1u32..1 << 24)
        .map(|i| [10, (i >> 16) as u8, (i >> 8) as u8, i as u8])
        .find(|a| gate_slot(u32::from_ne_bytes(*a)) == want)
        .expect("a 10/8 address in the VIP's slot (2^24 candidates, 2^16 slots)")
}

#[test]
fn gate_bits_follow_the_committed_table() {
    let pins = TempPins::new("gatebits").expect("pins");
    commit(&pins, &with_nat());
    let gate = Gate::open(pins.path()).expect("gate");
    assert!(gate.has(GATE_VIP, v4(VIP)) && gate.has(GATE_VIP, v4(NAT_VIP)), "both VIPs open");
    assert!(gate.has(GATE_NAT_RS, v4(NAT_RS)), "the NAT real server's replies open");
    assert!(!gate.has(GATE_NAT_RS, v4(WEB1)), "a DR real server sends no replies through the director");
    // Another writer's bit (lbd's fwmark sync) survives lbadm's commits.
    gate.set(GATE_FWMARK, [ip(CLIENT)]);
    // The NAT service goes: its real server closes at once; its VIP stays open until lbd's
    // expiry pass finds no connection to it (their packets must still meet the connection table).
    let mut t = with_nat();
    t.services.retain(|s| s.id == 0);
    commit(&pins, &t);
    let gate = Gate::open(pins.path()).expect("gate");
    assert!(gate.has(GATE_VIP, v4(VIP)) && gate.has(GATE_VIP, v4(NAT_VIP)), "a commit opens VIPs, never closes them");
    assert!(!gate.has(GATE_NAT_RS, v4(NAT_RS)), "the deleted NAT real server is closed");
    assert!(gate.has(GATE_FWMARK, v4(CLIENT)), "lbadm's commit left the fwmark bit alone");
    Store::open_at(pins.path(), Default::default()).and_then(|mut s| s.expire_connections(Default::default())).expect("expiry");
    let twin_of = |a: [u8; 4]| gate_slot(u32::from_ne_bytes(a)) == gate_slot(u32::from_ne_bytes(VIP));
    assert!(gate.has(GATE_VIP, v4(VIP)), "the remaining VIP stays open");
    assert!(twin_of(NAT_VIP) || !gate.has(GATE_VIP, v4(NAT_VIP)), "expiry closed the VIP of no service and no connection");
    assert!(gate.has(GATE_FWMARK, v4(CLIENT)), "expiry left the fwmark bit alone");
    gate.set(GATE_FWMARK, []);
    assert!(!gate.has(GATE_FWMARK, v4(CLIENT)));
}

#[test]
fn gated_out_packets_reach_the_kernel_untouched_and_slot_twins_are_still_looked_up() {
    let pins = TempPins::new("gatepkt").expect("pins");
    commit(&pins, &with_nat());
    set_next_hop(pins.path(), 0, WEB1_MAC, DIRECTOR_MAC, LOOPBACK_IFINDEX).expect("next hop");
    let mut xdp = XdpUnderTest::load(pins.path(), "xlb_xdp").expect("load");
    let twin = slot_twin(VIP);
    let cases: [(&str, Vec<u8>, u32); 4] = [
        ("SYN to an address of no service", Frame::tcp(sa(CLIENT, 40000), sa([10, 9, 9, 9], 80), SYN).bytes(), XDP_PASS),
        ("SYN to an address sharing the VIP's gate slot", Frame::tcp(sa(CLIENT, 40001), sa(twin, 80), SYN).bytes(), XDP_PASS),
        ("SYN to the VIP", Frame::tcp(sa(CLIENT, 40002), sa(VIP, 80), SYN).bytes(), XDP_TX),
        (
            "SYN with a corrupt IPv4 checksum to an address of no service",
            {
                let mut f = Frame::tcp(sa(CLIENT, 40003), sa([10, 9, 9, 9], 80), SYN).bytes();
                f[14 + 10] ^= 0xff;
                f
            },
            XDP_PASS,
        ),
    ];
    for (what, frame, want) in cases {
        let before = global(&pins);
        let r = xdp.run(&frame).expect("run");
        let g = global(&pins);
        assert_eq!(verdict_name(r.verdict), verdict_name(want), "{what}");
        let d = |f: fn(&GlobalStats) -> u64| f(&g) - f(&before);
        assert_eq!(d(|g| g.rx), 1, "{what}: received once");
        if want == XDP_PASS {
            assert_eq!(r.frame, frame, "{what}: untouched");
            assert_eq!(
                (d(|g| g.pass), d(|g| g.conn_new), d(|g| g.parse_fail)),
                (1, 0, 0),
                "{what}: passed, no connection, not even parsed far enough to fail"
            );
        } else {
            assert_eq!((d(|g| g.tx), d(|g| g.conn_new)), (1, 1), "{what}: a new connection");
        }
    }
    // The same corrupt header to the VIP passes the gate and is refused by the parser.
    let mut bad = Frame::tcp(sa(CLIENT, 40004), sa(VIP, 80), SYN).bytes();
    bad[14 + 10] ^= 0xff;
    let before = global(&pins);
    let r = xdp.run(&bad).expect("run");
    assert_eq!((verdict_name(r.verdict), global(&pins).parse_fail - before.parse_fail), ("XDP_PASS", 1));
}

/// A cached next hop remembers that its egress runs xlb natively (so a redirect costs no
/// `XLB_IFACES` lookups), but only while no attachment changed: once lbd records the egress as
/// detached, the very next packet takes the tc slow path (a redirect would be lost there), well
/// within the cache's one-second life; attached again, it is redirected again.
#[test]
fn a_redirect_follows_the_egress_attachment_at_once() {
    use xlb_tests::{
        fuzz::{Lab, director_table, CLIENT, VIP_NAT},
        frames::{ACK, CLIENT_MAC},
        xdp::slow_path_tag,
    };
    let lab = Lab::new("egress", &director_table(), 4096).expect("lab");
    let path = lab.pins.path().to_path_buf();
    let tag = slow_path_tag(&path).expect("tag").to_ne_bytes();
    let (if0, mac0) = (lab.director.eth0, lab.director.eth0_mac);
    let runs = lab
        .run(move |dut| {
            let syn = Frame::tcp(sa(CLIENT, 41000), sa(VIP_NAT, 80), SYN).macs(CLIENT_MAC, mac0).bytes();
            let ack = Frame::tcp(sa(CLIENT, 41000), sa(VIP_NAT, 80), ACK).macs(CLIENT_MAC, mac0).bytes();
            let mut out = Vec::new();
            out.push(dut.run_on(&syn, if0).expect("syn"));
            lb_user::dataplane::record_all_attached_for_test(&path, lb_common::IFACE_XDP_NONE).expect("detached");
            out.push(dut.run_on(&ack, if0).expect("ack while detached"));
            lb_user::dataplane::record_all_attached_for_test(&path, lb_common::IFACE_XDP_NATIVE).expect("attached");
            out.push(dut.run_on(&ack, if0).expect("ack attached again"));
            out
        })
        .expect("lab run");
    let seen: Vec<(&str, bool)> = runs.iter().map(|r| (verdict_name(r.verdict), r.frame[..4] == tag)).collect();
    assert_eq!(
        seen,
        [("XDP_REDIRECT", false), ("XDP_PASS", true), ("XDP_REDIRECT", false)],
        "(verdict, slow-path marked): attached, detached, attached again"
    );
}

/// `ipvsadm -C` and then `-R` (a reload): between the two, the packets of a live connection of
/// the deleted service still meet the connection table and are dropped as IPVS drops them (its
/// real server is unavailable, expire_nodest_conn = 0), not handed to the director's own stack,
/// which would reset the connection; re-added, the service carries the connection on. lbd's
/// expiry keeps the VIP open while the connection lives.
#[test]
fn a_reload_does_not_hand_live_connections_to_the_kernel() {
    use xlb_tests::frames::ACK;
    let pins = TempPins::new("gatereload").expect("pins");
    let dr = || table(vec![service(0, Proto::Tcp, ip(VIP), 80, "rr", &[(ip(WEB1), 80, Fwd::Route, 1)])]);
    commit(&pins, &dr());
    set_next_hop(pins.path(), 0, WEB1_MAC, DIRECTOR_MAC, LOOPBACK_IFINDEX).expect("next hop");
    let mut xdp = XdpUnderTest::load(pins.path(), "xlb_xdp").expect("load");
    let syn = Frame::tcp(sa(CLIENT, 40100), sa(VIP, 80), SYN).bytes();
    let ack = Frame::tcp(sa(CLIENT, 40100), sa(VIP, 80), ACK).bytes();
    let verdict = |xdp: &mut XdpUnderTest, f: &[u8]| verdict_name(xdp.run(f).expect("run").verdict);
    assert_eq!(verdict(&mut xdp, &syn), "XDP_TX", "the connection opens");
    commit(&pins, &table(vec![]));
    Store::open_at(pins.path(), Default::default()).and_then(|mut s| s.expire_connections(Default::default())).expect("expiry");
    assert_eq!(verdict(&mut xdp, &ack), "XDP_DROP", "cleared: its packets are dropped, not passed to the stack");
    commit(&pins, &dr());
    // (A re-added real server's next hop is looked up afresh: preset it again, as before.)
    set_next_hop(pins.path(), 0, WEB1_MAC, DIRECTOR_MAC, LOOPBACK_IFINDEX).expect("next hop");
    assert_eq!(verdict(&mut xdp, &ack), "XDP_TX", "restored: the connection goes on to its real server");
}
