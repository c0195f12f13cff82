//! Forwarding rate end to end on one core, in a namespace lab:
//!
//! ```text
//!  cli [xlb_bench_gen, live frames] eth0 ──veth── eth0 lvs (xlb | xlb_pass + nftables) eth1 ──veth── eth0 rs [xlb_bench_sink]
//!  10.0.1.2                               10.0.1.1, VIPs .100-.103      10.0.2.1        10.0.2.11-14
//!                                   eth1 ──veth── eth0 ipvs (xlb_bench_pass + IPVS) eth1 ──veth── eth1
//!                                                 10.0.1.1, VIPs .100-.102   10.0.2.1   (when the kernel has IPVS)
//! ```
//!
//! The generator is BPF_PROG_TEST_RUN in live-frames mode on a thread pinned to one CPU, in the
//! client's namespace: every frame is XDP_REDIRECTed into cli/eth0 (or cli/eth1) and lands in the
//! director's eth0 receive ring; the flush at the end of each batch runs the veth NAPI polls
//! (director, then real server side) in softirq on the same CPU before the next batch, so
//! generation, forwarding and counting all run on that CPU, and the syscall's wall time covers
//! them. Rate = frames counted by the sink / that wall time. UDP, 60-byte frames, `flows` source
//! ports in turn, or every frame a new flow (the new-connection rate). The generator and the sink
//! are the benchmark's own object (`lb_user::bench_object()`, layouts in `lb_common::bench`), not
//! the data plane's.
//!
//! Paths: xlb DR, TUN and NAT (XDP on lvs/eth0 and eth1, out eth1 with XDP_REDIRECT); the kernel
//! forwarding with an nftables DNAT rule `numgen inc mod 4 map {...}` over the same four real
//! servers (lvs/eth0 then runs `xlb_pass`, which veth needs to accept redirected frames at all);
//! and, when the kernel has IPVS, kernel IPVS DR, TUN and NAT (`ipvsadm`, rr over the same real
//! servers, the same VIPs) in a director namespace of its own, so that neither the nftables
//! ruleset's conntrack and nat hooks nor xlb are in its way, and IPVS's hooks are not in
//! nftables' way. Rounds alternate all paths.
use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf,
    maps::{Array, PerCpuArray, PerCpuValues},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use lb_common::bench::{GEN_HDR_LEN, GEN_TMPL_LEN, GenCfg, NEW_FLOW_PORTS, SinkCfg, SinkCounts, names};
use lb_user::{
    dataplane::{self, XdpProgram},
    model::{Fwd, Proto},
};

use super::{Figure, Results, Size, bench_cpu, in_netns, median_f};
use crate::{
    frames::{Frame, sa},
    netns::{Netns, unique_prefix},
    pins::TempPins,
    table::service,
};

const CLIENT: [u8; 4] = [10, 0, 1, 2];
/// First source address of the new-connection runs (flow f comes from this + f / NEW_FLOW_PORTS).
const NEW_SRC: [u8; 4] = [10, 128, 0, 1];
const VIP_DR: [u8; 4] = [10, 0, 1, 100];
const VIP_TUN: [u8; 4] = [10, 0, 1, 101];
const VIP_NAT: [u8; 4] = [10, 0, 1, 102];
const VIP_NFT: [u8; 4] = [10, 0, 1, 103];
const RS: [[u8; 4]; 4] = [[10, 0, 2, 11], [10, 0, 2, 12], [10, 0, 2, 13], [10, 0, 2, 14]];
const BASE_PORT: u16 = 20_000;
const NAT_PORT: u16 = 8080;
use crate::ipvs_host::IPVSADM;

/// Who forwards.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Engine {
    Xlb,
    Nft,
    Ipvs,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path_ {
    Dr,
    Tun,
    Nat,
    Nft,
    IpvsDr,
    IpvsTun,
    IpvsNat,
}

impl Path_ {
    fn vip(self) -> [u8; 4] {
        match self {
            Path_::Dr | Path_::IpvsDr => VIP_DR,
            Path_::Tun | Path_::IpvsTun => VIP_TUN,
            Path_::Nat | Path_::IpvsNat => VIP_NAT,
            Path_::Nft => VIP_NFT,
        }
    }

    fn engine(self) -> Engine {
        match self {
            Path_::Dr | Path_::Tun | Path_::Nat => Engine::Xlb,
            Path_::Nft => Engine::Nft,
            Path_::IpvsDr | Path_::IpvsTun | Path_::IpvsNat => Engine::Ipvs,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Path_::Dr => "xlb DR",
            Path_::Tun => "xlb TUN",
            Path_::Nat => "xlb NAT",
            Path_::Nft => "kernel forwarding + nftables DNAT (numgen inc mod 4)",
            Path_::IpvsDr => "kernel IPVS DR (ipvsadm -g, rr)",
            Path_::IpvsTun => "kernel IPVS TUN (ipvsadm -i, rr)",
            Path_::IpvsNat => "kernel IPVS NAT (ipvsadm -m, rr)",
        }
    }

