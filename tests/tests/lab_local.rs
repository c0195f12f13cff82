//! Real servers local to the director (issue 15), on the DR lab (client 192.168.88.10, director
//! 192.168.88.5 with the VIP 192.168.88.15 on eth0, xlb attached): a TCP server on the director
//! itself answers the client through the VIP when the scheduled real server is
//! - ldirectord's fallback `127.0.0.1:80 gate` (what ldirectord programs when every real
//!   server is down), or
//! - the director's own interface address (`192.168.88.5:8080 -g`),
//!
//! as kernel IPVS does (recorded in the oracle: tests/golden/traffic/oracle.json, `answers-*`:
//! the director's stack answers). The listing shows the method given (`Route`), as IPVS lists
//! it (tests/golden/ipvsadm/local.json). lbadm runs in the director's network namespace, where
//! it learns which addresses are local (as on a real director).
use std::{process::Command, time::Duration};

use xlb_tests::{
    lab::{Lab, Mode, DIP, VIP},
    netns::run,
};

/// `ipvsadm ARGS` in the director's network namespace, on the lab's table; its stdout.
fn ipvsadm_on_director(lab: &Lab, args: &[&str]) -> String {
    let mut cmd: Command = lab.lvs1.ns.cmd_net_only(lab.dir.join("bin/ipvsadm"));
    cmd.args(args).env("XLB_PIN_DIR", lab.pin_dir());
    let out = run(&mut cmd).unwrap_or_else(|e| panic!("ipvsadm {args:?}: {e:#}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn local_real_servers_are_served_by_the_directors_own_stack() {
    let lab = Lab::new("local", Mode::Dr).expect("lab");
    // The director's own web server, on every address (the VIP is one of them).
    let root = lab.dir.join("www-director");
    std::fs::create_dir_all(&root).expect("www");
    std::fs::write(root.join("index.html"), "Welcome from the director\n").expect("index");
    let root = root.to_string_lossy().into_owned();
    let mut servers = Vec::new();
    for port in ["80", "8080"] {
        servers.push(
            lab.lvs1.ns.spawn("python3", &["-m", "http.server", port, "--bind", "0.0.0.0", "--directory", &root]).expect("server"),
        );
        lab.lvs1.ns.wait_listening("tcp", port.parse().unwrap_or(80), Duration::from_secs(90)).expect("listening");
    }
    lab.attach().expect("attach");
    let vip80 = format!("{VIP}:80");
    let vip8080 = format!("{VIP}:8080");
    let own = format!("{DIP}:8080");
    // ldirectord's fallback, and the director's interface address as a real server.
    for line in [
        vec!["-A", "-t", &vip80, "-s", "rr"],
        vec!["-a", "-t", &vip80, "-r", "127.0.0.1:80", "-g"],
        vec!["-A", "-t", &vip8080, "-s", "rr"],
        vec!["-a", "-t", &vip8080, "-r", &own, "-g"],
    ] {
        ipvsadm_on_director(&lab, &line);
    }
    let listing = ipvsadm_on_director(&lab, &["-Ln"]);
    assert!(listing.contains("  -> 127.0.0.1:80                 Route   1      0          "), "{listing}");
    assert!(listing.contains("  -> 192.168.88.5:8080            Route   1      0          "), "{listing}");
    for _ in 0..3 {
        assert_eq!(lab.curl(VIP, 80).expect("curl :80"), "Welcome from the director", "{}", lab.diagnose());
        assert_eq!(lab.curl(VIP, 8080).expect("curl :8080"), "Welcome from the director", "{}", lab.diagnose());
    }
    // The connections went through xlb's table (the director's stack only received them).
    let conns = ipvsadm_on_director(&lab, &["-Lnc"]);
    let rows = |d: &str| conns.lines().filter(|l| l.contains("192.168.88.10:") && l.ends_with(d)).count();
    assert_eq!((rows("127.0.0.1:80"), rows("192.168.88.5:8080")), (3, 3), "{conns}");
    // A real server elsewhere still gets the VIP's traffic: the local path is per real server.
    ipvsadm_on_director(&lab, &["-d", "-t", &vip80, "-r", "127.0.0.1:80"]);
    ipvsadm_on_director(&lab, &["-a", "-t", &vip80, "-r", "192.168.88.100", "-g"]);
    assert_eq!(lab.curl(VIP, 80).expect("curl"), "Welcome from web1", "{}", lab.diagnose());
    drop(servers);
}
