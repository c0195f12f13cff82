//! A director pair on one L2 segment: the lab of the sync daemon's interoperability runs and of
//! the failover drill. Each director is kernel IPVS (Debian's ipvsadm) or xlb (`lbd attach`,
//! `lbd run`, lbadm on a pin directory of its own); the real servers are DR (the VIP on lo,
//! never answered in ARP).
//!
//! ```text
//!  client 10.7.0.10-.49 ---+--- dir A 10.7.0.2 eth0      rs1 10.7.0.101 (VIP on lo)
//!                          +--- dir B 10.7.0.3 eth0      rs2 10.7.0.102 (VIP on lo)
//!                         (one bridge; the VIP 10.7.0.100 on whichever director is active)
//! ```
//!
//! Real servers answer HTTP/1.0 on 80 and 8080 (`GET /` gives `rsN\n`, `GET /file` the lab's
//! file) and UDP on 53 (`rsN`), from threads of the test process (no interpreter to start: the
//! kernel matrix's guests run under TCG).
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    path::{Path, PathBuf},
    process::{Output, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use socket2::{Domain, Socket, Type};

use crate::{
    compare::side::{CmdOut, Kind, fast_ns, in_netns, ip_batch, sysctls, veth},
    ipvs_host::IPVSADM,
    netns::{Netns, Proc, run, unique_prefix},
    pins::TempPins,
    real_server::{Answer, RealServer},
    workspace_bin,
};

pub const VIP: &str = "10.7.0.100";
pub const A_IP: &str = "10.7.0.2";
pub const B_IP: &str = "10.7.0.3";
pub const REALS: [(&str, &str); 2] = [("rs1", "10.7.0.101"), ("rs2", "10.7.0.102")];
/// The client's addresses: 10.7.0.10 and the next `CLIENT_COUNT - 1`.
pub const CLIENT_BASE: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 10);
pub const CLIENT_COUNT: u8 = 40;
/// The lab's services: a persistent one, a plain rr one (TCP), and UDP.
pub const PERSISTENT_PORT: u16 = 80;
pub const PLAIN_PORT: u16 = 8080;
pub const UDP_PORT: u16 = 53;

/// How long a client waits to connect or for an answer (SYN retransmissions at 1 and 3 s fit).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `i`-th client address.
pub fn client_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(CLIENT_BASE) + u32::from(i))
}

/// The ipvsadm lines of the lab's services (the same on both directors): `-p 300` on 80, rr on
/// 8080, rr on UDP 53, DR to both real servers.
pub fn service_lines() -> Vec<Vec<String>> {
    let mut v = Vec::new();
    for (proto, port, extra) in [("-t", PERSISTENT_PORT, &["-p", "300"][..]), ("-t", PLAIN_PORT, &[]), ("-u", UDP_PORT, &[])] {
        let svc = format!("{VIP}:{port}");
        let mut add: Vec<String> = ["-A", proto, &svc, "-s", "rr"].iter().map(|s| s.to_string()).collect();
        add.extend(extra.iter().map(|s| s.to_string()));
        v.push(add);
        for (_, ip) in REALS {
            v.push(["-a", proto, &svc, "-r", ip, "-g"].iter().map(|s| s.to_string()).collect());
        }
    }
    v
}

pub struct Director {
    pub kind: Kind,
    pub ns: Netns,
    pub ip: &'static str,
    /// Its eth0's port on the switch.
    pub port: String,
    lbd: Option<Proc>,
    pins: Option<TempPins>,
    dir: PathBuf,
}

impl Director {
    pub fn pin_dir(&self) -> anyhow::Result<&Path> {
        Ok(self.pins.as_ref().context("kernel IPVS has no pin directory")?.path())
    }

    /// `lbd ARGS` in this director's network namespace, on its pin directory.
    pub fn lbd(&self, args: &[&str]) -> anyhow::Result<Output> {
        run(self.ns.cmd_net_only(workspace_bin("lbd")).arg("--pin-dir").arg(self.pin_dir()?).args(args))
    }

    /// `ipvsadm ARGS` in the director's namespace: the kernel's tool, or lbadm on the director's
    /// pins. The output whatever the exit status.
    pub fn ipvsadm(&self, args: &[&str]) -> anyhow::Result<CmdOut> {
        let mut c = match self.kind {
            Kind::Ipvs => self.ns.cmd_net_only(IPVSADM),
            Kind::Xlb => {
                let mut c = self.ns.cmd_net_only(workspace_bin("lbadm"));
                c.env("XLB_PIN_DIR", self.pin_dir()?);
                c
            }
        };
        Ok(c.args(args).stdin(Stdio::null()).output().context("cannot run ipvsadm")?.into())
    }

