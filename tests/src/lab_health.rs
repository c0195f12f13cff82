//! Health-check and daemon-lifecycle labs on top of the DR lab: `lbd run --config` in the
//! director's namespace, real HTTP servers stopped and started, a fallback ("sorry") server, and
//! a client that makes requests from distinct source ports (so no request can meet a connection
//! entry of an earlier one).
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use lb_user::model::{SvcKey, Table};

use crate::{
    lab::{Lab, VIP, plug},
    netns::{Netns, Proc},
};

/// The fallback server's address (on the lab's client-side segment).
pub const SORRY: &str = "192.168.88.50";

/// One `lbd run` in the director's namespace (killed with SIGKILL when dropped).
pub struct Lbd {
    pub proc: Proc,
    pub log: PathBuf,
}

impl Lbd {
    /// `lbd --pin-dir PINS run --config CONFIG ARGS...`, output to `log`.
    pub fn start(lab: &Lab, config: &Path, args: &[&str], log: &Path) -> anyhow::Result<Lbd> {
        let config = config.to_str().context("a config path that is not UTF-8")?;
        let args: Vec<&str> = ["run", "--config", config].into_iter().chain(args.iter().copied()).collect();
        let proc = lab.lvs1.ns.spawn_lbd(lab.pin_dir(), &args, log)?;
        Ok(Lbd { proc, log: log.to_path_buf() })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The lab's table (counters included).
pub fn table(lab: &Lab) -> anyhow::Result<Table> {
    lb_user::store::Store::open_at(lab.pin_dir(), Default::default())?.load()
}

/// `addr -> weight` of the dests of the TCP service on the VIP, port 80.
pub fn weights(lab: &Lab) -> anyhow::Result<Vec<(String, i32)>> {
    let t = table(lab)?;
    let key = SvcKey::Inet { proto: lb_user::model::Proto::Tcp, addr: VIP.parse()?, port: 80 };
    Ok(t.find_service(&key)
        .map(|s| {
            let mut v: Vec<(String, i32)> = s.dests.iter().map(|d| (d.addr.to_string(), d.weight)).collect();
            v.sort();
            v
        })
        .unwrap_or_default())
}

/// Waits until `cond(weights)` holds; the time it took.
pub fn wait_weights(lab: &Lab, timeout: Duration, cond: impl Fn(&[(String, i32)]) -> bool) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    loop {
        let w = weights(lab)?;
        if cond(&w) {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > timeout {
            bail!("table not as expected after {timeout:?}: {w:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the HTTP server of `ns` listening on `port` (the lab's or one started here).
pub fn stop_http(ns: &Netns, port: u16) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip").args(["netns", "pids", &ns.name]).output()?;
    let mut killed = 0;
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|c| *c == 0).collect();
        let is_http = args.windows(2).any(|w| w[0] == b"http.server" && w[1] == port.to_string().as_bytes());
        if is_http && let Ok(pid) = pid.parse::<i32>() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed += 1;
        }
    }
    if killed == 0 {
        bail!("no HTTP server on port {port} in {}", ns.name);
    }
    // Gone when nothing listens any more.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        let ss = ns.exec("ss", &["-ltn"])?;
        if !ss.lines().any(|l| l.split_whitespace().nth(3).is_some_and(|a| a.ends_with(&format!(":{port}")))) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("HTTP server on {port} in {} does not go away", ns.name)
}

/// Starts an HTTP server in `ns` on `port` serving `root`.
pub fn start_http(ns: &Netns, port: u16, root: &Path) -> anyhow::Result<Proc> {
    let root = root.to_string_lossy().into_owned();
    let p = ns.spawn("python3", &["-m", "http.server", &port.to_string(), "--bind", "0.0.0.0", "--directory", &root])?;
    ns.wait_listening("tcp", port, Duration::from_secs(10))?;
    Ok(p)
}

/// A third server on the client-side segment, DR-ready (VIP on lo, no ARP for it), serving
/// `Sorry from fallback` on port 80.
pub struct SorryHost {
    _http: Proc,
    pub ns: Netns,
}

pub fn sorry_host(lab: &Lab) -> anyhow::Result<SorryHost> {
    let ns = Netns::new(&format!("{}-sorry", lab.prefix))?;
    plug(&ns, "eth0", &lab.sw, "sw-sorry", &format!("{SORRY}/24"))?;
    ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
    for k in ["all", "lo", "eth0"] {
        ns.sysctl(&format!("net.ipv4.conf.{k}.arp_ignore"), "1")?;
        ns.sysctl(&format!("net.ipv4.conf.{k}.arp_announce"), "2")?;
    }
    let root = lab.dir.join("www-sorry");
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join("index.html"), "Sorry from fallback\n")?;
    let http = start_http(&ns, 80, &root)?;
    Ok(SorryHost { _http: http, ns })
}

/// The client: `count` HTTP/1.0 requests to the VIP, each on a new connection from its own
/// source port (`first_port`, `first_port + 1`, ...), `gap_ms` apart; or, with a stop file,
/// requests until the file exists. One line per request: `OK <port> <body>` or
/// `FAIL <port> <reason>`.
const CLIENT: &str = r#"
import os, socket, sys, time
vip, first, count, gap, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]) / 1000, sys.argv[5]
port = first
n = 0
while (count > 0 and n < count) or (count == 0 and not os.path.exists(stop)):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(3)
    try:
        s.bind(('0.0.0.0', port))
        s.connect((vip, 80))
        s.sendall(b'GET / HTTP/1.0\r\nHost: ' + vip.encode() + b'\r\n\r\n')
        data = b''
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        head, _, body = data.partition(b'\r\n\r\n')
        if not head.startswith(b'HTTP/1.0 200') and not head.startswith(b'HTTP/1.1 200'):
            raise Exception('bad answer ' + repr(head[:40]))
        print('OK', port, body.decode().strip(), flush=True)
    except Exception as e:
        print('FAIL', port, repr(e), flush=True)
    finally:
        s.close()
    port += 1
    n += 1
    if gap > 0:
        time.sleep(gap)