    /// The sink counter frames of this path land in.
    fn arrived(self, c: &SinkCounts) -> u64 {
        match self {
            Path_::Dr | Path_::IpvsDr => c.udp_to_addr,
            Path_::Tun | Path_::IpvsTun => c.ipip,
            Path_::Nat | Path_::Nft | Path_::IpvsNat => c.udp_to_port,
        }
    }
}

/// One measured path: established flows (`flows` source ports in turn), or every frame a new flow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Run {
    path: Path_,
    new_flows: bool,
}

/// `f` of `a` and `b`, counter by counter.
fn zip(a: &SinkCounts, b: &SinkCounts, f: impl Fn(u64, u64) -> u64) -> SinkCounts {
    SinkCounts {
        ipv4: f(a.ipv4, b.ipv4),
        udp_to_addr: f(a.udp_to_addr, b.udp_to_addr),
        ipip: f(a.ipip, b.ipip),
        udp_to_port: f(a.udp_to_port, b.udp_to_port),
        other: f(a.other, b.other),
    }
}

fn mac_of(ns: &Netns, dev: &str) -> anyhow::Result<[u8; 6]> {
    let s = ns.exec("cat", &[&format!("/sys/class/net/{dev}/address")])?;
    let v: Vec<u8> = s.trim().split(':').map(|h| u8::from_str_radix(h, 16)).collect::<Result<_, _>>()?;
    v.try_into().map_err(|_| anyhow!("bad MAC {s}"))
}

fn ifindex_of(ns: &Netns, dev: &str) -> anyhow::Result<u32> {
    Ok(ns.exec("cat", &[&format!("/sys/class/net/{dev}/ifindex")])?.trim().parse()?)
}

