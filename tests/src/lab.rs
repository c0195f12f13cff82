//! Namespace labs reproducing the seeds' topologies, with real HTTP and UDP servers, xlb attached
//! to the director and `lbadm` invoked as `ipvsadm` on a private pin directory.
//!
//! - DR (seed 003, "LVS DR模式"): client1 192.168.88.10, lvs1 192.168.88.5 with the VIP
//!   192.168.88.15 on eth0, web1 192.168.88.100 and web2 192.168.88.200 with the VIP on lo and
//!   arp_ignore=1 / arp_announce=2 (seed 000) — all on one L2 segment (a bridge in a switch
//!   namespace).
//! - TUN: the same client side, but the real servers live in 192.168.99.0/24 behind a router
//!   (192.168.88.1 / 192.168.99.1): the director reaches them only through IP tunnels, they
//!   decapsulate with xlb's decap program (no ipip device here) and answer the client directly
//!   through the router.
//! - NAT (seed 003, "配置LVS NAT模式"): lvs1 has eth0 192.168.88.5 (client side; the VIP is this
//!   address, as in the seed) and eth1 192.168.99.5 (server side); web1 192.168.99.100 and
//!   web2 192.168.99.200 use lvs1 as their default gateway; the client's gateway is lvs1.
//!
//! Every real server serves HTTP on 80 and 8080 (`Welcome from webN`) and a UDP echo on 53
//! (`webN:` + the datagram).
//!
//! [`Lab::new6`] builds the same topologies dual-stack: every host keeps its IPv4 address and gets
//! the IPv6 twin of it (192.168.88.x -> 2001:db8::x, 192.168.99.x -> 2001:db8:99::x, the VIP is
//! 2001:db8::10), with the same routes; the servers listen on both families. IPv6 is enabled
//! without duplicate address detection or router advertisements (nothing waits, nothing chatters);
//! neighbours are resolved by real Neighbour Discovery.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::{
    netns::{Netns, Proc, run, unique_prefix},
    pins::TempPins,
    workspace_bin,
};

pub const CLIENT: &str = "192.168.88.10";
pub const DIP: &str = "192.168.88.5";
pub const ROUTER: &str = "192.168.88.1";
pub const VIP: &str = "192.168.88.15";
pub const WEB1: &str = "192.168.88.100";
pub const WEB2: &str = "192.168.88.200";
pub const DIP_SERVERS: &str = "192.168.99.5";
pub const ROUTER_SERVERS: &str = "192.168.99.1";
pub const RS1: &str = "192.168.99.100";
pub const RS2: &str = "192.168.99.200";

/// The IPv6 twins of the addresses above (dual-stack labs, [`Lab::new6`]).
pub const CLIENT6: &str = "2001:db8::2";
pub const DIP6: &str = "2001:db8::5";
pub const ROUTER6: &str = "2001:db8::1";
pub const VIP6: &str = "2001:db8::10";
pub const WEB1_6: &str = "2001:db8::100";
pub const WEB2_6: &str = "2001:db8::200";
pub const DIP_SERVERS6: &str = "2001:db8:99::5";
pub const ROUTER_SERVERS6: &str = "2001:db8:99::1";
pub const RS1_6: &str = "2001:db8:99::100";
pub const RS2_6: &str = "2001:db8:99::200";
/// The server side's IPv6 prefix (TUN's route through the router).
const SERVERS6_NET: &str = "2001:db8:99::/64";

/// How long the lab's python servers may take to listen: a second here, but many under QEMU's
/// emulation in the kernel matrix, with two labs starting at once.
const SERVER_START: Duration = Duration::from_secs(90);

/// The seed's `ipvsadm` lines for DR (seed 003 uses `-s wlc`; rr is what the data plane
/// schedules so far, and with these weights the seed's NAT section shows rr's alternation).
pub const SEED_DR_LINES: &[&[&str]] = &[
    &["-A", "-t", "192.168.88.15:80", "-s", "rr"],
    &["-a", "-t", "192.168.88.15:80", "-r", "192.168.88.100", "-w", "1", "-g"],
    &["-a", "-t", "192.168.88.15:80", "-r", "192.168.88.200", "-w", "2", "-g"],
];

