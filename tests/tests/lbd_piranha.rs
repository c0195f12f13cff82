//! piranha's lvs.cf in lbd, with real processes and traffic: seed 000's file loads unchanged
//! (and a broken one changes nothing), nanny's send/expect check takes a wrongly answering
//! server out within `timeout` and back only after `reentry`, and the pair's heartbeat moves
//! the VIP to the backup director when the primary dies and back when it returns.
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use xlb_tests::lab::{Lab, Mode, VIP, WEB1, WEB2, plug};
use xlb_tests::lab_health::{Lbd, requests};
use xlb_tests::netns::{Netns, Proc, run};
use xlb_tests::pins::TempPins;
use xlb_tests::workspace_bin;

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../lb-user/src/config/testdata/seed000-lvs.cf");

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if cond() {
            return Ok(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{what}: not after {timeout:?}")
}

/// (a) Seed 000's lvs.cf as the page shows it: `lbd run --config` (format detected) programs
/// its service, `lbadm -Ln` lists it; its real servers (192.168.60.x, unreachable here) fail
/// nanny's check and are removed (quiesce_server = 0). A broken lvs.cf is refused by line and
/// leaves the table as it was; `check-config --format piranha` reads the seed too.
#[test]
fn seed_lvs_cf_loads_unchanged() {
    let lab = Lab::new("pir", Mode::Dr).expect("lab");
    // The maps exist before lbd and lbadm both open them.
    lab.attach().expect("attach");
    let out = lab.lbd_in(&lab.lvs1.ns, &["check-config", "--format", "piranha", SEED]).expect("check-config");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, "TCP 192.168.60.200:80 (rr): 2 real servers\n");
    let log = lab.dir.join("lbd.log");
    let mut lbd = Lbd::start(&lab, Path::new(SEED), &[], &log).expect("lbd");
    let listed = wait_for("the seed's service", Duration::from_secs(10), || {
        lab.ipvsadm_ok(&["-Ln"]).is_ok_and(|l| l.contains("TCP  192.168.60.200:80 rr"))
    });
    listed.unwrap_or_else(|e| panic!("{e}\n{}", lbd.log_text()));
    let ln = lab.ipvsadm_ok(&["-Ln"]).expect("-Ln");
    println!("{ln}");
    // Unreachable real servers: out at the first failed check (no route: at once).
    wait_for("the seed's real servers removed", Duration::from_secs(10), || {
        lab.ipvsadm_ok(&["-Ln"]).is_ok_and(|l| !l.contains("192.168.60.132") && !l.contains("192.168.60.144"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", lbd.log_text()));
    lbd.proc.stop();
    let logged = lbd.log_text();
    assert!(logged.contains("real server 192.168.60.132:80 is down"), "{logged}");
    assert!(logged.contains("seed000-lvs.cf:10: warning: taken as the rest of the comment of line 9"), "{logged}");

    // Refused as a whole: the first virtual is fine, the second is not; nothing changes.
    let before = lab.ipvsadm_ok(&["-Ln"]).expect("-Ln");
    let bad = lab.dir.join("bad-lvs.cf");
    std::fs::write(
        &bad,
        "primary = 192.168.88.5\nnetwork = direct\nvirtual ok {\n active = 1\n address = 192.168.88.15 eth0:0\n port = 81\n \
         server a {\n  address = 192.168.88.100\n  active = 1\n }\n}\nvirtual broken {\n active = 1\n address = 192.168.88.15 eth0:0\n \
         port 82\n}\n",
    )
    .expect("write");
    let out = lab.lbd_in(&lab.lvs1.ns, &["run", "--config", &bad.to_string_lossy()]);
    let err = format!("{:#}", out.expect_err("refused"));
    assert!(err.contains("bad-lvs.cf:15: expected `keyword = value`"), "{err}");
    assert_eq!(lab.ipvsadm_ok(&["-Ln"]).expect("-Ln"), before, "nothing applied");
}

/// A TCP server in `ns` on `port` that answers each connection with the contents of `answer`
/// (read per connection) followed by what it received.
fn answering_server(ns: &Netns, port: u16, answer: &Path) -> anyhow::Result<Proc> {
    let script = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',{port}))\n\
         s.listen(64)\nwhile True:\n c,a=s.accept()\n try:\n  c.settimeout(2)\n  d=c.recv(100)\n  \
         c.sendall(open('{}','rb').read()+b' '+d)\n except Exception:\n  pass\n c.close()\n",
        answer.display()
    );
    let p = ns.spawn("python3", &["-c", &script])?;
    ns.wait_listening("tcp", port, Duration::from_secs(30))?;
    Ok(p)
}

fn lab_lvs_cf(extra_global: &str) -> String {
    format!(
        "serial_no = 1\nprimary = 192.168.88.5\nservice = lvs\n{extra_global}network = direct\n\
         virtual web {{\n active = 1\n address = {VIP} eth0:1\n port = 80\n scheduler = rr\n protocol = tcp\n timeout = 1\n reentry = 2\n\
         \x20server web1 {{\n  address = {WEB1}\n  active = 1\n  weight = 1\n }}\n\
         \x20server web2 {{\n  address = {WEB2}\n  active = 1\n  weight = 1\n }}\n}}\n\
         virtual pingpong {{   # send/expect\n active = 1\n address = {VIP} eth0:1\n port = 9000\n scheduler = rr\n\
         \x20send = \"PING\\r\\n\"\n expect = \"PONG\"\n use_regex = 0\n timeout = 1\n reentry = 3\n quiesce_server = 0\n\
         \x20server web1 {{\n  address = {WEB1}\n  active = 1\n }}\n\
         \x20server web2 {{\n  address = {WEB2}\n  active = 1\n }}\n}}\n"
    )
}

fn reals_of(lab: &Lab, port: u16) -> Vec<String> {
    let ln = lab.ipvsadm_ok(&["-Ln"]).unwrap_or_default();
    let mut out = Vec::new();
    let mut inside = false;
    for l in ln.lines() {
        if l.starts_with("TCP") {
            inside = l.contains(&format!("{VIP}:{port} "));
        } else if inside
            && let Some(rest) = l.trim_start().strip_prefix("-> ")
            && let Some(a) = rest.split_whitespace().next().filter(|a| a.contains(':'))
        {
            out.push(a.to_string());
        }
    }
    out.sort();
    out
}

/// (b) nanny's send/expect against real TCP servers: both answer `PONG`, both serve; web1
/// answers `NOPE` and is removed within `timeout` (1 s: one check interval plus one check);
/// web1 answers `PONG` again and is re-added only after `reentry` (3 s: 3 good checks in a
/// row, the first within a second), not at its first good answer. The lab's HTTP service (no
/// send/expect on port 80: nanny's `GET /` expecting `HTTP`) carries real traffic meanwhile.
#[test]
fn send_expect_timeout_and_reentry() {
    let lab = Lab::new("pirchk", Mode::Dr).expect("lab");
    lab.attach().expect("attach");
    let ans = [lab.dir.join("answer-web1"), lab.dir.join("answer-web2")];
    for a in &ans {
        std::fs::write(a, "PONG").expect("answer");
    }
    let _s1 = answering_server(&lab.web[0].ns, 9000, &ans[0]).expect("server 1");
    let _s2 = answering_server(&lab.web[1].ns, 9000, &ans[1]).expect("server 2");
    let cfg = lab.dir.join("lvs.cf");
    std::fs::write(&cfg, lab_lvs_cf("")).expect("config");
    let lbd = Lbd::start(&lab, &cfg, &["--format", "piranha"], &lab.dir.join("lbd.log")).expect("lbd");
    let both = vec![format!("{WEB1}:9000"), format!("{WEB2}:9000")];
    wait_for("both real servers", Duration::from_secs(10), || reals_of(&lab, 9000) == both && reals_of(&lab, 80).len() == 2)
        .unwrap_or_else(|e| panic!("{e}\n{}", lbd.log_text()));
    let a = requests(&lab, 24000, 4).expect("requests");
    assert_eq!(a.iter().filter(|b| b.as_str() == "Welcome from web1").count(), 2, "{a:?}");
    assert_eq!(a.iter().filter(|b| b.as_str() == "Welcome from web2").count(), 2, "{a:?}");

    std::fs::write(&ans[0], "NOPE").expect("answer");
    let out = wait_for("web1 removed", Duration::from_secs(5), || reals_of(&lab, 9000) == [format!("{WEB2}:9000")])
        .unwrap_or_else(|e| panic!("{e}\n{}", lbd.log_text()));
    std::fs::write(&ans[0], "PONG").expect("answer");
    let back = wait_for("web1 re-added", Duration::from_secs(8), || reals_of(&lab, 9000) == both)
        .unwrap_or_else(|e| panic!("{e}\n{}", lbd.log_text()));
    println!("send/expect: removed after {out:?}, re-added {back:?} after answering PONG again");
    // timeout 1 s: checked every second, each check at most 1 s (2 s, and slack for a loaded
    // host running two labs).
    assert!(out <= Duration::from_secs(3), "removal took {out:?}\n{}", lbd.log_text());
    // reentry 3 s over timeout 1 s: 3 good checks a second apart, the first within a second:
    // 2 to 3 s; never at the first good answer.
    assert!(back >= Duration::from_millis(1800) && back <= Duration::from_secs(6), "re-added after {back:?}\n{}", lbd.log_text());
    let logged = lbd.log_text();
    assert!(logged.contains("does not start with \\\"PONG\\\"") || logged.contains("does not start with \"PONG\""), "{logged}");
}

/// A second director on the lab's client-side segment, with its own pins and data plane.
struct Director {
    ns: Netns,
    pins: TempPins,
}

fn second_director(lab: &Lab) -> anyhow::Result<Director> {
    let ns = Netns::new(&format!("{}-lvs2", lab.prefix))?;
    plug(&ns, "eth0", &lab.sw, "sw-lvs2", "192.168.88.6/24")?;
    ns.sysctl("net.ipv4.ip_forward", "1")?;
    let pins = TempPins::new(&format!("{}-lvs2", lab.prefix))?;
    let lbd = |args: &[&str]| run(ns.cmd_net_only(workspace_bin("lbd")).arg("--pin-dir").arg(pins.path()).args(args));
    lbd(&["attach", "eth0", "--mode", "auto"])?;
    run(lab.sw.cmd_net_only(workspace_bin("lbd")).arg("--pin-dir").arg(pins.path()).args([
        "attach", "sw-lvs2", "--mode", "native", "--program", "pass",
    ]))?;
    Ok(Director { ns, pins })
}

fn start_lbd(ns: &Netns, pins: &Path, cfg: &Path, log: &Path) -> anyhow::Result<Proc> {
    ns.spawn_lbd(pins, &["run", "--config", cfg.to_str().context("config path")?], log)
}

fn holds_vip(ns: &Netns) -> bool {
    ns.ip(&["-4", "-o", "addr", "show", "dev", "eth0"]).is_ok_and(|o| o.contains(&format!(" {VIP}/32 ")))
}

/// (c) The pair's heartbeat between two lbd processes, each in its director's namespace with
/// the same lvs.cf (`backup_active = 1`, `heartbeat = 1`, keepalive 1 s, deadtime 3 s): the
/// primary (192.168.88.5) holds the VIP; killed (SIGKILL, then its link down: the director is
/// gone), the backup (192.168.88.6) adds the VIP after deadtime, announces it, and the VIP
/// answers through it; the primary restarted takes the VIP back and the backup lets it go.
#[test]
fn heartbeat_moves_the_vip() {
    let lab = Lab::new("pirha", Mode::Dr).expect("lab");
    lab.attach().expect("attach");
    // The pair manages the VIP: not configured statically.
    lab.lvs1.ns.ip(&["addr", "del", &format!("{VIP}/24"), "dev", "eth0"]).expect("del VIP");
    let lvs2 = second_director(&lab).expect("lvs2");
    let cfg = lab.dir.join("lvs.cf");
    let pair = "backup_active = 1\nbackup = 192.168.88.6\nheartbeat = 1\nheartbeat_port = 5399\nkeepalive = 1\ndeadtime = 3\n\
                syncdaemon = 1\nsyncd_iface = eth0\nsyncd_id = 7\n";
    // `syncdaemon = 1`: the sync daemon follows the pair (what `ipvsadm -L --daemon` shows).
    let daemons = |pins: &Path| {
        let o = run(std::process::Command::new(workspace_bin("lbadm")).args(["-L", "--daemon"]).env("XLB_PIN_DIR", pins)).expect("lbadm");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let master = "master sync daemon (mcast=eth0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n";
    let backup = "backup sync daemon (mcast=eth0, syncid=7, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n";
    std::fs::write(&cfg, lab_lvs_cf(pair)).expect("config");
    let (log1, log2) = (lab.dir.join("lbd1.log"), lab.dir.join("lbd2.log"));
    let logs = || format!("primary:\n{}\nbackup:\n{}", std::fs::read_to_string(&log1).unwrap_or_default(), std::fs::read_to_string(&log2).unwrap_or_default());
    let mut primary = start_lbd(&lab.lvs1.ns, lab.pin_dir(), &cfg, &log1).expect("primary lbd");
    let _backup = start_lbd(&lvs2.ns, lvs2.pins.path(), &cfg, &log2).expect("backup lbd");
    wait_for("the primary holds the VIP", Duration::from_secs(10), || holds_vip(&lab.lvs1.ns)).unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    // The backup stays passive while it hears the primary.
    std::thread::sleep(Duration::from_secs(4));
    assert!(!holds_vip(&lvs2.ns), "both hold the VIP\n{}", logs());
    assert!(holds_vip(&lab.lvs1.ns));
    assert_eq!((daemons(lab.pin_dir()), daemons(lvs2.pins.path())), (master.to_string(), backup.to_string()), "{}", logs());
    // Both directors have the services (each its own table).
    let lbd2_ln = run(std::process::Command::new(workspace_bin("lbadm")).arg("-Ln").env("XLB_PIN_DIR", lvs2.pins.path())).expect("lbadm");
    assert!(String::from_utf8_lossy(&lbd2_ln.stdout).contains(&format!("TCP  {VIP}:80 rr")));
    let body = lab.curl_vip().expect("through the primary");
    assert!(body.starts_with("Welcome from web"), "{body}");

    primary.kill();
    let took = wait_for("the backup takes the VIP", Duration::from_secs(10), || holds_vip(&lvs2.ns)).unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    println!("backup took the VIP {took:?} after the primary's lbd was killed (deadtime 3 s, keepalive 1 s)");
    assert_eq!(daemons(lvs2.pins.path()), master, "the new active node's daemon is the master\n{}", logs());
    // deadtime 3 s from the last heartbeat, sent up to keepalive (1 s) before the kill.
    assert!(took >= Duration::from_millis(1500) && took <= Duration::from_secs(5), "{took:?}\n{}", logs());
    // The primary director is gone: its link down; the VIP answers through the backup.
    lab.lvs1.ns.ip(&["link", "set", "eth0", "down"]).expect("primary down");
    let body = lab.curl_vip().unwrap_or_else(|e| panic!("{e:#}\n{}", logs()));
    assert!(body.starts_with("Welcome from web"), "{body}");
    let a = requests(&lab, 25000, 4).expect("requests");
    assert_eq!(a.iter().filter(|b| b.starts_with("Welcome from web")).count(), 4, "{a:?}\n{}", logs());

    // The primary returns and takes the VIP back; the backup gives it up.
    lab.lvs1.ns.ip(&["link", "set", "eth0", "up"]).expect("primary up");
    let _primary = start_lbd(&lab.lvs1.ns, lab.pin_dir(), &cfg, &log1).expect("primary lbd again");
    wait_for("the backup gives the VIP back", Duration::from_secs(10), || !holds_vip(&lvs2.ns) && holds_vip(&lab.lvs1.ns))
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let body = lab.curl_vip().unwrap_or_else(|e| panic!("{e:#}\n{}", logs()));
    assert!(body.starts_with("Welcome from web"), "{body}");
    let l2 = std::fs::read_to_string(&log2).unwrap_or_default();
    assert!(l2.contains("taking over") && l2.contains("giving the virtual addresses back"), "{}", logs());
}
