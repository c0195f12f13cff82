//! A dest's flags word has two writers: the data plane sets and lifts OVERLOAD as connections
//! start and end (IPVS's bind/unbind), while lbadm's commits rewrite the dest (`ipvsadm -e`).
//! Neither may lose the other's update. The real XDP object runs packets through
//! BPF_PROG_TEST_RUN on one thread while another commits weight edits through the store the way
//! lbadm does; at quiescence every dest's OVERLOAD must be what its connection count implies.
use std::{
    net::{IpAddr, Ipv4Addr},
    sync::atomic::{AtomicBool, Ordering},
};

use lb_user::{
    model::{Fwd, Proto, Table},
    store::Store,
};
use xlb_tests::{
    frames::{ACK, DIRECTOR_MAC, FIN, Frame, SYN, sa},
    pins::TempPins,
    table::{service, table},
    xdp::{LOOPBACK_IFINDEX, XdpUnderTest, set_next_hop},
};

const VIP: [u8; 4] = [192, 168, 88, 15];
const CLIENT: [u8; 4] = [192, 168, 88, 10];
const RS1: [u8; 4] = [192, 168, 88, 100];
const RS2: [u8; 4] = [192, 168, 88, 200];
// service() numbers dests svc_id * 1024 + position of the `-a`.
const RS1_ID: u32 = 0;
const RS2_ID: u32 = 1;
/// Weight edits committed while the packets run (each a journaled commit, a few ms): the code
/// that wrote whole dests left both dests OVERLOADed without connections well within 100.
const EDITS: usize = 100;

fn ip(o: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(o))
}

/// rr over two DR real servers with `-x 1`: a dest is OVERLOADed by its one connection and
/// lifted when that connection ends.
fn thresholds_table() -> Table {
    let dests = [(ip(RS1), 80, Fwd::Route, 1), (ip(RS2), 80, Fwd::Route, 1)];
    let mut t = table(vec![service(0, Proto::Tcp, ip(VIP), 80, "rr", &dests)]);
    for d in &mut t.services[0].dests {
        d.u_threshold = 1;
    }
    t
}

/// One client connection, reopened over and over: SYN (new connection: bind sets OVERLOAD),
/// FIN (TIME_WAIT), SYN again (conn_reuse_mode: the old connection ends, lifting its dest's
/// OVERLOAD, and the new one goes to the other dest by rr). Each dest's OVERLOAD flips at
/// every reopening. Returns how many reopenings ran.
fn reopen_until(xdp: &mut XdpUnderTest, stop: &AtomicBool) -> u64 {
    let client = sa(CLIENT, 40000);
    let syn = Frame::tcp(client, sa(VIP, 80), SYN).bytes();
    let fin = Frame::tcp(client, sa(VIP, 80), FIN | ACK).bytes();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        xdp.run(&syn).expect("test run SYN");
        xdp.run(&fin).expect("test run FIN");
        n += 1;
    }
    n
}

/// `ipvsadm -e` of every dest's weight, `EDITS` times, each one load + commit as lbadm does.
fn edit_weights(pins: &TempPins) {
    for i in 0..EDITS {
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        let mut after = before.clone();
        for d in &mut after.services[0].dests {
            d.weight = 1 + (i % 2) as i32;
            d.last_weight = d.weight;
        }
        store.commit(&before, &after).expect("commit");
    }
}

#[test]
fn overload_survives_concurrent_dest_edits() {
    let pins = TempPins::new("dest-flags").expect("pin dir");
    {
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        store.commit(&before, &thresholds_table()).expect("commit");
    }
    for id in [RS1_ID, RS2_ID] {
        set_next_hop(pins.path(), id, [0x02, 0, 0, 0, 0, id as u8], DIRECTOR_MAC, LOOPBACK_IFINDEX).expect("next hop");
    }
    let mut xdp = XdpUnderTest::load(pins.path(), "xlb_xdp").expect("load xlb_xdp");
    let stop = AtomicBool::new(false);
    let started = std::time::Instant::now();
    let reopenings = std::thread::scope(|s| {
        let packets = s.spawn(|| reopen_until(&mut xdp, &stop));
        edit_weights(&pins);
        stop.store(true, Ordering::Relaxed);
        packets.join().expect("packet thread")
    });
    let took = started.elapsed();

    let t = Store::open_at(pins.path(), Default::default()).and_then(|s| s.load()).expect("load");
    let dests = &t.services[0].dests;
    assert_eq!(dests.len(), 2, "both dests stay configured");
    let mut wrong = Vec::new();
    for d in dests {
        let conns = d.active_conns + d.inact_conns;
        // -x 1, no -y: bound at 1 connection, lifted at 0 (0 * 4 < 1 * 3).
        if d.overloaded != (conns > 0) {
            wrong.push(format!("{}: OVERLOAD {} with {} connection(s)", d.addr, d.overloaded, conns));
        }
    }
    eprintln!("{EDITS} weight edits during {reopenings} reopenings of one connection, in {took:.1?}");
    assert!(wrong.is_empty(), "lost OVERLOAD updates after {EDITS} edits and {reopenings} reopenings: {}", wrong.join("; "));
    assert_eq!(dests.iter().map(|d| d.active_conns + d.inact_conns).sum::<u32>(), 1, "one connection in all");
}
