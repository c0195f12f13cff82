//! Packet-level tests of what the data plane tells the sync master (`XLB_SYNC_EVENTS`): the real
//! XDP object under BPF_PROG_TEST_RUN, the ring buffer read back through its pin as lbd reads
//! it. IPVS's rule (lb_common::sync): with "3 50", a TCP connection is sent at its 3rd client
//! packet once ESTABLISHED and every 50 after, at once on entering FIN_WAIT/CLOSE/TIME_WAIT...;
//! nothing while no master runs; a full queue drops records (counted), never packets.
use std::net::{IpAddr, Ipv4Addr};

use aya::maps::{Map, MapData, RingBuf};
use lb_common::{ConnKey, names};
use lb_user::{
    model::{Fwd, Proto, SyncDaemonCfg, Table},
    store::Store,
};
use xlb_tests::{
    frames::{ACK, DIRECTOR_MAC, FIN, Frame, SYN, sa},
    pins::TempPins,
    table::{service, table},
    xdp::{LOOPBACK_IFINDEX, XDP_TX, XdpUnderTest, set_next_hop, verdict_name},
};

const VIP: [u8; 4] = [192, 168, 88, 15];
const CLIENT: [u8; 4] = [192, 168, 88, 10];
const WEB1: [u8; 4] = [192, 168, 88, 100];
const WEB1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x64];

fn ip(o: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(o))
}

fn master_on_lo() -> SyncDaemonCfg {
    SyncDaemonCfg {
        ifname: "lo".into(),
        ifindex: LOOPBACK_IFINDEX,
        syncid: 0,
        maxlen: 1472,
        group: IpAddr::V4(Ipv4Addr::new(224, 0, 0, 81)),
        port: 8848,
        ttl: 1,
        generation: 1,
    }
}

struct Setup {
    xdp: XdpUnderTest,
    pins: TempPins,
    events: RingBuf<MapData>,
}

/// One TCP and one UDP DR service to one real server; a master daemon when `master`.
fn setup(tag: &str, master: bool) -> Setup {
    let pins = TempPins::new(tag).expect("pin dir");
    {
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        let mut t: Table = table(vec![
            service(0, Proto::Tcp, ip(VIP), 80, "rr", &[(ip(WEB1), 80, Fwd::Route, 1)]),
            service(1, Proto::Udp, ip(VIP), 53, "rr", &[(ip(WEB1), 53, Fwd::Route, 1)]),
        ]);
        if master {
            t.daemons.master = Some(master_on_lo());
        }
        store.commit(&before, &t).expect("commit");
    }
    for id in [0, 1024] {
        set_next_hop(pins.path(), id, WEB1_MAC, DIRECTOR_MAC, LOOPBACK_IFINDEX).expect("next hop");
    }
    let xdp = XdpUnderTest::load(pins.path(), "xlb_xdp").expect("load xlb_xdp");
    let data = MapData::from_pin(pins.path().join(names::SYNC_EVENTS)).expect("ring buffer pin");
    let events = RingBuf::try_from(Map::RingBuf(data)).expect("ring buffer");
    Setup { xdp, pins, events }
}

impl Setup {
    fn send(&mut self, f: &Frame) {
        let r = self.xdp.run(&f.bytes()).expect("test run");
        assert_eq!(verdict_name(r.verdict), verdict_name(XDP_TX), "every packet is forwarded");
    }

    /// The connection keys queued since the last call.
    fn queued(&mut self) -> Vec<ConnKey> {
        let mut out = Vec::new();
        while let Some(rec) = self.events.next() {
            assert_eq!(rec.len(), size_of::<ConnKey>(), "an IPv4 record is a ConnKey");
            // SAFETY: ConnKey is plain data of exactly this length.
            out.push(unsafe { std::ptr::read_unaligned(rec.as_ptr() as *const ConnKey) });
        }
        out
    }

    fn counter(&self, name: &str) -> u64 {
        let store = Store::open_at(self.pins.path(), Default::default()).expect("store");
        store.global_stats().expect("stats").by_name(name).expect("counter")
    }

