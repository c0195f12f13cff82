//! The failover drill of issue 17: two xlb directors (the pair lab, DR real servers) share the
//! VIP through Debian's keepalived running VRRP only (version 3, 100 ms adverts, no
//! virtual_server blocks); the primary A runs the sync daemon as master, the secondary B as
//! backup. Through the primary: a long download (30 MB read at ~3.5 MB/s, so ~9 s) and a
//! persistent client (a `-p 300` service, one request every 100 ms from one address). Three
//! seconds into the download the primary dies: its link goes down (killing lbd alone would leave
//! its XDP program forwarding). B's keepalived takes the VIP (gratuitous ARP) and B's XDP
//! forwards the synced connections.
//!
//! Printed, not asserted: the interruption (the longest gap between data segments the client
//! received around the death, from a capture on the client). Asserted with sync: the download
//! complete and intact, no request lost, the persistent client on the same real server. The
//! same drill without the sync daemon only prints what happened (the download is expected to
//! break: B knows nothing of it).
use std::{
    io::{BufRead as _, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    path::Path,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};
use socket2::{Domain, Socket, Type};
use xlb_tests::{
    compare::side::{Kind, in_netns},
    netns::{Netns, Proc, run},
    pair::{self, Director, End, PERSISTENT_PORT, PLAIN_PORT, Pair, VIP, client_ip},
};

const KEEPALIVED: &str = "/usr/sbin/keepalived";
const FILE_LEN: usize = 30 << 20;
/// The download's reading rate: ~9 s for the file.
const RATE: f64 = 3.5e6;
/// When the primary dies, after the download started.
const DEATH_AFTER: Duration = Duration::from_secs(3);
const DOWNLOAD_SPORT: u16 = 42001;

/// The two drills share the machine's two cores with nothing else of theirs: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn keepalived_conf(name: &str, master: bool) -> String {
    let (state, prio) = if master { ("MASTER", 150) } else { ("BACKUP", 100) };
    format!(
        "global_defs {{\n    router_id xlb_{name}\n    vrrp_version 3\n}}\n\
         vrrp_instance VI_XLB {{\n    state {state}\n    interface eth0\n    virtual_router_id 17\n    priority {prio}\n    \
         advert_int 0.1\n    virtual_ipaddress {{\n        {VIP}/32 dev eth0\n    }}\n}}\n"
    )
}

/// keepalived, VRRP only, in the foreground inside `d`'s network namespace, with pid files and a
/// log of its own.
fn start_keepalived(d: &Director, name: &str, master: bool, dir: &Path) -> anyhow::Result<Proc> {
    let conf = dir.join(format!("keepalived-{name}.conf"));
    std::fs::write(&conf, keepalived_conf(name, master))?;
    let log = std::fs::File::create(dir.join(format!("keepalived-{name}.log")))?;
    let child = d
        .ns
        .cmd_net_only(KEEPALIVED)
        .args(["--dont-fork", "--log-console", "--vrrp", "-f"])
        .arg(&conf)
        .arg("-p")
        .arg(dir.join(format!("keepalived-{name}.pid")))
        .arg("-r")
        .arg(dir.join(format!("keepalived-vrrp-{name}.pid")))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start keepalived")?;
    Ok(Proc::from_child(child))
}

fn holds_vip(d: &Director) -> anyhow::Result<bool> {
    Ok(d.ns.ip(&["-br", "addr", "show", "dev", "eth0"])?.split_whitespace().any(|a| a == format!("{VIP}/32")))
}

/// A capture of the download's data segments on the client (`-tt` timestamps read back).
struct DataCapture {
    proc: Proc,
    file: std::path::PathBuf,
}

impl DataCapture {
    fn start(ns: &Netns, file: std::path::PathBuf) -> anyhow::Result<DataCapture> {
        // Segments from the VIP's port with a payload (IP length minus both headers).
        let filter = format!(
            "src host {VIP} and tcp src port {PLAIN_PORT} and tcp dst port {DOWNLOAD_SPORT} and \
             (((ip[2:2] - ((ip[0]&0xf)<<2)) - ((tcp[12]&0xf0)>>2)) != 0)"
        );
        let mut child = ns
            .cmd("tcpdump")
            .args(["-i", "eth0", "-nn", "-s", "96", "-U", "--immediate-mode", "-Z", "root", "-w"])
            .arg(&file)
            .arg(&filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start tcpdump")?;
        let mut err = std::io::BufReader::new(child.stderr.take().context("no stderr")?);
        let mut line = String::new();
        err.read_line(&mut line)?;
        if !line.contains("listening") {
            bail!("tcpdump did not start: {line}");
        }
        Ok(DataCapture { proc: Proc::from_child(child), file })
    }

    /// Stops the capture; the segments' arrival times (seconds since the epoch).
    fn times(mut self) -> anyhow::Result<Vec<f64>> {
        std::thread::sleep(Duration::from_millis(200));
        self.proc.stop();
        let out = run(std::process::Command::new("tcpdump").args(["-tt", "-nn", "-r"]).arg(&self.file))?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect())
    }
}

