//! lbd under systemd, without systemd as PID 1: (1) the sd_notify protocol on a datagram socket
//! the test binds as NOTIFY_SOCKET (READY=1 after the first commit, WATCHDOG=1 at half of
//! WATCHDOG_USEC, STATUS=, RELOADING=1/READY=1 on SIGHUP, STOPPING=1 on SIGTERM); (2) the journal:
//! a real systemd-journald in a private mount namespace, lbd's stderr announced as its stream by
//! JOURNAL_STREAM, and the "real server down" event read back with `journalctl -o json` with
//! its fields; (3) `systemd-analyze verify` of dist/lbd.service.
//!
//! The lab: one network namespace, a virtual service whose two real servers are 127.0.0.1 and
//! 127.0.0.2 (TCP connect checks on port 80), one listener on 0.0.0.0:80 serving both; dropping
//! it takes both down. No data plane is attached: the checks and the table are what is watched.
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use xlb_tests::netns::{Netns, unique_prefix};
use xlb_tests::pins::TempPins;
use xlb_tests::real_server::RealServer;
use xlb_tests::workspace_bin;

const SERVICE: &str = "TCP 10.0.0.1:80";

const CONFIG: &str = "checktimeout=1\ncheckinterval=1\nquiescent=no\nfallback=127.0.0.3:80 gate\n\nvirtual=10.0.0.1:80\n\treal=127.0.0.1:80 gate 1\n\t\
                      real=127.0.0.2:80 gate 1\n\tchecktype=connect\n\tscheduler=rr\n\tprotocol=tcp\n";

/// A scratch directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> anyhow::Result<TempDir> {
        let p = std::env::temp_dir().join(unique_prefix(tag));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A process killed (SIGKILL) and reaped when dropped.
struct Running(Child);

impl Running {
    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, sig) };
    }

    fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.0.try_wait()? {
                return Ok(st);
            }
            if t0.elapsed() > timeout {
                bail!("still running after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Lab {
    ns: Netns,
    pins: TempPins,
    dir: TempDir,
    web: Option<RealServer>,
}

impl Lab {
    fn new(tag: &str) -> anyhow::Result<Lab> {
        let ns = Netns::new(&unique_prefix(tag))?;
        let pins = TempPins::new(tag)?;
        let dir = TempDir::new(tag)?;
        // ldirectord's logfile: lbd's events also go there (a file layer beside stderr/journal).
        std::fs::write(dir.0.join("lbd.cf"), format!("logfile=\"{}\"\n{CONFIG}", dir.0.join("events.log").display()))?;
        // Accepts and closes: a connect check needs no more.
        let web = RealServer::start(&ns.name, "web", &[80], 9, Arc::new(|_conn| {}))?;
        Ok(Lab { ns, pins, dir, web: Some(web) })
    }

    fn config(&self) -> PathBuf {
        self.dir.0.join("lbd.cf")
    }

    /// `lbd run --config` in the namespace, stdout and stderr to `lbd.log`.
    fn lbd(&self, env: &[(&str, &str)]) -> anyhow::Result<Running> {
        let log = std::fs::File::create(self.dir.0.join("lbd.log"))?;
        let mut c = self.ns.cmd_net_only(workspace_bin("lbd"));
        c.arg("--pin-dir").arg(self.pins.path()).arg("run").arg("--config").arg(self.config());
        c.env_remove("NOTIFY_SOCKET").env_remove("WATCHDOG_USEC").env_remove("WATCHDOG_PID").env_remove("JOURNAL_STREAM");
        c.envs(env.iter().copied());
        let child = c.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn().context("cannot start lbd")?;
        Ok(Running(child))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("lbd.log")).unwrap_or_default()
    }

    /// The real servers of the service in the table.
    fn reals(&self) -> Vec<String> {
        let Ok(t) = lb_user::store::Store::open_at(self.pins.path(), Default::default()).and_then(|s| s.load()) else {
            return Vec::new();
        };
        t.services.iter().flat_map(|s| s.dests.iter().map(|d| d.addr.to_string())).collect()
    }
}

/// The notification messages received so far, with their arrival times; `next`: the first one
/// no `wait_for` has looked at.
struct Notifications {
    sock: UnixDatagram,
    seen: Vec<(Instant, String)>,
    next: usize,
}

impl Notifications {
    fn bind(path: &Path) -> anyhow::Result<Notifications> {
        let sock = UnixDatagram::bind(path)?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        Ok(Notifications { sock, seen: Vec::new(), next: 0 })
    }

    /// The next message (in order of arrival) with the line `line` (`KEY=VALUE`), and its time.
    fn wait_for(&mut self, line: &str, timeout: Duration) -> anyhow::Result<(Instant, String)> {
        let (i, at, msg) = self.wait_from(self.next, line, timeout)?;
        self.next = i + 1;
        Ok((at, msg))
    }

