//! lbd's non-HTTP health checks against real servers in a namespace: external commands
//! (ldirectord `checktype = external`, keepalived MISC_CHECK with `misc_dynamic`), DNS (dnsmasq;
//! ldirectord `service = dns` over UDP and TCP, keepalived DNS_CHECK), SMTP (python's smtpd;
//! ldirectord `service = smtp`, keepalived SMTP_CHECK), UDP (keepalived UDP_CHECK; ldirectord's
//! ping for `checktype = connect` on a UDP service), and ldirectord's `cleanstop` on SIGTERM.
//! Each shows a server up, down with the check's reason, and back; lbd only checks (no XDP):
//! the table read with `lbadm -Sn` says what it decided.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use xlb_tests::netns::{Netns, Proc, unique_prefix};
use xlb_tests::pins::TempPins;
use xlb_tests::workspace_bin;

/// The director's side of the link, the server's two addresses, the virtual address.
const DIRECTOR: &str = "10.77.0.1";
const SERVER: &str = "10.77.0.2";
const SERVER2: &str = "10.77.0.3";
const VIP: &str = "10.77.0.100";

/// A director namespace (where lbd runs) wired to a server namespace, a pin directory, a
/// scratch directory; all removed when dropped.
struct Bench {
    pins: TempPins,
    dir: PathBuf,
    director: Netns,
    server: Netns,
    lbd: Option<Proc>,
    /// Where in lbd's log the current step began ([`Bench::mark`]).
    since: std::cell::Cell<usize>,
}

impl Bench {
    fn new(tag: &str) -> Bench {
        let prefix = unique_prefix(tag);
        let pins = TempPins::new(tag).expect("pins");
        let dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let director = Netns::new(&format!("{prefix}d")).expect("director ns");
        let server = Netns::new(&format!("{prefix}s")).expect("server ns");
        let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
        director.ip(&["link", "add", &a, "type", "veth", "peer", "name", &b, "netns", &server.name]).expect("veth");
        director.ip(&["addr", "add", &format!("{DIRECTOR}/24"), "dev", &a]).expect("addr");
        director.ip(&["link", "set", &a, "up"]).expect("up");
        server.ip(&["addr", "add", &format!("{SERVER}/24"), "dev", &b]).expect("addr");
        server.ip(&["addr", "add", &format!("{SERVER2}/24"), "dev", &b]).expect("addr");
        server.ip(&["link", "set", &b, "up"]).expect("up");
        Bench { pins, dir, director, server, lbd: None, since: std::cell::Cell::new(0) }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `lbd run --config FILE` in the director's namespace, the file holding `config`.
    fn start_lbd(&mut self, name: &str, config: &str) {
        let file = self.path(name);
        std::fs::write(&file, config).expect("config");
        self.mark();
        // The maps exist before lbd and the test's lbadm both open them.
        self.sn();
        let file = file.to_string_lossy().into_owned();
        let proc = self.director.spawn_lbd(self.pins.path(), &["run", "--config", &file], &self.path("lbd.log")).expect("lbd");
        self.lbd = Some(proc);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("lbd.log")).unwrap_or_default()
    }

