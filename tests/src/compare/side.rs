//! One side of a comparison: a lab in network namespaces of this kernel whose director runs either
//! kernel IPVS (driven by `/usr/sbin/ipvsadm`) or xlb (`lbd attach`, `lbd run`, `lbadm`). Both
//! sides have the same addresses; the namespaces keep them apart.
//!
//! ```text
//!  client 10.1.0.11-14 --sw-- 10.1.0.1 eth0  director  eth1 10.2.0.1 --sw2-- rs1 10.2.0.11
//!                         |   VIPs 10.1.0.100, 10.1.0.101 on eth0           rs2 10.2.0.12
//!                         +-- 10.1.0.254  router  10.2.0.254 ------------   rs3 10.2.0.13
//! ```
//!
//! One topology serves every forwarding method: the real servers have the VIPs on lo (never
//! answered in ARP) for DR, tunl0 up (ipip, rp_filter off) for TUN, and the director as their
//! default gateway for NAT; what they send from a VIP (DR and TUN replies) goes through the
//! router instead (a source rule), so the director sees only the clients' half of those
//! connections, as in a usual DR or TUN deployment.
//! Real servers answer with their name: TCP on 80, 8080 and 443 (`rsN\n`), UDP on 53 (`rsN`).
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    os::fd::AsRawFd as _,
    process::{Command, Output, Stdio},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use socket2::{Domain, Socket, Type};

use crate::{
    netns::{Netns, Proc, run, unique_prefix},
    pins::TempPins,
    workspace_bin,
};

pub const CLIENTS: [&str; 4] = ["10.1.0.11", "10.1.0.12", "10.1.0.13", "10.1.0.14"];
pub const DIRECTOR: &str = "10.1.0.1";
/// The VIPs every lab has (on the director's eth0 and the real servers' lo): scenario `i` of a
/// run gets the `i`-th pair (`$VIP`, `$VIP2`), so scenarios that share a lab never share a
/// virtual service (nor IPVS's trash of its real servers, nor a connection entry).
pub const VIP_BASE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 100);
pub const VIP_COUNT: u8 = 100;

pub fn vips() -> impl Iterator<Item = Ipv4Addr> {
    let b = u32::from(VIP_BASE);
    (0..VIP_COUNT as u32).map(move |i| Ipv4Addr::from(b + i))
}

/// The pair of VIPs of the `i`-th scenario of a run.
pub fn vip_pair(i: usize) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let b = u32::from(VIP_BASE);
    let i = u32::try_from(i).ok()?;
    (2 * i + 1 < VIP_COUNT as u32).then(|| (Ipv4Addr::from(b + 2 * i), Ipv4Addr::from(b + 2 * i + 1)))
}
pub const DIRECTOR_SERVERS: &str = "10.2.0.1";
/// The router that DR and TUN replies take (client side, server side).
pub const ROUTER: (&str, &str) = ("10.1.0.254", "10.2.0.254");
pub const REALS: [(&str, &str); 3] = [("rs1", "10.2.0.11"), ("rs2", "10.2.0.12"), ("rs3", "10.2.0.13")];
pub const TCP_PORTS: [u16; 3] = [80, 8080, 443];
pub const UDP_PORT: u16 = 53;

/// What a connection that got no answer records as its real server.
pub const NO_ANSWER: &str = "-";

/// How long a client waits for a connection or an answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ipvs,
    Xlb,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ipvs => "ipvs",
            Kind::Xlb => "xlb",
        }
    }
}

/// A client's traffic with the VIPs: (packets, bytes) sent and received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub sent: (u64, u64),
    pub received: (u64, u64),
}

impl Traffic {
    pub fn since(self, before: Traffic) -> Traffic {
        Traffic {
            sent: (self.sent.0 - before.sent.0, self.sent.1 - before.sent.1),
            received: (self.received.0 - before.received.0, self.received.1 - before.received.1),
        }
    }
}