/// The seed's NAT lines (seed 003, verbatim): the VIP is the director's own address.
pub const SEED_NAT_LINES: &[&[&str]] = &[
    &["-A", "-t", "192.168.88.5:80", "-s", "rr"],
    &["-a", "-t", "192.168.88.5:80", "-r", "192.168.99.100", "-w", "1", "-m"],
    &["-a", "-t", "192.168.88.5:80", "-r", "192.168.99.200", "-w", "2", "-m"],
];

/// TUN: the DR lines with `-i`, real servers in the other subnet.
pub const TUN_LINES: &[&[&str]] = &[
    &["-A", "-t", "192.168.88.15:80", "-s", "rr"],
    &["-a", "-t", "192.168.88.15:80", "-r", "192.168.99.100", "-w", "1", "-i"],
    &["-a", "-t", "192.168.88.15:80", "-r", "192.168.99.200", "-w", "2", "-i"],
];

/// DR to real servers behind the director's own bridge (`Mode::Bridge`).
pub const BRIDGE_LINES: &[&[&str]] = &[
    &["-A", "-t", "192.168.88.15:80", "-s", "rr"],
    &["-a", "-t", "192.168.88.15:80", "-r", "192.168.99.100", "-w", "1", "-g"],
    &["-a", "-t", "192.168.88.15:80", "-r", "192.168.99.200", "-w", "2", "-g"],
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Dr,
    Tun,
    Nat,
    /// DR with the real servers behind a Linux bridge on the director itself (br0 with a port
    /// per real server; the topology of many directors and of the IPVS oracle guest): the
    /// FIB's egress is the bridge, which has no XDP transmit, so these packets take the tc slow
    /// path (a native XDP_REDIRECT to br0 would be counted and lost).
    Bridge,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "dr" => Some(Mode::Dr),
            "tun" => Some(Mode::Tun),
            "nat" => Some(Mode::Nat),
            "bridge" => Some(Mode::Bridge),
            _ => None,
        }
    }

    /// ipvsadm's forwarding flag.
    pub fn flag(self) -> &'static str {
        match self {
            Mode::Dr | Mode::Bridge => "-g",
            Mode::Tun => "-i",
            Mode::Nat => "-m",
        }
    }

    /// The address clients use.
    pub fn vip(self) -> &'static str {
        if self == Mode::Nat { DIP } else { VIP }
    }

    /// The IPv6 address clients use (dual-stack labs).
    pub fn vip6(self) -> &'static str {
        if self == Mode::Nat { DIP6 } else { VIP6 }
    }

    /// The real servers' IPv4 addresses in this mode's topology.
    pub fn reals(self) -> [&'static str; 2] {
        if self == Mode::Dr { [WEB1, WEB2] } else { [RS1, RS2] }
    }

    /// The real servers' IPv6 addresses in this mode's topology.
    pub fn reals6(self) -> [&'static str; 2] {
        if self == Mode::Dr { [WEB1_6, WEB2_6] } else { [RS1_6, RS2_6] }
    }

    /// The seed-style lines that build the lab's TCP service.
    pub fn lines(self) -> &'static [&'static [&'static str]] {
        match self {
            Mode::Dr => SEED_DR_LINES,
            Mode::Tun => TUN_LINES,
            Mode::Nat => SEED_NAT_LINES,
            Mode::Bridge => BRIDGE_LINES,
        }
    }
}

/// A host of the lab.
pub struct Host {
    pub ns: Netns,
    pub ip: String,
    /// Its IPv6 address in a dual-stack lab (empty otherwise).
    pub ip6: String,
    /// Name of its eth0's port on a switch (in that switch's namespace).
    pub port: String,
}

impl Host {
    pub fn mac(&self) -> anyhow::Result<String> {
        mac_of(&self.ns, "eth0")
    }
}

pub fn mac_of(ns: &Netns, dev: &str) -> anyhow::Result<String> {
    let out = ns.ip(&["-br", "link", "show", dev])?;
    out.split_whitespace().nth(2).map(str::to_string).context("no MAC")
}

