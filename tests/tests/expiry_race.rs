//! lbd's expiry and the data plane both end connections. Between lbd's last look at an expired
//! entry and its removal, a packet of the same flow can make the data plane end that entry
//! (giving back its count) and open a new connection under the same key. lbd must then leave
//! the new connection alone, and give back only the count of the entry it really removed: the
//! real XDP object runs the packet inside that window (`Store::expire_connections_racing`).
use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use aya::maps::{HashMap, Map, MapData};
use lb_common::{Conn, ConnKey, names};
use lb_user::{
    model::{Fwd, Proto},
    store::Store,
};
use xlb_tests::{
    frames::{DIRECTOR_MAC, Frame, SYN, sa},
    pins::TempPins,
    table::{service, table, tcp_conn_dest},
    xdp::{LOOPBACK_IFINDEX, XdpUnderTest, set_next_hop},
};

const VIP: [u8; 4] = [192, 168, 88, 15];
const CLIENT: [u8; 4] = [192, 168, 88, 10];
const CPORT: u16 = 40000;
const RS: [[u8; 4]; 2] = [[192, 168, 88, 100], [192, 168, 88, 200]];

fn ip(o: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(o))
}

fn conns(pins: &TempPins) -> HashMap<MapData, ConnKey, Conn> {
    let data = MapData::from_pin(pins.path().join(names::CONNS)).expect("connection table pin");
    HashMap::try_from(Map::HashMap(data)).expect("connection table")
}

#[test]
fn expiry_leaves_a_connection_the_data_plane_reopened_meanwhile() {
    let pins = TempPins::new("expiry-race").expect("pin dir");
    {
        // The store locks the pin directory while open: loading the program below opens it too.
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        let dests = [(ip(RS[0]), 80, Fwd::Route, 1), (ip(RS[1]), 80, Fwd::Route, 1)];
        store.commit(&before, &table(vec![service(0, Proto::Tcp, ip(VIP), 80, "rr", &dests)])).expect("commit");
    }
    // service() numbers the dests 0 and 1 in the order of the `-a`.
    for id in [0u32, 1] {
        set_next_hop(pins.path(), id, [0x02, 0, 0, 0, 0, id as u8], DIRECTOR_MAC, LOOPBACK_IFINDEX).expect("next hop");
    }
    let mut xdp = XdpUnderTest::load(pins.path(), "xlb_xdp").expect("load xlb_xdp");
    let syn = Frame::tcp(sa(CLIENT, CPORT), sa(VIP, 80), SYN).bytes();

    xdp.run(&syn).expect("first SYN");
    let first = tcp_conn_dest(pins.path(), CLIENT, CPORT, VIP, 80).expect("the SYN opened a connection");
    // Its timer ran out long ago.
    let mut table_map = conns(&pins);
    let (key, mut entry) = table_map
        .iter()
        .filter_map(Result::ok)
        .find(|(k, _)| k.kind == lb_common::CONN_KIND_IN)
        .expect("the connection's entry");
    entry.last_seen = 0;
    table_map.insert(key, entry, 0).expect("age the entry");

    // The client's next SYN arrives after lbd found the entry expired, before it removes it.
    let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
    let mut packets = 0;
    let removed = store
        .expire_connections_racing(Duration::ZERO, |k| {
            if *k == key {
                xdp.run(&syn).expect("SYN inside the expiry's window");
                packets += 1;
            }
        })
        .expect("expire");
    assert_eq!(packets, 1, "the expiry saw the aged entry");

    let second = tcp_conn_dest(pins.path(), CLIENT, CPORT, VIP, 80);
    let t = store.load().expect("load");
    let counts: Vec<(String, u32)> =
        t.services[0].dests.iter().map(|d| (d.addr.to_string(), d.active_conns + d.inact_conns)).collect();
    eprintln!("first connection to dest {first}, the reopened one to {second:?}; lbd removed {removed}; counts {counts:?}");
    assert!(second.is_some_and(|d| d != first), "the reopened connection (rr: the other dest) stays in the table");
    assert_eq!(removed, 0, "lbd removed nothing: the data plane ended the expired entry itself");
    assert!(
        counts.iter().all(|(_, n)| *n <= 1) && counts.iter().map(|(_, n)| n).sum::<u32>() == 1,
        "one connection counted once, on its dest: {counts:?}"
    );
}