/// The output of a command run on a side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmdOut {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for CmdOut {
    fn from(o: Output) -> CmdOut {
        CmdOut {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

pub struct Side {
    pub kind: Kind,
    /// How long the set-up's parts took (printed: the suite's time budget is tight under TCG).
    pub setup: String,
    // Dropped first: the daemon and the servers, then the namespaces, then the pins and files.
    lbd: Option<Proc>,
    servers: Vec<crate::real_server::RealServer>,
    /// TCP connections kept open (`keep`), closed by `close`.
    kept: Vec<Socket>,
    pub client: Netns,
    pub director: Netns,
    pub reals: Vec<Netns>,
    pub router: Netns,
    pub sw: Netns,
    pub sw2: Netns,
    pins: Option<TempPins>,
    dir: std::path::PathBuf,
}

impl Side {
    pub fn new(kind: Kind) -> anyhow::Result<Side> {
        let t0 = std::time::Instant::now();
        let prefix = unique_prefix(&format!("c{}", &kind.name()[..1]));
        let dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let pins = if kind == Kind::Xlb { Some(TempPins::new(&prefix)?) } else { None };
        let sw = fast_ns(&format!("{prefix}-sw"), &[])?;
        let sw2 = fast_ns(&format!("{prefix}-sw2"), &[])?;
        for s in [&sw, &sw2] {
            ip_batch(s, &["link add br0 type bridge".into(), "link set br0 up".into()])?;
        }
        let client = fast_ns(&format!("{prefix}-cl"), &[])?;
        let director = fast_ns(&format!("{prefix}-dir"), &[("net.ipv4.ip_forward", "1")])?;
        let router = fast_ns(&format!("{prefix}-rt"), &[("net.ipv4.ip_forward", "1")])?;
        veth(&client, "eth0", &sw, "sw-cl")?;
        veth(&director, "eth0", &sw, "sw-dir")?;
        veth(&director, "eth1", &sw2, "sw2-dir")?;
        veth(&router, "eth0", &sw, "sw-rt")?;
        veth(&router, "eth1", &sw2, "sw2-rt")?;
        let mut cl: Vec<String> = CLIENTS.iter().map(|c| format!("addr add {c}/24 dev eth0")).collect();
        cl.push("link set eth0 up".into());
        ip_batch(&client, &cl)?;
        let vip_range = format!("{}-{}", VIP_BASE, vips().last().unwrap_or(VIP_BASE));
        let nft = format!(
            "table ip xlbcmp {{\n chain out {{ type filter hook output priority 0; ip daddr {vip_range} counter; }}\n \
             chain in {{ type filter hook input priority 0; ip saddr {vip_range} counter; }}\n}}\n"
        );
        let mut c = client.cmd_net_only("nft").args(["-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        c.stdin.take().context("no stdin")?.write_all(nft.as_bytes())?;
        let o = c.wait_with_output()?;
        if !o.status.success() {
            bail!("nft -f failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        let mut d = vec![format!("addr add {DIRECTOR}/24 dev eth0"), format!("addr add {DIRECTOR_SERVERS}/24 dev eth1")];
        d.extend(vips().map(|v| format!("addr add {v}/32 dev eth0")));
        d.extend(["link set eth0 up".into(), "link set eth1 up".into()]);
        ip_batch(&director, &d)?;
        ip_batch(
            &router,
            &[
                format!("addr add {}/24 dev eth0", ROUTER.0),
                format!("addr add {}/24 dev eth1", ROUTER.1),
                "link set eth0 up".into(),
                "link set eth1 up".into(),
            ],
        )?;
        // The router forwards replies from the VIPs, which live on the client side; the director
        // takes packets from its VIPs' network on its server side (NAT).
        let no_rp: Vec<(String, String)> =
            ["all", "default", "eth0", "eth1"].iter().map(|k| (format!("net.ipv4.conf.{k}.rp_filter"), "0".to_string())).collect();
        sysctls(&router.name, &no_rp)?;
        sysctls(&director.name, &no_rp)?;
        let mut reals = Vec::new();
        let _ = Command::new("modprobe").args(["-q", "ipip"]).status();
        for (name, ip) in REALS {
            let ns = fast_ns(&format!("{prefix}-{name}"), &[])?;
            veth(&ns, "eth0", &sw2, &format!("sw2-{name}"))?;
            let mut b = vec![
                format!("addr add {ip}/24 dev eth0"),
                "link set eth0 up".into(),
                format!("route add default via {DIRECTOR_SERVERS}"),
                format!("route add default via {} table 100", ROUTER.1),
                // tunl0 exists in every namespace once ipip is loaded: TUN's decapsulation.
                "link set tunl0 up".into(),
            ];
            for v in vips() {
                b.push(format!("addr add {v}/32 dev lo"));
                b.push(format!("rule add from {v} table 100"));
            }
            ip_batch(&ns, &b).context("(TUN needs the kernel's ipip for tunl0)")?;
            let mut k: Vec<(String, String)> = [
                ("net.ipv4.conf.all.arp_ignore", "1"),
                ("net.ipv4.conf.eth0.arp_ignore", "1"),
                ("net.ipv4.conf.all.arp_announce", "2"),
                ("net.ipv4.conf.eth0.arp_announce", "2"),
                ("net.ipv4.conf.tunl0.rp_filter", "0"),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
            k.extend(no_rp.iter().take(3).cloned());
            sysctls(&ns.name, &k)?;
            reals.push(ns);
        }
        for (ns, dev) in [(&client, "eth0"), (&director, "eth0"), (&director, "eth1")].into_iter().chain(reals.iter().map(|r| (r, "eth0"))) {
            // XDP_TX'd and redirected frames carry whatever checksum the sender left: no offload.
            run(ns.cmd_net_only("ethtool").args(["-K", dev, "tx", "off"]))?;
        }
        let mut side =
            Side { kind, setup: String::new(), lbd: None, servers: Vec::new(), kept: Vec::new(), client, director, reals, router, sw, sw2, pins, dir };
        for (ns, (name, _)) in side.reals.iter().zip(REALS) {
            let answer: crate::real_server::Answer = Arc::new(move |c| answer_tcp(name, c));
            side.servers.push(crate::real_server::RealServer::start(&ns.name, name, &TCP_PORTS, UDP_PORT, answer)?);
        }
        side.setup = format!("namespaces {:.1} s", t0.elapsed().as_secs_f64());
        let t1 = std::time::Instant::now();
        if kind == Kind::Xlb {
            std::os::unix::fs::symlink(workspace_bin("lbadm"), side.dir.join("ipvsadm"))?;
            side.lbd_out(&side.director, &["attach", "eth0", "--mode", "auto"])?;
            side.lbd_out(&side.director, &["attach", "eth1", "--mode", "auto"])?;
            // veth drops XDP_TX/REDIRECT frames unless the receiving end runs XDP too.
            side.lbd_out(&side.sw, &["attach", "sw-dir", "--mode", "native", "--program", "pass"])?;
            side.lbd_out(&side.sw2, &["attach", "sw2-dir", "--mode", "native", "--program", "pass"])?;
            let log = side.dir.join("lbd.log");
            side.lbd = Some(side.director.spawn_lbd(side.pin_dir()?, &["run", "--interval", "1"], &log)?);
            side.setup += &format!(", xlb attached in {:.1} s", t1.elapsed().as_secs_f64());
        } else {
            // A fresh namespace has an empty IPVS table; make sure the module is there at all.
            let out = side.ipvsadm(&["-Ln"])?;
            if out.code != Some(0) {
                bail!("ipvsadm -Ln failed in the director: {}{}", out.stdout, out.stderr);
            }
        }
        Ok(side)
    }

    fn pin_dir(&self) -> anyhow::Result<&std::path::Path> {
        Ok(self.pins.as_ref().context("no pins on the IPVS side")?.path())
    }

    fn lbd_out(&self, ns: &Netns, args: &[&str]) -> anyhow::Result<Output> {
        run(ns.cmd_net_only(workspace_bin("lbd")).arg("--pin-dir").arg(self.pin_dir()?).args(args))
    }

    /// `ipvsadm ARGS` in the director: the kernel's tool, or lbadm under that name.
    pub fn ipvsadm(&self, args: &[&str]) -> anyhow::Result<CmdOut> {
        Ok(self.ipvsadm_many(&[args])?.remove(0).0)
    }

    /// Several `ipvsadm` commands started at once in the director (processes start slowly under
    /// TCG); each output with the time from the start to its end. They are started from a
    /// thread inside the director's network namespace, which they inherit: IPVS's table is the
    /// namespace's, and xlb's pins are in the host's bpffs.
    pub fn ipvsadm_many(&self, commands: &[&[&str]]) -> anyhow::Result<Vec<(CmdOut, Duration)>> {
        let mut cmds = Vec::new();
        for args in commands {
            let mut c = match self.kind {
                Kind::Ipvs => Command::new(crate::ipvs_host::IPVSADM),
                Kind::Xlb => {
                    let mut c = Command::new(self.dir.join("ipvsadm"));
                    c.env("XLB_PIN_DIR", self.pin_dir()?);
                    c
                }
            };
            c.args(*args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            cmds.push(c);
        }
        in_netns(&self.director.name, move || {
            let t = std::time::Instant::now();
            let children = cmds.iter_mut().map(|c| c.spawn().context("cannot run ipvsadm")).collect::<anyhow::Result<Vec<_>>>()?;
            children.into_iter().map(|c| Ok((c.wait_with_output()?.into(), t.elapsed()))).collect()
        })
    }

    /// What the clients sent to the VIPs and received from them so far (packets, bytes): the
    /// measure of how far the two sides' traffic differed (TCP's timers may add a packet).
    pub fn client_traffic(&self) -> anyhow::Result<Traffic> {
        let out = run(self.client.cmd_net_only("nft").args(["list", "table", "ip", "xlbcmp"]))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let w: Vec<&str> = text.split_whitespace().collect();
        let mut n = w.iter().enumerate().filter(|(_, x)| **x == "packets" || **x == "bytes").map(|(i, _)| {
            w.get(i + 1).and_then(|v| v.parse::<u64>().ok()).context("unreadable nft counter")
        });
        let mut next = || n.next().context("nft counter missing")?;
        Ok(Traffic { sent: (next()?, next()?), received: (next()?, next()?) })
    }

    /// `iptables ARGS` in the director; xlb's side then reads the MARK rules at once (`lbd run`
    /// would within a second).
    pub fn iptables(&self, args: &[&str]) -> anyhow::Result<CmdOut> {
        let out: CmdOut = self.director.cmd_net_only("iptables").args(args).output().context("cannot run iptables")?.into();
        if self.kind == Kind::Xlb && out.code == Some(0) {
            self.lbd_out(&self.director, &["sync-marks"])?;
        }
        Ok(out)
    }

    /// One connection from `client:sport` to `vip:port`: the name of the real server that
    /// answered, or [`NO_ANSWER`].
    pub fn connect_tcp(&mut self, client: Ipv4Addr, sport: u16, vip: Ipv4Addr, port: u16, keep: bool) -> anyhow::Result<String> {
        let s = in_netns(&self.client.name, move || -> anyhow::Result<Socket> {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
            s.set_reuse_address(true)?;
            s.bind(&SocketAddr::from(SocketAddrV4::new(client, sport)).into())
                .with_context(|| format!("cannot bind {client}:{sport}"))?;
            Ok(s)
        })?;
        if s.connect_timeout(&SocketAddr::from(SocketAddrV4::new(vip, port)).into(), CLIENT_TIMEOUT).is_err() {
            return Ok(NO_ANSWER.to_string());
        }
        s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        let mut stream: std::net::TcpStream = s.try_clone()?.into();
        // `k`: the server keeps the connection until we close it; `q`: it answers and closes first
        // (so the client side has no TIME_WAIT and its port can be used again at once).
        if stream.write_all(if keep { b"k" } else { b"q" }).is_err() {
            return Ok(NO_ANSWER.to_string());
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while !got.contains(&b'\n') {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let name = String::from_utf8_lossy(&got).trim().to_string();
        if keep {
            self.kept.push(s);
        } else {
            // Wait for the server's FIN (it came with the name), then close.
            let _ = stream.read(&mut buf);
        }
        Ok(if name.is_empty() { NO_ANSWER.to_string() } else { name })
    }

    /// One UDP datagram from `client:sport` to `vip:port`; the answering real server's name.
    pub fn query_udp(&self, client: Ipv4Addr, sport: u16, vip: Ipv4Addr, port: u16) -> anyhow::Result<String> {
        let s = in_netns(&self.client.name, move || -> anyhow::Result<std::net::UdpSocket> {
            std::net::UdpSocket::bind(SocketAddrV4::new(client, sport)).with_context(|| format!("cannot bind {client}:{sport}"))
        })?;
        s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        s.send_to(b"x", SocketAddrV4::new(vip, port))?;
        let mut buf = [0u8; 64];
        Ok(match s.recv_from(&mut buf) {
            Ok((n, _)) => String::from_utf8_lossy(&buf[..n]).trim().to_string(),
            Err(_) => NO_ANSWER.to_string(),
        })
    }

    /// Closes the kept connections (the client closes first).
    pub fn close_kept(&mut self) {
        self.kept.clear();
    }

    /// Readies the lab for the next scenario: kept connections closed, the table cleared, IPVS's
    /// default timeouts back, and the MARK rules gone when the last scenario set some. What
    /// cannot be cleared (connection entries, IPVS's trash) belongs to the previous scenario's
    /// VIPs, which no later scenario uses.
    pub fn reset(&mut self, marks: bool) -> anyhow::Result<()> {
        self.close_kept();
        for args in [&["-C"][..], &["--set", "900", "120", "300"]] {
            let out = self.ipvsadm(args)?;
            if out.code != Some(0) {
                bail!("ipvsadm {} failed: {}", args.join(" "), out.stderr);
            }
        }
        if marks {
            let out = self.iptables(&["-t", "mangle", "-F"])?;
            if out.code != Some(0) {
                bail!("iptables -t mangle -F failed: {}", out.stderr);
            }
        }
        Ok(())
    }

}

impl Drop for Side {
    fn drop(&mut self) {
        self.kept.clear();
        self.servers.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A namespace made with as few processes as possible (a guest under TCG starts them slowly):
/// lo up, IPv6 off, `extra` sysctls, written from a thread inside it.
pub fn fast_ns(name: &str, extra: &[(&str, &str)]) -> anyhow::Result<Netns> {
    let _ = Command::new("ip").args(["netns", "del", name]).stderr(Stdio::null()).status();
    run(Command::new("ip").args(["netns", "add", name]))?;
    let ns = Netns { name: name.to_string() };
    ns.ip(&["link", "set", "lo", "up"])?;
    let mut k: Vec<(String, String)> = vec![
        // No IPv6 chatter (router solicitations, MLD) in the counters.
        ("net.ipv6.conf.all.disable_ipv6".into(), "1".into()),
        ("net.ipv6.conf.default.disable_ipv6".into(), "1".into()),
    ];
    k.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
    sysctls(name, &k)?;
    Ok(ns)
}

/// Writes sysctls of namespace `ns` through /proc/sys from a thread inside it.
pub fn sysctls(ns: &str, kv: &[(String, String)]) -> anyhow::Result<()> {
    let kv = kv.to_vec();
    in_netns(ns, move || {
        for (k, v) in &kv {
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            std::fs::write(&path, v).with_context(|| format!("cannot write {path}"))?;
        }
        Ok(())
    })
}

/// `ip -n NS -batch -`: many `ip` commands in one process.
pub fn ip_batch(ns: &Netns, lines: &[String]) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["-n", &ns.name, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run ip -batch")?;
    child.stdin.take().context("no stdin")?.write_all(lines.join("\n").as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("ip -n {} -batch failed: {}", ns.name, String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A veth pair: `dev` in `ns`, `port` in switch `sw`'s bridge.
pub fn veth(ns: &Netns, dev: &str, sw: &Netns, port: &str) -> anyhow::Result<()> {
    run(Command::new("ip").args(["link", "add", dev, "netns", &ns.name, "type", "veth", "peer", "name", port, "netns", &sw.name]))?;
    sw.ip(&["link", "set", port, "master", "br0", "up"])?;
    Ok(())
}

/// Runs `f` on a thread of its own in network namespace `ns`: sockets it creates belong to that
/// namespace for their whole life, whatever thread uses them later.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> anyhow::Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || -> anyhow::Result<T> {
        enter_netns(&path)?;
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("a thread in namespace {ns} panicked"))?
}

fn enter_netns(path: &str) -> anyhow::Result<()> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the client's one-byte request, sends the name; `q`: closes at once, with the FIN in the
/// name's segment (corked), so every exchange has the same packets; `k`: waits for the client to
/// close first.
fn answer_tcp(name: &str, conn: std::net::TcpStream) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(120)));
    let mut conn = conn;
    let mut req = [0u8; 1];
    if conn.read_exact(&mut req).is_err() {
        return;
    }
    let one: libc::c_int = 1;
    unsafe {
        libc::setsockopt(conn.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_CORK, (&one as *const libc::c_int).cast(), 4);
    }
    let _ = conn.write_all(format!("{name}\n").as_bytes());
    if req[0] == b'k' {
        let zero: libc::c_int = 0;
        unsafe {
            libc::setsockopt(conn.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_CORK, (&zero as *const libc::c_int).cast(), 4);
        }
        let mut sink = [0u8; 64];
        while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
    }
}

pub use crate::ipvs_host::kernel_has_ipvs;

/// Whether kernel module `name` is there (loaded now if it was not).
pub fn has_module(name: &str) -> bool {
    Command::new("modprobe").args(["-q", name]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}