/// Connects `dev` in `ns` to bridge br0 of `sw` (a switch, or a director with its own bridge)
/// through a new veth (port `port` in `sw`).
pub fn plug(ns: &Netns, dev: &str, sw: &Netns, port: &str, addr: &str) -> anyhow::Result<()> {
    run(Command::new("ip").args(["link", "add", dev, "netns", &ns.name, "type", "veth", "peer", "name", port, "netns", &sw.name]))?;
    sw.ip(&["link", "set", port, "master", "br0", "up"])?;
    ns.ip(&["addr", "add", addr, "dev", dev])?;
    ns.ip(&["link", "set", dev, "up"])?;
    // XDP_TX'd frames carry whatever checksum the sender left: no offload (Cilium's lesson).
    ns.exec("ethtool", &["-K", dev, "tx", "off"])?;
    Ok(())
}

pub fn switch(name: &str) -> anyhow::Result<Netns> {
    let sw = Netns::new(name)?;
    sw.ip(&["link", "add", "br0", "type", "bridge"])?;
    sw.ip(&["link", "set", "br0", "up"])?;
    Ok(sw)
}

pub struct Lab {
    // Dropped first: the servers, then the namespaces, then the pins and files.
    servers: Vec<Proc>,
    pub mode: Mode,
    /// Dual-stack (IPv4 and IPv6 on every host), built by [`Lab::new6`].
    pub v6: bool,
    pub client: Host,
    pub lvs1: Host,
    pub web: Vec<Host>,
    /// The TUN lab's router (client side eth0, server side eth1).
    pub router: Option<Netns>,
    /// Client-side switch, and the server-side one (TUN, NAT).
    pub sw: Netns,
    pub sw2: Option<Netns>,
    pub pins: TempPins,
    pub dir: PathBuf,
    pub prefix: String,
}

/// The DR lab of the foundation (kept as a name).
pub type DrLab = Lab;

/// Adds `v4` (and in a dual-stack lab `v6`, without DAD) to `dev`.
fn addrs(ns: &Netns, dev: &str, v6: bool, v4: &str, v6addr: &str) -> anyhow::Result<()> {
    if !v4.is_empty() {
        ns.ip(&["addr", "add", v4, "dev", dev])?;
    }
    if v6 {
        ns.ip(&["-6", "addr", "add", v6addr, "dev", dev, "nodad"])?;
    }
    Ok(())
}

/// A route for IPv4 and, in a dual-stack lab, its IPv6 twin.
fn routes(ns: &Netns, v6: bool, (dst4, via4): (&str, &str), (dst6, via6): (&str, &str)) -> anyhow::Result<()> {
    ns.ip(&["route", "add", dst4, "via", via4])?;
    if v6 {
        ns.ip(&["-6", "route", "add", dst6, "via", via6])?;
    }
    Ok(())
}

/// Turns IPv6 back on in a namespace ([`Netns::new`] turns it off) for devices created from now
/// on: no duplicate address detection (addresses usable at once), no router solicitations or
/// advertisements taken (routes are the lab's).
pub fn enable_ipv6(ns: &Netns) -> anyhow::Result<()> {
    for k in ["all", "default"] {
        ns.sysctl(&format!("net.ipv6.conf.{k}.accept_dad"), "0")?;
        ns.sysctl(&format!("net.ipv6.conf.{k}.accept_ra"), "0")?;
        ns.sysctl(&format!("net.ipv6.conf.{k}.router_solicitations"), "0")?;
        ns.sysctl(&format!("net.ipv6.conf.{k}.disable_ipv6"), "0")?;
    }
    Ok(())
}

impl Lab {
    /// Builds the topology of `mode` and starts the servers (xlb not attached yet).
    pub fn up(tag: &str) -> anyhow::Result<Lab> {
        Lab::new(tag, Mode::Dr)
    }

    /// The IPv4 lab of `mode`.
    pub fn new(tag: &str, mode: Mode) -> anyhow::Result<Lab> {
        Lab::build(tag, mode, false)
    }

    /// The dual-stack lab of `mode` (IPv4 and IPv6 on every host and server).
    pub fn new6(tag: &str, mode: Mode) -> anyhow::Result<Lab> {
        Lab::build(tag, mode, true)
    }

