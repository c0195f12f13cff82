//! The IPVS sync daemon run by `lbd run` (issue 17): `ipvsadm --start-daemon backup` makes the
//! director install what sync messages carry — here messages sent from a plain UDP socket on
//! the client's segment, built to the kernel's layout, versions 1 and 0 — and `--start-daemon
//! master` on a second xlb director sends the connections real TCP clients make through its
//! XDP data plane, so the backup's `-Lnc` lists the master's connections and templates.
use std::net::IpAddr;
use std::process::Output;
use std::time::{Duration, Instant};

use lb_user::sync::wire::{Builder, SyncConn, Version, flags};
use xlb_tests::lab::{CLIENT, CLIENT6, Capture, DIP, Lab, Mode, RS1, VIP, VIP6, WEB1, WEB1_6, WEB2, enable_ipv6, plug};
use xlb_tests::netns::{Netns, Proc};
use xlb_tests::pins::TempPins;
use xlb_tests::workspace_bin;

/// The services both directors carry: DR, one plain, one persistent, one UDP.
const SERVICES: &[&[&str]] = &[
    &["-A", "-t", "192.168.88.15:80", "-s", "rr"],
    &["-a", "-t", "192.168.88.15:80", "-r", "192.168.88.100:80", "-g"],
    &["-a", "-t", "192.168.88.15:80", "-r", "192.168.88.200:80", "-g"],
    &["-A", "-t", "192.168.88.15:8080", "-s", "rr", "-p", "300"],
    &["-a", "-t", "192.168.88.15:8080", "-r", "192.168.88.100:8080", "-g"],
    &["-a", "-t", "192.168.88.15:8080", "-r", "192.168.88.200:8080", "-g"],
    &["-A", "-u", "192.168.88.15:53", "-s", "rr"],
    &["-a", "-u", "192.168.88.15:53", "-r", "192.168.88.100:53", "-g"],
];

/// An IPv6 service for the dual-stack backup test.
const SERVICES6: &[&[&str]] = &[
    &["-A", "-t", "[2001:db8::10]:80", "-s", "rr"],
    &["-a", "-t", "[2001:db8::10]:80", "-r", "[2001:db8::100]:80", "-g"],
];

/// One director of the test: its namespace's `lbadm` and `lbd run` on its own pin directory.
struct Director<'a> {
    ns: &'a Netns,
    pins: &'a std::path::Path,
    log: std::path::PathBuf,
    lbd: Option<Proc>,
}

impl<'a> Director<'a> {
    fn new(ns: &'a Netns, pins: &'a std::path::Path, log: std::path::PathBuf) -> Director<'a> {
        Director { ns, pins, log, lbd: None }
    }

    fn lbadm(&self, args: &[&str]) -> Output {
        self.ns
            .cmd_net_only(workspace_bin("lbadm"))
            .args(args)
            .env("XLB_PIN_DIR", self.pins)
            .output()
            .expect("lbadm runs")
    }

    fn lbadm_ok(&self, args: &[&str]) -> String {
        let out = self.lbadm(args);
        assert!(out.status.success(), "lbadm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn lbd(&self, args: &[&str]) -> String {
        let out = self.ns.cmd_net_only(workspace_bin("lbd")).arg("--pin-dir").arg(self.pins).args(args).output().expect("lbd runs");
        assert!(out.status.success(), "lbd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn start_lbd(&mut self) {
        self.lbd = Some(self.ns.spawn_lbd(self.pins, &["run", "--interval", "1"], &self.log).expect("lbd run starts"));
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `what` in lbd's log.
    fn wait_log(&self, what: &str) {
        let t = Instant::now();
        while !self.log_text().contains(what) {
            assert!(t.elapsed() < Duration::from_secs(10), "no {what:?} in lbd's log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `-Lnc` rows as (proto, state, source, virtual, destination): the expiry left out.
    fn conns(&self, extra: &[&str]) -> Vec<[String; 5]> {
        let mut args = vec!["-L", "-n", "-c"];
        args.extend_from_slice(extra);
        let out = self.lbadm_ok(&args);
        let mut rows: Vec<[String; 5]> = out
            .lines()
            .skip(2)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 6).then(|| [f[0], f[2], f[3], f[4], f[5]].map(str::to_string))
            })
            .collect();
        rows.sort();
        rows
    }
}

impl Drop for Director<'_> {
    fn drop(&mut self) {
        if let Some(mut p) = self.lbd.take() {
            p.kill();
        }
    }
}

fn row(p: &str, state: &str, src: &str, vip: &str, dst: &str) -> [String; 5] {
    [p, state, src, vip, dst].map(str::to_string)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn entry(proto: u8, f: u32, state: u16, (c, cport): (&str, u16), vport: u16, (d, dport): (&str, u16), timeout: u32) -> SyncConn {
    let vaddr = if c.contains(':') { VIP6 } else { VIP };
    SyncConn {
        protocol: proto,
        flags: f,
        state,
        cport,
        vport,
        dport,
        fwmark: 0,
        timeout,
        caddr: ip(c),
        vaddr: ip(vaddr),
        daddr: ip(d),
        seq: None,
        pe_data: None,
        pe_name: None,
    }
}

/// Sends `msg` from the client's segment to IPv6 group `group`, port 8848.
fn send6_from_client(lab: &Lab, group: &str, msg: &[u8]) {
    let hex: String = msg.iter().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        "import socket\ni=socket.if_nametoindex('eth0')\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_MULTICAST_IF,i)\n\
         s.sendto(bytes.fromhex('{hex}'),('{group}',8848,0,i))\n"
    );
    let out = lab.client.ns.cmd("python3").args(["-c", &script]).output().expect("python3");
    assert!(out.status.success(), "sending: {}", String::from_utf8_lossy(&out.stderr));
}

/// Sends `msg` from the client's segment to IPVS's group 224.0.0.81:8848.
fn send_from_client(lab: &Lab, msg: &[u8]) {
    let hex: String = msg.iter().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_IF,socket.inet_aton('{CLIENT}'))\n\
         s.sendto(bytes.fromhex('{hex}'),('224.0.0.81',8848))\n"
    );
    let out = lab.client.ns.cmd("python3").args(["-c", &script]).output().expect("python3");
    assert!(out.status.success(), "sending: {}", String::from_utf8_lossy(&out.stderr));
}

