//! The DR lab of seed 003 with real TCP: curl through the VIP, answers from both real servers in
//! rr order, replies straight from the real servers, and `ipvsadm -Ln --stats` counting exactly
//! what the client sent.
use std::collections::BTreeMap;

use lb_user::store::Store;
use xlb_tests::lab::{Capture, DrLab, NftCounter, SEED_DR_LINES, VIP, WEB1, WEB2};

#[test]
fn dr_lab_rr_direct_replies_and_exact_stats() {
    let lab = DrLab::up("dr").expect("lab");
    lab.attach().expect("attach");
    for line in SEED_DR_LINES {
        lab.ipvsadm_ok(line).expect("seed line");
    }
    let sent = NftCounter::output(&lab.client.ns, &format!("ip daddr {VIP} tcp dport 80")).expect("nft");
    let at_director = Capture::start(
        &lab.sw,
        &lab.lvs1.port,
        &format!("src host {VIP} and tcp src port 80"),
        lab.dir.join("director.pcap"),
    )
    .expect("capture");
    let at_client = Capture::start(
        &lab.sw,
        &lab.client.port,
        &format!("src host {VIP} and tcp src port 80"),
        lab.dir.join("client.pcap"),
    )
    .expect("capture");

    let answers: Vec<String> = (0..6).map(|_| lab.curl_vip().expect("curl")).collect();
    assert_eq!(
        answers,
        ["web2", "web1", "web2", "web1", "web2", "web1"].map(|w| format!("Welcome from {w}")),
        "rr over [web2, web1] (newest first)"
    );

    // Replies never pass the director; the client gets them from the real servers' MACs.
    let director_lines = at_director.lines().expect("capture");
    assert!(director_lines.is_empty(), "replies reached the director: {director_lines:?}");
    let client_lines = at_client.lines().expect("capture");
    let web_macs = [lab.web[0].mac().expect("mac"), lab.web[1].mac().expect("mac")];
    let mut by_mac: BTreeMap<String, usize> = BTreeMap::new();
    for l in &client_lines {
        let src = l.split_whitespace().nth(1).unwrap_or_default().to_string();
        *by_mac.entry(src).or_default() += 1;
    }
    assert!(!client_lines.is_empty(), "the client received no replies");
    assert!(by_mac.keys().all(|m| web_macs.contains(m)), "reply sources {by_mac:?}, web MACs {web_macs:?}");
    assert_eq!(by_mac.len(), 2, "both real servers answered directly: {by_mac:?}");

    // Counters: exactly what the client sent, split 3/3 over the real servers.
    let (pkts, bytes) = sent.read().expect("nft counter");
    let listing = lab.ipvsadm_ok(&["-Ln", "--stats"]).expect("listing");
    let t = Store::open_at(lab.pin_dir(), Default::default()).and_then(|s| s.load()).expect("table");
    let svc = &t.services[0];
    let per_dest: Vec<(String, u64)> = svc.dests.iter().map(|d| (d.addr.to_string(), d.stats.conns)).collect();
    let line = |name: &str, c: &lb_user::model::Counters| {
        format!("{name:<33}{:>9}{:>9}{:>9}{:>9}{:>9}\n", c.conns, c.inpkts, c.outpkts, c.inbytes, c.outbytes)
    };
    let mut want = String::from(
        "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  -> RemoteAddress:Port\n",
    );
    want += &line(&format!("TCP  {VIP}:80"), &svc.stats);
    for d in [WEB1, WEB2] {
        let dest = svc.dests.iter().find(|x| x.addr.to_string() == d).expect("dest");
        want += &line(&format!("  -> {d}:80"), &dest.stats);
    }
    assert_eq!(listing, want, "listing bytes");
    assert_eq!((svc.stats.conns, svc.stats.inpkts, svc.stats.inbytes), (6, pkts, bytes), "listing {listing}");
    assert_eq!(svc.stats.outpkts, 0);
    assert!(per_dest.iter().all(|(_, c)| *c == 3), "{per_dest:?}");

    // Closed DR connections sit in FIN_WAIT: InActConn, like IPVS's seed output.
    let plain = lab.ipvsadm_ok(&["-Ln"]).expect("listing");
    for d in [WEB1, WEB2] {
        let row = plain.lines().find(|l| l.contains(&format!("{d}:80"))).expect("row");
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cols[2..], ["Route", if d == WEB1 { "1" } else { "2" }, "0", "3"], "{row}");
    }

    // The first packet toward each real server found no neighbour entry and took the tc slow
    // path; nothing was lost on the way (no retransmission) and everything else was XDP_TX.
    let g = Store::open_at(lab.pin_dir(), Default::default()).and_then(|s| s.global_stats()).expect("stats");
    assert!(g.neigh_miss >= 1, "{g:?}");
    assert_eq!(g.tx + g.neigh_miss, pkts, "{g:?}");
    let retrans = lab.client.ns.exec("nstat", &["-az", "TcpRetransSegs"]).expect("nstat");
    let n: u64 = retrans.lines().find_map(|l| l.strip_prefix("TcpRetransSegs")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
    assert_eq!(n, 0, "client retransmitted: {retrans}");
}
