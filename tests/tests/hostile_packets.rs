//! Hostile frames against the real XDP object (`xlb_xdp`, tail-calling `xlb_new`), run with
//! BPF_PROG_TEST_RUN inside a namespace made to look like a director (real routes and
//! neighbours), with services of every method (DR, TUN, NAT over TCP and UDP, a persistent
//! all-ports service, a local one).
//!
//! - `fuzz_frames_never_forward_malformed_input`: XLB_FUZZ_FRAMES frames (default 1,000,000,
//!   seed XLB_FUZZ_SEED, default fixed) — random bytes and mutations of valid frames of every
//!   path — judged by an independent classifier and checker (tests/src/fuzz.rs).
//! - `syn_flood_fills_the_table_established_flows_survive`: a SYN flood fills the table; new
//!   connections evict half-open ones, established flows keep their real server.
use std::time::Instant;

use lb_common::GlobalStats;
use lb_user::model::{Proto, SvcKey};
use xlb_tests::{
    frames::{ACK, CLIENT_MAC, Frame, PSH, SYN, sa},
    fuzz::{self, CLIENT, CLIENT2, Lab, VIP_DR, VIP_NAT, WEB1_MAC, WEB2_MAC, director_table},
    xdp::{XDP_DROP, XDP_REDIRECT, XDP_TX, XdpUnderTest, verdict_name},
};

/// Small enough that a million random flows overflow it (the full-table path runs too).
const FUZZ_MAX_CONNS: u32 = 65_536;

#[test]
fn fuzz_frames_never_forward_malformed_input() {
    let n = fuzz::frames_from_env(1_000_000);
    let seed = fuzz::seed_from_env(0x786c_6221);
    let lab = Lab::new("fuzz", &director_table(), FUZZ_MAX_CONNS).expect("lab");
    let before = lab.global().expect("stats");
    let t0 = Instant::now();
    let t = fuzz::fuzz(&lab, seed, n).expect("fuzz run");
    let g = lab.global().expect("stats");
    eprintln!("seed {seed:#x}, {:.1?}: {}", t0.elapsed(), t.summary());
    eprintln!("counters: {}", g.events().iter().map(|(n, v)| format!("{n} {v}")).collect::<Vec<_>>().join(" "));
    for v in &t.violations {
        eprintln!("VIOLATION {v}");
    }
    assert_eq!(t.runs, n, "every frame ran");
    assert!(t.violations.is_empty(), "{} property violations (first ones above)", t.violation_count);
    let bad = t.check_counters(&g, &before);
    assert!(bad.is_empty(), "counters inconsistent with verdicts: {bad:?}");
    // The run reached every outcome (the generator is not stuck on one path).
    for (i, name) in ["drop", "pass", "tx", "redirect"].iter().enumerate() {
        assert!(t.verdicts[i + 1] > 0, "no {name} verdict in {} frames", n);
    }
    if n >= 100_000 {
        assert!(g.conn_insert_fail + g.conn_evicted > 0, "the connection table never filled");
        assert!(t.slow_path > 0 && g.icmp_sent > 0 && g.icmp_related > 0 && g.nat_reply > 0, "{g:?}");
    }
}

fn stats(lab: &Lab) -> GlobalStats {
    lab.global().expect("stats")
}