/// Waits until `-Lnc` of `d` is `want`.
fn wait_conns(d: &Director, extra: &[&str], want: &[[String; 5]]) {
    let mut want = want.to_vec();
    want.sort();
    let t = Instant::now();
    loop {
        let got = d.conns(extra);
        if got == want {
            return;
        }
        if t.elapsed() > Duration::from_secs(8) {
            panic!("-Lnc {extra:?}:\n got {got:?}\nwant {want:?}\nlbd log:\n{}", d.log_text());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// ActiveConn and InActConn of real server `rs` in `-Ln` of service line `svc`.
fn counts(d: &Director, svc: &str, rs: &str) -> (u64, u64) {
    let out = d.lbadm_ok(&["-L", "-n"]);
    let mut in_svc = false;
    for l in out.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() >= 2 && (f[0] == "TCP" || f[0] == "UDP") {
            in_svc = f[1] == svc;
        } else if in_svc && f.len() == 6 && f[1] == rs {
            return (f[4].parse().unwrap_or(u64::MAX), f[5].parse().unwrap_or(u64::MAX));
        }
    }
    panic!("{svc} {rs} not in:\n{out}");
}

/// A backup installs connections, templates and updates from hand-built messages of both
/// versions; entries it has no real server for are skipped; another syncid is ignored.
#[test]
fn backup_installs_messages_of_both_versions() {
    let lab = Lab::new6("syncb", Mode::Dr).expect("lab");
    let mut d = Director::new(&lab.lvs1.ns, lab.pin_dir(), lab.dir.join("lbd.log"));
    for l in SERVICES.iter().chain(SERVICES6) {
        d.lbadm_ok(l);
    }
    d.start_lbd();
    d.lbadm_ok(&["--start-daemon", "backup", "--mcast-interface", "eth0", "--syncid", "7"]);
    d.wait_log("state = BACKUP");
    // The socket joins the group right after the log line.
    std::thread::sleep(Duration::from_millis(300));

    let dr = flags::DROUTE | flags::NOOUTPUT;
    let est = entry(6, dr, 1, (CLIENT, 40001), 80, (WEB1, 80), 900);
    let persistent = entry(6, dr, 1, (CLIENT, 40002), 8080, (WEB2, 8080), 900);
    let template = entry(0x06, flags::TEMPLATE | dr | flags::INACTIVE, 1, (CLIENT, 0), 8080, (WEB2, 8080), 300);
    let unknown = entry(6, dr, 1, (CLIENT, 40009), 80, ("192.168.88.99", 80), 900);
    let v6 = entry(6, dr, 1, (CLIENT6, 40005), 80, (WEB1_6, 80), 900);
    let mut b = Builder::new(7, 1472);
    for e in [&est, &persistent, &template, &unknown, &v6] {
        assert!(b.add(Version::V1, e).is_none());
    }
    send_from_client(&lab, &b.take().expect("message"));
    // Version 0: IPv4, no timeout (the backup's UDP timeout applies).
    let udp = entry(17, flags::DROUTE | flags::INACTIVE, 0, (CLIENT, 40003), 53, (WEB1, 53), 0);
    let mut b = Builder::new(7, 1472);
    b.add(Version::V0, &udp);
    send_from_client(&lab, &b.take().expect("message"));
    // Another syncid: ignored whole.
    let mut b = Builder::new(8, 1472);
    b.add(Version::V1, &entry(6, dr, 1, (CLIENT, 40004), 80, (WEB1, 80), 900));
    send_from_client(&lab, &b.take().expect("message"));

    let mut want = vec![
        row("TCP", "ESTABLISHED", "192.168.88.10:40001", "192.168.88.15:80", "192.168.88.100:80"),
        row("TCP", "ESTABLISHED", "192.168.88.10:40002", "192.168.88.15:8080", "192.168.88.200:8080"),
        row("TCP", "ASSURED", "192.168.88.10:0", "192.168.88.15:8080", "192.168.88.200:8080"),
        row("UDP", "UDP", "192.168.88.10:40003", "192.168.88.15:53", "192.168.88.100:53"),
        row("TCP", "ESTABLISHED", "[2001:db8::2]:40005", "[2001:db8::10]:80", "[2001:db8::100]:80"),
    ];
    wait_conns(&d, &[], &want);
    // Timeouts: the message's (v1), the backup's UDP timeout (v0, 300 s).
    let out = d.lbadm_ok(&["-L", "-n", "-c"]);
    assert!(out.contains("TCP 14:5") || out.contains("TCP 15:00"), "{out}");
    assert!(out.contains("UDP 04:5") || out.contains("UDP 05:00"), "{out}");
    // Counted as the data plane counts them: ActiveConn for ESTABLISHED, InActConn for UDP.
    assert_eq!(counts(&d, "192.168.88.15:80", "192.168.88.100:80"), (1, 0));
    assert_eq!(counts(&d, "192.168.88.15:53", "192.168.88.100:53"), (0, 1));

    // An update: the connection closes (FIN_WAIT, INACTIVE): it moves to InActConn.
    let fin = SyncConn { state: 4, flags: dr | flags::INACTIVE, timeout: 120, ..est.clone() };
    let mut b = Builder::new(7, 1472);
    b.add(Version::V1, &fin);
    send_from_client(&lab, &b.take().expect("message"));
    want[0] = row("TCP", "FIN_WAIT", "192.168.88.10:40001", "192.168.88.15:80", "192.168.88.100:80");
    wait_conns(&d, &[], &want);
    assert_eq!(counts(&d, "192.168.88.15:80", "192.168.88.100:80"), (0, 1));

    d.lbadm_ok(&["--stop-daemon", "backup"]);
    d.wait_log("stopping the backup thread");

    // An IPv6 group: the backup joins it on its interface.
    d.lbadm_ok(&["--start-daemon", "backup", "--mcast-interface", "eth0", "--mcast-group", "ff02::1:81"]);
    let t = Instant::now();
    while d.log_text().matches("state = BACKUP").count() < 2 {
        assert!(t.elapsed() < Duration::from_secs(10), "backup not restarted:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let closed = SyncConn { state: 5, flags: dr | flags::INACTIVE, timeout: 120, ..v6.clone() };
    let mut b = Builder::new(0, 1472);
    b.add(Version::V1, &closed);
    send6_from_client(&lab, "ff02::1:81", &b.take().expect("message"));
    want[4] = row("TCP", "TIME_WAIT", "[2001:db8::2]:40005", "[2001:db8::10]:80", "[2001:db8::100]:80");
    wait_conns(&d, &[], &want);
    println!("backup: {} rows installed from versions 1 and 0, IPv4 and IPv6 groups", want.len());
}

/// A second director on the client's segment (no VIP: it is the backup), with its own table.
fn second_director(lab: &Lab) -> Netns {
    let ns = Netns::new(&format!("{}-lvs2", lab.prefix)).expect("namespace");
    enable_ipv6(&ns).expect("IPv6");
    plug(&ns, "eth0", &lab.sw, "sw-lvs2", "192.168.88.6/24").expect("plug");
    ns.sysctl("net.ipv4.ip_forward", "1").expect("forwarding");
    ns
}

/// xlb master -> xlb backup with real TCP connections through the master's XDP: the backup
/// lists the master's connections (state, client, virtual, real server) and templates, in
/// version 1 and then version 0.
#[test]
fn master_to_backup_real_connections() {
    let lab = Lab::new6("syncm", Mode::Dr).expect("lab");
    lab.attach().expect("attach");
    let lvs2 = second_director(&lab);
    let pins2 = TempPins::new(&format!("{}-2", lab.prefix)).expect("pins");
    let mut master = Director::new(&lab.lvs1.ns, lab.pin_dir(), lab.dir.join("master.log"));
    let mut backup = Director::new(&lvs2, pins2.path(), lab.dir.join("backup.log"));
    for l in SERVICES {
        master.lbadm_ok(l);
        backup.lbadm_ok(l);
    }
    master.start_lbd();
    backup.start_lbd();
    backup.lbadm_ok(&["--start-daemon", "backup", "--mcast-interface", "eth0"]);
    master.lbadm_ok(&["--start-daemon", "master", "--mcast-interface", "eth0"]);
    backup.wait_log("state = BACKUP");
    master.wait_log("state = MASTER");
    std::thread::sleep(Duration::from_millis(300));

    for (round, version) in ["1", "0"].iter().enumerate() {
        master.lbd(&["sysctl", &format!("sync_version={version}")]);
        // The master's datagrams as the kernel's: from its interface's address, TTL 1, to
        // 224.0.0.81:8848; a version 1 header starts with 0 and has version 1 at byte 5, a
        // version 0 one starts with its (non-zero) count.
        let header = if *version == "1" { "udp[8] = 0 and udp[13] = 1" } else { "udp[8] != 0" };
        let filter = format!("src host {DIP} and dst host 224.0.0.81 and udp dst port 8848 and ip[8] = 1 and {header}");
        let capture = Capture::start(&lvs2, "eth0", &filter, lab.dir.join(format!("sync-v{version}.pcap"))).expect("capture");
        for port in [80, 8080, 80, 8080] {
            let body = lab.curl(VIP, port).expect("curl through the master");
            assert!(body.starts_with("Welcome"), "{body}");
        }
        // The master flushes a partly filled message within 2 s.
        let t = Instant::now();
        let want = master.conns(&[]);
        assert!(want.len() >= 4 * (round + 1), "master's connections: {want:?}");
        loop {
            let got = backup.conns(&[]);
            let master_now = master.conns(&[]);
            if got == master_now {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(8),
                "version {version}: backup\n{got:?}\nmaster\n{master_now:?}\nmaster log:\n{}\nbackup log:\n{}",
                master.log_text(),
                backup.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let rows = backup.conns(&[]);
        let templates = rows.iter().filter(|r| r[1] == "ASSURED" || r[1] == "NONE").count();
        println!("version {version}: backup lists the master's {} rows ({templates} templates) after {:?}:", rows.len(), t.elapsed());
        for r in &rows {
            println!("  {}", r.join(" "));
        }
        assert!(templates >= 1, "the persistent service's template reached the backup");
        let sent = capture.lines().expect("capture");
        assert!(!sent.is_empty(), "no version {version} datagram from {DIP} with TTL 1 seen");
        println!("  {} version {version} datagrams", sent.len());
    }

    // lbd restarts: what the data plane queued while the master's lbd was down is sent by the
    // next one, which starts the daemon again from the pinned table.
    if let Some(mut p) = master.lbd.take() {
        p.kill();
    }
    for _ in 0..2 {
        assert!(lab.curl(VIP, 80).expect("curl while lbd is down").starts_with("Welcome"));
    }
    let pending = master.conns(&[]);
    master.start_lbd();
    let t = Instant::now();
    while backup.conns(&[]) != pending {
        assert!(t.elapsed() < Duration::from_secs(8), "after the restart:\n{:?}\n{pending:?}\n{}", backup.conns(&[]), master.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("restart: the backup lists all {} rows (2 made while lbd was down) after {:?}", pending.len(), t.elapsed());

    // An IPv6 group: both daemons started again on it.
    for (d, role) in [(&backup, "backup"), (&master, "master")] {
        d.lbadm_ok(&["--stop-daemon", role]);
        d.lbadm_ok(&["--start-daemon", role, "--mcast-interface", "eth0", "--mcast-group", "ff02::1:81"]);
    }
    let t = Instant::now();
    while backup.log_text().matches("group = ff02::1:81").count() < 1 || master.log_text().matches("group = ff02::1:81").count() < 1 {
        assert!(t.elapsed() < Duration::from_secs(10), "daemons not restarted:\n{}\n{}", master.log_text(), backup.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    for port in [80, 8080] {
        assert!(lab.curl(VIP, port).expect("curl").starts_with("Welcome"));
    }
    let t = Instant::now();
    while backup.conns(&[]) != master.conns(&[]) {
        assert!(t.elapsed() < Duration::from_secs(8), "IPv6 group:\n{:?}\n{:?}\n{}", backup.conns(&[]), master.conns(&[]), master.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("IPv6 group: the backup lists the master's {} rows after {:?}", backup.conns(&[]).len(), t.elapsed());
}

/// A NAT connection gets its reply-side entry too (the real server's replies are translated
/// back by the backup once it carries them), pointing back to its client side; the dest counts
/// one ActiveConn.
#[test]
fn backup_installs_nat_reply_side() {
    use aya::maps::{HashMap, Map, MapData};
    use lb_common::{CONN_KIND_OUT, Conn, ConnKey};

    let lab = Lab::new("syncn", Mode::Nat).expect("lab");
    let mut d = Director::new(&lab.lvs1.ns, lab.pin_dir(), lab.dir.join("lbd.log"));
    for l in xlb_tests::lab::SEED_NAT_LINES {
        d.lbadm_ok(l);
    }
    d.start_lbd();
    d.lbadm_ok(&["--start-daemon", "backup", "--mcast-interface", "eth0"]);
    d.wait_log("state = BACKUP");
    std::thread::sleep(Duration::from_millis(300));
    let mut nat = entry(6, flags::MASQ, 1, (CLIENT, 40001), 80, (RS1, 80), 900);
    nat.vaddr = ip(DIP);
    let mut b = Builder::new(0, 1472);
    b.add(Version::V1, &nat);
    send_from_client(&lab, &b.take().expect("message"));
    wait_conns(&d, &[], &[row("TCP", "ESTABLISHED", "192.168.88.10:40001", "192.168.88.5:80", "192.168.99.100:80")]);
    assert_eq!(counts(&d, "192.168.88.5:80", "192.168.99.100:80"), (1, 0));

    let path = lab.pin_dir().join(lb_common::names::CONNS);
    let map = Map::from_map_data(MapData::from_pin(&path).expect("pinned XLB_CONNS")).expect("map");
    let conns: HashMap<MapData, ConnKey, Conn> = HashMap::try_from(map).expect("hash map");
    let entries: Vec<(ConnKey, Conn)> = conns.iter().map(|e| e.expect("entry")).collect();
    let addr = |s: &str| u32::from_ne_bytes(s.parse::<std::net::Ipv4Addr>().expect("addr").octets());
    let reply = entries.iter().find(|(k, _)| k.kind == CONN_KIND_OUT).expect("a reply-side entry");
    let client = entries.iter().find(|(k, _)| k.kind == lb_common::CONN_KIND_IN).expect("the client side");
    assert_eq!((reply.0.caddr, reply.0.cport, reply.0.vaddr, reply.0.vport), (addr(CLIENT), 40001u16.to_be(), addr(RS1), 80u16.to_be()));
    // It points back: the VIP it replaces, the virtual port, the same real server.
    assert_eq!((reply.1.timeout, reply.1.port, reply.1.dest_id), (addr(DIP), 80u16.to_be(), client.1.dest_id));
    assert_eq!(entries.len(), 2, "{entries:?}");

    // A 1 s timeout from the master: lbd's expiry removes both entries and gives the count
    // back (the counts balance).
    let mut b = Builder::new(0, 1472);
    b.add(Version::V1, &SyncConn { timeout: 1, ..nat });
    send_from_client(&lab, &b.take().expect("message"));
    wait_conns(&d, &[], &[]);
    let t = Instant::now();
    while counts(&d, "192.168.88.5:80", "192.168.99.100:80") != (0, 0) || conns.iter().count() != 0 {
        assert!(t.elapsed() < Duration::from_secs(8), "not expired: {:?}", counts(&d, "192.168.88.5:80", "192.168.99.100:80"));
        std::thread::sleep(Duration::from_millis(200));
    }
}