    fn build(tag: &str, mode: Mode, v6: bool) -> anyhow::Result<Lab> {
        if v6 && mode == Mode::Bridge {
            bail!("the bridge lab is IPv4 only");
        }
        let prefix = unique_prefix(tag);
        let dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin"))?;
        let pins = TempPins::new(&prefix)?;
        let sw = switch(&format!("{prefix}-sw"))?;
        let host = |name: &str| -> anyhow::Result<Netns> {
            let ns = Netns::new(&format!("{prefix}-{name}"))?;
            if v6 {
                enable_ipv6(&ns)?;
            }
            Ok(ns)
        };
        let ip6 = |a: &str| if v6 { a.to_string() } else { String::new() };
        let client = Host { ns: host("client")?, ip: CLIENT.into(), ip6: ip6(CLIENT6), port: "sw-client".into() };
        plug(&client.ns, "eth0", &sw, &client.port, &format!("{CLIENT}/24"))?;
        addrs(&client.ns, "eth0", v6, "", &format!("{CLIENT6}/64"))?;
        let lvs1 = Host { ns: host("lvs1")?, ip: DIP.into(), ip6: ip6(DIP6), port: "sw-lvs1".into() };
        plug(&lvs1.ns, "eth0", &sw, &lvs1.port, &format!("{DIP}/24"))?;
        addrs(&lvs1.ns, "eth0", v6, "", &format!("{DIP6}/64"))?;
        // The seeds' directors forward (and xlb's FIB lookups need it).
        lvs1.ns.sysctl("net.ipv4.ip_forward", "1")?;
        if v6 {
            lvs1.ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        }
        let (mut router, mut sw2) = (None, None);
        let web = match mode {
            Mode::Dr => {
                addrs(&lvs1.ns, "eth0", v6, &format!("{VIP}/24"), &format!("{VIP6}/64"))?;
                let mut v = Vec::new();
                for (n, ip, ip_6) in [("web1", WEB1, WEB1_6), ("web2", WEB2, WEB2_6)] {
                    let h = Host { ns: host(n)?, ip: ip.into(), ip6: ip6(ip_6), port: format!("sw-{n}") };
                    plug(&h.ns, "eth0", &sw, &h.port, &format!("{ip}/24"))?;
                    addrs(&h.ns, "eth0", v6, "", &format!("{ip_6}/64"))?;
                    vip_on_lo(&h.ns, v6)?;
                    v.push(h);
                }
                v
            }
            Mode::Tun => {
                addrs(&lvs1.ns, "eth0", v6, &format!("{VIP}/24"), &format!("{VIP6}/64"))?;
                routes(&lvs1.ns, v6, ("192.168.99.0/24", ROUTER), (SERVERS6_NET, ROUTER6))?;
                let r = host("router")?;
                let s2 = switch(&format!("{prefix}-sw2"))?;
                plug(&r, "eth0", &sw, "sw-router", &format!("{ROUTER}/24"))?;
                addrs(&r, "eth0", v6, "", &format!("{ROUTER6}/64"))?;
                plug(&r, "eth1", &s2, "sw2-router", &format!("{ROUTER_SERVERS}/24"))?;
                addrs(&r, "eth1", v6, "", &format!("{ROUTER_SERVERS6}/64"))?;
                r.sysctl("net.ipv4.ip_forward", "1")?;
                if v6 {
                    r.sysctl("net.ipv6.conf.all.forwarding", "1")?;
                }
                // Replies come from the VIP (a client-side address) on the server side.
                for k in ["all", "default", "eth0", "eth1"] {
                    r.sysctl(&format!("net.ipv4.conf.{k}.rp_filter"), "0")?;
                }
                let mut v = Vec::new();
                for (n, ip, ip_6) in [("web1", RS1, RS1_6), ("web2", RS2, RS2_6)] {
                    let h = Host { ns: host(n)?, ip: ip.into(), ip6: ip6(ip_6), port: format!("sw2-{n}") };
                    plug(&h.ns, "eth0", &s2, &h.port, &format!("{ip}/24"))?;
                    addrs(&h.ns, "eth0", v6, "", &format!("{ip_6}/64"))?;
                    routes(&h.ns, v6, ("default", ROUTER_SERVERS), ("default", ROUTER_SERVERS6))?;
                    vip_on_lo(&h.ns, v6)?;
                    v.push(h);
                }
                router = Some(r);
                sw2 = Some(s2);
                v
            }
            Mode::Bridge => {
                lvs1.ns.ip(&["addr", "add", &format!("{VIP}/24"), "dev", "eth0"])?;
                lvs1.ns.ip(&["link", "add", "br0", "type", "bridge"])?;
                lvs1.ns.ip(&["addr", "add", &format!("{DIP_SERVERS}/24"), "dev", "br0"])?;
                lvs1.ns.ip(&["link", "set", "br0", "up"])?;
                lvs1.ns.sysctl("net.ipv4.conf.br0.forwarding", "1")?;
                // Replies come back through the director from the VIP, one of its own addresses.
                for k in ["all", "default", "br0"] {
                    lvs1.ns.sysctl(&format!("net.ipv4.conf.{k}.rp_filter"), "0")?;
                    lvs1.ns.sysctl(&format!("net.ipv4.conf.{k}.accept_local"), "1")?;
                }
                let mut v = Vec::new();
                for (n, ip) in [("web1", RS1), ("web2", RS2)] {
                    let h = Host { ns: host(n)?, ip: ip.into(), ip6: String::new(), port: format!("br-{n}") };
                    plug(&h.ns, "eth0", &lvs1.ns, &h.port, &format!("{ip}/24"))?;
                    h.ns.ip(&["route", "add", "default", "via", DIP_SERVERS])?;
                    vip_on_lo(&h.ns, false)?;
                    v.push(h);
                }
                v
            }
            Mode::Nat => {
                routes(&client.ns, v6, ("default", DIP), ("default", DIP6))?;
                let s2 = switch(&format!("{prefix}-sw2"))?;
                plug(&lvs1.ns, "eth1", &s2, "sw2-lvs1", &format!("{DIP_SERVERS}/24"))?;
                addrs(&lvs1.ns, "eth1", v6, "", &format!("{DIP_SERVERS6}/64"))?;
                let mut v = Vec::new();
                for (n, ip, ip_6) in [("web1", RS1, RS1_6), ("web2", RS2, RS2_6)] {
                    let h = Host { ns: host(n)?, ip: ip.into(), ip6: ip6(ip_6), port: format!("sw2-{n}") };
                    plug(&h.ns, "eth0", &s2, &h.port, &format!("{ip}/24"))?;
                    addrs(&h.ns, "eth0", v6, "", &format!("{ip_6}/64"))?;
                    routes(&h.ns, v6, ("default", DIP_SERVERS), ("default", DIP_SERVERS6))?;
                    v.push(h);
                }
                sw2 = Some(s2);
                v
            }
        };
        let mut lab = Lab { servers: Vec::new(), mode, v6, client, lvs1, web, router, sw, sw2, pins, dir, prefix };
        lab.start_servers()?;
        std::os::unix::fs::symlink(workspace_bin("lbadm"), lab.dir.join("bin/ipvsadm"))?;
        Ok(lab)
    }

