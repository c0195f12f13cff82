//! Forwarding rate end to end on one core, in a namespace lab:
//!
//! ```text
//!  cli [xlb_bench_gen, live frames] eth0 ──veth── eth0 lvs (xlb | xlb_pass + nftables) eth1 ──veth── eth0 rs [xlb_bench_sink]
//!  10.0.1.2                               10.0.1.1, VIPs .100-.103      10.0.2.1        10.0.2.11-14
//! ```
//!
//! The generator is BPF_PROG_TEST_RUN in live-frames mode on a thread pinned to one CPU, in the
//! client's namespace: every frame is XDP_REDIRECTed into cli/eth0 and lands in the director's
//! eth0 receive ring; the flush at the end of each batch runs the veth NAPI polls (director, then
//! real server side) in softirq on the same CPU before the next batch, so generation, forwarding
//! and counting all run on that CPU, and the syscall's wall time covers them. Rate = frames
//! counted by the sink / that wall time. UDP, 60-byte frames, `flows` source ports in turn. The
//! generator and the sink are the benchmark's own object (`lb_user::bench_object()`, layouts in
//! `lb_common::bench`), not the data plane's.
//!
//! Paths: xlb DR, TUN and NAT (XDP on lvs/eth0 and eth1, out eth1 with XDP_REDIRECT), and the baseline in
//! the same topology and run: the kernel forwarding with an nftables DNAT rule `numgen inc mod 4
//! map {...}` over the same four real servers (lvs/eth0 then runs `xlb_pass`, which veth needs to
//! accept redirected frames at all). Rounds alternate the four paths.
use std::{path::Path, time::Instant};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf,
    maps::{Array, PerCpuArray},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};
use lb_common::bench::{GEN_HDR_LEN, GEN_TMPL_LEN, GenCfg, SinkCfg, SinkCounts, names};
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
const VIP_DR: [u8; 4] = [10, 0, 1, 100];
const VIP_TUN: [u8; 4] = [10, 0, 1, 101];
const VIP_NAT: [u8; 4] = [10, 0, 1, 102];
const VIP_NFT: [u8; 4] = [10, 0, 1, 103];
const RS: [[u8; 4]; 4] = [[10, 0, 2, 11], [10, 0, 2, 12], [10, 0, 2, 13], [10, 0, 2, 14]];
const BASE_PORT: u16 = 20_000;
const NAT_PORT: u16 = 8080;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path_ {
    Dr,
    Tun,
    Nat,
    Nft,
}

impl Path_ {
    fn vip(self) -> [u8; 4] {
        match self {
            Path_::Dr => VIP_DR,
            Path_::Tun => VIP_TUN,
            Path_::Nat => VIP_NAT,
            Path_::Nft => VIP_NFT,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Path_::Dr => "xlb DR",
            Path_::Tun => "xlb TUN",
            Path_::Nat => "xlb NAT",
            Path_::Nft => "kernel forwarding + nftables DNAT (numgen inc mod 4)",
        }
    }