    /// The first message from the `start`th on with the line `line`: its index, time, text.
    fn wait_from(&mut self, start: usize, line: &str, timeout: Duration) -> anyhow::Result<(usize, Instant, String)> {
        let t0 = Instant::now();
        let mut buf = [0u8; 4096];
        let mut i = start;
        loop {
            while let Some((at, msg)) = self.seen.get(i) {
                if msg.lines().any(|l| l == line) {
                    return Ok((i, *at, msg.clone()));
                }
                i += 1;
            }
            if t0.elapsed() > timeout {
                break;
            }
            if let Ok(n) = self.sock.recv(&mut buf) {
                self.seen.push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
            }
        }
        bail!("no {line} after {timeout:?}; received: {:?}", self.seen.iter().map(|(_, m)| m).collect::<Vec<_>>())
    }
}

/// READY=1 once the table holds the configured service; WATCHDOG=1 every WATCHDOG_USEC/2;
/// STATUS= following the real servers' health; RELOADING=1 then READY=1 on SIGHUP; STOPPING=1
/// on SIGTERM, then a clean exit. JOURNAL_STREAM naming another descriptor than lbd's stderr
/// leaves the events on stderr.
#[test]
fn sd_notify_ready_watchdog_reload_stop() {
    let mut lab = Lab::new("sdn").expect("lab");
    let sock_path = lab.dir.0.join("notify.sock");
    let mut notes = Notifications::bind(&sock_path).expect("notify socket");
    let sock = sock_path.to_str().expect("utf-8 path");
    let mut lbd = lab.lbd(&[("NOTIFY_SOCKET", sock), ("WATCHDOG_USEC", "400000"), ("JOURNAL_STREAM", "1:2")]).expect("lbd");

    let (_, ready) = notes.wait_for("READY=1", Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}\n{}", lab.log_text()));
    // The first commit is done when READY=1 is sent: the service and both real servers are in.
    let mut reals = lab.reals();
    reals.sort();
    assert_eq!(reals, ["127.0.0.1", "127.0.0.2"], "table at READY=1");
    assert!(ready.lines().any(|l| l == "STATUS=1 virtual services, 0 of 2 real servers up"), "{ready}");

    // The watchdog: 200 ms apart (WATCHDOG_USEC / 2), never late by more than the timeout.
    let (first, _) = notes.wait_for("WATCHDOG=1", Duration::from_secs(2)).expect("first WATCHDOG=1");
    let mut beats = vec![first];
    while beats.len() < 8 {
        let (at, _) = notes.wait_for("WATCHDOG=1", Duration::from_secs(1)).expect("WATCHDOG=1");
        beats.push(at);
    }
    let gaps: Vec<Duration> = beats.windows(2).map(|w| w[1] - w[0]).collect();
    let mean = (beats[beats.len() - 1] - beats[0]) / (gaps.len() as u32);
    println!("watchdog gaps: {gaps:?}, mean {mean:?}");
    assert!(mean >= Duration::from_millis(150) && mean <= Duration::from_millis(260), "mean gap {mean:?}: {gaps:?}");
    assert!(gaps.iter().all(|g| *g < Duration::from_millis(400)), "a keep-alive later than WATCHDOG_USEC: {gaps:?}");

    // STATUS= follows health (the first "both up" may have come while the watchdog was timed).
    let (up, ..) = notes.wait_from(0, "STATUS=1 virtual services, 2 of 2 real servers up", Duration::from_secs(5)).expect("status: both up");
    lab.web = None;
    let (down, ..) = notes.wait_from(up, "STATUS=1 virtual services, 0 of 2 real servers up", Duration::from_secs(5)).expect("status: both down");
    notes.next = notes.next.max(down + 1);

    lbd.signal(libc::SIGHUP);
    let (reloading_at, reloading) = notes.wait_for("RELOADING=1", Duration::from_secs(5)).expect("RELOADING=1");
    assert!(reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")), "{reloading}");
    let (ready_at, _) = notes.wait_for("READY=1", Duration::from_secs(5)).expect("READY=1 after the reload");
    assert!(ready_at > reloading_at);
    // A broken file: refused (logged as an error), and lbd is ready again on the old one.
    let good = std::fs::read_to_string(lab.config()).expect("config");
    std::fs::write(lab.config(), good.replace("scheduler=rr", "scheduler=nosuch")).expect("write");
    lbd.signal(libc::SIGHUP);
    notes.wait_for("RELOADING=1", Duration::from_secs(5)).expect("RELOADING=1 (refused)");
    notes.wait_for("READY=1", Duration::from_secs(5)).expect("READY=1 after the refusal");
    std::fs::write(lab.config(), good).expect("write");

    lbd.signal(libc::SIGTERM);
    notes.wait_for("STOPPING=1", Duration::from_secs(5)).expect("STOPPING=1");
    let status = lbd.wait_exit(Duration::from_secs(5)).expect("lbd exits");
    assert!(status.success(), "{status}");
    // JOURNAL_STREAM=1:2 is not lbd's stderr: the events stay there.
    let log = lab.log_text();
    assert!(log.contains(" WARN TCP 10.0.0.1:80: real server 127.0.0.1:80 is down (connect to 127.0.0.1:80: Connection refused"), "{log}");
    assert!(log.contains("  INFO ") && log.contains("lbd.cf: reloaded, 1 virtual services\n"), "{log}");
    assert!(log.contains(" ERROR not reloaded, the running configuration stays: ") && log.contains("nosuch"), "{log}");
    // The logfile has the same lines as stderr (from the first event after the file was read).
    let file = std::fs::read_to_string(lab.dir.0.join("events.log")).expect("logfile");
    let from = log.find(" INFO TCP 10.0.0.1:80: added (scheduler rr)").expect("first event");
    let lines = |t: &str| t.lines().map(|l| l.split_once(' ').map(|(_, rest)| rest.to_string()).unwrap_or_default()).collect::<Vec<_>>();
    assert_eq!(lines(&file), lines(&log[log[..from].rfind('\n').map_or(0, |i| i + 1)..]), "logfile vs stderr");
}

/// A real systemd-journald in a private mount namespace (its sockets and runtime journal bound
/// from the test's directory); lbd's stderr is announced as a journal stream, so its events go
/// to the journal with their fields. A real server stops: `journalctl -o json` shows the event
/// with SERVICE, REAL, REASON and priority warning, the commit that followed, and the fallback
/// server coming in (both down) and going (one back) with its fields.
#[test]
fn journald_gets_events_with_fields() {
    let mut lab = Lab::new("sdj").expect("lab");
    let d = lab.dir.0.clone();
    let (socks, journal) = (d.join("sock"), d.join("journal"));
    std::fs::create_dir_all(&socks).expect("dir");
    std::fs::create_dir_all(&journal).expect("dir");
    let script = format!(
        "set -e\nmkdir -p /run/systemd/journal /run/log/journal\nmount --bind {socks} /run/systemd/journal\n\
         mount --bind {journal} /run/log/journal\n/lib/systemd/systemd-journald </dev/null >/dev/null 2>&1 &\n\
         echo $! > {d}/journald.pid\ni=0\nwhile [ ! -S /run/systemd/journal/socket ]; do i=$((i+1)); [ $i -lt 200 ]; sleep 0.05; done\n\
         exec 2>>{d}/lbd.stderr\nexport JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2)\n\
         exec nsenter --net=/run/netns/{ns} {lbd} --pin-dir {pins} run --config {cfg}\n",
        socks = socks.display(),
        journal = journal.display(),
        d = d.display(),
        ns = lab.ns.name,
        lbd = workspace_bin("lbd").display(),
        pins = lab.pins.path().display(),
        cfg = lab.config().display(),
    );
    let out = std::fs::File::create(d.join("lbd.log")).expect("log");
    let child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(out)
        .spawn()
        .expect("unshare");
    let mut lbd = Running(child);
    let journald = JournaldPid(d.join("journald.pid"));

    let entries = |want: &dyn Fn(&serde_json::Value) -> bool| -> Vec<serde_json::Value> {
        let Ok(out) = Command::new("journalctl").arg("-D").arg(&journal).args(["-o", "json", "--no-pager", "SYSLOG_IDENTIFIER=lbd"]).output()
        else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).filter(|e| want(e)).collect()
    };
    let field = |e: &serde_json::Value, k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let wait = |what: &str, want: &dyn Fn(&serde_json::Value) -> bool| -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            if let Some(e) = entries(want).into_iter().next() {
                return e;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                let all = entries(&|_| true);
                panic!("{what}: not in the journal; lbd's entries: {all:#?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let up = wait("real server up", &|e| field(e, "MESSAGE").contains("real server 127.0.0.1:80 is up"));
    assert_eq!(field(&up, "SERVICE"), SERVICE);
    assert_eq!(field(&up, "PRIORITY"), "6", "info");

    lab.web = None;
    let down = wait("real server down", &|e| field(e, "MESSAGE").contains("real server 127.0.0.1:80 is down"));
    println!("{down:#}");
    assert_eq!(field(&down, "SERVICE"), SERVICE);
    assert_eq!(field(&down, "REAL"), "127.0.0.1:80");
    assert_eq!(field(&down, "REASON"), "connect to 127.0.0.1:80: Connection refused (os error 111)");
    assert_eq!(field(&down, "PRIORITY"), "4", "warning");
    assert_eq!(
        field(&down, "MESSAGE"),
        "TCP 10.0.0.1:80: real server 127.0.0.1:80 is down (connect to 127.0.0.1:80: Connection refused (os error 111))"
    );
    // Not quiescent: removed from the table, and the commit logged with its count.
    let removed = wait("removal", &|e| field(e, "CHANGE") == "real server removed (down)" && field(e, "REAL") == "127.0.0.1:80");
    assert_eq!(field(&removed, "SERVICE"), SERVICE);
    assert_eq!(field(&removed, "MESSAGE"), "TCP 10.0.0.1:80: real server 127.0.0.1:80 down: removed");
    // Received after the removal (journald's clock; the commit event follows the change events).
    let at = |e: &serde_json::Value| field(e, "__REALTIME_TIMESTAMP").parse::<u64>().unwrap_or(0);
    let committed = wait("commit", &|e| at(e) >= at(&removed) && !field(e, "CHANGES").is_empty());
    let n = field(&committed, "CHANGES");
    assert!(n == "1" || n == "2" || n == "3", "{committed:#}");
    let want = if n == "1" { "1 change committed".to_string() } else { format!("{n} changes committed") };
    assert_eq!(field(&committed, "MESSAGE"), want);
    // Both down: the fallback server comes in; one back: it goes.
    let fallback_in = wait("fallback in", &|e| field(e, "CHANGE") == "fallback in");
    assert_eq!(field(&fallback_in, "SERVICE"), SERVICE);
    assert_eq!(field(&fallback_in, "FALLBACK"), "127.0.0.3:80");
    assert_eq!(field(&fallback_in, "PRIORITY"), "4");
    assert_eq!(field(&fallback_in, "MESSAGE"), "TCP 10.0.0.1:80: fallback 127.0.0.3:80 in (every real server is down), weight 1");
    lab.web = Some(RealServer::start(&lab.ns.name, "web", &[80], 9, Arc::new(|_conn| {})).expect("web again"));
    let fallback_out = wait("fallback out", &|e| field(e, "CHANGE") == "fallback out");
    assert_eq!(field(&fallback_out, "FALLBACK"), "127.0.0.3:80");
    assert_eq!(field(&fallback_out, "MESSAGE"), "TCP 10.0.0.1:80: fallback 127.0.0.3:80 removed (a real server is up)");

    lbd.signal(libc::SIGTERM);
    let status = lbd.wait_exit(Duration::from_secs(5)).expect("lbd exits");
    assert!(status.success(), "{status}");
    wait("stopping", &|e| field(e, "MESSAGE").starts_with("stopping"));
    drop(journald);
    // Everything went to the journal: nothing on the stream itself.
    let stderr = std::fs::read_to_string(d.join("lbd.stderr")).unwrap_or_default();
    assert_eq!(stderr, "", "lbd wrote to stderr under journald");
}

/// The journald started by the test's script (its pid in a file), stopped when dropped.
struct JournaldPid(PathBuf);

impl Drop for JournaldPid {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
            // SAFETY: kill(2) of the journald this test started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// dist/lbd.service passes `systemd-analyze verify` without a word (its warnings, such as a
/// misspelt value, come with exit status 0, so silence is the test), with ExecStart= pointing
/// at the built lbd (verify wants the binary to exist); and is Type=notify with the watchdog.
#[test]
fn unit_file_verifies() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/lbd.service")).expect("unit");
    for line in ["Type=notify", "NotifyAccess=main", "WatchdogSec=10", "ExecReload=/bin/kill -HUP $MAINPID", "KillMode=process"] {
        assert!(unit.lines().any(|l| l == line), "{line} missing from the unit");
    }
    assert_eq!(unit.matches("/usr/local/sbin/lbd ").count(), 3, "the three Exec lines name /usr/local/sbin/lbd");
    let dir = TempDir::new("unit").expect("dir");
    let verify = |text: &str| -> String {
        let path = dir.0.join("lbd.service");
        std::fs::write(&path, text.replace("/usr/local/sbin/lbd ", &format!("{} ", workspace_bin("lbd").display()))).expect("write");
        let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze");
        format!("{}{}{}", if out.status.success() { "" } else { "failed\n" }, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    assert_eq!(verify(&unit), "", "systemd-analyze verify");
    // The same check sees a mistake.
    let said = verify(&unit.replace("Type=notify", "Type=notfy"));
    assert!(said.contains("Failed to parse service type"), "{said}");
}