    fn sysctl(&self, setting: &str) {
        let mut store = Store::open_at(self.pins.path(), Default::default()).expect("store");
        store.update_config(|c| lb_user::sysctl::apply(c, &[setting.to_string()])).expect("sysctl");
    }
}

fn key(cport: u16, vport: u16, proto: u8) -> ConnKey {
    ConnKey {
        caddr: u32::from_ne_bytes(CLIENT),
        vaddr: u32::from_ne_bytes(VIP),
        cport: cport.to_be(),
        vport: vport.to_be(),
        proto,
        kind: lb_common::CONN_KIND_IN,
        _pad: 0,
    }
}

#[test]
fn tcp_is_queued_at_the_third_packet_then_every_fiftieth_and_at_fin() {
    let mut s = setup("sync-tcp", true);
    let c = sa(CLIENT, 40000);
    s.send(&Frame::tcp(c, sa(VIP, 80), SYN));
    s.send(&Frame::tcp(c, sa(VIP, 80), ACK));
    assert_eq!(s.queued(), [], "SYN_RECV, then ESTABLISHED at the 2nd packet: not yet");
    s.send(&Frame::tcp(c, sa(VIP, 80), ACK).payload(b"GET / HTTP/1.0\r\n\r\n"));
    assert_eq!(s.queued(), [key(40000, 80, 6)], "the 3rd packet");
    for _ in 4..53 {
        s.send(&Frame::tcp(c, sa(VIP, 80), ACK));
    }
    assert_eq!(s.queued(), [], "packets 4 to 52");
    s.send(&Frame::tcp(c, sa(VIP, 80), ACK));
    assert_eq!(s.queued(), [key(40000, 80, 6)], "the 53rd packet");
    s.send(&Frame::tcp(c, sa(VIP, 80), FIN | ACK));
    assert_eq!(s.queued(), [key(40000, 80, 6)], "FIN_WAIT: at once");
    s.send(&Frame::tcp(c, sa(VIP, 80), ACK));
    assert_eq!(s.queued(), [], "no new state");
    assert_eq!(s.counter("sync_queued"), 3);
    assert_eq!(s.counter("sync_dropped"), 0);
}

#[test]
fn nothing_is_queued_without_a_master() {
    let mut s = setup("sync-none", false);
    let c = sa(CLIENT, 40001);
    for f in [SYN, ACK, ACK, ACK, FIN | ACK] {
        s.send(&Frame::tcp(c, sa(VIP, 80), f));
    }
    for _ in 0..5 {
        s.send(&Frame::udp(sa(CLIENT, 5353), sa(VIP, 53)));
    }
    assert_eq!(s.queued(), []);
    assert_eq!(s.counter("sync_queued"), 0);
}

/// With "0 1" every UDP packet is to be sent; nobody reads the queue, so it fills: the rest of
/// the records are dropped and counted, and every packet still goes to its real server.
#[test]
fn a_flood_drops_sync_records_not_packets() {
    let mut s = setup("sync-flood", true);
    s.sysctl("sync_threshold=0 1");
    let f = Frame::udp(sa(CLIENT, 5354), sa(VIP, 53));
    // 256 KiB of 24-byte records (16 bytes and an 8-byte header) hold 10,922.
    let sent = 12_000u64;
    for _ in 0..sent {
        s.send(&f);
    }
    let (queued, dropped) = (s.counter("sync_queued"), s.counter("sync_dropped"));
    eprintln!("sync flood: {sent} packets forwarded, {queued} records queued, {dropped} dropped");
    assert_eq!(queued + dropped, sent);
    assert!(dropped > 0 && queued >= 10_000, "queued {queued}, dropped {dropped}");
    assert_eq!(s.queued().len() as u64, queued);
    // Read, the queue takes records again.
    s.send(&f);
    assert_eq!(s.queued(), [key(5354, 53, 17)]);
}
