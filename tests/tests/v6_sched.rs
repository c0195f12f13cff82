//! Every scheduler picks for IPv6 connections in the real XDP object (`xlb_new6*`), and the
//! hashing ones hash an IPv6 address as the kernel does: `ip_vs_{sh,dh,mh}_hashkey` fold an
//! IPv6 address into one word (`ip6[0] ^ ip6[1] ^ ip6[2] ^ ip6[3]`) and then hash it as an IPv4
//! address. So an IPv6 service must pick, for every client (sh, mh) or destination (dh), the
//! real server at the position an IPv4 service with the same real servers picks for the
//! IPv4 address that is the fold (mh's table is built from the real servers' folded addresses:
//! the IPv4 twin's real servers are those folds). The IPv4 path is the one checked against
//! recorded kernel IPVS (sched_dataplane.rs); the fold is computed here from the kernel's
//! formula. lblc/lblcr: the cache keyed by the whole IPv6 destination keeps a destination on
//! its real server.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_user::{
    model::{Fwd, Proto, Service},
    store::Store,
};
use xlb_tests::{
    frames::{Frame, Frame6, SYN, sa, sa6},
    pins::TempPins,
    table::{service, table, tcp_conn_dest, tcp_conn6_dest},
    xdp::XdpUnderTest,
};

/// The kernel's fold of an IPv6 address, as the IPv4 address of the same hash.
fn fold(a: Ipv6Addr) -> Ipv4Addr {
    let o = a.octets();
    Ipv4Addr::from(std::array::from_fn::<u8, 4, _>(|j| o[j] ^ o[4 + j] ^ o[8 + j] ^ o[12 + j]))
}

fn v6(i: u32, base: &str) -> Ipv6Addr {
    let b: Ipv6Addr = base.parse().expect("base");
    Ipv6Addr::from(u128::from(b) + ((i as u128) << 64 | (i as u128 * 0x9e37_79b9) & 0xffff_ffff))
}

const RS6: [&str; 5] = ["2001:db8:1::a", "2001:db8:2::b", "2001:db8:3::c", "2001:db8:4::d", "2001:db8:5::e"];

/// A service of `sched` on `vip`:80 with the five real servers (weights 1..=5), as local
/// real servers (no next hop needed: the pick is what is checked).
fn svc(id: u32, vip: IpAddr, sched: &str, rs: &[IpAddr]) -> Service {
    let d: Vec<_> = rs.iter().enumerate().map(|(i, a)| (*a, 80, Fwd::Local, 1 + i as i32)).collect();
    service(id, Proto::Tcp, vip, 80, sched, &d)
}

