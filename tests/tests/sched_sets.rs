//! The schedulers of `xlb_new_set` on the real XDP object, where a recorded kernel sequence
//! cannot say everything: twos draws random numbers (so its picks are compared with the
//! reference's distribution over many runs, not one by one), and lblcr's set shrinks only after
//! `lblcr_expiration` (24 h; the test moves the set's last change back instead of waiting).
use std::net::{IpAddr, Ipv4Addr};

use aya::maps::{HashMap, Map, MapData};
use lb_common::{
    sched::{DestState, LblcrEntry, LblcrReference, twos_pick},
    Addr, LblcKey, LblcrSet, AF_INET,
};
use lb_user::{
    model::{Fwd, Proto, Table},
    store::Store,
};
use xlb_tests::{
    frames::{ACK, DIRECTOR_MAC, Frame, SYN, sa},
    pins::TempPins,
    table::{service, table},
    xdp::{LOOPBACK_IFINDEX, XdpUnderTest, set_next_hop},
};

const VIP: [u8; 4] = [10, 0, 0, 1];
const RS: [[u8; 4]; 3] = [[10, 0, 2, 11], [10, 0, 2, 12], [10, 0, 2, 13]];

fn ip(o: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(o))
}

/// Pins with one TCP service VIP:80 of `sched` over RS with `weights` (added in RS order),
/// next hops cached, and the program loaded.
fn setup(tag: &str, sched: &str, weights: [i32; 3]) -> (TempPins, XdpUnderTest) {
    let pins = TempPins::new(tag).expect("pin dir");
    let dests: Vec<_> = RS.iter().zip(weights).map(|(a, w)| (ip(*a), 80, Fwd::Route, w)).collect();
    {
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        store.commit(&before, &table(vec![service(0, Proto::Tcp, ip(VIP), 80, sched, &dests)])).expect("commit");
    }
    for id in 0..3 {
        set_next_hop(pins.path(), id, [2, 0, 0, 0, 2, 11 + id as u8], DIRECTOR_MAC, LOOPBACK_IFINDEX).expect("next hop");
    }
    let xdp = XdpUnderTest::load(pins.path(), "xlb_xdp").expect("load xlb_xdp");
    (pins, xdp)
}

fn load(pins: &TempPins) -> Table {
    Store::open_at(pins.path(), Default::default()).and_then(|st| st.load()).expect("load table")
}

/// The service's dests as the reference schedulers see them, in list order.
fn dest_states(t: &Table) -> Vec<DestState> {
    t.services[0]
        .dests
        .iter()
        .map(|d| DestState {
            active: d.active_conns,
            inactive: d.inact_conns,
            overloaded: d.overloaded,
            ..DestState::new(d.id, d.weight)
        })
        .collect()
}

/// A client connection that is opened and held (ESTABLISHED: ActiveConn).
fn open_held(xdp: &mut XdpUnderTest, n: u16) {
    let c = sa([10, 0, 1, 2], 20000 + n);
    let v = sa(VIP, 80);
    xdp.run(&Frame::tcp(c, v, SYN).bytes()).expect("SYN");
    xdp.run(&Frame::tcp(c, v, ACK).bytes()).expect("ACK");
}

/// xorshift64*: the test's own random numbers for the reference.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
}

#[test]
fn twos_picks_follow_the_reference_distribution() {
    const CONNS: u16 = 400;
    const RUNS: usize = 300;
    let weights = [3, 1, 0];
    let (pins, mut xdp) = setup("twos", "twos", weights);
    let start = dest_states(&load(&pins));
    for n in 0..CONNS {
        open_held(&mut xdp, n);
    }
    let got = dest_states(&load(&pins));
    let active = |l: &[DestState], id: u32| l.iter().find(|d| d.id == id).map_or(0, |d| d.active) as f64;

    // The same process on the reference, RUNS times: each held connection adds to its dest's
    // ActiveConn, which the next pick weighs.
    let mut rng = Rng(0x786c_6221_7477_6f73);
    let mut samples: Vec<[f64; 3]> = Vec::new();
    for _ in 0..RUNS {
        let mut l = start.clone();
        for _ in 0..CONNS {
            let id = twos_pick(&l, rng.next(), rng.next()).expect("a pick");
            if let Some(d) = l.iter_mut().find(|d| d.id == id) {
                d.active += 1;
            }
        }
        samples.push([active(&l, 0), active(&l, 1), active(&l, 2)]);
    }
    for id in 0..3u32 {
        let xs: Vec<f64> = samples.iter().map(|s| s[id as usize]).collect();
        let mean = xs.iter().sum::<f64>() / RUNS as f64;
        let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (RUNS - 1) as f64).sqrt();
        let dp = active(&got, id);
        eprintln!("twos: dest {id} (weight {}): data plane {dp}, reference {mean:.1} ± {sd:.2} over {RUNS} runs", weights[id as usize]);
        assert!((dp - mean).abs() <= 6.0 * sd + 2.0, "dest {id}: data plane {dp}, reference mean {mean:.1} sd {sd:.2}");
    }
    assert_eq!(active(&got, 2), 0.0, "the weight-0 dest got connections");
    assert_eq!(got.iter().map(|d| d.active).sum::<u32>(), CONNS as u32);
}