    /// `ipvsadm ARGS` that must succeed; its stdout.
    pub fn ipvsadm_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.ipvsadm(args)?;
        if out.code != Some(0) {
            bail!("{} ipvsadm {} failed ({:?}): {}{}", self.name(), args.join(" "), out.code, out.stdout, out.stderr);
        }
        Ok(out.stdout)
    }

    /// "ipvs in A" / "xlb in B".
    pub fn name(&self) -> String {
        format!("{} in {}", self.kind.name(), if self.ip == A_IP { "A" } else { "B" })
    }

    /// The lab's services, configured as `service_lines` says: one `ipvsadm -R` (one process
    /// matters under TCG).
    pub fn add_services(&self) -> anyhow::Result<()> {
        let text: String = service_lines().iter().map(|l| l.join(" ") + "\n").collect();
        let mut c = match self.kind {
            Kind::Ipvs => self.ns.cmd_net_only(IPVSADM),
            Kind::Xlb => {
                let mut c = self.ns.cmd_net_only(workspace_bin("lbadm"));
                c.env("XLB_PIN_DIR", self.pin_dir()?);
                c
            }
        };
        let mut child = c.arg("-R").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().context("cannot run ipvsadm -R")?;
        child.stdin.take().context("no stdin")?.write_all(text.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() || !out.stderr.is_empty() {
            bail!("{} ipvsadm -R failed ({}): {}\n{text}", self.name(), out.status, String::from_utf8_lossy(&out.stderr));
        }
        let listing = self.ipvsadm_ok(&["-Ln"])?;
        anyhow::ensure!(listing.lines().filter(|l| l.contains(" Route ")).count() == 2 * 3, "{} has not the lab's services:\n{listing}", self.name());
        Ok(())
    }

    /// Starts `lbd run` (xlb only), its output to the lab's directory.
    pub fn start_lbd_run(&mut self) -> anyhow::Result<()> {
        let log = self.dir.join(format!("lbd-{}.log", self.ip));
        self.lbd = Some(self.ns.spawn_lbd(self.pin_dir()?, &["run", "--interval", "1"], &log)?);
        Ok(())
    }

    /// What `lbd run` wrote so far.
    pub fn lbd_log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("lbd-{}.log", self.ip))).unwrap_or_default()
    }

    /// Kills `lbd run` (SIGKILL).
    pub fn kill_lbd(&mut self) {
        if let Some(mut p) = self.lbd.take() {
            p.kill();
        }
    }

    /// Puts the VIP on eth0 (the active director; the client learns it by ARP, see
    /// [`Pair::client_forget_vip`]).
    pub fn take_vip(&self) -> anyhow::Result<()> {
        self.ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "eth0"])?;
        Ok(())
    }

    pub fn drop_vip(&self) -> anyhow::Result<()> {
        self.ns.ip(&["addr", "del", &format!("{VIP}/32"), "dev", "eth0"])?;
        Ok(())
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        // Kernel IPVS state dies with the namespace (its sync threads with it).
        self.kill_lbd();
    }
}

pub struct Pair {
    // Dropped first: the servers and kept sockets, then the directors, then the namespaces.
    servers: Vec<RealServer>,
    kept: std::sync::Mutex<Vec<Socket>>,
    pub a: Director,
    pub b: Director,
    pub client: Netns,
    pub reals: Vec<Netns>,
    pub sw: Netns,
    pub dir: PathBuf,
    /// How long the set-up's parts took (printed: the matrix's time is tight under TCG).
    pub setup: String,
}