    fn start_servers(&mut self) -> anyhow::Result<()> {
        // Dual-stack labs: one IPv6 socket per port takes both families (bindv6only is 0).
        let (bind, family) = if self.v6 { ("::", "AF_INET6") } else { ("0.0.0.0", "AF_INET") };
        for (i, w) in self.web.iter().enumerate() {
            let name = format!("web{}", i + 1);
            let root = self.dir.join(format!("www{}", i + 1));
            std::fs::create_dir_all(&root)?;
            std::fs::write(root.join("index.html"), format!("Welcome from {name}\n"))?;
            let root = root.to_string_lossy().into_owned();
            for port in ["80", "8080"] {
                let p = w.ns.spawn("python3", &["-m", "http.server", port, "--bind", bind, "--directory", &root])?;
                self.servers.push(p);
            }
            let echo = format!(
                "import socket\ns=socket.socket(socket.{family},socket.SOCK_DGRAM)\ns.bind(('{bind}',53))\n\
                 while True:\n d,a=s.recvfrom(2048)\n s.sendto(b'{name}: '+d,a)\n"
            );
            self.servers.push(w.ns.spawn("python3", &["-c", &echo])?);
        }
        for w in &self.web {
            w.ns.wait_listening("tcp", 80, SERVER_START)?;
            w.ns.wait_listening("tcp", 8080, SERVER_START)?;
            w.ns.wait_listening("udp", 53, SERVER_START)?;
        }
        Ok(())
    }