/// With no load, both choices weigh the same and twos takes its first: a weighted random pick
/// in which, as in the kernel, the draw is taken modulo (total weight + 1), so the first
/// eligible dest in list order wins one draw more than its weight. Measured on a fresh service
/// per connection, against the reference's exact probabilities.
#[test]
fn twos_first_picks_are_the_kernels_weighted_draw() {
    const SERVICES: u16 = 1000;
    let pins = TempPins::new("twos-first").expect("pin dir");
    let weights = [3, 1, 0];
    let services = (0..SERVICES)
        .map(|k| {
            let dests: Vec<_> = RS.iter().zip(weights).map(|(a, w)| (ip(*a), 80, Fwd::Route, w)).collect();
            let mut s = service(k as u32, Proto::Tcp, ip(VIP), 1000 + k, "twos", &dests);
            // Dest ids 3k..3k+2 (in add order): the default numbering is per 1024.
            for d in s.dests.iter_mut() {
                d.id = k as u32 * 3 + d.id % 1024;
            }
            s
        })
        .collect();
    {
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        store.commit(&before, &table(services)).expect("commit");
    }
    let mut xdp = XdpUnderTest::load(pins.path(), "xlb_xdp").expect("load xlb_xdp");
    for k in 0..SERVICES {
        xdp.run(&Frame::tcp(sa([10, 0, 1, 2], 20000), sa(VIP, 1000 + k), SYN).bytes()).expect("SYN");
    }
    let t = load(&pins);
    // Position in the add order (rs1 = 0) of the dest each service's connection went to.
    let mut got = [0u32; 3];
    for s in &t.services {
        for d in &s.dests {
            if d.active_conns + d.inact_conns > 0 {
                got[(d.id % 3) as usize] += 1;
            }
        }
    }
    // The reference's probabilities, by enumerating its draws: list order is rs3, rs2, rs1.
    let list = dest_states(&t)[..3].to_vec();
    let total = weights.iter().sum::<i32>() as u32 + 1;
    let mut p = [0f64; 3];
    for r in 0..total {
        let id = twos_pick(&list, r, r).expect("pick");
        p[(id % 3) as usize] += 1.0 / total as f64;
    }
    for i in 0..3 {
        let mean = p[i] * SERVICES as f64;
        let sd = (SERVICES as f64 * p[i] * (1.0 - p[i])).sqrt();
        eprintln!("twos first picks: rs{} (weight {}): {} of {SERVICES}, reference p = {:.3} ({mean:.0} ± {sd:.1})", i + 1, weights[i], got[i], p[i]);
        assert!((got[i] as f64 - mean).abs() <= 5.0 * sd + 1.0, "rs{}: {} picks, reference {mean:.0} ± {sd:.1}", i + 1, got[i]);
    }
    assert_eq!(got.iter().sum::<u32>(), SERVICES as u32);
}

fn lblcr_set(pins: &TempPins) -> Option<LblcrSet> {
    let data = MapData::from_pin(pins.path().join(lb_common::names::LBLCR)).ok()?;
    let m: HashMap<MapData, LblcKey, LblcrSet> = HashMap::try_from(Map::LruHashMap(data)).ok()?;
    m.get(&lblcr_key(), 0).ok()
}

fn lblcr_key() -> LblcKey {
    LblcKey { svc_id: 0, af: AF_INET, _pad: [0; 3], addr: Addr::v4(u32::from_ne_bytes(VIP)) }
}

#[test]
fn lblcr_set_drops_its_most_loaded_member_after_the_expiration() {
    let (pins, mut xdp) = setup("lblcr-shrink", "lblcr", [1, 1, 1]);
    // lblcr_expiration = 1 s (`lbd sysctl net.ipv4.vs.lblcr_expiration=1`).
    {
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        store.update_config(|c| Ok(c.set_sysctl("lblcr_expiration", 1))).expect("set sysctl");
    }
    // Held connections make the least loaded member busy while another dest is half idle:
    // the set grows (the recorded lblcr_hold sequence).
    let mut n = 0;
    while lblcr_set(&pins).is_none_or(|s| s.len < 2) {
        assert!(n < 40, "the set did not grow: {:?}", lblcr_set(&pins));
        open_held(&mut xdp, n);
        n += 1;
    }
    let set = lblcr_set(&pins).expect("set");
    // Unchanged for longer than the expiration.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let list = dest_states(&load(&pins));
    let now = set.lastmod + 1_100_000_000;
    let vip = [u32::from_ne_bytes(VIP), 0, 0, 0];
    let mut entries = [LblcrEntry { used: true, addr: vip, set }];
    let want = LblcrReference { entries: &mut entries, expiration: 1_000_000_000 }
        .pick(&list, vip, now, |id| list.iter().find(|d| d.id == id).copied())
        .expect("reference pick");
    open_held(&mut xdp, n);
    let after = lblcr_set(&pins).expect("set");
    eprintln!("lblcr: set {:?} -> {:?} after the expiration, reference {:?}", set.members(), after.members(), entries[0].set.members());
    assert_eq!(after.members(), entries[0].set.members(), "set after the expiration");
    assert!(after.len < set.len, "the set did not shrink");
    let t = load(&pins);
    let picked: Vec<u32> = t.services[0]
        .dests
        .iter()
        .filter(|d| d.active_conns > list.iter().find(|x| x.id == d.id).map_or(0, |x| x.active))
        .map(|d| d.id)
        .collect();
    assert_eq!(picked, [want], "the connection's real server");
}