fn ip4(o: [u8; 4]) -> String {
    std::net::Ipv4Addr::from(o).to_string()
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The client's end of one director's link: where the generator redirects, and the frames' MACs.
struct Lane {
    ifindex: u32,
    cli_mac: [u8; 6],
    dir_mac: [u8; 6],
}

struct Lab {
    cli: Netns,
    lvs: Netns,
    rs: Netns,
    /// The IPVS director, when the kernel has IPVS.
    ipvs: Option<Netns>,
    to_lvs: Lane,
    to_ipvs: Option<Lane>,
}

/// A director: `ns`'s eth0 (VIPs `vips`) faces the client's `cli_dev`, its eth1 the real servers'
/// `rs_dev`, with permanent neighbour entries both ways (nothing answers ARP: the sink drops all).
fn build_director(
    cli: &Netns,
    ns: &Netns,
    rs: &Netns,
    cli_dev: &str,
    rs_dev: &str,
    vips: &[[u8; 4]],
) -> anyhow::Result<Lane> {
    let run = |args: &[&str]| crate::netns::run(Command::new("ip").args(args)).map(|_| ());
    run(&["link", "add", cli_dev, "netns", &cli.name, "type", "veth", "peer", "name", "eth0", "netns", &ns.name])?;
    run(&["link", "add", "eth1", "netns", &ns.name, "type", "veth", "peer", "name", rs_dev, "netns", &rs.name])?;
    ns.ip(&["addr", "add", "10.0.1.1/24", "dev", "eth0"])?;
    for vip in vips {
        ns.ip(&["addr", "add", &format!("{}/32", ip4(*vip)), "dev", "eth0"])?;
    }
    ns.ip(&["addr", "add", "10.0.2.1/24", "dev", "eth1"])?;
    for (n, dev) in [(cli, cli_dev), (ns, "eth0"), (ns, "eth1"), (rs, rs_dev)] {
        n.ip(&["link", "set", dev, "up"])?;
    }
    ns.sysctl("net.ipv4.ip_forward", "1")?;
    for k in ["all", "default", "eth0", "eth1"] {
        ns.sysctl(&format!("net.ipv4.conf.{k}.rp_filter"), "0")?;
    }
    let rs_mac = mac_of(rs, rs_dev)?;
    let cli_mac = mac_of(cli, cli_dev)?;
    for r in RS {
        ns.ip(&["neigh", "replace", &ip4(r), "lladdr", &mac_text(rs_mac), "dev", "eth1", "nud", "permanent"])?;
    }
    ns.ip(&["neigh", "replace", &ip4(CLIENT), "lladdr", &mac_text(cli_mac), "dev", "eth0", "nud", "permanent"])?;
    Ok(Lane { ifindex: ifindex_of(cli, cli_dev)?, cli_mac, dir_mac: mac_of(ns, "eth0")? })
}

fn build_lab(with_ipvs: bool) -> anyhow::Result<Lab> {
    let p = unique_prefix("be2e");
    let cli = Netns::new(&format!("{p}-cli"))?;
    let lvs = Netns::new(&format!("{p}-lvs"))?;
    let rs = Netns::new(&format!("{p}-rs"))?;
    cli.ip(&["link", "set", "lo", "up"])?;
    let to_lvs = build_director(&cli, &lvs, &rs, "eth0", "eth0", &[VIP_DR, VIP_TUN, VIP_NAT, VIP_NFT])?;
    cli.ip(&["addr", "add", "10.0.1.2/24", "dev", "eth0"])?;
    for r in RS {
        rs.ip(&["addr", "add", &format!("{}/24", ip4(r)), "dev", "eth0"])?;
    }
    let (ipvs, to_ipvs) = if with_ipvs {
        let ns = Netns::new(&format!("{p}-ipvs"))?;
        let lane = build_director(&cli, &ns, &rs, "eth1", "eth1", &[VIP_DR, VIP_TUN, VIP_NAT])?;
        (Some(ns), Some(lane))
    } else {
        (None, None)
    };
    Ok(Lab { cli, lvs, rs, ipvs, to_lvs, to_ipvs })
}

fn nft_rules(lvs: &Netns, dir: &Path) -> anyhow::Result<()> {
    let map: Vec<String> = RS.iter().enumerate().map(|(i, r)| format!("{i} : {}", ip4(*r))).collect();
    // forward_count: the first rule counts what was forwarded to the real servers, the second
    // the connections conntrack set up for them (the new-connection runs' proof): a packet whose
    // entry is not confirmed yet is the one that created it (`ct state new` would also count
    // every packet of a connection that has seen no reply, as these one-way flows never do).
    let rules = format!(
        "table ip xlbbench {{\n\
         \tchain pre {{ type nat hook prerouting priority -100; ip daddr {vip} udp dport 80 dnat to numgen inc mod 4 map {{ {map} }} : {NAT_PORT}; }}\n\
         \tchain forward_count {{ type filter hook forward priority 0; ip daddr 10.0.2.0/24 udp dport {NAT_PORT} counter; \
         ip daddr 10.0.2.0/24 udp dport {NAT_PORT} ct status ! confirmed counter; }}\n\
         }}\n",
        vip = ip4(VIP_NFT),
        map = map.join(", ")
    );
    let file = dir.join("xlbbench.nft");
    std::fs::write(&file, rules)?;
    crate::netns::run(lvs.cmd("nft").arg("-f").arg(&file)).context("nftables DNAT rules")?;
    Ok(())
}

/// (forwarded, new connections): the two counters of chain forward_count.
fn nft_counts(lvs: &Netns) -> anyhow::Result<(u64, u64)> {
    let out = lvs.exec("nft", &["list", "chain", "ip", "xlbbench", "forward_count"])?;
    let w: Vec<&str> = out.split_whitespace().collect();
    let v: Vec<u64> = w
        .iter()
        .enumerate()
        .filter(|(_, x)| **x == "packets")
        .map(|(i, _)| w.get(i + 1).context("no value")?.parse::<u64>().context("counter"))
        .collect::<anyhow::Result<_>>()?;
    match v[..] {
        [fwd, new] => Ok((fwd, new)),
        _ => bail!("chain forward_count has {} counters, not 2:\n{out}", v.len()),
    }
}

/// IPVS's counters in `ns`: (connections, incoming packets), summed over the CPUs of
/// /proc/net/ip_vs_stats_percpu (its total line, like /proc/net/ip_vs_stats, is refreshed only
/// by the rate estimator, every 2 s).
fn ipvs_counts(ns: &Netns) -> anyhow::Result<(u64, u64)> {
    let out = ns.exec("cat", &["/proc/net/ip_vs_stats_percpu"])?;
    let (mut conns, mut inpkts, mut cpus) = (0, 0, 0);
    for l in out.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() == 6 && w[0].parse::<u32>().is_ok() {
            conns += u64::from_str_radix(w[1], 16).with_context(|| format!("ip_vs_stats_percpu: {l}"))?;
            inpkts += u64::from_str_radix(w[2], 16).with_context(|| format!("ip_vs_stats_percpu: {l}"))?;
            cpus += 1;
        }
    }
    if cpus == 0 {
        bail!("no per-CPU line in /proc/net/ip_vs_stats_percpu:\n{out}");
    }
    Ok((conns, inpkts))
}

/// Conntrack entries in `ns` (None without conntrack).
fn conntrack_count(ns: &Netns) -> Option<u64> {
    ns.exec("cat", &["/proc/sys/net/netfilter/nf_conntrack_count"]).ok()?.trim().parse().ok()
}

/// The IPVS services: the xlb services' twins (same VIPs, ports, real servers, scheduler).
fn ipvs_services(ns: &Netns) -> anyhow::Result<()> {
    for (vip, port, method) in [(VIP_DR, 80, "-g"), (VIP_TUN, 80, "-i"), (VIP_NAT, NAT_PORT, "-m")] {
        let svc = format!("{}:80", ip4(vip));
        ns.exec(IPVSADM, &["-A", "-u", &svc, "-s", "rr"]).with_context(|| format!("ipvsadm -A -u {svc}"))?;
        for r in RS {
            ns.exec(IPVSADM, &["-a", "-u", &svc, "-r", &format!("{}:{port}", ip4(r)), method, "-w", "1"])?;
        }
    }
    Ok(())
}

