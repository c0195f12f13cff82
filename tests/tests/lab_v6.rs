//! IPv6 labs with real TCP and UDP between network namespaces (dual-stack labs, `Lab::new6`):
//! DR, NAT66 with port mapping and TUN (IPv6-in-IPv6) over the lab's two real servers; the
//! schedulers' distribution and persistence (`-p`) over IPv6 clients.
use xlb_tests::{
    lab::{Lab, Mode, ROUTER, ROUTER6, VIP6, WEB1_6, WEB2_6},
    lab_checks::{Service, exercise, sock},
};

fn lab(tag: &str, mode: Mode) -> Lab {
    let lab = Lab::new6(tag, mode).expect("lab");
    lab.attach().expect("attach");
    lab
}

/// The client's TCP retransmissions so far (nothing may be lost on the way).
fn retransmissions(lab: &Lab) -> u64 {
    let out = lab.client.ns.exec("nstat", &["-az", "TcpRetransSegs"]).expect("nstat");
    out.lines()
        .find_map(|l| l.strip_prefix("TcpRetransSegs"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

/// The README's example: `ipvsadm -A -t [2001:db8::10]:80 -s rr`, two `-g` real servers, curl -6
/// answered by both in turn, straight from the real servers; the listing shows `Route`.
#[test]
fn dr6_rr_tcp_udp_direct_replies() {
    let lab = lab("dr6", Mode::Dr);
    let s = Service { vip: VIP6, reals: [WEB1_6, WEB2_6], flags: "-g", real_port: 80, udp_sports: (5001, 5002), wire: None };
    let out = exercise(&lab, &s).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.diagnose()));
    println!("{}", out.listing);
    let plain = lab.ipvsadm_ok(&["-Ln"]).expect("listing");
    assert!(plain.contains("TCP  [2001:db8::10]:80 rr"), "{plain}");
    for (d, w) in [(WEB1_6, "1"), (WEB2_6, "2")] {
        let row = plain.lines().find(|l| l.contains(&format!("[{d}]:80"))).unwrap_or_else(|| panic!("no row for {d}:\n{plain}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cols[2..4], ["Route", w], "{row}");
    }
    assert_eq!(retransmissions(&lab), 0, "the client retransmitted:\n{}", lab.diagnose());
}

/// NAT66: the VIP is the director's own address; port 80 maps to the real servers' 8080 (their
/// port-80 servers are stopped first, so only a mapped connection can be answered); replies pass
/// the director and are counted.
#[test]
fn nat66_port_mapping_tcp_udp_and_replies() {
    let lab = lab("nat6", Mode::Nat);
    for i in 0..2 {
        lab.crash_http_server(i, 80).expect("stop port 80");
    }
    let [r1, r2] = Mode::Nat.reals6();
    let s = Service { vip: Mode::Nat.vip6(), reals: [r1, r2], flags: "-m", real_port: 8080, udp_sports: (5001, 5002), wire: None };
    let out = exercise(&lab, &s).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.diagnose()));
    println!("{}", out.listing);
    assert!(out.tcp.outpkts > 0, "{}", out.listing);
    let plain = lab.ipvsadm_ok(&["-Ln"]).expect("listing");
    for d in [r1, r2] {
        assert!(plain.contains(&sock(d, 8080)), "{plain}");
    }
    assert!(plain.contains("Masq"), "{plain}");
}

/// TUN over IPv6: the director encapsulates IPv6 in IPv6 toward real servers behind a router;
/// they decapsulate with xlb's decap program and answer the client straight through the router.
#[test]
fn tun6_ip6ip6_tcp_udp_direct_replies() {
    let lab = lab("tun6", Mode::Tun);
    // IPv6 in IPv6: next header 41 right after the outer header.
    let wire = Some("ip6 proto 41");
    let s = Service { vip: VIP6, reals: Mode::Tun.reals6(), flags: "-i", real_port: 80, udp_sports: (5001, 5002), wire };
    let out = exercise(&lab, &s).unwrap_or_else(|e| panic!("{e:#}\n{}", lab.diagnose()));
    println!("{}", out.listing);
    assert!(lab.ipvsadm_ok(&["-Ln"]).expect("listing").contains("Tunnel"));
}

/// Schedulers over IPv6 clients on one DR service: wrr 1:2 over 6 connections gives 2 and 4; sh
/// sends every connection of the client to one real server; persistence (`-p`) with rr keeps the
/// client on the server its first connection got.
#[test]
fn dr6_schedulers_and_persistence() {
    let lab = lab("sch6", Mode::Dr);
    let svc = sock(VIP6, 80);
    for l in [
        format!("-A -t {svc} -s wrr"),
        format!("-a -t {svc} -r {} -g -w 1", sock(WEB1_6, 80)),
        format!("-a -t {svc} -r {} -g -w 2", sock(WEB2_6, 80)),
    ] {
        lab.ipvsadm_ok(&l.split_whitespace().collect::<Vec<_>>()).expect("ipvsadm");
    }
    let answers = |n: usize| -> Vec<String> { (0..n).map(|_| lab.curl(VIP6, 80).unwrap_or_else(|e| panic!("{e:#}"))).collect() };
    let wrr = answers(6);
    let count = |v: &[String], w: &str| v.iter().filter(|a| *a == &format!("Welcome from {w}")).count();
    assert_eq!((count(&wrr, "web1"), count(&wrr, "web2")), (2, 4), "wrr 1:2: {wrr:?}");

    lab.ipvsadm_ok(&["-E", "-t", &svc, "-s", "sh"]).expect("sh");
    let sh = answers(4);
    assert!(sh.iter().all(|a| a == &sh[0]), "sh: one server for one client address: {sh:?}");

    lab.ipvsadm_ok(&["-E", "-t", &svc, "-s", "rr", "-p", "60"]).expect("persistent");
    let sticky = answers(4);
    assert!(sticky.iter().all(|a| a == &sticky[0]), "-p: one server for the client: {sticky:?}");
    let conns = lab.ipvsadm_ok(&["-Lnc"]).expect("-Lnc");
    // The persistence template of the client's address: ASSURED, its connections having been
    // established (as IPVS lists it).
    assert!(
        conns.lines().any(|l| l.contains("ASSURED") && l.contains(&format!("[{}]:0", lab.client.ip6))),
        "no template:\n{conns}"
    );
    let listing = lab.ipvsadm_ok(&["-Ln"]).expect("listing");
    assert!(listing.contains("TCP  [2001:db8::10]:80 rr persistent 60"), "{listing}");
}

/// The dual-stack plumbing alone, before xlb is attached: each real server answers curl -6 and
/// UDP over IPv6 at its own address (on the segment, through the director's kernel, or through
/// the router), so a failure of the labs above is the data plane's, not the lab's.
#[test]
fn dual_stack_plumbing_without_xlb() {
    for mode in [Mode::Dr, Mode::Nat, Mode::Tun] {
        let lab = Lab::new6("pl6", mode).expect("lab");
        if mode == Mode::Tun {
            // The client reaches only the VIP; to reach the real servers it needs the router.
            lab.client.ns.ip(&["route", "add", "192.168.99.0/24", "via", ROUTER]).expect("route");
            lab.client.ns.ip(&["-6", "route", "add", "2001:db8:99::/64", "via", ROUTER6]).expect("route");
        }
        for (i, r) in mode.reals6().iter().enumerate() {
            let want = format!("Welcome from web{}", i + 1);
            assert_eq!(lab.curl(r, 80).expect("curl -6"), want, "{mode:?}");
            assert_eq!(lab.udp_query(r, 53, 5001, "x").expect("udp"), format!("web{}: x", i + 1), "{mode:?}");
        }
        for (i, r) in mode.reals().iter().enumerate() {
            assert_eq!(lab.curl(r, 8080).expect("curl"), format!("Welcome from web{}", i + 1), "{mode:?} IPv4 still served");
        }
    }
}

/// Seed 001's fwmark setup over IPv6 on the NAT66 lab: ip6tables marks ports 80 and 8080 of the
/// director's address with 100, `ipvsadm -A -f 100 -6 -s wrr -p` balances the mark persistently
/// over the two real servers (port 0: each connection keeps its port), and both ports of the
/// client stick to one server. lbd reads the ip6tables MARK rules into the data plane's classifier.
#[test]
fn fwmark6_both_ports_stick_to_one_server() {
    let lab = lab("fwm6", Mode::Nat);
    let vip = Mode::Nat.vip6();
    for port in ["80", "8080"] {
        lab.lvs1
            .ns
            .exec("ip6tables", &["-t", "mangle", "-A", "PREROUTING", "-d", vip, "-p", "tcp", "--dport", port, "-j", "MARK", "--set-mark", "100"])
            .expect("ip6tables");
    }
    let [r1, r2] = Mode::Nat.reals6();
    for l in [
        "-A -f 100 -6 -s wrr -p".to_string(),
        format!("-a -f 100 -6 -r {r1} -m -w 1"),
        format!("-a -f 100 -6 -r {r2} -m -w 2"),
    ] {
        lab.ipvsadm_ok(&l.split_whitespace().collect::<Vec<_>>()).expect("ipvsadm");
    }
    let synced = lab.lbd_in(&lab.lvs1.ns, &["sync-marks"]).expect("sync-marks");
    assert_eq!(String::from_utf8_lossy(&synced.stdout).trim(), "2 fwmark classifier entries");
    let ports = [80, 8080, 80, 8080, 8080, 80];
    let answers: Vec<String> = ports.iter().map(|p| lab.curl(vip, *p).unwrap_or_else(|e| panic!("{e:#}"))).collect();
    assert!(answers[0] == "Welcome from web1" || answers[0] == "Welcome from web2", "{answers:?}");
    assert!(answers.iter().all(|a| a == &answers[0]), "both ports of the client stick to one real server: {answers:?}");
    let listing = lab.ipvsadm_ok(&["-Ln"]).expect("listing");
    assert!(listing.contains("FWM  100 IPv6 wrr persistent 360"), "{listing}");
}
