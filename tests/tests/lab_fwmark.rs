//! Seed 001 ("PFMC" with fwmark): the seed's script, unchanged, on a NAT director with the
//! seed's addresses. iptables marks ports 80 and 8080 of the VIP with 100 in the mangle table;
//! `ipvsadm -A -f 100 -s wrr -p` balances the mark persistently over two NAT real servers; both
//! ports of a client stick to one server. XDP runs before netfilter: lbd reads the MARK rules
//! into the data plane's classifier.
use std::time::Duration;

use xlb_tests::{
    lab::{plug, switch},
    netns::{Netns, run, unique_prefix},
    pins::TempPins,
    workspace_bin,
};

/// The seed's lines, verbatim (run on the director, "[root@LVS ~]#").
const SEED_001: &[&str] = &[
    "iptables -F",
    "iptables -t mangle -A PREROUTING -d 192.168.0.105 -p tcp --dport 80 -j MARK --set-mark 100",
    "iptables -t mangle -A PREROUTING -d 192.168.0.105 -p tcp --dport 8080 -j MARK --set-mark 100",
    "ipvsadm -C",
    "ipvsadm -A -f 100 -s wrr -p",
    "ipvsadm -a -f 100 -r 192.168.239.129 -m -w 1",
    "ipvsadm -a -f 100 -r 192.168.239.133 -m -w 2",
];

#[test]
fn seed_001_fwmark_both_ports_stick_to_one_server() {
    let prefix = unique_prefix("fwm");
    let pins = TempPins::new(&prefix).expect("pins");
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(dir.join("bin")).expect("dir");
    std::os::unix::fs::symlink(workspace_bin("lbadm"), dir.join("bin/ipvsadm")).expect("symlink");
    let sw1 = switch(&format!("{prefix}-sw1")).expect("sw1");
    let sw2 = switch(&format!("{prefix}-sw2")).expect("sw2");
    let client = Netns::new(&format!("{prefix}-cl")).expect("ns");
    let lvs = Netns::new(&format!("{prefix}-lvs")).expect("ns");
    plug(&client, "eth0", &sw1, "sw1-cl", "192.168.0.10/24").expect("plug");
    client.ip(&["route", "add", "default", "via", "192.168.0.105"]).expect("route");
    plug(&lvs, "eth0", &sw1, "sw1-lvs", "192.168.0.105/24").expect("plug");
    plug(&lvs, "eth1", &sw2, "sw2-lvs", "192.168.239.130/24").expect("plug");
    lvs.sysctl("net.ipv4.ip_forward", "1").expect("forwarding");
    let mut servers = Vec::new();
    let mut webs = Vec::new();
    for (n, ip) in [("web1", "192.168.239.129"), ("web2", "192.168.239.133")] {
        let ns = Netns::new(&format!("{prefix}-{n}")).expect("ns");
        plug(&ns, "eth0", &sw2, &format!("sw2-{n}"), &format!("{ip}/24")).expect("plug");
        // "route add default gw 192.168.239.130" (seed 001)
        ns.ip(&["route", "add", "default", "via", "192.168.239.130"]).expect("route");
        for port in ["80", "8080"] {
            let root = dir.join(format!("{n}-{port}"));
            std::fs::create_dir_all(&root).expect("www");
            std::fs::write(root.join("index.html"), format!("This is {n} with {port}\n")).expect("index");
            let root = root.to_string_lossy().into_owned();
            servers.push(ns.spawn("python3", &["-m", "http.server", port, "--bind", "0.0.0.0", "--directory", &root]).expect("server"));
        }
        webs.push(ns);
    }
    for w in &webs {
        w.wait_listening("tcp", 80, Duration::from_secs(10)).expect("80");
        w.wait_listening("tcp", 8080, Duration::from_secs(10)).expect("8080");
    }
    let lbd = |ns: &Netns, args: &[&str]| {
        run(ns.cmd_net_only(workspace_bin("lbd")).arg("--pin-dir").arg(pins.path()).args(args)).expect("lbd")
    };
    lbd(&lvs, &["attach", "eth0", "--mode", "native"]);
    lbd(&lvs, &["attach", "eth1", "--mode", "native"]);
    lbd(&sw1, &["attach", "sw1-lvs", "--mode", "native", "--program", "pass"]);
    lbd(&sw2, &["attach", "sw2-lvs", "--mode", "native", "--program", "pass"]);
    for line in SEED_001 {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words[0] == "iptables" {
            lvs.exec("iptables", &words[1..]).expect("iptables");
        } else {
            let out = std::process::Command::new(dir.join("bin/ipvsadm"))
                .args(&words[1..])
                .env("XLB_PIN_DIR", pins.path())
                .output()
                .expect("ipvsadm");
            assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    // The daemon's job (lbd run does it every second): the MARK rules into the classifier.
    let synced = lbd(&lvs, &["sync-marks"]);
    assert_eq!(String::from_utf8_lossy(&synced.stdout).trim(), "2 fwmark classifier entries");
    // The sync opened the gate for the marked VIP (XDP sees marked traffic only through it).
    let gate = lb_user::store::Gate::open(pins.path()).expect("gate");
    assert!(gate.has(lb_common::GATE_FWMARK, "192.168.0.105".parse().expect("vip")), "fwmark VIP gated out");
    let curl = |port: u16| -> String {
        let out = run(client.cmd("curl").args(["-sS", "--max-time", "5", &format!("http://192.168.0.105:{port}/")]))
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let answers: Vec<String> = [80, 8080, 80, 8080, 8080, 80].iter().map(|p| curl(*p)).collect();
    let server = answers[0].split_whitespace().nth(2).unwrap_or_default().to_string();
    assert!(server == "web1" || server == "web2", "{answers:?}");
    let want: Vec<String> =
        [80, 8080, 80, 8080, 8080, 80].iter().map(|p| format!("This is {server} with {p}")).collect();
    assert_eq!(answers, want, "both ports of the client stick to one real server");
    let listing = String::from_utf8_lossy(
        &std::process::Command::new(dir.join("bin/ipvsadm")).args(["-Ln"]).env("XLB_PIN_DIR", pins.path()).output().expect("ipvsadm").stdout,
    )
    .into_owned();
    println!("{answers:?}\n{listing}");
    assert!(listing.contains("FWM  100 wrr persistent 360"), "{listing}");
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}