/// What the download got.
struct Download {
    body: Vec<u8>,
    /// Why it ended early (reset, timeout), if it did.
    error: Option<String>,
    secs: f64,
}

/// `GET /file` from `client:DOWNLOAD_SPORT` to the VIP's plain service, read at [`RATE`] through a
/// small receive buffer (so the server's segments follow the reading, not a burst into a large
/// window). `started` is set once connected.
fn download(client_ns: &str, client: Ipv4Addr, started: &AtomicBool) -> anyhow::Result<Download> {
    let s = in_netns(client_ns, move || -> anyhow::Result<Socket> {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.set_recv_buffer_size(256 << 10)?;
        s.bind(&SocketAddr::from(SocketAddrV4::new(client, DOWNLOAD_SPORT)).into())?;
        Ok(s)
    })?;
    let vip: Ipv4Addr = VIP.parse()?;
    s.connect_timeout(&SocketAddr::from(SocketAddrV4::new(vip, PLAIN_PORT)).into(), Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut stream: TcpStream = s.into();
    stream.write_all(b"GET /file HTTP/1.0\r\n\r\n")?;
    started.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    let mut got = Vec::with_capacity(FILE_LEN + 256);
    let mut buf = vec![0u8; 64 << 10];
    let mut error = None;
    loop {
        let ahead = got.len() as f64 / RATE - t0.elapsed().as_secs_f64();
        if ahead > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(ahead));
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                error = Some(format!("{e} after {} bytes", got.len()));
                break;
            }
        }
    }
    let body = match got.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => got.split_off(i + 4),
        None => Vec::new(),
    };
    Ok(Download { body, error, secs: t0.elapsed().as_secs_f64() })
}

/// One request of the persistent client: when it ended, and the real server or why it failed.
type Answer = (f64, Result<String, String>);

fn epoch(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or_default()
}

/// The longest gap between consecutive times over the whole capture, and the longest one ending
/// after `at` (the death: in DR the real server's segments in flight still arrive for a while,
/// the gap comes once its window is spent without acknowledgements), in ms; None when nothing
/// arrived after `at`.
fn gaps(times: &[f64], at: f64) -> (f64, Option<f64>) {
    let longest = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max) * 1e3;
    let after = times.windows(2).filter(|w| w[1] > at).map(|w| (w[1] - w[0]) * 1e3).reduce(f64::max);
    (longest, after)
}

struct Figures {
    line: String,
    intact: bool,
    conns_lost: usize,
    persistent_kept: bool,
}