    pub fn pin_dir(&self) -> &Path {
        self.pins.path()
    }

    /// Attaches xlb to the director's interfaces (native XDP where not forced off), the
    /// do-nothing XDP program to
    /// the switch ports that receive its XDP_TX/XDP_REDIRECT frames (veth needs one), and, for
    /// TUN, the decap program to the real servers (each with its own pin directory).
    pub fn attach(&self) -> anyhow::Result<()> {
        self.attach_with_decap(&[])
    }

    /// [`Lab::attach`], with extra arguments for the real servers' `lbd attach --program decap`
    /// (TUN: e.g. the GUE port to take).
    pub fn attach_with_decap(&self, decap_args: &[&str]) -> anyhow::Result<()> {
        // auto: native on veth, skb when XLB_FEATURES_OFF forces native XDP off.
        self.lbd_in(&self.lvs1.ns, &["attach", "eth0", "--mode", "auto"])?;
        self.lbd_in(&self.sw, &["attach", &self.lvs1.port, "--mode", "native", "--program", "pass"])?;
        match self.mode {
            Mode::Dr | Mode::Bridge => {}
            Mode::Tun => {
                for (i, w) in self.web.iter().enumerate() {
                    let dir = self.pin_dir().join(format!("web{}", i + 1));
                    run(w.ns.cmd_net_only(workspace_bin("lbd")).arg("--pin-dir").arg(&dir).args([
                        "attach", "eth0", "--mode", "auto", "--program", "decap",
                    ]).args(decap_args))?;
                }
            }
            Mode::Nat => {
                self.lbd_in(&self.lvs1.ns, &["attach", "eth1", "--mode", "auto"])?;
                let sw2 = self.sw2.as_ref().context("no server switch")?;
                self.lbd_in(sw2, &["attach", "sw2-lvs1", "--mode", "native", "--program", "pass"])?;
            }
        }
        Ok(())
    }

    /// `lbd ARGS` in namespace `ns` on this lab's pin directory.
    pub fn lbd_in(&self, ns: &Netns, args: &[&str]) -> anyhow::Result<Output> {
        run(ns.cmd_net_only(workspace_bin("lbd")).arg("--pin-dir").arg(self.pin_dir()).args(args))
    }

    /// `ipvsadm ARGS` (lbadm installed under that name) on this lab's table. Returns the output
    /// whatever the exit status.
    pub fn ipvsadm(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(self.dir.join("bin/ipvsadm"))
            .args(args)
            .env("XLB_PIN_DIR", self.pin_dir())
            .output()
            .context("cannot run ipvsadm (lbadm)")
    }

