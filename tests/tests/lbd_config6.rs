//! lbd on the binary with the IPv6, mixed-family and GUE/GRE forms of its two configuration
//! grammars (issue 15): `lbd run --config` programs the table they describe (read back with
//! lbadm `-Sn`, byte for byte), `lbd check-config` reports a malformed IPv6 line by number, and
//! `lbd sync-marks` reads ip6tables' mangle MARK rules into AF_INET6 classifier keys.
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use xlb_tests::{netns::Netns, netns::run, netns::unique_prefix, pins::TempPins, workspace_bin};

/// `lbd run --config FILE` on a pin directory, stopped when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sn(pins: &Path) -> String {
    let out = Command::new(workspace_bin("lbadm")).arg("-Sn").env("XLB_PIN_DIR", pins).output().expect("lbadm");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs lbd on `config` until lbadm's `-Sn` is `want` (or 20 s pass); returns what it was.
fn programmed(tag: &str, config: &str, name: &str, want: &str) -> String {
    let pins = TempPins::new(tag).expect("pins");
    let dir = std::env::temp_dir().join(unique_prefix(tag));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join(name);
    std::fs::write(&file, config).expect("config");
    // The maps exist before the two programs race to create them.
    assert_eq!(sn(pins.path()), "");
    let child = Command::new(workspace_bin("lbd"))
        .arg("--pin-dir")
        .arg(pins.path())
        .args(["run", "--interval", "0.2", "--config"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("lbd.log")).map(Stdio::from).unwrap_or(Stdio::null()))
        .spawn()
        .expect("lbd run");
    let _daemon = Daemon(child);
    let t0 = Instant::now();
    let mut got = sn(pins.path());
    while got != want && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
        got = sn(pins.path());
    }
    if got != want {
        eprintln!("lbd's log:\n{}", std::fs::read_to_string(dir.join("lbd.log")).unwrap_or_default());
    }
    let _ = std::fs::remove_dir_all(&dir);
    got
}

#[test]
fn keepalived_ipv6_gue_gre_services_are_programmed() {
    // No checkers: the real servers are up from the start.
    let conf = "virtual_server 2001:db8::1 80 {\n  lb_algo rr\n  lb_kind DR\n  persistence_timeout 60\n  persistence_granularity 64\n\
                \x20 real_server 2001:db8::10 80 {\n    weight 2\n  }\n\
                \x20 real_server 10.1.1.2 80 {\n    lvs_method TUN type gue port 6080 csum\n  }\n\
                \x20 real_server 10.1.1.3 80 {\n    lvs_method TUN type gre\n  }\n}\n\
                virtual_server fwmark 3 {\n  ip_family inet6\n  lb_algo sh\n  lb_kind NAT\n  persistence_timeout 30\n\
                \x20 real_server fd00::4 8080 {\n  }\n}\n";
    let want = "-A -t [2001:db8::1]:80 -s rr -p 60 -M 64\n\
                -a -t [2001:db8::1]:80 -r 10.1.1.2:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum\n\
                -a -t [2001:db8::1]:80 -r 10.1.1.3:80 -i -w 1 --tun-type gre --tun-nocsum\n\
                -a -t [2001:db8::1]:80 -r [2001:db8::10]:80 -g -w 2\n\
                -A -f 3 -6 -s sh -p 30\n\
                -a -f 3 -6 -r [fd00::4]:8080 -m -w 1\n";
    assert_eq!(programmed("cfg6k", conf, "keepalived.conf", want), want);
}

#[test]
fn ldirectord_ipv6_services_are_programmed() {
    let cf = "checktimeout=3\nfallback6=[::1]:80\n\
              virtual6=[2001:db8::1]:80\n\treal6=[2001:db8::10]:80 gate 3\n\treal6=[2001:db8::11]:8080 masq\n\
              \tscheduler=rr\n\tchecktype=on\n\
              virtual6=7\n\treal6=[fd00::7] ipip\n\tscheduler=wlc\n\tpersistent=60\n\tnetmask=48\n\tchecktype=on\n";
    let want = "-A -t [2001:db8::1]:80 -s rr\n\
                -a -t [2001:db8::1]:80 -r [2001:db8::10]:80 -g -w 3\n\
                -a -t [2001:db8::1]:80 -r [2001:db8::11]:8080 -m -w 1\n\
                -A -f 7 -6 -s wlc -p 60 -M 48\n\
                -a -f 7 -6 -r [fd00::7]:0 -i -w 1 --tun-type ipip\n";
    assert_eq!(programmed("cfg6l", cf, "ldirectord.cf", want), want);
}

