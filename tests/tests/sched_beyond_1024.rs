//! The connection-count schedulers over more than 1024 real servers, on the real XDP object:
//! IPVS scans the whole list, so the pick may lie anywhere in it; the data plane must find the
//! same one (a scan that stops early would silently pick among the first dests only).
//!
//! One service per scheduler, each with `N` real servers: every one carries an active connection
//! but the one at list position `P` (past 1024), which also has the highest weight. lc, wlc,
//! sed, nq, fo, ovf and lblc (a cache miss: wlc) all pick it; the expected pick is computed by
//! the reference schedulers of `lb_common::sched` from the table as loaded back.
use std::net::{IpAddr, Ipv4Addr};

use aya::maps::{Array, Map, MapData};
use lb_common::{
    names,
    sched::{fo_pick, least_conn_pick, ovf_pick, DestState, LcKind},
    DestConns,
};
use lb_user::{
    model::{Fwd, Proto, Service},
    store::Store,
};
use xlb_tests::{
    frames::{Frame, SYN, sa},
    pins::TempPins,
    table::{service, table, tcp_conn_dest},
    xdp::XdpUnderTest,
};

/// Real servers per service.
const N: usize = 1100;
/// List position (newest first) of the one idle, heaviest real server.
const P: usize = 1070;
const VIP: [u8; 4] = [10, 0, 0, 1];
const SCHEDS: [&str; 7] = ["lc", "wlc", "sed", "nq", "fo", "ovf", "lblc"];

fn rs(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 1 + (i / 250) as u8, (i % 250) as u8, 1))
}

/// Service `k` (port 80 + k) of `sched`: N dests added in order, the one that ends at list
/// position P with weight 2, the others 1. Ids and insertion numbers unique across services.
fn svc(k: u32, sched: &str) -> Service {
    let dests: Vec<_> = (0..N).map(|i| (rs(i), 80, Fwd::Route, if i == N - 1 - P { 2 } else { 1 })).collect();
    let mut s = service(k, Proto::Tcp, IpAddr::V4(Ipv4Addr::from(VIP)), 80 + k as u16, sched, &dests);
    for d in &mut s.dests {
        // table::service numbers dests id * 1024 + i: renumber past 1024 per service.
        let i = d.seq - 1;
        d.id = k * 2048 + i as u32;
        d.seq = k as u64 * 2048 + i + 1;
    }
    s
}

fn states(s: &Service) -> Vec<DestState> {
    s.dests
        .iter()
        .map(|d| DestState { active: d.active_conns, inactive: d.inact_conns, overloaded: d.overloaded, ..DestState::new(d.id, d.weight) })
        .collect()
}

fn reference(sched: &str, list: &[DestState]) -> Option<u32> {
    match sched {
        "lc" => least_conn_pick(LcKind::Lc, list),
        "wlc" | "lblc" => least_conn_pick(LcKind::Wlc, list),
        "sed" => least_conn_pick(LcKind::Sed, list),
        "nq" => least_conn_pick(LcKind::Nq, list),
        "fo" => fo_pick(list),
        "ovf" => ovf_pick(list),
        _ => None,
    }
}

#[test]
fn least_connection_family_scans_past_1024_dests() {
    let pins = TempPins::new("beyond1024").expect("pin dir");
    let services: Vec<Service> = SCHEDS.iter().enumerate().map(|(k, s)| svc(k as u32, s)).collect();
    {
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        store.commit(&before, &table(services)).expect("commit");
    }
    // Every dest but the one at position P carries an active connection.
    let loaded = Store::open_at(pins.path(), Default::default()).and_then(|s| s.load()).expect("load");
    {
        let data = MapData::from_pin(pins.path().join(names::DEST_CONNS)).expect("dest conns");
        let mut conns: Array<MapData, DestConns> = Array::try_from(Map::Array(data)).expect("array");
        for s in &loaded.services {
            assert_eq!(s.dests.len(), N);
            for (pos, d) in s.dests.iter().enumerate() {
                if pos != P {
                    conns.set(d.id, DestConns { active: 1, ..Default::default() }, 0).expect("set count");
                }
            }
        }
    }
    // Counts written behind the rules' back: lbd's periodic pass brings the trees in line.
    Store::open_at(pins.path(), Default::default()).and_then(|mut s| s.expire_connections(Default::default())).expect("lbd pass");
    let loaded = Store::open_at(pins.path(), Default::default()).and_then(|s| s.load()).expect("load");
    let mut xdp = XdpUnderTest::load(pins.path(), "xlb_xdp").expect("load xlb_xdp");
    let mut wrong = Vec::new();
    for (k, sched) in SCHEDS.iter().enumerate() {
        let s = loaded.services.iter().find(|s| s.id == k as u32).expect("service");
        assert_eq!(&s.sched, sched);
        let list = states(s);
        let want = reference(sched, &list).expect("a pick");
        let want_pos = list.iter().position(|d| d.id == want).expect("in the list");
        assert_eq!(want_pos, P, "{sched}: the reference picks list position {want_pos}");
        let (client, cport, vport) = ([10, 0, 1, 2], 30000 + k as u16, 80 + k as u16);
        let r = xdp.run(&Frame::tcp(sa(client, cport), sa(VIP, vport), SYN).bytes()).expect("run");
        let got = tcp_conn_dest(pins.path(), client, cport, VIP, vport);
        let got_pos = got.and_then(|id| list.iter().position(|d| d.id == id));
        println!("{sched}: IPVS picks list position {want_pos} (id {want}); the data plane {got_pos:?} (id {got:?}, verdict {})", r.verdict);
        if got != Some(want) {
            wrong.push(format!("{sched}: position {got_pos:?}, IPVS's {want_pos}"));
        }
    }
    assert!(wrong.is_empty(), "picks differ from IPVS's over {N} real servers: {wrong:?}");
}