/// A SYN flood from many sources against a DR and a NAT service fills the connection table (a
/// plain BPF hash, not LRU: a silent eviction would corrupt ActiveConn/InActConn). Once it is
/// full, each new connection evicts the oldest remembered one that is still half-open (SYN_RECV,
/// with its NAT reply side, giving back its InActConn): lb-ebpf `conn::evict_half_open`.
/// - established flows keep their real server,
/// - flood SYNs keep being scheduled; the only refusals are the first eviction attempts, which
///   meet the 16 established flows at the front of the ring (4 looked at per attempt),
/// - new legitimate TCP, UDP and NAT connections after the flood are scheduled,
/// - ActiveConn/InActConn of every real server still count exactly the table's connections.
#[test]
fn syn_flood_fills_the_table_established_flows_survive() {
    const CAP: u32 = 2048;
    let lab = Lab::new("flood", &director_table(), CAP).expect("lab");
    let eth0 = lab.director.eth0;
    let g0 = stats(&lab);
    let report = lab
        .run(move |dut: &mut XdpUnderTest| {
            let mut run = |f: &Frame| {
                let r = dut.run_on(&f.clone().macs(CLIENT_MAC, [0; 6]).bytes(), eth0).expect("run");
                (r.verdict, r.frame)
            };
            // 16 established connections (SYN, then data).
            let mut macs = Vec::new();
            for i in 0..16u16 {
                let a = sa(CLIENT, 50000 + i);
                let (v, out) = run(&Frame::tcp(a, sa(VIP_DR, 80), SYN));
                assert_eq!(verdict_name(v), "XDP_TX", "legit SYN {i}");
                let (v, out2) = run(&Frame::tcp(a, sa(VIP_DR, 80), ACK | PSH).payload(b"GET /"));
                assert_eq!(verdict_name(v), "XDP_TX", "legit data {i}");
                assert_eq!(out[..6], out2[..6]);
                macs.push(<[u8; 6]>::try_from(&out[..6]).expect("mac"));
            }
            // The flood: 3 x capacity SYNs from distinct sources, to DR and NAT alternately.
            let (mut fwd, mut drop) = (0u32, 0u32);
            let mut first_drop = None;
            for i in 0..3 * CAP {
                let src = [10, (i >> 16) as u8 | 0x40, (i >> 8) as u8, i as u8];
                let vip = if i % 2 == 0 { VIP_DR } else { VIP_NAT };
                let (v, _) = run(&Frame::tcp(sa(src, 1024 + (i % 60000) as u16), sa(vip, 80), SYN));
                match (i % 2, v) {
                    (0, XDP_TX) | (1, XDP_REDIRECT) => fwd += 1,
                    (_, XDP_DROP) => {
                        drop += 1;
                        first_drop.get_or_insert(i);
                    }
                    (_, v) => panic!("flood SYN {i}: {}", verdict_name(v)),
                }
            }
            // Established flows still go to their real server.
            for (i, mac) in macs.iter().enumerate() {
                let a = sa(CLIENT, 50000 + i as u16);
                let (v, out) = run(&Frame::tcp(a, sa(VIP_DR, 80), ACK | PSH).payload(b"more data"));
                assert_eq!(verdict_name(v), "XDP_TX", "established flow {i} after the flood");
                assert_eq!(&out[..6], mac, "established flow {i} kept its real server");
                assert!(*mac == WEB1_MAC || *mac == WEB2_MAC);
            }
            // New legitimate connections after the flood.
            let (new_tcp, _) = run(&Frame::tcp(sa(CLIENT2, 61000), sa(VIP_DR, 80), SYN));
            let (new_udp, _) = run(&Frame::udp(sa(CLIENT2, 61001), sa(VIP_DR, 53)).payload(b"q"));
            let (new_nat, _) = run(&Frame::tcp(sa(CLIENT2, 61002), sa(VIP_NAT, 80), SYN));
            (fwd, drop, first_drop, new_tcp, new_udp, new_nat)
        })
        .expect("lab run");
    let (fwd, drop, first_drop, new_tcp, new_udp, new_nat) = report;
    let g = stats(&lab);
    let (refused, evicted) = (g.conn_insert_fail - g0.conn_insert_fail, g.conn_evicted - g0.conn_evicted);
    eprintln!(
        "capacity {CAP}: of {} flood SYNs {fwd} scheduled and forwarded, {drop} refused (first at #{first_drop:?}); \
         half-open connections evicted {evicted}, conn_insert_fail {refused}; after the flood a new TCP connection -> {}, \
         a new UDP flow -> {}, a new NAT connection -> {}",
        3 * CAP,
        verdict_name(new_tcp),
        verdict_name(new_udp),
        verdict_name(new_nat)
    );
    assert!(drop <= 4, "{drop} flood SYNs refused: eviction did not make room");
    assert_eq!(fwd + drop, 3 * CAP);
    assert_eq!(refused, drop as u64, "every refused insert counted");
    assert!(evicted >= (3 * CAP - CAP) as u64 / 2, "only {evicted} evictions");
    assert_eq!(
        (verdict_name(new_tcp), verdict_name(new_udp), verdict_name(new_nat)),
        ("XDP_TX", "XDP_TX", "XDP_REDIRECT"),
        "new connections under a full table"
    );
    // The counts the schedulers use still match the table: for each real server of the two
    // flooded services, ActiveConn + InActConn = its connections listed (-Lnc) (SYN_RECV counts
    // as active, as in kernels since 4.7); the 16 established flows are all there.
    let t = lab.table().expect("table");
    let conns = lab.connections().expect("connections");
    for svc in &t.services {
        let SvcKey::Inet { proto: Proto::Tcp, addr, port: 80 } = svc.key else { continue };
        if !(addr == std::net::IpAddr::from(VIP_DR) || addr == std::net::IpAddr::from(VIP_NAT)) {
            continue;
        }
        for d in &svc.dests {
            let listed = conns
                .iter()
                .filter(|c| c.proto == "TCP" && c.vaddr == addr && c.vport == 80 && c.daddr == d.addr && c.dport == d.port)
                .count() as u32;
            assert_eq!(d.active_conns + d.inact_conns, listed, "{addr}:80 -> {}:{}: counts vs table", d.addr, d.port);
        }
    }
    assert_eq!(conns.iter().filter(|c| c.state == "ESTABLISHED").count(), 16, "established connections");
    assert!(conns.len() <= CAP as usize);
}

/// Data-plane bug found by the fuzzer (lb-ebpf/src/nat.rs `udp_full_checksum`): a NAT UDP
/// datagram sent without a checksum (0) gets a full checksum when it fits the summing loop; a
/// longer one (1600 bytes here) is forwarded without one, still valid IPv4 (it was lost before
/// the fix). A UDP length field running past the datagram is refused like the kernel's udp_rcv
/// refuses it: to the kernel, untouched (IPVS would forward it).
#[test]
fn nat_udp_without_checksum_over_1500_bytes_is_forwarded() {
    let lab = Lab::new("natudp", &director_table(), 4096).expect("lab");
    let eth0 = lab.director.eth0;
    let (big, bad_len) = lab
        .run(move |dut: &mut XdpUnderTest| {
            let f = Frame::udp(sa(CLIENT, 5000), sa(VIP_NAT, 53)).payload(&[7u8; 1600]).udp_no_checksum().bytes();
            let big = dut.run_on(&f, eth0).expect("run");
            let mut g = Frame::udp(sa(CLIENT, 5001), sa(VIP_NAT, 53)).payload(&[7u8; 20]).udp_no_checksum().bytes();
            g[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&100u16.to_be_bytes()); // length field > datagram
            let bad_len = dut.run_on(&g, eth0).expect("run");
            (big, bad_len)
        })
        .expect("lab run");
    assert_eq!(
        (verdict_name(big.verdict), verdict_name(bad_len.verdict)),
        ("XDP_REDIRECT", "XDP_PASS"),
        "a 1600-byte UDP datagram without checksum; one whose UDP length field runs past the datagram"
    );
    let inp = fuzz::classify(&big.frame);
    assert!(fuzz::check_forwarded(&big.frame, &inp).is_ok());
}
