//! All three forwarding methods with real traffic: for DR, TUN and NAT, curl through the VIP gets
//! the real servers in rr order, a UDP request/response works (and sticks to its server), and
//! `ipvsadm -Ln --stats` agrees with what the client sent (and, for NAT, received).
use lb_user::store::Store;
use xlb_tests::lab::{Capture, Lab, Mode, NftCounter, RS1, RS2};

fn ipvsadm_all(lab: &Lab, lines: &[Vec<String>]) {
    for l in lines {
        let args: Vec<&str> = l.iter().map(String::as_str).collect();
        lab.ipvsadm_ok(&args).expect("ipvsadm line");
    }
}

fn line(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn method(mode: Mode, tag: &str) -> Lab {
    let lab = Lab::new(tag, mode).expect("lab");
    lab.attach().expect("attach");
    let vip = mode.vip();
    let flag = mode.flag();
    let (rs1, rs2) = match mode {
        Mode::Dr => (xlb_tests::lab::WEB1, xlb_tests::lab::WEB2),
        Mode::Tun | Mode::Nat | Mode::Bridge => (RS1, RS2),
    };
    for l in mode.lines() {
        lab.ipvsadm_ok(l).expect("seed line");
    }
    let mut extra = vec![
        line(&format!("-A -u {vip}:53 -s rr")),
        line(&format!("-a -u {vip}:53 -r {rs1} {flag}")),
        line(&format!("-a -u {vip}:53 -r {rs2} {flag}")),
    ];
    if mode == Mode::Nat {
        extra.push(line(&format!("-A -t {vip}:8000 -s rr")));
        extra.push(line(&format!("-a -t {vip}:8000 -r {rs1}:8080 -m")));
        extra.push(line(&format!("-a -t {vip}:8000 -r {rs2}:8080 -m")));
    }
    ipvsadm_all(&lab, &extra);

    let sent = NftCounter::output(&lab.client.ns, &format!("ip daddr {vip} tcp dport 80")).expect("nft");
    let got = NftCounter::input(&lab.client.ns, &format!("ip saddr {vip} tcp sport 80")).expect("nft");
    let at_director = Capture::start(&lab.sw, &lab.lvs1.port, &format!("src host {vip} and tcp src port 80"), lab.dir.join("d.pcap"))
        .expect("capture");

    let answers: Vec<String> = (0..6).map(|_| lab.curl_vip().expect("curl")).collect();
    assert_eq!(
        answers,
        ["web2", "web1", "web2", "web1", "web2", "web1"].map(|w| format!("Welcome from {w}")),
        "{mode:?}: rr over [web2, web1] (newest first)"
    );
    let udp = [
        lab.udp_query(vip, 53, 5001, "q1").expect("udp"),
        lab.udp_query(vip, 53, 5002, "q2").expect("udp"),
        lab.udp_query(vip, 53, 5001, "q3").expect("udp"),
    ];
    assert_eq!(udp, ["web2: q1", "web1: q2", "web2: q3"], "{mode:?}: UDP rr and stickiness");
    if mode == Mode::Nat {
        let mapped = [lab.curl(vip, 8000).expect("curl"), lab.curl(vip, 8000).expect("curl")];
        assert_eq!(mapped, ["Welcome from web2", "Welcome from web1"], "port mapping 8000 -> 8080");
    }

    let director_lines = at_director.lines().expect("capture");
    if mode == Mode::Nat || mode == Mode::Bridge {
        assert!(!director_lines.is_empty(), "{mode:?}: replies pass the director");
    } else {
        assert!(director_lines.is_empty(), "{mode:?}: replies reached the director: {director_lines:?}");
    }

    let (pkts, bytes) = sent.read().expect("nft");
    let (rpkts, rbytes) = got.read().expect("nft");
    let listing = lab.ipvsadm_ok(&["-Ln", "--stats"]).expect("listing");
    let t = Store::open_at(lab.pin_dir(), Default::default()).and_then(|s| s.load()).expect("table");
    let svc = t
        .services
        .iter()
        .find(|s| matches!(s.key, lb_user::model::SvcKey::Inet { port: 80, proto: lb_user::model::Proto::Tcp, .. }))
        .expect("tcp service");
    let st = &svc.stats;
    assert_eq!((st.conns, st.inpkts, st.inbytes), (6, pkts, bytes), "{mode:?} in-stats vs client's output:\n{listing}");
    if mode == Mode::Nat {
        assert_eq!((st.outpkts, st.outbytes), (rpkts, rbytes), "NAT out-stats vs client's input:\n{listing}");
    } else {
        assert_eq!((st.outpkts, st.outbytes), (0, 0), "{mode:?}: the director never sees replies");
        assert!(rpkts > 0, "the client got replies");
    }
    for d in &svc.dests {
        assert_eq!(d.stats.conns, 3, "{mode:?}: 3 connections per real server:\n{listing}");
    }
    println!("{mode:?}:\n{listing}");
    lab
}

#[test]
fn dr_lab_all_protocols() {
    method(Mode::Dr, "mdr");
}

#[test]
fn tun_lab_real_servers_behind_a_router() {
    method(Mode::Tun, "mtun");
}

#[test]
fn nat_lab_two_interfaces_and_port_mapping() {
    method(Mode::Nat, "mnat");
}

/// Native XDP on the client side, real servers behind the director's own bridge: every request
/// answered (native mode used to count redirects to br0 and lose them), all of them through the
/// tc slow path, none redirected.
#[test]
fn dr_lab_real_servers_behind_a_bridge_on_the_director() {
    let lab = method(Mode::Bridge, "mbr");
    let status = lab.lbd_in(&lab.lvs1.ns, &["status"]).expect("lbd status");
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    let counter = |name: &str| -> u64 {
        text.split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .find(|w| w[0] == name)
            .and_then(|w| w[1].parse().ok())
            .unwrap_or_else(|| panic!("no counter {name} in:\n{text}"))
    };
    if lb_user::features::forced_off("native") {
        // Generic XDP redirects through the kernel's transmit path, which a bridge takes.
        assert!(text.contains("eth0 (xdp skb"), "{text}");
        return;
    }
    assert!(text.contains("eth0 (xdp native"), "{text}");
    assert_eq!(counter("redirect"), 0, "nothing may be XDP-redirected to the bridge:\n{text}");
    assert!(counter("neigh_miss") >= 6 * 3, "every client packet through the tc slow path:\n{text}");
}
