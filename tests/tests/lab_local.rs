//! Real servers local to the director (issue 15), on the DR lab (client 192.168.88.10, director
//! 192.168.88.5 with the VIP 192.168.88.15 on eth0, xlb attached): a TCP server on the director
//! itself answers the client through the VIP when the scheduled real server is
//! - ldirectord's fallback `127.0.0.1:80 gate` (what ldirectord programs when every real
//!   server is down), or
//! - the director's own interface address (`192.168.88.5:8080 -g`),
//!
//! and the same over IPv6 (VIP6 fd00:88::15: `[::1]:80 -g` and the director's own
//! `[fd00:88::5]:8080 -g`; and an IPv6 fwmark service fed by an ip6tables MARK rule),
//! as kernel IPVS does (recorded in the oracle: tests/golden/traffic/oracle.json, `answers-*`:
//! the director's stack answers). The listing shows the method given (`Route`), as IPVS lists
//! it (tests/golden/ipvsadm/local.json). lbadm runs in the director's network namespace, where
//! it learns which addresses are local (as on a real director); an address the director gets
//! later is learnt by `lbd run` there.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use xlb_tests::{
    lab::{Lab, Mode, DIP, VIP},
    netns::{Proc, run},
    workspace_bin,
};

/// `ipvsadm ARGS` in the director's network namespace, on the lab's table.
fn ipvsadm_cmd(lab: &Lab, args: &[&str]) -> Command {
    let mut cmd: Command = lab.lvs1.ns.cmd_net_only(lab.dir.join("bin/ipvsadm"));
    cmd.args(args).env("XLB_PIN_DIR", lab.pin_dir());
    cmd
}