"#;

/// `count` requests (see [`CLIENT`]); the answers' bodies, `FAIL ...` for failures.
pub fn requests(lab: &Lab, first_port: u16, count: u32) -> anyhow::Result<Vec<String>> {
    let out = crate::netns::run(lab.client.ns.cmd("python3").args([
        "-c",
        CLIENT,
        VIP,
        &first_port.to_string(),
        &count.to_string(),
        "0",
        "/nonexistent",
    ]))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| match l.strip_prefix("OK ") {
            Some(rest) => rest.split_once(' ').map_or("", |(_, b)| b).to_string(),
            None => l.to_string(),
        })
        .collect())
}

/// Requests in the background until [`RequestLoop::finish`].
pub struct RequestLoop {
    proc: Proc,
    stop: PathBuf,
    out: PathBuf,
}

impl RequestLoop {
    pub fn start(lab: &Lab, first_port: u16, gap_ms: u32) -> anyhow::Result<RequestLoop> {
        let stop = lab.dir.join("loop.stop");
        let out = lab.dir.join("loop.out");
        let _ = std::fs::remove_file(&stop);
        let file = std::fs::File::create(&out)?;
        let child = lab
            .client
            .ns
            .cmd("python3")
            .args(["-c", CLIENT, VIP, &first_port.to_string(), "0", &gap_ms.to_string()])
            .arg(&stop)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()?;
        Ok(RequestLoop { proc: Proc::from_child(child), stop, out })
    }

    /// Lines so far.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out).unwrap_or_default().lines().map(str::to_string).collect()
    }

    /// Stops the loop after its current request; all lines.
    pub fn finish(mut self) -> anyhow::Result<Vec<String>> {
        std::fs::write(&self.stop, "")?;
        let t0 = Instant::now();
        while self.proc.is_running() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.proc.kill();
        Ok(self.lines())
    }
}

/// An ldirectord.cf for the lab's VIP and real servers with short timers.
pub fn ldirectord_cf(quiescent: bool, failurecount: u32, fallback: Option<&str>) -> String {
    let mut s = format!(
        "# lbd lab: ldirectord syntax\nchecktimeout=1\ncheckinterval=1\nfailurecount={failurecount}\nautoreload=yes\n\
         quiescent={}\n",
        if quiescent { "yes" } else { "no" }
    );
    if let Some(f) = fallback {
        s.push_str(&format!("fallback={f}:80 gate\n"));
    }
    s.push_str(&format!(
        "\nvirtual={VIP}:80\n\treal={}:80 gate 1\n\treal={}:80 gate 1\n\tservice=http\n\tscheduler=rr\n\tprotocol=tcp\n\t\
         checktype=negotiate\n\tcheckport=80\n\trequest=\"index.html\"\n\treceive=\"Welcome from\"\n",
        crate::lab::WEB1,
        crate::lab::WEB2
    ));
    s
}

/// The same in keepalived syntax (TCP_CHECK, failed servers removed).
pub fn keepalived_conf() -> String {
    let mut s = format!(
        "! lbd lab: keepalived syntax\nglobal_defs {{\n   router_id LVS_LAB\n}}\n\nvirtual_server {VIP} 80 {{\n    \
         delay_loop 1\n    lb_algo rr\n    lb_kind DR\n    protocol TCP\n\n"
    );
    for web in [crate::lab::WEB1, crate::lab::WEB2] {
        s.push_str(&format!(
            "    real_server {web} 80 {{\n        weight 1\n        TCP_CHECK {{\n            connect_port 80\n            \
             connect_timeout 1\n            retry 1\n            delay_before_retry 1\n        }}\n    }}\n"
        ));
    }
    s.push_str("}\n");
    s
}