#[test]
fn check_config_reports_ipv6_mistakes_by_line() {
    let dir = std::env::temp_dir().join(unique_prefix("cfg6c"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("ldirectord.cf");
    std::fs::write(&file, "virtual=[2001:db8::1]:80\n\treal=10.0.0.2:80 gate\nvirtual6=[2001:db8::2]:80\n\treal=10.0.0.3:80 gate\n")
        .expect("config");
    let out = Command::new(workspace_bin("lbd")).args(["check-config"]).arg(&file).output().expect("lbd");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    let f = file.display();
    assert!(err.contains(&format!("{f}:1: cannot specify an IPv6 address here. please use \"virtual6\" instead.")), "{err}");
    assert!(err.contains(&format!("{f}:4: cannot specify \"real\" here.  please use \"real6\" instead")), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// ip6tables' MARK rules (as an admin types them) become AF_INET6 keys of XLB_FWMARKS, beside
/// the IPv4 ones; a rule the classifier cannot express is reported, not guessed.
#[test]
fn sync_marks_reads_ip6tables() {
    let prefix = unique_prefix("fwm6");
    let pins = TempPins::new(&prefix).expect("pins");
    let ns = Netns::new(&format!("{prefix}-lvs")).expect("ns");
    for rule in [
        "-t mangle -A PREROUTING -d 2001:db8::1 -p tcp --dport 80 -j MARK --set-mark 100",
        "-t mangle -A PREROUTING -d 2001:db8::1 -p udp --dport 53 -j MARK --set-mark 101",
        "-t mangle -A PREROUTING -d 2001:db8::/64 -p tcp -j MARK --set-mark 102",
    ] {
        ns.exec("ip6tables", &rule.split_whitespace().collect::<Vec<_>>()).expect("ip6tables");
    }
    ns.exec("iptables", &["-t", "mangle", "-A", "PREROUTING", "-d", "192.168.0.105", "-p", "tcp", "--dport", "80", "-j", "MARK", "--set-mark", "100"])
        .expect("iptables");
    let out = run(ns.cmd_net_only(workspace_bin("lbd")).arg("--pin-dir").arg(pins.path()).arg("sync-marks")).expect("sync-marks");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3 fwmark classifier entries");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2001:db8::/64 is not one IPv6 address"), "{err}");
    let data = aya::maps::MapData::from_pin(pins.path().join(lb_common::names::FWMARKS)).expect("map");
    let map: aya::maps::HashMap<_, lb_common::ServiceKey, u32> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data)).expect("hash map");
    let mut got: Vec<(String, u8, u16, u32)> = map
        .iter()
        .filter_map(|e| e.ok())
        .map(|(k, mark)| (lb_user::store::to_ip(k.af, &k.addr).to_string(), k.proto, u16::from_be(k.port), mark))
        .collect();
    got.sort();
    let want: Vec<(String, u8, u16, u32)> = vec![
        ("192.168.0.105".into(), lb_common::IPPROTO_TCP, 80, 100),
        ("2001:db8::1".into(), lb_common::IPPROTO_TCP, 80, 100),
        ("2001:db8::1".into(), lb_common::IPPROTO_UDP, 53, 101),
    ];
    assert_eq!(got, want);
    // The IPv6 keys are AF_INET6 ones, laid out as the service keys are.
    let k6 = lb_user::store::map_key(&lb_user::model::SvcKey::Inet {
        proto: lb_user::model::Proto::Tcp,
        addr: "2001:db8::1".parse().expect("addr"),
        port: 80,
    });
    assert_eq!(map.get(&k6, 0).expect("AF_INET6 key"), 100);
    // The sync opened the gate for the marked IPv6 VIP too (XDP sees marked traffic only
    // through it).
    let gate = lb_user::store::Gate::open(pins.path()).expect("gate");
    assert!(gate.has_ip(lb_common::GATE_FWMARK, "2001:db8::1".parse().expect("vip6")), "IPv6 fwmark VIP gated out");
    assert!(gate.has_ip(lb_common::GATE_FWMARK, "192.168.0.105".parse().expect("vip")), "IPv4 fwmark VIP gated out");
}