    /// `lbadm -Sn`.
    fn sn(&self) -> String {
        let out = Command::new(workspace_bin("lbadm")).arg("-Sn").env("XLB_PIN_DIR", self.pins.path()).output().expect("lbadm");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The weight of the dest `-r REAL` of service `svc` (`-t VIP:80`), None when absent.
    fn weight(&self, svc: &str, real: &str) -> Option<i32> {
        let want = format!("-a {svc} -r {real} ");
        let sn = self.sn();
        let line = sn.lines().find(|l| l.starts_with(&want))?;
        line.split_whitespace().skip_while(|w| *w != "-w").nth(1)?.parse().ok()
    }

    /// A new step: [`Bench::expect`] looks for its reasons in what lbd logs from now on.
    fn mark(&self) {
        self.since.set(self.log().len());
    }

    /// Waits until the dest has `want` as weight (None: absent) and lbd's log since the last
    /// [`Bench::mark`] has `reason`.
    fn expect(&self, what: &str, svc: &str, real: &str, want: Option<i32>, reason: &str) -> Duration {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            let log = self.log();
            if self.weight(svc, real) == want && log.get(self.since.get()..).is_some_and(|l| l.contains(reason)) {
                return t0.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{what}: {real} of {svc} not at weight {want:?} with {reason:?} in the log\n-Sn:\n{}\nlog:\n{}", self.sn(), self.log());
    }

    /// SIGTERM to lbd, waiting for it to end.
    fn stop_lbd(&mut self) {
        if let Some(mut p) = self.lbd.take() {
            p.stop();
        }
    }

    /// A python program in the server's namespace.
    fn python(&self, script: &str, args: &[&str]) -> Proc {
        let all: Vec<&str> = ["-c", script].into_iter().chain(args.iter().copied()).collect();
        self.server.spawn("python3", &all).expect("python")
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.stop_lbd();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A shell script in the bench's directory that writes its arguments (one a line) to `argv`
/// and exits with the status written in `status` (or sleeps while `status` says `sleep`).
fn recording_script(b: &Bench, name: &str) -> PathBuf {
    let dir = b.dir.to_string_lossy();
    let script = b.path(name);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {dir}/{name}.argv\nst=$(cat {dir}/{name}.status)\n\
             if [ \"$st\" = sleep ]; then echo $$ > {dir}/{name}.pid; exec sleep 30; fi\nexit $st\n"
        ),
    )
    .expect("script");
    Command::new("chmod").arg("755").arg(&script).status().expect("chmod");
    script
}

fn set_status(b: &Bench, name: &str, status: &str) {
    b.mark();
    std::fs::write(b.path(&format!("{name}.status")), status).expect("status");
}

/// ldirectord's `checktype = external`: `checkcommand` gets the virtual server, its port, the
/// real server, its port; exit 0 is up, 1 down, and a command past `checktimeout` is killed.
#[test]
fn ldirectord_external_command() {
    let mut b = Bench::new("pext");
    let script = recording_script(&b, "check");
    set_status(&b, "check", "0");
    let cfg = format!(
        "checkinterval=1\nchecktimeout=1\nquiescent=yes\nvirtual={VIP}:80\n    real={SERVER}:80 gate\n    \
         real={SERVER2}:8080 masq 3\n    checktype=external\n    checkcommand=\"{}\"\n",
        script.display()
    );
    b.start_lbd("ldirectord.cf", &cfg);
    let svc = format!("-t {VIP}:80");
    let t = b.expect("up", &svc, &format!("{SERVER}:80"), Some(1), &format!("real server {SERVER}:80 is up (ok)"));
    println!("external: up after {t:?}");
    b.expect("up", &svc, &format!("{SERVER2}:8080"), Some(3), &format!("real server {SERVER2}:8080 is up"));
    // Both real servers ran the script; the last argv is one of theirs, byte for byte.
    let argv = std::fs::read_to_string(b.path("check.argv")).expect("argv");
    assert!(
        argv == format!("{VIP}\n80\n{SERVER}\n80\n") || argv == format!("{VIP}\n80\n{SERVER2}\n8080\n"),
        "argv {argv:?}"
    );

    set_status(&b, "check", "1");
    let t = b.expect("down", &svc, &format!("{SERVER}:80"), Some(0), "exited with status 1");
    println!("external: down after {t:?}");
    set_status(&b, "check", "0");
    b.expect("back", &svc, &format!("{SERVER}:80"), Some(1), "is up (ok)");

    // A hanging command: down at checktimeout (1 s), and the command is killed.
    set_status(&b, "check", "sleep");
    b.expect("hung", &svc, &format!("{SERVER}:80"), Some(0), "still running after 1s: killed");
    let pid = std::fs::read_to_string(b.path("check.pid")).expect("pid");
    let t0 = Instant::now();
    while Path::new(&format!("/proc/{}", pid.trim())).exists() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let state = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    assert!(state.is_empty() || state.contains(") Z "), "the hung command {} still runs: {state}", pid.trim());
    set_status(&b, "check", "0");
    b.expect("back", &svc, &format!("{SERVER}:80"), Some(1), "is up (ok)");
}

/// keepalived's MISC_CHECK: `misc_path` split into words (quotes kept together), and with
/// `misc_dynamic` the exit status sets the weight (status - 2), 1 is down. keepalived
/// configurations leave the table when lbd stops.
#[test]
fn keepalived_misc_check_dynamic_weight() {
    let mut b = Bench::new("pmisc");
    let script = recording_script(&b, "misc");
    set_status(&b, "misc", "0");
    let cfg = format!(
        "virtual_server {VIP} 80 {{\n  delay_loop 1\n  lb_kind DR\n  real_server {SERVER} 80 {{\n    weight 5\n    \
         inhibit_on_failure\n    MISC_CHECK {{\n      misc_path \"{} first 'two words'\"\n      misc_timeout 2\n      \
         misc_dynamic\n    }}\n  }}\n}}\n",
        script.display()
    );
    b.start_lbd("keepalived.conf", &cfg);
    let (svc, real) = (format!("-t {VIP}:80"), format!("{SERVER}:80"));
    b.expect("up", &svc, &real, Some(5), "is up (ok)");
    assert_eq!(std::fs::read_to_string(b.path("misc.argv")).expect("argv"), "first\ntwo words\n");
    set_status(&b, "misc", "12");
    let t = b.expect("reweighted", &svc, &real, Some(10), "is up with weight 10");
    println!("misc_dynamic: weight 10 after {t:?}");
    set_status(&b, "misc", "1");
    b.expect("down", &svc, &real, Some(0), "exited with status 1");
    set_status(&b, "misc", "2");
    b.expect("back with weight 0", &svc, &real, Some(0), "is up with weight 0");
    set_status(&b, "misc", "0");
    b.expect("back", &svc, &real, Some(5), "is up (ok)");
    b.stop_lbd();
    assert_eq!(b.weight(&svc, &real), Some(5), "keepalived.conf: the table stays when lbd stops\n{}", b.log());
    assert!(b.log().contains("the table and the data plane stay as they are"), "{}", b.log());
}

/// dnsmasq in the server's namespace on `listen` answering `www.example.org` with `addr`, UDP and TCP.
fn dnsmasq(b: &Bench, listen: &str, addr: &str) -> Proc {
    let p = b
        .server
        .spawn(
            "dnsmasq",
            &[
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                &format!("--listen-address={listen}"),
                "--port=53",
                "--pid-file=",
                "--user=root",
                &format!("--address=/www.example.org/{addr}"),
            ],
        )
        .expect("dnsmasq");
    wait_bound(b, "-lun", &format!("{listen}:53"));
    wait_bound(b, "-ltn", &format!("{listen}:53"));
    p
}

/// Waits until `ss FLAG` in the server's namespace lists the local address `addr`.
fn wait_bound(b: &Bench, flag: &str, addr: &str) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let ss = b.server.exec("ss", &[flag]).unwrap_or_default();
        if ss.lines().any(|l| l.split_whitespace().nth(3) == Some(addr)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing on {addr} ({flag})");
}

/// ldirectord's `service = dns` (a UDP service on port 53 and the same over TCP): up while
/// dnsmasq answers `request` with an address matching `receive`, down on a wrong answer and
/// while dnsmasq is stopped, back when it answers right again.
#[test]
fn ldirectord_dns_check() {
    let mut b = Bench::new("pdns");
    let dns = dnsmasq(&b, SERVER, "192.0.2.7");
    // The second real server's dnsmasq answers with another address.
    let _wrong = dnsmasq(&b, SERVER2, "192.0.2.8");
    let cfg = format!(
        "checkinterval=1\nnegotiatetimeout=1\nquiescent=yes\nvirtual={VIP}:53\n    real={SERVER}:53 gate\n    \
         real={SERVER2}:53 gate\n    service=dns\n    request=\"www.example.org\"\n    receive=\"^192\\.0\\.2\\.7$\"\n\
         virtual={VIP}:53\n    protocol=tcp\n    real={SERVER}:53 gate\n    real={SERVER2}:53 gate\n    service=dns\n    \
         request=\"www.example.org\"\n    receive=\"^192\\.0\\.2\\.7$\"\n"
    );
    b.start_lbd("ldirectord.cf", &cfg);
    let (udp, tcp, real, real2) = (format!("-u {VIP}:53"), format!("-t {VIP}:53"), format!("{SERVER}:53"), format!("{SERVER2}:53"));
    let t = b.expect("up", &udp, &real, Some(1), &format!("UDP {VIP}:53: real server {real} is up (ok)"));
    b.expect("up over TCP", &tcp, &real, Some(1), &format!("TCP {VIP}:53: real server {real} is up (ok)"));
    println!("dns: up after {t:?}");
    let wrong = "is down (DNS answer [\"192.0.2.8\"] does not match \"^192\\\\.0\\\\.2\\\\.7$\")";
    b.expect("wrong answer", &udp, &real2, Some(0), &format!("UDP {VIP}:53: real server {real2} {wrong}"));
    b.expect("wrong answer over TCP", &tcp, &real2, Some(0), &format!("TCP {VIP}:53: real server {real2} {wrong}"));
    b.mark();
    drop(dns);
    b.expect("stopped", &udp, &real, Some(0), &format!("{real} is down (receive: Connection refused"));
    b.expect("stopped (TCP)", &tcp, &real, Some(0), &format!("{real} is down (connect to {SERVER}:53: Connection refused"));
    b.mark();
    let _again = dnsmasq(&b, SERVER, "192.0.2.7");
    b.expect("back", &udp, &real, Some(1), &format!("UDP {VIP}:53: real server {real} is up (ok)"));
    b.expect("back over TCP", &tcp, &real, Some(1), &format!("TCP {VIP}:53: real server {real} is up (ok)"));
    assert_eq!(b.weight(&udp, &real2), Some(0));
}

/// keepalived's DNS_CHECK (`type A`, `name`): up on dnsmasq's NOERROR answer, down when it
/// is stopped, back after.
#[test]
fn keepalived_dns_check() {
    let mut b = Bench::new("pkdns");
    let mut dns = dnsmasq(&b, SERVER, "192.0.2.7");
    let cfg = format!(
        "virtual_server {VIP} 53 {{\n  protocol UDP\n  delay_loop 1\n  lb_kind DR\n  real_server {SERVER} 53 {{\n    \
         inhibit_on_failure\n    DNS_CHECK {{\n      type A\n      name www.example.org\n      retry 0\n      \
         connect_timeout 1\n    }}\n  }}\n}}\n"
    );
    b.start_lbd("keepalived.conf", &cfg);
    let (svc, real) = (format!("-u {VIP}:53"), format!("{SERVER}:53"));
    b.expect("up", &svc, &real, Some(1), "is up (ok)");
    b.mark();
    dns.kill();
    b.expect("stopped", &svc, &real, Some(0), "receive: Connection refused");
    b.mark();
    let _back = dnsmasq(&b, SERVER, "192.0.2.7");
    b.expect("back", &svc, &real, Some(1), "is up (ok)");
}

/// A TCP server answering every connection with the greeting read from a file (switched
/// without a gap in which nothing listens), `250` to each line, and recording what it is sent.
const FAKE_SMTP: &str = r#"
import os, socket, sys
addr, port, greeting_file, record = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
s.listen(16)
while True:
    c, _ = s.accept()
    c.settimeout(2)
    got = b''
    try:
        c.sendall(open(greeting_file).read().strip().encode() + b'\r\n')
        while not got.endswith(b'QUIT\r\n'):
            d = c.recv(512)
            if not d:
                break
            got += d
            if got.endswith(b'\r\n') and not got.endswith(b'QUIT\r\n'):
                c.sendall(b'250 hello\r\n')
        c.sendall(b'221 bye\r\n')
    except Exception:
        pass
    open(record + '.tmp', 'wb').write(got)
    os.replace(record + '.tmp', record)
    c.close()
"#;

/// ldirectord's `service = smtp` (port 25's default) against python's smtpd, and keepalived's
/// SMTP_CHECK with `helo_name` against a recording server (the dialogue byte for byte), down
/// on a 554 greeting and while no server listens, back after.
#[test]
fn smtp_checks() {
    let mut b = Bench::new("psmtp");
    let smtpd = |b: &Bench| {
        let p = b.server.spawn("python3", &["-m", "smtpd", "-n", "-c", "DebuggingServer", &format!("{SERVER}:25")]).expect("smtpd");
        wait_bound(b, "-ltn", &format!("{SERVER}:25"));
        p
    };
    let mut server = smtpd(&b);
    let record = b.path("smtp.got");
    let record_s = record.to_string_lossy().into_owned();
    let greeting = b.path("greeting");
    std::fs::write(&greeting, "220 fake ESMTP").expect("greeting");
    let _recording = b.python(FAKE_SMTP, &[SERVER2, "25", &greeting.to_string_lossy(), &record_s]);
    wait_bound(&b, "-ltn", &format!("{SERVER2}:25"));
    let cfg = format!(
        "checkinterval=1\nnegotiatetimeout=2\nquiescent=no\nvirtual={VIP}:25\n    real={SERVER}:25 gate\n    real={SERVER2}:25 gate\n"
    );
    b.start_lbd("ldirectord.cf", &cfg);
    let (svc, real, real2) = (format!("-t {VIP}:25"), format!("{SERVER}:25"), format!("{SERVER2}:25"));
    let t = b.expect("up", &svc, &real, Some(1), &format!("{real} is up (ok)"));
    println!("smtp: up after {t:?}");
    b.expect("up", &svc, &real2, Some(1), &format!("{real2} is up (ok)"));
    // ldirectord's HELO (Net::SMTP's default name), byte for byte.
    assert_eq!(recorded(&record), "HELO localhost.localdomain\r\nQUIT\r\n");
    b.mark();
    server.kill();
    b.expect("stopped", &svc, &real, None, &format!("{real} is down (connect to {real}: Connection refused"));
    b.mark();
    let _server = smtpd(&b);
    b.expect("back", &svc, &real, Some(1), &format!("{real} is up (ok)"));
    b.mark();
    std::fs::write(&greeting, "554 no service here").expect("greeting");
    b.expect("a server that says 554", &svc, &real2, None, &format!("{real2} is down (SMTP greeting 554 no service here)"));
    b.mark();
    std::fs::write(&greeting, "220 fake ESMTP").expect("greeting");
    b.expect("back", &svc, &real2, Some(1), &format!("{real2} is up (ok)"));
    b.stop_lbd();
    std::fs::write(&record, "").expect("record reset");

    // keepalived: its helo_name, against the recording server.
    let cfg = format!(
        "virtual_server {VIP} 25 {{\n  delay_loop 1\n  lb_kind DR\n  real_server {SERVER2} 25 {{\n    SMTP_CHECK {{\n      \
         helo_name lb.example.org\n      connect_timeout 2\n    }}\n  }}\n}}\n"
    );
    b.start_lbd("keepalived.conf", &cfg);
    b.expect("keepalived up", &svc, &format!("{SERVER2}:25"), Some(1), "is up (ok)");
    assert_eq!(recorded(&record), "HELO lb.example.org\r\nQUIT\r\n");
}

/// What the recording SMTP server got on its last connection (waiting for it to be written).
fn recorded(record: &Path) -> String {
    let t0 = Instant::now();
    while std::fs::read(record).unwrap_or_default().is_empty() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    String::from_utf8_lossy(&std::fs::read(record).unwrap_or_default()).into_owned()
}

/// A UDP server whose mode is read from a file at each datagram (switched without a gap in
/// which nothing listens): `reply` answers `ok:` + the datagram, `wrong` answers `no`, `silent`
/// answers nothing; every datagram is recorded (hex) in `record`.
const UDP_SERVER: &str = r#"
import os, socket, sys
addr, port, mode_file, record = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
while True:
    d, peer = s.recvfrom(2048)
    mode = open(mode_file).read().strip()
    open(record + '.tmp', 'w').write(d.hex())
    os.replace(record + '.tmp', record)
    if mode == 'reply':
        s.sendto(b'ok:' + d, peer)
    elif mode == 'wrong':
        s.sendto(b'no', peer)
"#;

/// keepalived's UDP_CHECK: with `require_reply` an answer that starts as asked is up, a wrong
/// one or none (port unreachable) down; without it silence is up and port unreachable down.
/// The payload reaches the server byte for byte.
#[test]
fn keepalived_udp_check() {
    let mut b = Bench::new("pudp");
    let udp_server = |b: &Bench, addr: &str, mode: &str| {
        let rec = b.path(&format!("udp-{addr}.got")).to_string_lossy().into_owned();
        let mode_file = b.path(&format!("udp-{addr}.mode"));
        std::fs::write(&mode_file, mode).expect("mode");
        let p = b.python(UDP_SERVER, &[addr, "5000", &mode_file.to_string_lossy(), &rec]);
        b.server.wait_listening("udp", 5000, Duration::from_secs(5)).expect("udp server");
        p
    };
    let mut replying = udp_server(&b, SERVER, "reply");
    let mut silent = udp_server(&b, SERVER2, "silent");
    let cfg = format!(
        "virtual_server {VIP} 5000 {{\n  protocol UDP\n  delay_loop 1\n  lb_kind DR\n  real_server {SERVER} 5000 {{\n    \
         inhibit_on_failure\n    UDP_CHECK {{\n      payload 68656c6c 6f\n      require_reply 6f6b3a 6x\n      \
         min_reply_length 4\n      connect_timeout 1\n      retry 0\n    }}\n  }}\n  real_server {SERVER2} 5000 {{\n    \
         inhibit_on_failure\n    UDP_CHECK {{\n      connect_timeout 1\n      retry 0\n    }}\n  }}\n}}\n"
    );
    b.start_lbd("keepalived.conf", &cfg);
    let svc = format!("-u {VIP}:5000");
    let (r1, r2) = (format!("{SERVER}:5000"), format!("{SERVER2}:5000"));
    b.expect("replying server up", &svc, &r1, Some(1), &format!("{r1} is up (ok)"));
    b.expect("silent server up", &svc, &r2, Some(1), &format!("{r2} is up (ok)"));
    b.mark();
    replying.kill();
    silent.kill();
    // What the servers got: lbd's payload, byte for byte ("hello"; lbd's default for r2).
    assert_eq!(std::fs::read_to_string(b.path(&format!("udp-{SERVER}.got"))).expect("record"), hex("hello"));
    assert_eq!(std::fs::read_to_string(b.path(&format!("udp-{SERVER2}.got"))).expect("record"), hex("lbd UDP_CHECK"));
    // Port unreachable, or no reply when the server died between the datagram and its answer.
    b.expect("no reply", &svc, &r1, Some(0), &format!("{r1} is down ("));
    b.expect("port unreachable", &svc, &r2, Some(0), &format!("{r2} is down ({SERVER2}:5000: Connection refused"));
    b.mark();
    let replying = udp_server(&b, SERVER, "reply");
    let _silent = udp_server(&b, SERVER2, "silent");
    b.expect("back", &svc, &r1, Some(1), &format!("{r1} is up (ok)"));
    b.expect("back", &svc, &r2, Some(1), &format!("{r2} is up (ok)"));
    b.mark();
    std::fs::write(b.path(&format!("udp-{SERVER}.mode")), "wrong").expect("mode");
    b.expect("wrong reply", &svc, &r1, Some(0), "reply of 2 bytes (expected 4..=255)");
    b.mark();
    std::fs::write(b.path(&format!("udp-{SERVER}.mode")), "reply").expect("mode");
    b.expect("back", &svc, &r1, Some(1), &format!("{r1} is up (ok)"));
    drop(replying);
    assert_eq!(b.weight(&svc, &r2), Some(1));
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// ldirectord: `checktype = connect` on a UDP service pings the real server (as ldirectord
/// does); `cleanstop` (default yes) removes a service when lbd stops on SIGTERM, `cleanstop =
/// no` leaves it.
#[test]
fn ldirectord_udp_connect_pings_and_cleanstop() {
    let mut b = Bench::new("pclean");
    let cfg = format!(
        "checkinterval=1\nchecktimeout=1\nquiescent=yes\nvirtual={VIP}:5060\n    protocol=udp\n    real={SERVER}:5060 gate\n    \
         real={SERVER2}:5060 gate\n    checktype=connect\nvirtual={VIP}:80\n    real={SERVER}:80 gate\n    checktype=on\n    \
         cleanstop=no\n"
    );
    b.start_lbd("ldirectord.cf", &cfg);
    let svc = format!("-u {VIP}:5060");
    b.expect("ping up", &svc, &format!("{SERVER}:5060"), Some(1), &format!("{SERVER}:5060 is up (ok)"));
    b.expect("ping up", &svc, &format!("{SERVER2}:5060"), Some(1), &format!("{SERVER2}:5060 is up (ok)"));
    // The second address goes: no echo reply.
    b.mark();
    b.server.ip(&["addr", "del", &format!("{SERVER2}/24"), "dev", &format!("{}b", b.server.name.trim_end_matches('s'))]).expect("del");
    b.expect("no echo", &svc, &format!("{SERVER2}:5060"), Some(0), "no answer within 1s");
    assert_eq!(b.weight(&svc, &format!("{SERVER}:5060")), Some(1));
    let link = format!("{}b", b.server.name.trim_end_matches('s'));
    b.mark();
    b.server.ip(&["addr", "add", &format!("{SERVER2}/24"), "dev", &link]).expect("add");
    b.expect("echo back", &svc, &format!("{SERVER2}:5060"), Some(1), &format!("{SERVER2}:5060 is up (ok)"));

    b.stop_lbd();
    let sn = b.sn();
    assert_eq!(sn, format!("-A -t {VIP}:80 -s wrr\n-a -t {VIP}:80 -r {SERVER}:80 -g -w 1\n"), "after SIGTERM\n{}", b.log());
    assert!(b.log().contains(&format!("UDP {VIP}:5060: removed")), "{}", b.log());
}