/// Whether kernel IPVS can be driven here: Ok(ipvsadm's version) or why not.
fn ipvs_available() -> Result<String, String> {
    if let Some(why) = crate::ipvs_host::ipvs_unavailable() {
        return Err(why);
    }
    match Command::new(IPVSADM).arg("--version").output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        _ => Err(format!("{IPVSADM} --version failed")),
    }
}

/// Raises the (global) nf_conntrack_max to at least `want` for the run; restores it when dropped.
struct ConntrackMax {
    old: Option<u64>,
}

const CT_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";

impl ConntrackMax {
    fn at_least(want: u64) -> anyhow::Result<(ConntrackMax, u64)> {
        let cur: u64 = std::fs::read_to_string(CT_MAX).with_context(|| format!("read {CT_MAX}"))?.trim().parse()?;
        if cur >= want {
            return Ok((ConntrackMax { old: None }, cur));
        }
        std::fs::write(CT_MAX, want.to_string()).with_context(|| format!("write {CT_MAX}"))?;
        Ok((ConntrackMax { old: Some(cur) }, want))
    }
}

impl Drop for ConntrackMax {
    fn drop(&mut self) {
        if let Some(v) = self.old {
            let _ = std::fs::write(CT_MAX, v.to_string());
        }
    }
}

fn sink_read(sink: &Ebpf) -> anyhow::Result<SinkCounts> {
    let m: PerCpuArray<_, SinkCounts> = PerCpuArray::try_from(sink.map(names::SINK_COUNTS).context("no sink map")?)?;
    Ok(m.get(&0, 0)?.iter().fold(SinkCounts::default(), |t, c| zip(&t, c, |x, y| x + y)))
}

/// Loads the benchmark's object (lb-ebpf-bench, its own maps) and one of its programs.
fn load_prog(name: &str) -> anyhow::Result<Ebpf> {
    let obj = lb_user::bench_object();
    if obj.is_empty() {
        bail!("this build has no benchmark object (built with AYA_BUILD_SKIP)");
    }
    let mut ebpf = Ebpf::load(obj).context("cannot load the benchmark object")?;
    let p: &mut Xdp = ebpf.program_mut(name).ok_or_else(|| anyhow!("no program {name}"))?.try_into()?;
    p.load().with_context(|| format!("verifier refused {name}"))?;
    Ok(ebpf)
}

/// Which flows a generator run sends.
#[derive(Clone, Copy)]
enum Flows {
    /// `n` source ports from CLIENT in turn.
    Cycle(u32),
    /// Every frame a new flow, flows `first ..` (see `GenCfg::new_flows`).
    New { first: u32 },
}

/// One live-frames run of `n` frames to `vip` over `lane`; the wall time of the syscall (ns).
fn generate(generator: &mut Ebpf, lane: &Lane, vip: [u8; 4], flows: Flows, n: u32) -> anyhow::Result<f64> {
    let src = if matches!(flows, Flows::New { .. }) { NEW_SRC } else { CLIENT };
    let frame =
        Frame::udp(sa(src, BASE_PORT), sa(vip, 80)).payload(&[0x78; 18]).macs(lane.cli_mac, lane.dir_mac).bytes();
    let mut tmpl = [0u8; GEN_TMPL_LEN];
    tmpl[..GEN_HDR_LEN].copy_from_slice(&frame[..GEN_HDR_LEN]);
    let (nflows, new_flows, first_flow) = match flows {
        Flows::Cycle(k) => (k, 0, 0),
        Flows::New { first } => (1, 1, first),
    };
    {
        let mut cfg: Array<_, GenCfg> = Array::try_from(generator.map_mut(names::GEN_CFG).context("no gen map")?)?;
        cfg.set(0, GenCfg { ifindex: lane.ifindex, nflows, base_port: BASE_PORT, new_flows, first_flow, tmpl }, 0)?;
        // Frame n of this run is numbered from 0 (flow first_flow + n).
        let mut seq: PerCpuArray<_, u64> =
            PerCpuArray::try_from(generator.map_mut(names::GEN_SEQ).context("no gen seq map")?)?;
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))?;
        seq.set(0, PerCpuValues::try_from(vec![0u64; cpus])?, 0)?;
    }
    let p: &mut Xdp = generator.program_mut(names::GEN).context("no gen program")?.try_into()?;
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(&frame);
    opts.repeat = n;
    opts.attrs = TestRunAttrs::new().xdp_live_frames(64);
    let t = Instant::now();
    p.test_run(opts).context("BPF_PROG_TEST_RUN (live frames)")?;
    Ok(t.elapsed().as_nanos() as f64)
}

struct RunOut {
    /// Frames of the path's kind at the sink per µs (Mpps; with new flows, million connections/s).
    rate: f64,
    proof: Result<String, String>,
}

/// What the counters of the engine of a run said, before and after.
#[derive(Default, Clone, Copy)]
struct Counters {
    /// nftables: forwarded, new connections.
    nft: (u64, u64),
    /// IPVS: connections, incoming packets.
    ipvs: (u64, u64),
}