fn drill(sync: bool) -> anyhow::Result<Figures> {
    anyhow::ensure!(Path::new(KEEPALIVED).exists(), "{KEEPALIVED} is missing: `cargo xtask bootstrap` installs Debian's keepalived");
    let file = Arc::new(pair::pattern(FILE_LEN));
    let pair = Pair::new("fd", Kind::Xlb, Kind::Xlb, file.clone())?;
    for d in [&pair.a, &pair.b] {
        d.add_services()?;
    }
    if sync {
        pair.b.ipvsadm_ok(&["--start-daemon", "backup", "--mcast-interface", "eth0"])?;
        pair.a.ipvsadm_ok(&["--start-daemon", "master", "--mcast-interface", "eth0"])?;
    }
    let _ka_b = start_keepalived(&pair.b, "b", false, &pair.dir)?;
    let _ka_a = start_keepalived(&pair.a, "a", true, &pair.dir)?;
    let logs = || {
        let mut s = String::new();
        for n in ["a", "b"] {
            s += &format!("--- keepalived {n}:\n{}", std::fs::read_to_string(pair.dir.join(format!("keepalived-{n}.log"))).unwrap_or_default());
        }
        s += &format!("--- lbd run A:\n{}--- lbd run B:\n{}", pair.a.lbd_log(), pair.b.lbd_log());
        s
    };
    let (ready, _, waited) = pair::poll(Duration::from_secs(10), || Ok((holds_vip(&pair.a)? && !holds_vip(&pair.b)?, ())))?;
    if !ready {
        bail!("A did not become VRRP master alone within {waited:?}\n{}", logs());
    }
    println!("lab: {}; A holds the VIP after {:.1} s", pair.setup, waited.as_secs_f64());
    let capture = DataCapture::start(&pair.client, pair.dir.join("download.pcap"))?;

    let (persistent_client, download_client) = (client_ip(1), client_ip(2));
    // One connection from another address first: A's rr then gives the persistent client the
    // server a fresh rr (B's, unsynced) would not.
    let warm_up = pair.tcp_request(client_ip(3), 0, PERSISTENT_PORT, End::Close)?;
    println!("warm-up connection to {warm_up}");
    let stop = AtomicBool::new(false);
    let started = AtomicBool::new(false);
    let mut death = 0.0;
    let (answers, got) = std::thread::scope(|s| -> anyhow::Result<(Vec<Answer>, anyhow::Result<Download>)> {
        let looper = s.spawn(|| {
            let mut answers: Vec<Answer> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = pair.tcp_request(persistent_client, 0, PERSISTENT_PORT, End::Close).map_err(|e| format!("{e:#}"));
                answers.push((epoch(SystemTime::now()), r));
                std::thread::sleep(Duration::from_millis(100));
            }
            answers
        });
        std::thread::sleep(Duration::from_millis(500));
        let dl = s.spawn(|| download(&pair.client.name, download_client, &started));
        let (_, _, _) = pair::poll(Duration::from_secs(5), || Ok((started.load(Ordering::Relaxed), ())))?;
        std::thread::sleep(DEATH_AFTER);
        death = epoch(SystemTime::now());
        pair.a.ns.ip(&["link", "set", "eth0", "down"])?;
        println!("A's link down at +{:.1} s into the download", DEATH_AFTER.as_secs_f64());
        let got = dl.join().map_err(|_| anyhow::anyhow!("the download panicked"))?;
        std::thread::sleep(Duration::from_millis(1000));
        stop.store(true, Ordering::Relaxed);
        let answers = looper.join().map_err(|_| anyhow::anyhow!("the persistent client panicked"))?;
        Ok((answers, got))
    })?;
    let got = got?;
    let times = capture.times()?;
    let (longest, after_death) = gaps(&times, death);
    let b_took_over = holds_vip(&pair.b)?;
    let intact = got.body.len() == file.len() && got.body == *file;
    let failed: Vec<&Answer> = answers.iter().filter(|(_, r)| r.is_err()).collect();
    let before: Vec<&String> = answers.iter().filter(|(t, _)| *t < death).filter_map(|(_, r)| r.as_ref().ok()).collect();
    let after: Vec<&String> = answers.iter().filter(|(t, _)| *t >= death).filter_map(|(_, r)| r.as_ref().ok()).collect();
    let all_same = before.iter().chain(after.iter()).all(|n| Some(*n) == before.first().copied());
    let persistent_kept = !before.is_empty() && !after.is_empty() && all_same;
    let conns_lost = failed.len() + usize::from(got.error.is_some() || !intact);
    println!(
        "download: {} of {} bytes in {:.1} s{}; {} data segments captured; B holds the VIP: {b_took_over}",
        got.body.len(),
        file.len(),
        got.secs,
        got.error.as_ref().map(|e| format!(", ended by: {e}")).unwrap_or_default(),
        times.len()
    );
    println!(
        "persistent client: {} requests, {} failed{}; real server before {:?}, after {:?}",
        answers.len(),
        failed.len(),
        failed.first().map(|(_, r)| format!(" (first: {:?})", r.as_ref().err())).unwrap_or_default(),
        before.first(),
        after.last()
    );
    let line = format!(
        "drill: sync={} interruption_ms={} longest_gap_ms={longest:.0} bytes={}/{} intact={} conns_lost={conns_lost} \
         persistent_kept={} ({} -> {})",
        if sync { "yes" } else { "no" },
        after_death.map(|g| format!("{g:.0}")).unwrap_or_else(|| "none(no data after the death)".into()),
        got.body.len(),
        file.len(),
        if intact { "yes" } else { "no" },
        if persistent_kept { "yes" } else { "no" },
        before.first().map(|s| s.as_str()).unwrap_or("-"),
        after.last().map(|s| s.as_str()).unwrap_or("-"),
    );
    println!("{line}");
    if sync && !(intact && conns_lost == 0 && persistent_kept) {
        println!("B -Lnc:\n{}", pair.b.ipvsadm_ok(&["-Lnc"]).unwrap_or_else(|e| format!("{e:#}")));
        println!("{}", logs());
    }
    Ok(Figures { line, intact, conns_lost, persistent_kept })
}

#[test]
fn failover_with_sync_keeps_every_connection() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = drill(true).expect("drill");
    assert!(f.intact, "the download did not survive the failover: {}", f.line);
    assert_eq!(f.conns_lost, 0, "{}", f.line);
    assert!(f.persistent_kept, "{}", f.line);
}

#[test]
fn failover_without_sync_is_printed() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = drill(false).expect("drill");
    println!("without the sync daemon (expected: the download breaks or stalls): {}", f.line);
}