/// `ipvsadm ARGS` in the director's network namespace, which must succeed; its stdout.
fn ipvsadm_on_director(lab: &Lab, args: &[&str]) -> String {
    let out = run(&mut ipvsadm_cmd(lab, args)).unwrap_or_else(|e| panic!("ipvsadm {args:?}: {e:#}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn local_real_servers_are_served_by_the_directors_own_stack() {
    let lab = Lab::new("local", Mode::Dr).expect("lab");
    // IPv6 beside IPv4 on the client and the director (the lab's namespaces start without).
    for (h, addrs) in [(&lab.client, vec!["fd00:88::10/64"]), (&lab.lvs1, vec!["fd00:88::5/64", "fd00:88::15/64"])] {
        for k in ["all", "default", "eth0", "lo"] {
            h.ns.sysctl(&format!("net.ipv6.conf.{k}.disable_ipv6"), "0").expect("ipv6 on");
        }
        for a in addrs {
            h.ns.ip(&["-6", "addr", "add", a, "dev", "eth0", "nodad"]).expect("ipv6 address");
        }
    }
    // The director's own web server, on every address of both families (the VIPs are some).
    let root = lab.dir.join("www-director");
    std::fs::create_dir_all(&root).expect("www");
    std::fs::write(root.join("index.html"), "Welcome from the director\n").expect("index");
    let root = root.to_string_lossy().into_owned();
    let mut servers = Vec::new();
    for port in ["80", "8080"] {
        servers.push(
            // `--bind ::` serves IPv4 too (a dual-stack socket).
            lab.lvs1.ns.spawn("python3", &["-m", "http.server", port, "--bind", "::", "--directory", &root]).expect("server"),
        );
        lab.lvs1.ns.wait_listening("tcp", port.parse().unwrap_or(80), Duration::from_secs(90)).expect("listening");
    }
    lab.attach().expect("attach");
    let vip80 = format!("{VIP}:80");
    let vip8080 = format!("{VIP}:8080");
    let own = format!("{DIP}:8080");
    let (vip6_80, vip6_8080) = ("[fd00:88::15]:80", "[fd00:88::15]:8080");
    // ldirectord's fallback, and the director's interface address as a real server.
    for line in [
        vec!["-A", "-t", &vip80, "-s", "rr"],
        vec!["-a", "-t", &vip80, "-r", "127.0.0.1:80", "-g"],
        vec!["-A", "-t", &vip8080, "-s", "rr"],
        vec!["-a", "-t", &vip8080, "-r", &own, "-g"],
        vec!["-A", "-t", vip6_80, "-s", "rr"],
        vec!["-a", "-t", vip6_80, "-r", "[::1]:80", "-g"],
        vec!["-A", "-t", vip6_8080, "-s", "rr"],
        vec!["-a", "-t", vip6_8080, "-r", "[fd00:88::5]:8080", "-g"],
    ] {
        ipvsadm_on_director(&lab, &line);
    }
    // The broadcast address of the director's own network is not a real server
    // (`inet_addr_type` is RTN_BROADCAST there), as IPVS answers.
    let out = ipvsadm_cmd(&lab, &["-a", "-t", &vip80, "-r", "192.168.88.255", "-g"]).output().expect("ipvsadm");
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stderr).as_ref()),
        (Some(255), "Invalid operation.  Possibly wrong module version, address not unicast, ...\n")
    );
    let listing = ipvsadm_on_director(&lab, &["-Ln"]);
    assert!(listing.contains("  -> 127.0.0.1:80                 Route   1      0          "), "{listing}");
    assert!(listing.contains("  -> 192.168.88.5:8080            Route   1      0          "), "{listing}");
    assert!(listing.contains("  -> [::1]:80                     Route   1      0          "), "{listing}");
    assert!(listing.contains("  -> [fd00:88::5]:8080            Route   1      0          "), "{listing}");
    for _ in 0..3 {
        assert_eq!(lab.curl(VIP, 80).expect("curl :80"), "Welcome from the director", "{}", lab.diagnose());
        assert_eq!(lab.curl(VIP, 8080).expect("curl :8080"), "Welcome from the director", "{}", lab.diagnose());
        assert_eq!(lab.curl("fd00:88::15", 80).expect("curl [v6]:80"), "Welcome from the director", "{}", lab.diagnose());
        assert_eq!(lab.curl("fd00:88::15", 8080).expect("curl [v6]:8080"), "Welcome from the director", "{}", lab.diagnose());
    }
    // The connections went through xlb's table (the director's stack only received them).
    let conns = ipvsadm_on_director(&lab, &["-Lnc"]);
    let rows = |d: &str| conns.lines().filter(|l| l.contains("192.168.88.10:") && l.ends_with(d)).count();
    assert_eq!((rows("127.0.0.1:80"), rows("192.168.88.5:8080")), (3, 3), "{conns}");
    let rows6 = |d: &str| conns.lines().filter(|l| l.contains("[fd00:88::10]:") && l.ends_with(d)).count();
    assert_eq!((rows6("[::1]:80"), rows6("[fd00:88::5]:8080")), (3, 3), "{conns}");
    // An IPv6 fwmark service (ip6tables MARK rule read by `lbd sync-marks` into an AF_INET6
    // classifier key) whose real server is the director: xlb schedules it (a connection entry)
    // and hands it to the director's stack.
    lab.lvs1.ns.ip(&["-6", "addr", "add", "fd00:88::16/64", "dev", "eth0", "nodad"]).expect("vip6");
    lab.lvs1
        .ns
        .exec("ip6tables", &["-t", "mangle", "-A", "PREROUTING", "-d", "fd00:88::16", "-p", "tcp", "--dport", "8080", "-j", "MARK", "--set-mark", "100"])
        .expect("ip6tables");
    ipvsadm_on_director(&lab, &["-A", "-f", "100", "-6", "-s", "rr"]);
    ipvsadm_on_director(&lab, &["-a", "-f", "100", "-6", "-r", "[fd00:88::5]:0", "-g"]);
    let synced = lab.lbd_in(&lab.lvs1.ns, &["sync-marks"]).expect("sync-marks");
    assert_eq!(String::from_utf8_lossy(&synced.stdout).trim(), "1 fwmark classifier entries");
    for _ in 0..2 {
        assert_eq!(lab.curl("fd00:88::16", 8080).expect("curl fwmark6"), "Welcome from the director", "{}", lab.diagnose());
    }
    let conns = ipvsadm_on_director(&lab, &["-Lnc"]);
    let fw = conns.lines().filter(|l| l.contains("[fd00:88::10]:") && l.contains(" [fd00:88::16]:8080 ")).count();
    assert_eq!(fw, 2, "{conns}");
    // An address that becomes the director's after its real server was added: `lbd run`
    // (in the director's namespace) sees the addresses change and marks the real server local.
    let _lbd = Proc::from_child(
        lab.lvs1
            .ns
            .cmd_net_only(workspace_bin("lbd"))
            .arg("--pin-dir")
            .arg(lab.pin_dir())
            .args(["run", "--interval", "0.2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("lbd run"),
    );
    let vip16 = "192.168.88.16:8080";
    lab.lvs1.ns.ip(&["addr", "add", "192.168.88.16/24", "dev", "eth0"]).expect("vip16");
    ipvsadm_on_director(&lab, &["-A", "-t", vip16, "-s", "rr"]);
    ipvsadm_on_director(&lab, &["-a", "-t", vip16, "-r", "192.168.88.6:8080", "-g"]);
    let local_of = |addr: &str| -> bool {
        let t = lb_user::store::Store::open_at(lab.pin_dir(), Default::default()).and_then(|s| s.load()).expect("table");
        t.services.iter().flat_map(|s| &s.dests).any(|d| d.addr.to_string() == addr && d.local)
    };
    std::thread::sleep(Duration::from_millis(600));
    assert!(!local_of("192.168.88.6"), "192.168.88.6 is nobody's yet");
    lab.lvs1.ns.ip(&["addr", "add", "192.168.88.6/24", "dev", "eth0"]).expect("new address");
    let t0 = Instant::now();
    while !local_of("192.168.88.6") && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(local_of("192.168.88.6"), "lbd did not mark the real server local");
    assert_eq!(lab.curl("192.168.88.16", 8080).expect("curl"), "Welcome from the director", "{}", lab.diagnose());
    // A real server elsewhere still gets the VIP's traffic: the local path is per real server.
    ipvsadm_on_director(&lab, &["-d", "-t", &vip80, "-r", "127.0.0.1:80"]);
    ipvsadm_on_director(&lab, &["-a", "-t", &vip80, "-r", "192.168.88.100", "-g"]);
    assert_eq!(lab.curl(VIP, 80).expect("curl"), "Welcome from web1", "{}", lab.diagnose());
    drop(servers);
}