impl Pair {
    /// Builds the lab (no VIP on any director yet, no services). An xlb director has the balancer
    /// attached to eth0 (and the pass program to its switch port) and `lbd run` running.
    /// `file`: what the real servers serve as `/file`.
    pub fn new(tag: &str, a: Kind, b: Kind, file: Arc<Vec<u8>>) -> anyhow::Result<Pair> {
        let t0 = Instant::now();
        let prefix = unique_prefix(tag);
        let dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let sw = fast_ns(&format!("{prefix}-sw"), &[])?;
        // Sync messages and VRRP adverts are multicast: flooded, no snooping to learn first.
        ip_batch(&sw, &["link add br0 type bridge mcast_snooping 0".into(), "link set br0 up".into()])?;
        let client = fast_ns(&format!("{prefix}-cl"), &[])?;
        veth(&client, "eth0", &sw, "sw-cl")?;
        let mut cl: Vec<String> = (0..CLIENT_COUNT).map(|i| format!("addr add {}/24 dev eth0", client_ip(i))).collect();
        cl.push("link set eth0 up".into());
        ip_batch(&client, &cl)?;
        let no_rp: Vec<(String, String)> =
            ["all", "default", "eth0"].iter().map(|k| (format!("net.ipv4.conf.{k}.rp_filter"), "0".to_string())).collect();
        let mut directors = Vec::new();
        for (name, ip, kind) in [("a", A_IP, a), ("b", B_IP, b)] {
            let ns = fast_ns(&format!("{prefix}-{name}"), &[("net.ipv4.ip_forward", "1")])?;
            let port = format!("sw-{name}");
            veth(&ns, "eth0", &sw, &port)?;
            // A NIC drops unicast frames for another MAC, a veth does not (and XDP runs before
            // that check): the bridge floods no unknown unicast to the directors, so a dead
            // director's frames reach the other only once the client has learnt its MAC.
            run(sw.cmd_net_only("bridge").args(["link", "set", "dev", &port, "flood", "off"]))?;
            ip_batch(&ns, &[format!("addr add {ip}/24 dev eth0"), "link set eth0 up".into()])?;
            sysctls(&ns.name, &no_rp)?;
            sysctls(&ns.name, &[("net.ipv4.conf.eth0.forwarding".into(), "1".into())])?;
            let pins = if kind == Kind::Xlb { Some(TempPins::new(&format!("{prefix}{name}"))?) } else { None };
            directors.push(Director { kind, ns, ip, port, lbd: None, pins, dir: dir.clone() });
        }
        let mut reals = Vec::new();
        for (name, ip) in REALS {
            let ns = fast_ns(&format!("{prefix}-{name}"), &[])?;
            veth(&ns, "eth0", &sw, &format!("sw-{name}"))?;
            ip_batch(&ns, &[format!("addr add {ip}/24 dev eth0"), format!("addr add {VIP}/32 dev lo"), "link set eth0 up".into()])?;
            let k: Vec<(String, String)> = [
                ("net.ipv4.conf.all.arp_ignore", "1"),
                ("net.ipv4.conf.eth0.arp_ignore", "1"),
                ("net.ipv4.conf.all.arp_announce", "2"),
                ("net.ipv4.conf.eth0.arp_announce", "2"),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
            sysctls(&ns.name, &k)?;
            reals.push(ns);
        }
        for ns in [&client].into_iter().chain(directors.iter().map(|d| &d.ns)).chain(reals.iter()) {
            // XDP_TX'd frames carry whatever checksum the sender left: no offload.
            run(ns.cmd_net_only("ethtool").args(["-K", "eth0", "tx", "off"]))?;
        }
        let mut servers = Vec::new();
        for (ns, (name, _)) in reals.iter().zip(REALS) {
            let file = file.clone();
            let answer: Answer = Arc::new(move |c| answer_http(name, c, &file));
            servers.push(RealServer::start(&ns.name, name, &[PERSISTENT_PORT, PLAIN_PORT], UDP_PORT, answer)?);
        }
        let b = directors.pop().context("no director B")?;
        let a = directors.pop().context("no director A")?;
        let mut pair = Pair { servers, kept: std::sync::Mutex::new(Vec::new()), a, b, client, reals, sw, dir, setup: String::new() };
        pair.setup = format!("namespaces and servers {:.1} s", t0.elapsed().as_secs_f64());
        let t1 = Instant::now();
        // The balancers first (each creates its director's maps: two processes creating the same
        // pins would collide), then the pass programs; the directors side by side (each attach
        // verifies the object, slow under TCG).
        for pass in [false, true] {
            let mut attaches = Vec::new();
            for d in [&pair.a, &pair.b].into_iter().filter(|d| d.kind == Kind::Xlb) {
                let mut c = (if pass { &pair.sw } else { &d.ns }).cmd_net_only(workspace_bin("lbd"));
                c.arg("--pin-dir").arg(d.pin_dir()?);
                if pass {
                    // veth drops XDP_TX frames unless the receiving end runs XDP too.
                    c.args(["attach", &d.port, "--mode", "native", "--program", "pass"]);
                } else {
                    c.args(["attach", "eth0", "--mode", "auto"]);
                }
                let child = c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().context("cannot run lbd attach")?;
                attaches.push((format!("{c:?}"), child));
            }
            for (what, child) in attaches {
                let out = child.wait_with_output()?;
                if !out.status.success() {
                    bail!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
                }
            }
        }
        for d in [&mut pair.a, &mut pair.b] {
            if d.kind == Kind::Xlb {
                d.start_lbd_run()?;
            } else {
                let out = d.ipvsadm(&["-Ln"])?;
                if out.code != Some(0) {
                    bail!("ipvsadm -Ln failed in director {}: {}{}", d.ip, out.stdout, out.stderr);
                }
            }
        }
        pair.setup += &format!(", xlb attached in {:.1} s", t1.elapsed().as_secs_f64());
        Ok(pair)
    }

    /// Forgets the client's neighbour entry of the VIP (after the VIP moved without an ARP).
    pub fn client_forget_vip(&self) -> anyhow::Result<()> {
        let _ = self.client.ip(&["neigh", "del", VIP, "dev", "eth0"]);
        Ok(())
    }

    /// A TCP connection from `client:sport` to VIP:`port`, `GET /` sent and the answer read (the
    /// real server closes after it); what happens next is `end`'s. The answering real server's
    /// name.
    pub fn tcp_request(&self, client: Ipv4Addr, sport: u16, port: u16, end: End) -> anyhow::Result<String> {
        let s = in_netns(&self.client.name, move || -> anyhow::Result<Socket> {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            s.set_reuse_address(true)?;
            s.bind(&SocketAddr::from(SocketAddrV4::new(client, sport)).into()).with_context(|| format!("cannot bind {client}:{sport}"))?;
            Ok(s)
        })?;
        let vip: Ipv4Addr = VIP.parse()?;
        s.connect_timeout(&SocketAddr::from(SocketAddrV4::new(vip, port)).into(), CLIENT_TIMEOUT)
            .with_context(|| format!("{client}:{sport} cannot connect to {VIP}:{port}"))?;
        s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        let mut stream: TcpStream = s.try_clone()?.into();
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut got = Vec::new();
        stream.read_to_end(&mut got).with_context(|| format!("{client}:{sport} -> {VIP}:{port}: no answer"))?;
        let text = String::from_utf8_lossy(&got);
        let name = text.rsplit("\r\n\r\n").next().unwrap_or_default().trim().to_string();
        match end {
            End::Keep => self.kept.lock().map_err(|_| anyhow::anyhow!("kept sockets poisoned"))?.push(s),
            End::Close => drop(s),
            End::Reset => {
                s.set_linger(Some(Duration::ZERO))?;
                drop(s);
            }
        }
        Ok(name)
    }

    /// `count` UDP datagrams from `client:sport` to VIP:53, each answered; the last answer.
    pub fn udp_flow(&self, client: Ipv4Addr, sport: u16, count: u32) -> anyhow::Result<String> {
        let s = in_netns(&self.client.name, move || -> anyhow::Result<std::net::UdpSocket> {
            std::net::UdpSocket::bind(SocketAddrV4::new(client, sport)).with_context(|| format!("cannot bind {client}:{sport}"))
        })?;
        s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        let vip: Ipv4Addr = VIP.parse()?;
        let mut last = String::new();
        for _ in 0..count {
            s.send_to(b"x", SocketAddrV4::new(vip, UDP_PORT))?;
            let mut buf = [0u8; 64];
            let (n, _) = s.recv_from(&mut buf).with_context(|| format!("{client}:{sport} -> {VIP}:53: no answer"))?;
            last = String::from_utf8_lossy(&buf[..n]).to_string();
        }
        Ok(last)
    }

    /// Closes the connections kept open.
    pub fn close_kept(&self) {
        if let Ok(mut k) = self.kept.lock() {
            k.clear();
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.close_kept();
        self.servers.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How a client's TCP connection ends after its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Left open (the director keeps it ESTABLISHED).
    Keep,
    /// Closed (FIN: FIN_WAIT on the director).
    Close,
    /// Reset (SO_LINGER 0: CLOSE on the director).
    Reset,
}

/// One row of an `-Lnc` listing without its expire column: (protocol, state, source, virtual,
/// destination).
pub type ConnRow = (String, String, String, String, String);

/// The rows of an `-Lnc` listing whose source address is one of `clients`, sorted.
pub fn conn_rows(listing: &str, clients: &[Ipv4Addr]) -> Vec<ConnRow> {
    let mut rows: Vec<ConnRow> = listing
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let [pro, _expire, state, src, virt, dst] = w.as_slice() else { return None };
            let ip: Ipv4Addr = src.rsplit_once(':')?.0.parse().ok()?;
            clients.contains(&ip).then(|| (pro.to_string(), state.to_string(), src.to_string(), virt.to_string(), dst.to_string()))
        })
        .collect();
    rows.sort();
    rows
}

/// Polls `f` every 200 ms until it gives Some, or `timeout` passes; the last value either way.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> anyhow::Result<(bool, T)>) -> anyhow::Result<(bool, T, Duration)> {
    let t0 = Instant::now();
    loop {
        let (done, v) = f()?;
        if done || t0.elapsed() >= timeout {
            return Ok((done, v, t0.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A fixed pseudo-random pattern of `len` bytes (the real servers' `/file`).
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Reads one HTTP request (up to its blank line) and answers it, then closes: `/file` gives the
/// lab's file, anything else the server's name.
fn answer_http(name: &str, mut conn: TcpStream, file: &[u8]) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let body: &[u8] = if req.starts_with(b"GET /file ") { file } else { &[] };
    let name_line = format!("{name}\n");
    let body = if body.is_empty() { name_line.as_bytes() } else { body };
    let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\nX-Real-Server: {name}\r\n\r\n", body.len());
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
}