#[test]
fn v6_hashing_schedulers_fold_as_the_kernel() {
    let rs6: Vec<IpAddr> = RS6.iter().map(|a| IpAddr::V6(a.parse().expect("rs"))).collect();
    let rs4: Vec<IpAddr> = RS6.iter().map(|a| IpAddr::V4(fold(a.parse().expect("rs")))).collect();
    let vip6 = |i: u32| v6(i, "2001:db8:ff::1");
    // Services: sh, mh (v4 twin, v6); dh on 8 VIPs each (v4 twin on the folded VIP).
    let mut services = Vec::new();
    let vip4_sh = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1));
    let vip4_mh = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2));
    services.push(svc(0, vip4_sh, "sh", &rs4));
    services.push(svc(1, IpAddr::V6(vip6(1000)), "sh", &rs6));
    services.push(svc(2, vip4_mh, "mh", &rs4));
    services.push(svc(3, IpAddr::V6(vip6(1001)), "mh", &rs6));
    const DH: u32 = 8;
    for i in 0..DH {
        services.push(svc(4 + 2 * i, IpAddr::V4(fold(vip6(i))), "dh", &rs4));
        services.push(svc(5 + 2 * i, IpAddr::V6(vip6(i)), "dh", &rs6));
    }
    let pins = TempPins::new("v6sched").expect("pins");
    {
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        store.commit(&before, &table(services)).expect("commit");
    }
    let mut xdp = XdpUnderTest::load(pins.path(), "xlb_xdp").expect("load");
    let v4 = |a: IpAddr| match a {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!("an IPv4 VIP"),
    };
    // The position (order of `-a`) of the real server a SYN got, by family.
    let mut pick4 = |client: Ipv4Addr, vip: Ipv4Addr, port: u16| -> Option<u32> {
        xdp.run(&Frame::tcp(sa(client.octets(), port), sa(vip.octets(), 80), SYN).bytes()).expect("run");
        tcp_conn_dest(pins.path(), client.octets(), port, vip.octets(), 80).map(|id| id % 1024)
    };
    let mut checked = [0u32; 3];
    let mut mismatches = Vec::new();
    let mut picks6 = Vec::new();
    for i in 0..200u32 {
        let c6 = v6(i, "2001:db8:c::1");
        let c4 = fold(c6);
        let port = 10_000 + i as u16;
        for (what, vip4) in [("sh", vip4_sh), ("mh", vip4_mh)] {
            picks6.push((what, c6, port, if what == "sh" { vip6(1000) } else { vip6(1001) }, pick4(c4, v4(vip4), port)));
        }
    }
    for i in 0..DH {
        picks6.push(("dh", v6(500 + i, "2001:db8:c::1"), 20_000, vip6(i), pick4(Ipv4Addr::new(10, 9, 0, 1 + i as u8), fold(vip6(i)), 20_000)));
    }
    for (what, c6, port, vip, want) in picks6 {
        let f = Frame6::tcp(sa6(&c6.to_string(), port), sa6(&vip.to_string(), 80), SYN);
        xdp.run(&f.bytes()).expect("run");
        let got = tcp_conn6_dest(pins.path(), c6, port, vip, 80).map(|id| id % 1024);
        assert!(want.is_some(), "{what}: the IPv4 twin picked nothing for {c6}");
        checked[["sh", "mh", "dh"].iter().position(|w| *w == what).unwrap_or(0)] += 1;
        if got != want {
            mismatches.push(format!("{what} {c6} -> {got:?}, IPv4 twin {want:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches: {mismatches:?}", mismatches.len());
    assert_eq!(checked, [200, 200, DH]);
}

#[test]
fn v6_every_scheduler_picks_and_lblc_keeps_a_destination() {
    let rs6: Vec<IpAddr> = RS6.iter().map(|a| IpAddr::V6(a.parse().expect("rs"))).collect();
    let scheds = ["rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf", "lblc", "lblcr", "sh", "dh", "mh", "twos"];
    let vip = |i: usize| v6(i as u32, "2001:db8:ee::1");
    let services: Vec<Service> = scheds.iter().enumerate().map(|(i, s)| svc(i as u32, IpAddr::V6(vip(i)), s, &rs6)).collect();
    let pins = TempPins::new("v6all").expect("pins");
    {
        let mut store = Store::open_at(pins.path(), Default::default()).expect("store");
        let before = store.load().expect("load");
        store.commit(&before, &table(services)).expect("commit");
    }
    let mut xdp = XdpUnderTest::load(pins.path(), "xlb_xdp").expect("load");
    for (i, s) in scheds.iter().enumerate() {
        let mut got = Vec::new();
        for k in 0..6u16 {
            let c = v6(k as u32 + 1, "2001:db8:cc::1");
            let f = Frame6::tcp(sa6(&c.to_string(), 30_000 + k), sa6(&vip(i).to_string(), 80), SYN);
            xdp.run(&f.bytes()).expect("run");
            let id = tcp_conn6_dest(pins.path(), c, 30_000 + k, vip(i), 80);
            assert!(id.is_some_and(|id| id / 1024 == i as u32), "{s}: connection {k} got {id:?}");
            got.push(id.map(|id| id % 1024));
        }
        match *s {
            // One destination address: lblc/lblcr keep it on one real server while it is not
            // overloaded; dh hashes the destination.
            "lblc" | "lblcr" | "dh" => assert!(got.windows(2).all(|w| w[0] == w[1]), "{s}: {got:?}"),
            // rr over five real servers: five different ones, then the first again.
            "rr" => assert_eq!(got, [Some(4), Some(3), Some(2), Some(1), Some(0), Some(4)], "{s}"),
            // fo: the highest weight (the last added, 5).
            "fo" => assert!(got.iter().all(|g| *g == Some(4)), "{s}: {got:?}"),
            _ => {}
        }
    }
}
