//! Namespace labs reproducing the seeds' topologies, with real HTTP servers, xlb attached to the
//! director and `lbadm` invoked as `ipvsadm` on a private pin directory.
//!
//! DR (seed 003, "LVS DR模式"): client1 192.168.88.10, lvs1 192.168.88.5 with the VIP
//! 192.168.88.15 on eth0, web1 192.168.88.100 and web2 192.168.88.200 with the VIP on lo and
//! arp_ignore=1 / arp_announce=2 (seed 000) — all on one L2 segment (a bridge in a switch
//! namespace).
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

pub const VIP: &str = "192.168.88.15";
pub const DIP: &str = "192.168.88.5";
pub const CLIENT: &str = "192.168.88.10";
pub const WEB1: &str = "192.168.88.100";
pub const WEB2: &str = "192.168.88.200";

/// The seed's `ipvsadm` lines for DR (seed 003 uses `-s wlc`; rr is what the data plane
/// schedules so far, and with these weights the seed's NAT section shows rr's alternation).
pub const SEED_DR_LINES: &[&[&str]] = &[
    &["-A", "-t", "192.168.88.15:80", "-s", "rr"],
    &["-a", "-t", "192.168.88.15:80", "-r", "192.168.88.100", "-w", "1", "-g"],
    &["-a", "-t", "192.168.88.15:80", "-r", "192.168.88.200", "-w", "2", "-g"],
];

/// A host attached to the lab switch.
pub struct Host {
    pub ns: Netns,
    pub ip: String,
    /// Name of its port on the switch (in the switch namespace).
    pub port: String,
}

impl Host {
    pub fn mac(&self) -> anyhow::Result<String> {
        let out = self.ns.ip(&["-br", "link", "show", "eth0"])?;
        out.split_whitespace().nth(2).map(str::to_string).context("no MAC on eth0")
    }
}

pub struct DrLab {
    // Dropped first: the servers, then the namespaces, then the pins and files.
    servers: Vec<Proc>,
    pub client: Host,
    pub lvs1: Host,
    pub web: Vec<Host>,
    pub sw: Netns,
    pub pins: TempPins,
    pub dir: PathBuf,
    pub prefix: String,
}

impl DrLab {
    /// Builds the topology and starts the web servers (xlb not attached yet).
    pub fn up(tag: &str) -> anyhow::Result<DrLab> {
        let prefix = unique_prefix(tag);
        let dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin"))?;
        let pins = TempPins::new(&prefix)?;
        let sw = Netns::new(&format!("{prefix}-sw"))?;
        sw.ip(&["link", "add", "br0", "type", "bridge"])?;
        sw.ip(&["link", "set", "br0", "up"])?;
        let host = |name: &str, ip: &str| -> anyhow::Result<Host> {
            let ns = Netns::new(&format!("{prefix}-{name}"))?;
            let port = format!("sw-{name}");
            run(Command::new("ip").args([
                "link", "add", "eth0", "netns", &ns.name, "type", "veth", "peer", "name", &port, "netns", &sw.name,
            ]))?;
            sw.ip(&["link", "set", &port, "master", "br0", "up"])?;
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            ns.ip(&["link", "set", "eth0", "up"])?;
            // XDP_TX'd frames carry whatever checksum the sender left: no offload (Cilium's lesson).
            ns.exec("ethtool", &["-K", "eth0", "tx", "off"])?;
            Ok(Host { ns, ip: ip.to_string(), port })
        };
        let client = host("client", CLIENT)?;
        let lvs1 = host("lvs1", DIP)?;
        let web = vec![host("web1", WEB1)?, host("web2", WEB2)?];
        // The director owns the VIP (seed 003: IPADDR2 on eth0) and forwards (seeds 000, 003).
        lvs1.ns.ip(&["addr", "add", &format!("{VIP}/24"), "dev", "eth0"])?;
        lvs1.ns.sysctl("net.ipv4.ip_forward", "1")?;
        // Real servers accept the VIP on lo and never answer ARP for it (seed 000).
        for w in &web {
            w.ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
            for (k, v) in [
                ("net.ipv4.conf.all.arp_ignore", "1"),
                ("net.ipv4.conf.lo.arp_ignore", "1"),
                ("net.ipv4.conf.eth0.arp_ignore", "1"),
                ("net.ipv4.conf.all.arp_announce", "2"),
                ("net.ipv4.conf.lo.arp_announce", "2"),
                ("net.ipv4.conf.eth0.arp_announce", "2"),
            ] {
                w.ns.sysctl(k, v)?;
            }
        }
        let mut lab = DrLab { servers: Vec::new(), client, lvs1, web, sw, pins, dir, prefix };
        lab.start_web_servers()?;
        let ipvsadm = lab.dir.join("bin/ipvsadm");
        std::os::unix::fs::symlink(workspace_bin("lbadm"), &ipvsadm)?;
        Ok(lab)
    }

    fn start_web_servers(&mut self) -> anyhow::Result<()> {
        for (i, w) in self.web.iter().enumerate() {
            let root = self.dir.join(format!("www{}", i + 1));
            std::fs::create_dir_all(&root)?;
            std::fs::write(root.join("index.html"), format!("Welcome from web{}\n", i + 1))?;
            let root = root.to_string_lossy().into_owned();
            let p = w.ns.spawn("python3", &["-m", "http.server", "80", "--bind", "0.0.0.0", "--directory", &root])?;
            self.servers.push(p);
        }
        for w in &self.web {
            w.ns.wait_listening("tcp", 80, Duration::from_secs(10))?;
        }
        Ok(())
    }

    pub fn pin_dir(&self) -> &Path {
        self.pins.path()
    }

    /// Attaches xlb to the director's eth0 (native XDP) and the do-nothing XDP program to the
    /// switch port facing it, which veth needs to receive the director's XDP_TX frames.
    pub fn attach(&self) -> anyhow::Result<()> {
        self.lbd_in(&self.lvs1.ns, &["attach", "eth0", "--mode", "native"])?;
        self.lbd_in(&self.sw, &["attach", &self.lvs1.port, "--mode", "native", "--program", "pass"])?;
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

    /// One HTTP request from the client to the VIP; the response body.
    pub fn curl_vip(&self) -> anyhow::Result<String> {
        let out = run(self.client.ns.cmd("curl").args(["-sS", "--max-time", "5", &format!("http://{VIP}/")]))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }
}

/// Packet and byte counters of an nftables rule in a namespace (what a host really sent).
pub struct NftCounter<'a> {
    ns: &'a Netns,
}

impl<'a> NftCounter<'a> {
    /// Counts what `ns` sends matching `rule` (nft syntax, e.g. `ip daddr 1.2.3.4 tcp dport 80`).
    pub fn output(ns: &'a Netns, rule: &str) -> anyhow::Result<NftCounter<'a>> {
        ns.exec("nft", &["add", "table", "ip", "xlbcount"])?;
        ns.exec("nft", &["add", "chain", "ip", "xlbcount", "out", "{ type filter hook output priority 0; }"])?;
        ns.exec("nft", &[&format!("add rule ip xlbcount out {rule} counter")])?;
        Ok(NftCounter { ns })
    }

    /// (packets, bytes); nftables counts IP packet bytes at the output hook, as IPVS does.
    pub fn read(&self) -> anyhow::Result<(u64, u64)> {
        let out = self.ns.exec("nft", &["list", "table", "ip", "xlbcount"])?;
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