fn read_counters(lab: &Lab, engine: Engine) -> anyhow::Result<Counters> {
    let mut c = Counters::default();
    match (engine, &lab.ipvs) {
        (Engine::Nft, _) => c.nft = nft_counts(&lab.lvs)?,
        (Engine::Ipvs, Some(ns)) => c.ipvs = ipvs_counts(ns)?,
        _ => {}
    }
    Ok(c)
}

pub fn run(size: &Size, res: &mut Results) -> anyhow::Result<()> {
    let kernel = lb_user::features::kernel_release();
    let ipvs_version = match ipvs_available() {
        Ok(v) => Some(v),
        Err(why) => {
            res.notes.push(format!(
                "Kernel IPVS column: SKIPPED — {why}; nftables DNAT is the kernel baseline instead. `cargo xtask bench --vm` \
                 runs this section in a Debian kernel guest (QEMU TCG) whose IPVS it drives beside xlb and nftables."
            ));
            None
        }
    };
    let pins = TempPins::new("bench-e2e")?;
    let tmp = std::env::temp_dir().join(unique_prefix("be2e"));
    std::fs::create_dir_all(&tmp)?;
    let lab = build_lab(ipvs_version.is_some())?;
    let ip = |o: [u8; 4]| std::net::IpAddr::V4(std::net::Ipv4Addr::from(o));
    let dests = |port: u16, fwd: Fwd| -> Vec<_> { RS.iter().map(|&r| (ip(r), port, fwd, 1)).collect() };
    super::packet::commit(
        pins.path(),
        vec![
            service(0, Proto::Udp, ip(VIP_DR), 80, "rr", &dests(80, Fwd::Route)),
            service(1, Proto::Udp, ip(VIP_TUN), 80, "rr", &dests(80, Fwd::Tunnel)),
            service(2, Proto::Udp, ip(VIP_NAT), 80, "rr", &dests(NAT_PORT, Fwd::Masq)),
        ],
    )?;
    nft_rules(&lab.lvs, &tmp)?;
    if let Some(ns) = &lab.ipvs {
        ipvs_services(ns)?;
    }
    let cpu = bench_cpu();
    let pin_dir = pins.path().to_path_buf();
    // The sink on the real servers' side, on both links (its links live as long as `sink`).
    let mut sink = load_prog(names::SINK)?;
    {
        let mut cfg: Array<_, SinkCfg> = Array::try_from(sink.map_mut(names::SINK_CFG).context("no sink cfg")?)?;
        cfg.set(0, SinkCfg { addr: u32::from_ne_bytes(VIP_DR), port: NAT_PORT.to_be(), _pad: 0 }, 0)?;
    }
    let sink_devs: &[&str] = if lab.ipvs.is_some() { &["eth0", "eth1"] } else { &["eth0"] };
    in_netns(&lab.rs.name, None, || {
        let p: &mut Xdp = sink.program_mut(names::SINK).context("no sink")?.try_into()?;
        for dev in sink_devs {
            p.attach(dev, XdpMode::Driver).with_context(|| format!("attach sink to rs/{dev} (native)"))?;
        }
        Ok(())
    })?;
    // The IPVS director's receiving side: XDP_PASS into its stack (the link lives as long as `pass`).
    let mut pass = None;
    if let Some(ns) = &lab.ipvs {
        let mut e = load_prog(names::PASS)?;
        in_netns(&ns.name, None, || {
            let p: &mut Xdp = e.program_mut(names::PASS).context("no pass program")?.try_into()?;
            p.attach("eth0", XdpMode::Driver).context("attach xlb_bench_pass to ipvs/eth0 (native)")?;
            Ok(())
        })?;
        pass = Some(e);
    }
    let mut generator = load_prog(names::GEN)?;
    let flows = size.e2e_flows;
    let mut lvs_prog: Option<XdpProgram> = None;
    let mut attach = |prog: XdpProgram| -> anyhow::Result<()> {
        if lvs_prog == Some(prog) {
            return Ok(());
        }
        let d = pin_dir.clone();
        in_netns(&lab.lvs.name, None, move || {
            dataplane::detach(&d, "eth0")?;
            dataplane::detach(&d, "eth1")?;
            dataplane::attach(&d, "eth0", prog, dataplane::Mode::Native)?;
            // XDP redirects only to interfaces xlb is attached to (README: a director for each
            // method): the balancer goes on the egress too.
            if prog == XdpProgram::Balancer {
                dataplane::attach(&d, "eth1", prog, dataplane::Mode::Native)?;
            }
            Ok(())
        })?;
        lvs_prog = Some(prog);
        Ok(())
    };
    let prepare = |p: Path_, attach: &mut dyn FnMut(XdpProgram) -> anyhow::Result<()>| -> anyhow::Result<&Lane> {
        match p.engine() {
            Engine::Xlb => attach(XdpProgram::Balancer).map(|()| &lab.to_lvs),
            Engine::Nft => attach(XdpProgram::Pass).map(|()| &lab.to_lvs),
            Engine::Ipvs => lab.to_ipvs.as_ref().context("no IPVS director"),
        }
    };
    let stats = super::packet::GlobalReader::open(&pin_dir)?;
    let mut paths = vec![Path_::Dr, Path_::Tun, Path_::Nat, Path_::Nft];
    if lab.ipvs.is_some() {
        paths.extend([Path_::IpvsDr, Path_::IpvsTun, Path_::IpvsNat]);
    }
    let new_paths: Vec<Path_> =
        paths.iter().copied().filter(|p| matches!(p, Path_::Dr | Path_::Nft | Path_::IpvsDr)).collect();
    let runs: Vec<Run> = paths
        .iter()
        .map(|&path| Run { path, new_flows: false })
        .chain(new_paths.iter().map(|&path| Run { path, new_flows: true }))
        .collect();
    // New-connection runs: every frame of every run (warm-up included) a flow never sent before,
    // numbered on from `next_flow`. Every one becomes an entry of xlb's XLB_CONNS (which nothing
    // expires here), of conntrack (UDP, unreplied: 30 s) or of IPVS's table (UDP: 300 s): make
    // room for all of them.
    let new_warm = size.e2e_new_frames / 4;
    let new_total = (new_warm + size.e2e_new_frames * size.e2e_rounds as u32) as u64;
    let mut next_flow: u32 = 0;
    let xlb_room = lb_common::DEFAULT_MAX_CONNS as u64 - flows as u64;
    if new_total > xlb_room {
        bail!("{new_total} new connections would not fit in XLB_CONNS ({xlb_room} free)");
    }
    let ct_before = conntrack_count(&lab.lvs).unwrap_or(0);
    let (_ct_guard, ct_max) = ConntrackMax::at_least(ct_before + new_total + 2 * flows as u64 + 10_000)?;
    let mut outs: Vec<Vec<RunOut>> = runs.iter().map(|_| Vec::new()).collect();
    // Established flows first, then new connections: the connections the new-connection runs
    // leave behind (IPVS's and conntrack's tables keep them) must not lengthen the hash chains
    // the established runs look up. Within each phase, the paths alternate round by round.
    for new_phase in [false, true] {
        // Warm-up: every established flow exists (xlb connections, conntrack entries, IPVS
        // connections) before anything is timed; each new-connection path runs once too.
        let warm = (flows * 8).max(20_000);
        for &r in runs.iter().filter(|r| r.new_flows == new_phase) {
            let lane = prepare(r.path, &mut attach)?;
            let (f, n) = if r.new_flows {
                let f = Flows::New { first: next_flow };
                next_flow += new_warm;
                (f, new_warm)
            } else {
                (Flows::Cycle(flows), warm)
            };
            in_netns(&lab.cli.name, Some(cpu), || generate(&mut generator, lane, r.path.vip(), f, n))?;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        for _round in 0..size.e2e_rounds {
            for (ri, &r) in runs.iter().enumerate().filter(|(_, r)| r.new_flows == new_phase) {
                let p = r.path;
                let lane = prepare(p, &mut attach)?;
                let (f, n) = if r.new_flows {
                    let f = Flows::New { first: next_flow };
                    next_flow += size.e2e_new_frames;
                    (f, size.e2e_new_frames)
                } else {
                    (Flows::Cycle(flows), size.e2e_frames)
                };
                let g0 = stats.global_stats()?;
                let s0 = sink_read(&sink)?;
                let c0 = read_counters(&lab, p.engine())?;
                let ns = in_netns(&lab.cli.name, Some(cpu), || generate(&mut generator, lane, p.vip(), f, n))?;
                std::thread::sleep(std::time::Duration::from_millis(30));
                let g1 = stats.global_stats()?;
                let s = zip(&sink_read(&sink)?, &s0, |x, y| x - y);
                let c1 = read_counters(&lab, p.engine())?;
                let arrived = p.arrived(&s);
                let n64 = n as u64;
                let mut bad = Vec::new();
                if arrived != s.ipv4 {
                    bad.push(format!(
                        "{} of {} frames at the sink were not of this path ({s:?})",
                        s.ipv4 - arrived,
                        s.ipv4
                    ));
                }
                if arrived == 0 {
                    bad.push("nothing arrived".to_string());
                }
                let (rx, hit, red, new) =
                    (g1.rx - g0.rx, g1.conn_hit - g0.conn_hit, g1.redirect - g0.redirect, g1.conn_new - g0.conn_new);
                if p.engine() != Engine::Xlb && rx != 0 {
                    bad.push(format!("xlb saw {rx} frames during a run of {}", p.label()));
                }
                let detail = match (p.engine(), r.new_flows) {
                    (Engine::Nft, _) => {
                        let (fwd, ct_new) = (c1.nft.0 - c0.nft.0, c1.nft.1 - c0.nft.1);
                        if fwd < arrived {
                            bad.push(format!("nft forward counter +{fwd} < {arrived} arrived"));
                        }
                        if r.new_flows && ct_new != fwd {
                            bad.push(format!("conntrack set up {ct_new} connections for {fwd} forwarded new flows"));
                        }
                        format!(
                            "sent {n}, nft forwarded {fwd}, conntrack entries created {ct_new}, sink {arrived} of kind"
                        )
                    }
                    (Engine::Ipvs, _) => {
                        let (conns, inpkts) = (c1.ipvs.0 - c0.ipvs.0, c1.ipvs.1 - c0.ipvs.1);
                        // Every frame IPVS saw a new connection, or none.
                        let want_conns = if r.new_flows { inpkts } else { 0 };
                        if inpkts > n64 || conns != want_conns {
                            bad.push(format!(
                                "IPVS InPkts +{inpkts}, Conns +{conns} (sent {n}; want Conns {want_conns})"
                            ));
                        }
                        if arrived > inpkts {
                            bad.push(format!("sink {arrived} > IPVS InPkts {inpkts}"));
                        }
                        format!("sent {n}, IPVS InPkts {inpkts}, Conns +{conns}, xlb rx 0, sink {arrived} of kind")
                    }
                    (Engine::Xlb, false) => {
                        if !(rx == hit && hit == red && new == 0) {
                            bad.push(format!(
                            "xlb rx +{rx}, conn_hit +{hit}, redirect +{red}, conn_new +{new}: not all established+forwarded"
                        ));
                        }
                        if arrived > red {
                            bad.push(format!("sink {arrived} > xlb redirect {red}"));
                        }
                        format!("sent {n}, xlb rx=conn_hit=redirect={red}, conn_new=0, sink {arrived} of kind")
                    }
                    (Engine::Xlb, true) => {
                        if !(rx == new && new == red && hit == 0 && rx <= n64) {
                            bad.push(format!(
                                "xlb rx +{rx}, conn_new +{new}, redirect +{red}, conn_hit +{hit}: not all new+forwarded"
                            ));
                        }
                        if arrived > red {
                            bad.push(format!("sink {arrived} > xlb redirect {red}"));
                        }
                        format!("sent {n}, xlb rx=conn_new=redirect={red}, conn_hit=0, sink {arrived} of kind")
                    }
                };
                let loss = 1.0 - arrived as f64 / n as f64;
                let proof = if bad.is_empty() {
                    Ok(format!("{detail} (loss {:.2}%)", loss * 100.0))
                } else {
                    Err(bad.join("; "))
                };
                outs[ri].push(RunOut { rate: arrived as f64 / ns * 1e3, proof });
            }
        }
    }
    // The IPVS director never tracked a connection in conntrack (IPVS's own table only).
    let ipvs_ct = lab.ipvs.as_ref().and_then(conntrack_count);
    // Figures.
    let idx = |path: Path_, new_flows: bool| runs.iter().position(|r| *r == Run { path, new_flows });
    let rates = |i: usize| -> Vec<f64> { outs[i].iter().map(|o| o.rate).collect() };
    let proof_of = |i: usize| -> Result<String, String> {
        let errs: Vec<String> = outs[i].iter().filter_map(|o| o.proof.clone().err()).collect();
        if errs.is_empty() {
            Ok(outs[i].last().and_then(|o| o.proof.clone().ok()).unwrap_or_default() + " (last run)")
        } else {
            Err(errs.join(" | "))
        }
    };
    // A baseline: its median, if its proof held.
    let proven_median = |i: Option<usize>| i.filter(|&i| proof_of(i).is_ok()).map(|i| median_f(&rates(i)));
    let nft_med = proven_median(idx(Path_::Nft, false));
    let nft_new_med = proven_median(idx(Path_::Nft, true));
    let both = |a: usize, b: usize| match (proof_of(a), proof_of(b)) {
        (Ok(x), Ok(y)) => Ok(format!("{x}; baseline: {y}")),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    for (i, r) in runs.iter().enumerate() {
        let p = r.path;
        if r.new_flows {
            let name = format!("new connections: {} — every frame a new flow, 60 B UDP frames", p.label());
            let mut f = Figure::new("e2e", name, "Mconn/s", &rates(i), proof_of(i));
            if let (false, Some(b)) = (p == Path_::Nft, nft_new_med) {
                let r = f.median / b;
                f = f.baseline("nftables DNAT, new connections", b).ratio(r);
            }
            res.figures.push(f);
            continue;
        }
        let name = format!("{} — {} flows, 60 B UDP frames", p.label(), flows);
        let mut f = Figure::new("e2e", name, "Mpps", &rates(i), proof_of(i));
        if let (false, Some(b)) = (p == Path_::Nft, nft_med) {
            let r = f.median / b;
            f = f.baseline("nftables DNAT", b).ratio(r);
            if p.engine() == Engine::Xlb {
                f = f.target_ratio(b, "nftables DNAT", 4.0, true).goal("e2e");
            }
        }
        res.figures.push(f);
    }
    // xlb against kernel IPVS, method by method: xlb's runs, IPVS's median as the baseline.
    for (x, k, new_flows) in [
        (Path_::Dr, Path_::IpvsDr, false),
        (Path_::Tun, Path_::IpvsTun, false),
        (Path_::Nat, Path_::IpvsNat, false),
        (Path_::Dr, Path_::IpvsDr, true),
    ] {
        let (Some(xi), Some(ki)) = (idx(x, new_flows), idx(k, new_flows)) else { continue };
        let (what, unit, kind) = if new_flows {
            ("new connections: ", "Mconn/s", "every frame a new flow")
        } else {
            ("", "Mpps", "established flows")
        };
        let name = format!("{what}{} vs {} — {kind}", x.label(), k.label());
        let mut f = Figure::new("e2e", name, unit, &rates(xi), both(xi, ki));
        if let Some(b) = proven_median(Some(ki)) {
            let r = f.median / b;
            f = f.baseline(k.label(), b).ratio(r);
        }
        res.figures.push(f);
    }
    res.notes.push(format!(
        "End to end: generator = BPF_PROG_TEST_RUN live frames (batch 64) of `xlb_bench_gen` in the client namespace, on a \
         thread pinned to CPU {cpu}; the veth NAPI polls it triggers (director, real-server side) run in softirq on that CPU \
         when each batch is flushed, so generator + forwarding + sink share one core and the syscall's wall time covers \
         them (BPF_F_TEST_RUN_ON_CPU does not apply to live frames). Rate = frames counted by `xlb_bench_sink` on the real \
         servers' veth ÷ that wall time; the generator's own cost is in every path, baseline included. {} rounds of {} \
         frames per path (new connections: {} frames), the established-flow rounds first, then the new-connection \
         rounds (so that the connections those leave in IPVS's and conntrack's tables do not lengthen the chains the \
         established runs look up), the paths alternated in each round; lvs/eth0 runs xlb for DR/TUN/NAT \
         and `xlb_pass` for nftables (veth drops redirected frames without an XDP program on the peer).",
        size.e2e_rounds, size.e2e_frames, size.e2e_new_frames
    ));
    let mut columns = format!(
        "Columns, all on kernel {kernel}: xlb — XDP, native mode on veth (director namespace lvs); nftables — the kernel's \
         forwarding with nf_tables DNAT + conntrack (namespace lvs, behind `xlb_pass`)"
    );
    if let Some(v) = &ipvs_version {
        columns += &format!(
            "; kernel IPVS — the kernel's ip_vs driven by `{v}` (director namespace ipvs of its own, behind \
             `xlb_bench_pass`: XDP_PASS), UDP services on the same VIPs as xlb's with rr over the same four real \
             servers. IPVS has a director of its own so that the nftables ruleset's conntrack and nat hooks (they are \
             per namespace) do not tax it and its hooks do not tax nftables; the same client, generator, frames, flows \
             and sink (on the real servers' second veth). Proof of an IPVS run: the IPVS per-CPU counters \
             (/proc/net/ip_vs_stats_percpu): InPkts at least the sink's count of the method's kind and at most the \
             frames sent, Conns +0 (established) or = InPkts (new connections); xlb rx +0; conntrack entries in the IPVS director \
             after the runs: {}",
            ipvs_ct.map(|c| c.to_string()).unwrap_or_else(|| "none (no conntrack there)".to_string())
        );
    }
    res.notes.push(columns + ".");
    let conn_tab = std::fs::read_to_string("/sys/module/ip_vs/parameters/conn_tab_bits").ok();
    res.notes.push(format!(
        "New connections: every frame a flow never sent before, warm-up included (source port {BASE_PORT} + f mod \
         {NEW_FLOW_PORTS}, source address {} + f ÷ {NEW_FLOW_PORTS} for flow f; {next_flow} flows in all); connections \
         set up per second = frames of the path's kind at the sink ÷ wall time, each proven new: every frame the forwarder saw \
         set up a connection (xlb: conn_new = rx = redirect, conn_hit 0; conntrack: an nftables `ct status ! confirmed` \
         counter in the forward hook, which counts the packet that creates an entry, = the forwarded counter; IPVS: Conns \
         = InPkts), as in the established runs frames lost before the forwarder (a full veth ring) are in the loss figure. Room for all of them: xlb's XLB_CONNS holds {} (nothing expires there without lbd; \
         {new_total} new per path + {flows} established); nf_conntrack_max {ct_max} (raised for the run if lower, restored after; \
         UDP unreplied entries expire after 30 s); IPVS's table has no limit{}.",
        ip4(NEW_SRC),
        lb_common::DEFAULT_MAX_CONNS,
        conn_tab
            .map(|b| format!(" (its hash has 2^{} buckets, ip_vs conn_tab_bits, the default: chains grow with the connections)", b.trim()))
            .unwrap_or_default()
    ));
    drop(sink);
    drop(pass);
    drop(generator);
    let _ = std::fs::remove_dir_all(&tmp);
    drop(lab);
    Ok(())
}