    /// `ipvsadm ARGS` that must succeed; returns its stdout.
    pub fn ipvsadm_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.ipvsadm(args)?;
        if !out.status.success() {
            bail!("ipvsadm {args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// One HTTP request from the client to the VIP (port 80); the response body.
    pub fn curl_vip(&self) -> anyhow::Result<String> {
        self.curl(self.mode.vip(), 80)
    }

    /// One HTTP request from the client to `addr:port` (an IPv6 address goes in brackets); the
    /// response body.
    pub fn curl(&self, addr: &str, port: u16) -> anyhow::Result<String> {
        self.curl_path(addr, port, "/")
    }

    /// One HTTP GET of `path` from the client to `addr:port`; the response body, byte for byte.
    pub fn curl_bytes(&self, addr: &str, port: u16, path: &str) -> anyhow::Result<Vec<u8>> {
        let url = if addr.contains(':') { format!("http://[{addr}]:{port}{path}") } else { format!("http://{addr}:{port}{path}") };
        // 15 s: time for TCP's SYN retransmissions at 1, 3 and 7 s (a lost ARP exchange costs 3 s).
        // -g: the brackets of an IPv6 literal are not a glob.
        let out = run(self.client.ns.cmd("curl").args(["-sS", "-g", "--max-time", "15", &url])).with_context(|| self.diagnose())?;
        Ok(out.stdout)
    }

    fn curl_path(&self, addr: &str, port: u16, path: &str) -> anyhow::Result<String> {
        Ok(String::from_utf8_lossy(&self.curl_bytes(addr, port, path)?).trim_end().to_string())
    }

    /// SIGKILLs real server `i`'s (0-based) HTTP server on `port`: a crash. Only processes of that
    /// server's namespace are looked at.
    pub fn crash_http_server(&self, i: usize, port: u16) -> anyhow::Result<()> {
        let w = self.web.get(i).context("no such real server")?;
        let pids = run(Command::new("ip").args(["netns", "pids", &w.ns.name]))?;
        let want = format!("http.server\0{port}\0");
        let mut killed = 0;
        for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&want) && unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
        anyhow::ensure!(killed > 0, "no HTTP server on port {port} in {}", w.ns.name);
        Ok(())
    }

    /// Writes the same `len`-byte file (a fixed pseudo-random pattern) as `name` on every real
    /// server's web root; returns its contents.
    pub fn serve_file(&self, name: &str, len: usize) -> anyhow::Result<Vec<u8>> {
        let mut x: u32 = 0x2545_f491;
        let body: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for i in 1..=self.web.len() {
            std::fs::write(self.dir.join(format!("www{i}")).join(name), &body)?;
        }
        Ok(body)
    }

    /// What a failed exchange leaves to look at: the director's counters and connections, and
    /// every host's neighbours, interface counters and IP/TCP drop counters.
    pub fn diagnose(&self) -> String {
        let text = |r: anyhow::Result<String>| r.unwrap_or_else(|e| format!("({e:#})"));
        let mut s = String::from("--- lab state at the failure\n");
        let status = self.lbd_in(&self.lvs1.ns, &["status"]).map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        s += &format!("lbd status: {}\n", text(status));
        s += &format!("ipvsadm -Lnc:\n{}\n", text(self.ipvsadm_ok(&["-Lnc"])));
        let mut hosts: Vec<&Netns> = vec![&self.client.ns, &self.lvs1.ns];
        hosts.extend(self.router.iter());
        hosts.extend(self.web.iter().map(|w| &w.ns));
        for ns in hosts {
            s += &format!("[{}] ip neigh:\n{}", ns.name, text(ns.ip(&["neigh", "show"])));
            s += &format!("[{}] ip -s link:\n{}", ns.name, text(ns.ip(&["-s", "-br", "link"])));
            let drops = ns.exec(
                "nstat",
                &["-az", "IpInReceives", "IpInAddrErrors", "IpInDiscards", "IpInUnknownProtos", "IpExtInNoRoutes",
                  "TcpInSegs", "TcpOutSegs", "TcpRetransSegs", "TcpExtListenDrops", "TcpExtTCPTimeouts", "IpForwDatagrams",
                  "Ip6InReceives", "Ip6InAddrErrors", "Ip6InNoRoutes", "Ip6InDiscards", "Ip6OutForwDatagrams", "Icmp6InErrors",
                  "Icmp6OutErrors"],
            );
            s += &format!("[{}] nstat: {}\n", ns.name, text(drops).split_whitespace().collect::<Vec<_>>().join(" "));
        }
        s
    }

    /// One UDP datagram from the client (from `sport`) to `addr:port` (IPv4 or IPv6); the answer.
    pub fn udp_query(&self, addr: &str, port: u16, sport: u16, msg: &str) -> anyhow::Result<String> {
        let (family, any) = if addr.contains(':') { ("AF_INET6", "::") } else { ("AF_INET", "0.0.0.0") };
        let script = format!(
            "import socket\ns=socket.socket(socket.{family},socket.SOCK_DGRAM)\ns.bind(('{any}',{sport}))\n\
             s.settimeout(3)\ns.sendto(b'{msg}',('{addr}',{port}))\nprint(s.recvfrom(2048)[0].decode())\n"
        );
        let out = run(self.client.ns.cmd("python3").args(["-c", &script])).with_context(|| self.diagnose())?;
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }
}

impl Drop for Lab {
    /// The lab's files (web roots, captures, the ipvsadm link) go with it; the servers,
    /// namespaces and pins go with the fields, after this.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The VIP on lo, never answered in ARP (seed 000). In a dual-stack lab VIP6 too: Neighbour
/// Discovery answers only for addresses of the interface asked, so lo's VIP6 stays silent on eth0.
fn vip_on_lo(ns: &Netns, v6: bool) -> anyhow::Result<()> {
    ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
    if v6 {
        ns.ip(&["-6", "addr", "add", &format!("{VIP6}/128"), "dev", "lo", "nodad"])?;
    }
    for (k, v) in [
        ("net.ipv4.conf.all.arp_ignore", "1"),
        ("net.ipv4.conf.lo.arp_ignore", "1"),
        ("net.ipv4.conf.eth0.arp_ignore", "1"),
        ("net.ipv4.conf.all.arp_announce", "2"),
        ("net.ipv4.conf.lo.arp_announce", "2"),
        ("net.ipv4.conf.eth0.arp_announce", "2"),
    ] {
        ns.sysctl(k, v)?;
    }
    Ok(())
}

/// Packet and byte counters of an nftables rule in a namespace (what a host really sent).
pub struct NftCounter<'a> {
    ns: &'a Netns,
    table: &'static str,
    /// nftables family: `ip`, or `ip6` for a rule on IPv6 addresses.
    family: &'static str,
}

impl<'a> NftCounter<'a> {
    /// Counts what `ns` sends matching `rule` (nft syntax, e.g. `ip daddr 1.2.3.4 tcp dport 80`;
    /// a rule starting with `ip6 ` counts IPv6 packets).
    pub fn output(ns: &'a Netns, rule: &str) -> anyhow::Result<NftCounter<'a>> {
        NftCounter::hook(ns, "output", "xlbout", rule)
    }

    /// Counts what `ns` receives matching `rule`.
    pub fn input(ns: &'a Netns, rule: &str) -> anyhow::Result<NftCounter<'a>> {
        NftCounter::hook(ns, "input", "xlbin", rule)
    }

    fn hook(ns: &'a Netns, hook: &str, table: &'static str, rule: &str) -> anyhow::Result<NftCounter<'a>> {
        let family = if rule.starts_with("ip6 ") { "ip6" } else { "ip" };
        ns.exec("nft", &["add", "table", family, table])?;
        ns.exec("nft", &["add", "chain", family, table, "c", &format!("{{ type filter hook {hook} priority 0; }}")])?;
        ns.exec("nft", &[&format!("add rule {family} {table} c {rule} counter")])?;
        Ok(NftCounter { ns, table, family })
    }

    /// (packets, bytes); nftables counts IP packet bytes (IPv6: header and payload), as IPVS does.
    pub fn read(&self) -> anyhow::Result<(u64, u64)> {
        let out = self.ns.exec("nft", &["list", "table", self.family, self.table])?;
        let words: Vec<&str> = out.split_whitespace().collect();
        let field = |name: &str| -> anyhow::Result<u64> {
            let i = words.iter().position(|w| *w == name).with_context(|| format!("no {name} in {out}"))?;
            Ok(words.get(i + 1).context("no value")?.parse()?)
        };
        Ok((field("packets")?, field("bytes")?))
    }
}

/// A tcpdump capture in a namespace, stopped and read with [`Capture::lines`].
pub struct Capture {
    proc: Proc,
    file: PathBuf,
}

impl Capture {
    pub fn start(ns: &Netns, iface: &str, filter: &str, file: PathBuf) -> anyhow::Result<Capture> {
        let mut child = ns
            .cmd("tcpdump")
            .args(["-i", iface, "-nn", "-U", "--immediate-mode", "-Z", "root", "-w"])
            .arg(&file)
            .arg(filter)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot start tcpdump")?;
        // tcpdump says "listening on ..." once the capture runs.
        let mut err = std::io::BufReader::new(child.stderr.take().context("no stderr")?);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut err, &mut line)?;
        if !line.contains("listening") {
            bail!("tcpdump did not start: {line}");
        }
        Ok(Capture { proc: Proc::from_child(child), file })
    }

    /// Stops the capture; one line per packet, with link-level headers (`-e`).
    pub fn lines(mut self) -> anyhow::Result<Vec<String>> {
        std::thread::sleep(Duration::from_millis(200));
        self.proc.stop();
        let out = run(Command::new("tcpdump").args(["-nn", "-e", "-r"]).arg(&self.file))?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
    }
}