    /// The sink counter frames of this path land in.
    fn arrived(self, c: &SinkCounts) -> u64 {
        match self {
            Path_::Dr => c.udp_to_addr,
            Path_::Tun => c.ipip,
            Path_::Nat | Path_::Nft => c.udp_to_port,
        }
    }
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

struct Lab {
    cli: Netns,
    lvs: Netns,
    rs: Netns,
    lvs_mac: [u8; 6],
    cli_mac: [u8; 6],
    cli_ifindex: u32,
}

fn build_lab() -> anyhow::Result<Lab> {
    let p = unique_prefix("be2e");
    let cli = Netns::new(&format!("{p}-cli"))?;
    let lvs = Netns::new(&format!("{p}-lvs"))?;
    let rs = Netns::new(&format!("{p}-rs"))?;
    let run = |args: &[&str]| crate::netns::run(std::process::Command::new("ip").args(args)).map(|_| ());
    run(&["link", "add", "eth0", "netns", &cli.name, "type", "veth", "peer", "name", "eth0", "netns", &lvs.name])?;
    run(&["link", "add", "eth1", "netns", &lvs.name, "type", "veth", "peer", "name", "eth0", "netns", &rs.name])?;
    cli.ip(&["addr", "add", "10.0.1.2/24", "dev", "eth0"])?;
    lvs.ip(&["addr", "add", "10.0.1.1/24", "dev", "eth0"])?;
    for vip in [VIP_DR, VIP_TUN, VIP_NAT, VIP_NFT] {
        lvs.ip(&["addr", "add", &format!("{}/32", ip4(vip)), "dev", "eth0"])?;
    }
    lvs.ip(&["addr", "add", "10.0.2.1/24", "dev", "eth1"])?;
    for r in RS {
        rs.ip(&["addr", "add", &format!("{}/24", ip4(r)), "dev", "eth0"])?;
    }
    for (ns, dev) in [(&cli, "eth0"), (&lvs, "eth0"), (&lvs, "eth1"), (&rs, "eth0")] {
        ns.ip(&["link", "set", dev, "up"])?;
    }
    lvs.sysctl("net.ipv4.ip_forward", "1")?;
    for k in ["all", "default", "eth0", "eth1"] {
        lvs.sysctl(&format!("net.ipv4.conf.{k}.rp_filter"), "0")?;
    }
    let rs_mac = mac_of(&rs, "eth0")?;
    let cli_mac = mac_of(&cli, "eth0")?;
    let mac = |m: [u8; 6]| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    for r in RS {
        lvs.ip(&["neigh", "replace", &ip4(r), "lladdr", &mac(rs_mac), "dev", "eth1", "nud", "permanent"])?;
    }
    lvs.ip(&["neigh", "replace", &ip4(CLIENT), "lladdr", &mac(cli_mac), "dev", "eth0", "nud", "permanent"])?;
    let lvs_mac = mac_of(&lvs, "eth0")?;
    let cli_ifindex = ifindex_of(&cli, "eth0")?;
    Ok(Lab { cli, lvs, rs, lvs_mac, cli_mac, cli_ifindex })
}

fn nft_rules(lvs: &Netns, dir: &Path) -> anyhow::Result<()> {
    let map: Vec<String> = RS.iter().enumerate().map(|(i, r)| format!("{i} : {}", ip4(*r))).collect();
    let rules = format!(
        "table ip xlbbench {{\n\
         \tchain pre {{ type nat hook prerouting priority -100; ip daddr {vip} udp dport 80 dnat to numgen inc mod 4 map {{ {map} }} : {NAT_PORT}; }}\n\
         \tchain forward_count {{ type filter hook forward priority 0; ip daddr 10.0.2.0/24 udp dport {NAT_PORT} counter; }}\n\
         }}\n",
        vip = ip4(VIP_NFT),
        map = map.join(", ")
    );
    let file = dir.join("xlbbench.nft");
    std::fs::write(&file, rules)?;
    crate::netns::run(lvs.cmd("nft").arg("-f").arg(&file)).context("nftables DNAT rules")?;
    Ok(())
}

fn nft_forwarded(lvs: &Netns) -> anyhow::Result<u64> {
    let out = lvs.exec("nft", &["list", "chain", "ip", "xlbbench", "forward_count"])?;
    let w: Vec<&str> = out.split_whitespace().collect();
    let i = w.iter().position(|x| *x == "packets").context("no counter")?;
    Ok(w.get(i + 1).context("no value")?.parse()?)
}

fn sink_read(sink: &Ebpf) -> anyhow::Result<SinkCounts> {
    let m: PerCpuArray<_, SinkCounts> =
        PerCpuArray::try_from(sink.map(names::SINK_COUNTS).context("no sink map")?)?;
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

/// One live-frames run of `n` frames to `vip`; the wall time of the syscall (ns).
fn generate(generator: &mut Ebpf, lab: &Lab, vip: [u8; 4], flows: u32, n: u32) -> anyhow::Result<f64> {
    let frame = Frame::udp(sa(CLIENT, BASE_PORT), sa(vip, 80)).payload(&[0x78; 18]).macs(lab.cli_mac, lab.lvs_mac).bytes();
    let mut tmpl = [0u8; GEN_TMPL_LEN];
    tmpl[..GEN_HDR_LEN].copy_from_slice(&frame[..GEN_HDR_LEN]);
    {
        let mut cfg: Array<_, GenCfg> = Array::try_from(generator.map_mut(names::GEN_CFG).context("no gen map")?)?;
        cfg.set(0, GenCfg { ifindex: lab.cli_ifindex, nflows: flows, base_port: BASE_PORT, _pad: [0; 6], tmpl }, 0)?;
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
    mpps: f64,
    proof: Result<String, String>,
}

pub fn run(size: &Size, res: &mut Results) -> anyhow::Result<()> {
    let ipvs = Path::new("/proc/net/ip_vs").exists();
    res.notes.push(if ipvs {
        "Kernel IPVS column: this kernel has IPVS, but the benchmark does not drive it yet (skipped).".to_string()
    } else {
        "Kernel IPVS column: SKIPPED — this kernel is built without CONFIG_IP_VS (no /proc/net/ip_vs, no modules), \
         so there is no IPVS to measure; nftables DNAT is the kernel baseline instead."
            .to_string()
    });
    let pins = TempPins::new("bench-e2e")?;
    let tmp = std::env::temp_dir().join(unique_prefix("be2e"));
    std::fs::create_dir_all(&tmp)?;
    let lab = build_lab()?;
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
    let cpu = bench_cpu();
    let pin_dir = pins.path().to_path_buf();
    // The sink on the real servers' side (its link lives as long as `sink`).
    let mut sink = load_prog(names::SINK)?;
    {
        let mut cfg: Array<_, SinkCfg> = Array::try_from(sink.map_mut(names::SINK_CFG).context("no sink cfg")?)?;
        cfg.set(0, SinkCfg { addr: u32::from_ne_bytes(VIP_DR), port: NAT_PORT.to_be(), _pad: 0 }, 0)?;
    }
    in_netns(&lab.rs.name, None, || {
        let p: &mut Xdp = sink.program_mut(names::SINK).context("no sink")?.try_into()?;
        p.attach("eth0", XdpMode::Driver).context("attach sink to rs/eth0 (native)")?;
        Ok(())
    })?;
    let mut generator = load_prog(names::GEN)?;
    let flows = size.e2e_flows;
    let attach = |prog: XdpProgram| -> anyhow::Result<()> {
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
        })
    };
    let stats = super::packet::GlobalReader::open(&pin_dir)?;
    let paths = [Path_::Dr, Path_::Tun, Path_::Nat, Path_::Nft];
    // Warm-up: every flow exists (xlb connections, conntrack entries) before anything is timed.
    let warm = (flows * 8).max(20_000);
    for &p in &paths {
        attach(if p == Path_::Nft { XdpProgram::Pass } else { XdpProgram::Balancer })?;
        in_netns(&lab.cli.name, Some(cpu), || generate(&mut generator, &lab, p.vip(), flows, warm))?;
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut outs: Vec<Vec<RunOut>> = paths.iter().map(|_| Vec::new()).collect();
    for _round in 0..size.e2e_rounds {
        for (pi, &p) in paths.iter().enumerate() {
            if p == Path_::Dr {
                attach(XdpProgram::Balancer)?;
            } else if p == Path_::Nft {
                attach(XdpProgram::Pass)?;
            }
            let n = size.e2e_frames;
            let g0 = stats.global_stats()?;
            let s0 = sink_read(&sink)?;
            let f0 = nft_forwarded(&lab.lvs)?;
            let ns = in_netns(&lab.cli.name, Some(cpu), || generate(&mut generator, &lab, p.vip(), flows, n))?;
            std::thread::sleep(std::time::Duration::from_millis(30));
            let g1 = stats.global_stats()?;
            let s = zip(&sink_read(&sink)?, &s0, |x, y| x - y);
            let fwd = nft_forwarded(&lab.lvs)? - f0;
            let arrived = p.arrived(&s);
            let mut bad = Vec::new();
            if arrived != s.ipv4 {
                bad.push(format!("{} of {} frames at the sink were not of this path ({s:?})", s.ipv4 - arrived, s.ipv4));
            }
            if arrived == 0 {
                bad.push("nothing arrived".to_string());
            }
            let (rx, hit, red, new) =
                (g1.rx - g0.rx, g1.conn_hit - g0.conn_hit, g1.redirect - g0.redirect, g1.conn_new - g0.conn_new);
            let detail = if p == Path_::Nft {
                if rx != 0 {
                    bad.push(format!("xlb saw {rx} frames during the nftables run"));
                }
                if fwd < arrived {
                    bad.push(format!("nft forward counter +{fwd} < {arrived} arrived"));
                }
                format!("sent {n}, nft forwarded {fwd}, sink {arrived} of kind")
            } else {
                if !(rx == hit && hit == red && new == 0) {
                    bad.push(format!("xlb rx +{rx}, conn_hit +{hit}, redirect +{red}, conn_new +{new}: not all established+forwarded"));
                }
                if arrived > red {
                    bad.push(format!("sink {arrived} > xlb redirect {red}"));
                }
                format!("sent {n}, xlb rx=conn_hit=redirect={red}, conn_new=0, sink {arrived} of kind")
            };
            let loss = 1.0 - arrived as f64 / n as f64;
            let proof =
                if bad.is_empty() { Ok(format!("{detail} (loss {:.2}%)", loss * 100.0)) } else { Err(bad.join("; ")) };
            outs[pi].push(RunOut { mpps: arrived as f64 / ns * 1e3, proof });
        }
    }
    // Figures.
    let rates = |i: usize| -> Vec<f64> { outs[i].iter().map(|o| o.mpps).collect() };
    let proof_of = |i: usize| -> Result<String, String> {
        let errs: Vec<String> = outs[i].iter().filter_map(|o| o.proof.clone().err()).collect();
        if errs.is_empty() {
            Ok(outs[i].last().and_then(|o| o.proof.clone().ok()).unwrap_or_default() + " (last run)")
        } else {
            Err(errs.join(" | "))
        }
    };
    let nft_med = median_f(&rates(3));
    let nft_ok = proof_of(3).is_ok();
    for (i, &p) in paths.iter().enumerate() {
        let name = format!("{} — {} flows, 60 B UDP frames", p.label(), flows);
        let mut f = Figure::new("e2e", name, "Mpps", &rates(i), proof_of(i));
        if p != Path_::Nft && nft_ok {
            let ratio = f.median / nft_med;
            f = f.baseline("nftables DNAT", nft_med).ratio(ratio).target_ratio(nft_med, "nftables DNAT", 4.0, true).goal("e2e");
        }
        res.figures.push(f);
    }
    res.notes.push(format!(
        "End to end: generator = BPF_PROG_TEST_RUN live frames (batch 64) of `xlb_bench_gen` in the client namespace, on a \
         thread pinned to CPU {cpu}; the veth NAPI polls it triggers (director, real-server side) run in softirq on that CPU \
         when each batch is flushed, so generator + forwarding + sink share one core and the syscall's wall time covers \
         them (BPF_F_TEST_RUN_ON_CPU does not apply to live frames). Rate = frames counted by `xlb_bench_sink` on the real \
         servers' veth ÷ that wall time; the generator's own cost is in every path, baseline included. {} rounds of {} \
         frames per path, paths alternated; lvs/eth0 runs xlb for DR/TUN/NAT and `xlb_pass` for nftables (veth drops \
         redirected frames without an XDP program on the peer).",
        size.e2e_rounds, size.e2e_frames
    ));
    drop(sink);
    drop(generator);
    let _ = std::fs::remove_dir_all(&tmp);
    drop(lab);
    Ok(())
}

