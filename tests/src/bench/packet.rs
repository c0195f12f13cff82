//! Per-packet cost through the real XDP object with BPF_PROG_TEST_RUN (TOOLCHAIN.md's method):
//! repeat = 1 calls, the kernel-reported duration of each, path and empty program (`xlb_pass`)
//! alternated call by call on the same frame; a round's figure is median(path) - median(empty),
//! a figure is the median over rounds. Every path call's verdict is checked, and the round's
//! GlobalStats deltas must equal the number of path calls (the empty program counts nothing).
use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf,
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use lb_common::{
    GlobalStats,
    sched::SCHED_NAMES,
};
use lb_user::{
    ctl::ServiceSpec,
    model::{Af, Fwd, Proto, Service, SvcKey},
    store::{self, CreateOptions, Store},
};

use super::{Figure, Proof, Results, Size, bench_cpu, in_netns, median_f, median_u, pin_to_cpu};
use crate::{
    director::*,
    frames::{ACK, DIRECTOR_MAC, Frame, SYN, sa},
    pins::TempPins,
    table::{service, table},
    xdp::{LOOPBACK_IFINDEX, XDP_PASS, XDP_REDIRECT, XDP_TX, set_next_hop, verdict_name},
};

/// Weight of every real server of the new-connection figures: all equal, and high enough that
/// ovf (which fills a server up to `weight` active connections) never runs out of servers while
/// the benchmark opens up to 50,000 connections per server.
pub(super) const WEIGHT: i32 = 65_535;

/// Server counts of the scheduling-cost section.
pub const SCHED_SIZES: [u32; 4] = [2, 16, 256, 1024];

/// The real object with the balancer and the empty program loaded (maps of `pin_dir`).
pub struct Runner {
    ebpf: Ebpf,
}

impl Runner {
    pub fn load(pin_dir: &Path) -> anyhow::Result<Runner> {
        let mut ebpf = store::load_object(pin_dir, CreateOptions::default())?;
        crate::xdp::as_lbd_attach_would(&mut ebpf, pin_dir)?;
        // The new-connection path is a tail call from xlb_xdp.
        lb_user::dataplane::install_new_flow_program(&mut ebpf)?;
        for name in ["xlb_xdp", "xlb_pass"] {
            let p: &mut Xdp = ebpf.program_mut(name).ok_or_else(|| anyhow!("no program {name}"))?.try_into()?;
            p.load().with_context(|| format!("verifier refused {name}"))?;
        }
        Ok(Runner { ebpf })
    }

    /// One repeat = 1 run: (verdict, kernel-reported duration in ns).
    #[inline]
    pub fn run(&mut self, prog: &str, frame: &[u8], ctx: Option<&[u8]>) -> anyhow::Result<(u32, u64)> {
        let p: &mut Xdp = self.ebpf.program_mut(prog).ok_or_else(|| anyhow!("no program {prog}"))?.try_into()?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.ctx_in = ctx;
        opts.repeat = 1;
        let r = p.test_run(opts).context("BPF_PROG_TEST_RUN")?;
        Ok((r.return_value, r.duration.as_nanos() as u64))
    }
}

/// struct xdp_md for an ingress interface (None: loopback, what the kernel gives without ctx).
pub fn xdp_ctx(ingress: u32, frame_len: usize) -> Option<[u8; 24]> {
    if ingress == 0 {
        return None;
    }
    // data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
    let w: [u32; 6] = [0, frame_len as u32, 0, ingress, 0, 0];
    let mut b = [0u8; 24];
    for (i, x) in w.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&x.to_ne_bytes());
    }
    Some(b)
}


/// The data plane's global counters read straight from the pinned per-CPU map, every field
/// summed (`Store::global_stats` leaves out nat_reply, no_route, icmp_*).
pub struct GlobalReader {
    map: aya::maps::PerCpuArray<aya::maps::MapData, GlobalStats>,
}

impl GlobalReader {
    pub fn open(pin_dir: &Path) -> anyhow::Result<GlobalReader> {
        let data = aya::maps::MapData::from_pin(pin_dir.join(lb_common::names::GLOBAL_STATS))?;
        Ok(GlobalReader { map: aya::maps::PerCpuArray::try_from(aya::maps::Map::PerCpuArray(data))? })
    }

    pub fn global_stats(&self) -> anyhow::Result<GlobalStats> {
        let mut t = GlobalStats::default();
        for g in self.map.get(&0, 0)?.iter() {
            t.accumulate(g);
        }
        Ok(t)
    }
}

/// A GlobalStats counter by name, for proofs (u64::MAX for an unknown name: the proof fails).
pub fn counter(g: &GlobalStats, name: &str) -> u64 {
    g.by_name(name).unwrap_or(u64::MAX)
}

/// A path to measure.
pub struct PathSpec {
    pub name: String,
    /// Frames, used in turn (call i gets `frames[i % len]`, counting over all rounds).
    pub frames: Vec<Vec<u8>>,
    pub ingress: u32,
    pub verdict: u32,
    /// Counters whose delta must equal the number of path calls (`rx` is always checked).
    pub equal: &'static [&'static str],
    /// Counters whose delta must be zero.
    pub zero: &'static [&'static str],
}

/// What measuring one path gave.
pub struct Measured {
    /// Per round: median(path) - median(empty), ns.
    pub net: Vec<f64>,
    /// Per round: median(path), median(empty).
    pub raw: Vec<f64>,
    pub empty: Vec<f64>,
    /// Per round: mean(path) - mean(empty), ns (what a cost paid by a few calls moves).
    pub mean_net: Vec<f64>,
    pub proof: Proof,
    pub calls: u64,
}

impl Measured {
    pub fn figure(&self, section: &'static str, name: impl Into<String>) -> Figure {
        let base = median_f(&self.empty);
        Figure::new(section, name, "ns", &self.net, self.proof.clone())
            .baseline("xlb_pass median", base)
            .ratio(median_f(&self.raw) / base)
    }
}

/// Rounds of interleaved calls; state shared across rounds so new-connection frames never repeat.
pub struct Measure<'a> {
    pub runner: &'a mut Runner,
    pub store: &'a GlobalReader,
    pub pairs: usize,
}

impl Measure<'_> {
    /// One round of `pairs` (path, empty) pairs starting at frame index `start`; appends to `m`.
    pub fn round(&mut self, spec: &PathSpec, start: usize, m: &mut Measured) -> anyhow::Result<()> {
        let mut path_ns = Vec::with_capacity(self.pairs);
        let mut empty_ns = Vec::with_capacity(self.pairs);
        let before = self.store.global_stats()?;
        let mut wrong = 0u64;
        let mut first_wrong = None;
        for i in 0..self.pairs {
            let f = &spec.frames[(start + i) % spec.frames.len()];
            let ctx = xdp_ctx(spec.ingress, f.len());
            let ctx = ctx.as_ref().map(|c| &c[..]);
            // Alternate which of the two goes first, so neither always follows the other.
            let (v, d) = if i % 2 == 0 {
                let r = self.runner.run("xlb_xdp", f, ctx)?;
                empty_ns.push(self.runner.run("xlb_pass", f, ctx)?.1);
                r
            } else {
                empty_ns.push(self.runner.run("xlb_pass", f, ctx)?.1);
                self.runner.run("xlb_xdp", f, ctx)?
            };
            path_ns.push(d);
            if v != spec.verdict {
                wrong += 1;
                first_wrong.get_or_insert(v);
            }
        }
        let after = self.store.global_stats()?;
        let n = self.pairs as u64;
        let mut bad = Vec::new();
        if wrong > 0 {
            bad.push(format!(
                "{wrong} of {n} verdicts were not {} (e.g. {})",
                verdict_name(spec.verdict),
                verdict_name(first_wrong.unwrap_or(0))
            ));
        }
        let delta = |c: &str| counter(&after, c).wrapping_sub(counter(&before, c));
        for c in std::iter::once(&"rx").chain(spec.equal.iter()) {
            if delta(c) != n {
                bad.push(format!("{c} +{} != {n}", delta(c)));
            }
        }
        for c in spec.zero {
            if delta(c) != 0 {
                bad.push(format!("{c} +{} != 0", delta(c)));
            }
        }
        let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
        m.mean_net.push(mean(&path_ns) - mean(&empty_ns));
        let pm = median_u(&mut path_ns);
        let em = median_u(&mut empty_ns);
        m.net.push(pm - em);
        m.raw.push(pm);
        m.empty.push(em);
        m.calls += n;
        if !bad.is_empty() && m.proof.is_ok() {
            m.proof = Err(bad.join("; "));
        }
        Ok(())
    }

    /// Runs each of an established path's frames once, unmeasured, checking `verdict`: a
    /// connection opened by a bare SYN is in SYN_RECV, whose 60 s timeout a slow machine can
    /// outlast before the rounds reach it; its first data packet makes it ESTABLISHED (900 s).
    pub fn establish(&mut self, frames: &[Vec<u8>], ingress: u32, verdict: u32) -> anyhow::Result<()> {
        for (i, f) in frames.iter().enumerate() {
            let ctx = xdp_ctx(ingress, f.len());
            let (v, _) = self.runner.run("xlb_xdp", f, ctx.as_ref().map(|c| &c[..]))?;
            if v != verdict {
                bail!("establishing connections: frame {i} got {} instead of {}", verdict_name(v), verdict_name(verdict));
            }
        }
        Ok(())
    }

    /// Creates connections by running each frame once through the balancer; checks that every
    /// one was new and forwarded with `verdict`.
    pub fn create(&mut self, frames: &[Vec<u8>], ingress: u32, verdict: u32) -> anyhow::Result<()> {
        let before = self.store.global_stats()?;
        for (i, f) in frames.iter().enumerate() {
            let ctx = xdp_ctx(ingress, f.len());
            let (v, _) = self.runner.run("xlb_xdp", f, ctx.as_ref().map(|c| &c[..]))?;
            if v != verdict {
                let g = self.store.global_stats()?;
                bail!(
                    "creating connections: frame {i} got {} instead of {} (counters since start: {g:?})",
                    verdict_name(v),
                    verdict_name(verdict)
                );
            }
        }
        let after = self.store.global_stats()?;
        let made = after.conn_new - before.conn_new;
        if made != frames.len() as u64 {
            bail!("creating {} connections made {made}", frames.len());
        }
        Ok(())
    }
}

/// Section 1's two figures of an established path (`label`: "DR", "NAT reply", ...): one flow
/// (`hot`) and many (`spread`), each packet forwarded with `verdict` (a NAT reply proven by
/// `nat_reply`, the others by `conn_hit`), none making a connection.
pub fn established_specs(label: &str, hot: Vec<u8>, spread: Vec<Vec<u8>>, ingress: u32, verdict: u32) -> [PathSpec; 2] {
    let equal: &'static [&'static str] = match (label == "NAT reply", verdict == XDP_TX) {
        (true, _) => &["nat_reply", "redirect"],
        (false, true) => &["conn_hit", "tx"],
        (false, false) => &["conn_hit", "redirect"],
    };
    let zero: &'static [&'static str] = &["conn_new", "neigh_miss", "drop"];
    [
        PathSpec { name: format!("{label} established, hot (1 flow)"), frames: vec![hot], ingress, verdict, equal, zero },
        PathSpec { name: format!("{label} established, spread over {} flows", spread.len()), frames: spread, ingress, verdict, equal, zero },
    ]
}

pub fn new_measured() -> Measured {
    Measured { net: Vec::new(), raw: Vec::new(), empty: Vec::new(), mean_net: Vec::new(), proof: Ok(String::new()), calls: 0 }
}

pub fn finish_proof(m: &mut Measured, spec: &PathSpec) {
    if m.proof.is_ok() {
        let mut what = vec![format!("verdict {} ×{}", verdict_name(spec.verdict), m.calls)];
        what.extend(std::iter::once("rx").chain(spec.equal.iter().copied()).map(|c| format!("{c}=+{}", m.calls)));
        what.extend(spec.zero.iter().map(|c| format!("{c}=+0")));
        m.proof = Ok(what.join(", "));
    }
}

// ---- the director of section 1 (as the packet fixtures: real FIB and neighbour table)

const NON_VIP: [u8; 4] = [192, 168, 88, 99];
/// Marked by the fwmark rule of section 1's director (mark [`FWMARK`]).
const VIP_FWM: [u8; 4] = [192, 168, 88, 30];
const FWMARK: u32 = 100;

/// The director of section 1: DR, TUN and NAT services, and a fwmark service (`lbadm -A -f 100`)
/// with the rule that marks TCP to [`VIP_FWM`] port 80 (`iptables -t mangle ... --set-mark 100`).
fn director_services() -> Vec<Service> {
    let s = |id, vip, dests: &[([u8; 4], u16, Fwd)], sched: &str| {
        let d: Vec<_> = dests.iter().map(|&(a, p, f)| (ip4(a), p, f, WEIGHT)).collect();
        service(id, Proto::Tcp, ip4(vip), 80, sched, &d)
    };
    let mut fwm = s(3, VIP_FWM, &[(WEB1, 80, Fwd::Route), (WEB2, 80, Fwd::Route)], "rr");
    let spec = ServiceSpec {
        key: SvcKey::Fwmark { mark: FWMARK, af: Af::Inet },
        sched: "rr".to_string(),
        flags: 0,
        timeout: 0,
        netmask: 0xffff_ffff,
        pe_name: String::new(),
    };
    let dests = std::mem::take(&mut fwm.dests);
    fwm = Service::new(3, &spec);
    fwm.dests = dests;
    vec![
        s(0, VIP_DR, &[(WEB1, 80, Fwd::Route), (WEB2, 80, Fwd::Route)], "rr"),
        s(1, VIP_TUN, &[(TUN1, 80, Fwd::Tunnel), (TUN2, 80, Fwd::Tunnel)], "rr"),
        s(2, VIP_NAT, &[(NAT1, 8080, Fwd::Masq), (NAT2, 8080, Fwd::Masq)], "rr"),
        fwm,
    ]
}

/// What `lbd sync-marks` writes for `iptables -t mangle -A PREROUTING -d <vip> -p tcp --dport
/// <port> -j MARK --set-mark <mark>`.
fn add_fwmark_rule(pins: &Path, vip: [u8; 4], port: u16, mark: u32) -> anyhow::Result<()> {
    let data = aya::maps::MapData::from_pin(pins.join(lb_common::names::FWMARKS))?;
    let mut map: aya::maps::HashMap<aya::maps::MapData, lb_common::ServiceKey, u32> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data))?;
    let key = lb_common::ServiceKey {
        addr: lb_common::Addr::v4(u32::from_ne_bytes(vip)),
        port: port.to_be(),
        proto: lb_common::IPPROTO_TCP,
        af: lb_common::AF_INET,
    };
    map.insert(key, mark, 0)?;
    // As the sync does: the gate opens for the marked address.
    lb_user::fwmark::sync_gate(pins, &map)
}

pub fn commit(pins: &Path, services: Vec<Service>) -> anyhow::Result<()> {
    {
        let mut store = Store::open_at(pins, CreateOptions::default())?;
        let before = store.load()?;
        store.commit(&before, &table(services))?;
    }
    Ok(())
}

/// A data packet of an established flow (60-byte frame).
pub(super) fn data_frame(client: [u8; 4], port: u16, vip: [u8; 4]) -> Vec<u8> {
    Frame::tcp(sa(client, port), sa(vip, 80), ACK).payload(b"xlbxlb").bytes()
}

pub(super) fn syn_frame(client: [u8; 4], port: u16, vip: [u8; 4]) -> Vec<u8> {
    Frame::tcp(sa(client, port), sa(vip, 80), SYN).payload(b"xlbxlb").bytes()
}

/// A unique client (address, port) for new connection number `i` of client block `k`.
fn new_client(k: u8, i: usize) -> ([u8; 4], u16) {
    ([172, 16 + k, (i / 50_000) as u8, 1 + ((i / 50_000) >> 8) as u8], 10_000 + (i % 50_000) as u16)
}

/// The client-side connection-table key of TCP `c`:`p` -> `vip`:80.
pub(super) fn conn_key_in(c: [u8; 4], p: u16, vip: [u8; 4]) -> lb_common::ConnKey {
    lb_common::ConnKey {
        caddr: u32::from_ne_bytes(c),
        vaddr: u32::from_ne_bytes(vip),
        cport: p.to_be(),
        vport: 80u16.to_be(),
        proto: lb_common::IPPROTO_TCP,
        kind: lb_common::CONN_KIND_IN,
        _pad: 0,
    }
}

/// The connection table of a pin directory.
pub type ConnMap = aya::maps::HashMap<aya::maps::MapData, lb_common::ConnKey, lb_common::Conn>;

pub fn conn_map(pins: &Path) -> anyhow::Result<ConnMap> {
    let data = aya::maps::MapData::from_pin(pins.join(lb_common::names::CONNS))?;
    Ok(aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data))?)
}

/// A new-connection figure: TCP SYNs of never-seen clients (block `block` of [`new_client`]) to
/// `vip`:80, arriving on `ingress` (0: loopback, what BPF_PROG_TEST_RUN gives without a context).
pub struct NewConn {
    pub name: String,
    pub block: u8,
    pub vip: [u8; 4],
    pub ingress: u32,
}

/// The one way every new-connection figure is measured (sections 1, 2 and 2b): rounds of
/// interleaved (SYN, empty program) pairs, the targets taken in turn within each round; after
/// each round the connections it opened are deleted again, so every round of every target
/// starts from the same table. Proof: every verdict XDP_TX, conn_new and tx equal to the calls,
/// no connection hit, insert failure, eviction, drop or missing dest, and every connection
/// opened found (and deleted) in the table after its round.
pub fn measure_new_conns(m: &mut Measure, conns: &mut ConnMap, targets: &[NewConn], size: &Size) -> anyhow::Result<Vec<Measured>> {
    let total = size.rounds * size.pairs;
    let specs: Vec<PathSpec> = targets
        .iter()
        .map(|t| PathSpec {
            name: t.name.clone(),
            frames: (0..total)
                .map(|i| {
                    let (c, p) = new_client(t.block, i);
                    syn_frame(c, p, t.vip)
                })
                .collect(),
            ingress: t.ingress,
            verdict: XDP_TX,
            equal: &["conn_new", "tx"],
            zero: &["conn_hit", "neigh_miss", "conn_insert_fail", "conn_evicted", "drop", "no_dest"],
        })
        .collect();
    let mut measured: Vec<Measured> = specs.iter().map(|_| new_measured()).collect();
    for r in 0..size.rounds {
        for (spec, mm) in specs.iter().zip(measured.iter_mut()) {
            m.round(spec, r * size.pairs, mm)?;
        }
        for (t, mm) in targets.iter().zip(measured.iter_mut()) {
            let mut missing = 0usize;
            for i in r * size.pairs..(r + 1) * size.pairs {
                let (c, p) = new_client(t.block, i);
                if conns.remove(&conn_key_in(c, p, t.vip)).is_err() {
                    missing += 1;
                }
            }
            if missing > 0 && mm.proof.is_ok() {
                mm.proof = Err(format!("{missing} connections of round {r} not in the table"));
            }
        }
    }
    for (spec, mm) in specs.iter().zip(measured.iter_mut()) {
        finish_proof(mm, spec);
        if let Ok(p) = &mut mm.proof {
            p.push_str(", each round's connections found in the table and deleted");
        }
    }
    Ok(measured)
}

/// The limit on a scheduler's new connection at 2 servers.
fn new_conn_limit(sched: &str) -> (f64, &'static str) {
    if ["rr", "wrr", "sh", "dh", "mh"].contains(&sched) { (215.0, "new-cheap") } else { (430.0, "new-other") }
}

/// Schedulers whose cost at 256 and 1024 servers may be at most 1.5x their 2-server figure.
const SCAN_SCHEDS: [&str; 6] = ["lc", "wlc", "sed", "nq", "fo", "ovf"];

/// Section 1: established flows (hot and spread) of DR, TUN, NAT request and reply, and the
/// non-VIP pass with NAT and fwmark services configured. (Its new-connection rows come from
/// [`sched_cost`], the same measurement as section 2's 2-server rows.)
pub fn per_packet(size: &Size, res: &mut Results) -> anyhow::Result<()> {
    let pins = TempPins::new("bench-pkt")?;
    commit(pins.path(), director_services())?;
    add_fwmark_rule(pins.path(), VIP_FWM, 80, FWMARK)?;
    let d = DirectorNs::new("bpkt", &[VIP_DR, VIP_TUN, VIP_NAT, VIP_FWM])?;
    let (ns, if0, if1, eth1_mac) = (d.ns, d.eth0, d.eth1, d.eth1_mac);
    let cpu = bench_cpu();
    let size = *size;
    let path = pins.path().to_path_buf();
    let figures = in_netns(&ns.name, Some(cpu), move || -> anyhow::Result<Vec<Figure>> {
        let store = GlobalReader::open(&path)?;
        let mut runner = Runner::load(&path)?;
        let mut m = Measure { runner: &mut runner, store: &store, pairs: size.pairs };
        let mut figs = Vec::new();
        // Connections: the hot flow (port 50000) and the spread flows (20000..) of each method.
        let hot_port = 50_000u16;
        let spread: Vec<u16> = (0..size.spread_flows as u16).map(|i| 20_000 + i).collect();
        for vip in [VIP_DR, VIP_TUN, VIP_NAT] {
            let verdict = if vip == VIP_NAT { XDP_REDIRECT } else { XDP_TX };
            let mut syns = vec![syn_frame(CLIENT, hot_port, vip)];
            syns.extend(spread.iter().map(|&p| syn_frame(CLIENT, p, vip)));
            m.create(&syns, if0, verdict)?;
        }
        // The fwmark service is live: a SYN to the marked VIP opens a connection.
        m.create(&[syn_frame(CLIENT, 40_000, VIP_FWM)], if0, XDP_TX).context("fwmark service")?;
        // NAT replies come from the real server each connection got.
        let conns = Store::open_at(&path, CreateOptions::default())?.connections()?;
        let nat_rs = |port: u16| -> anyhow::Result<Vec<u8>> {
            let c = conns
                .iter()
                .find(|c| c.vaddr == ip4(VIP_NAT) && c.cport == port && c.caddr == ip4(CLIENT))
                .with_context(|| format!("no NAT connection for client port {port}"))?;
            let IpAddr::V4(rs) = c.daddr else { bail!("IPv6 real server") };
            let rs = rs.octets();
            let mac = if rs == NAT1 { NAT1_MAC } else { NAT2_MAC };
            Ok(Frame::tcp(sa(rs, c.dport), sa(CLIENT, port), ACK).payload(b"xlbxlb").macs(mac, eth1_mac).bytes())
        };
        let mut specs: Vec<PathSpec> = Vec::new();
        for (label, vip, verdict) in [("DR", VIP_DR, XDP_TX), ("TUN", VIP_TUN, XDP_TX), ("NAT request", VIP_NAT, XDP_REDIRECT)] {
            let spread: Vec<Vec<u8>> = spread.iter().map(|&p| data_frame(CLIENT, p, vip)).collect();
            m.establish(&spread, if0, verdict)?;
            m.establish(&[data_frame(CLIENT, hot_port, vip)], if0, verdict)?;
            specs.extend(established_specs(label, data_frame(CLIENT, hot_port, vip), spread, if0, verdict));
        }
        let replies = spread.iter().map(|&p| nat_rs(p)).collect::<anyhow::Result<_>>()?;
        specs.extend(established_specs("NAT reply", nat_rs(hot_port)?, replies, if1, XDP_REDIRECT));
        specs.push(PathSpec {
            name: "non-VIP packet → kernel (NAT and fwmark services configured)".to_string(),
            frames: vec![syn_frame(CLIENT, 1234, NON_VIP)],
            ingress: if0,
            verdict: XDP_PASS,
            equal: &["pass"],
            zero: &["conn_hit", "conn_new", "nat_reply", "parse_fail"],
        });
        let mut measured: Vec<Measured> = specs.iter().map(|_| new_measured()).collect();
        // Rounds outermost: every figure sees the machine in each of its states.
        for r in 0..size.rounds {
            for (spec, mm) in specs.iter().zip(measured.iter_mut()) {
                m.round(spec, r * size.pairs, mm)?;
            }
        }
        let mut request = (f64::NAN, f64::NAN);
        for (spec, mut mm) in specs.iter().zip(measured) {
            finish_proof(&mut mm, spec);
            let n = spec.name.as_str();
            if n.starts_with("non-VIP")
                && let Ok(p) = &mut mm.proof
            {
                p.push_str("; fwmark service live (a SYN to its marked VIP opened a connection)");
            }
            let mut f = mm.figure("per-packet", spec.name.clone());
            let hot = n.contains("hot");
            f = if n.starts_with("non-VIP") {
                f.target_max(15.0, "not for a service").goal("pass")
            } else if n.starts_with("NAT reply") {
                let (of, label) = if hot { (request.0, "NAT request hot") } else { (request.1, "NAT request spread") };
                f.target_ratio(of, label, 1.2, false).goal("nat-reply")
            } else {
                if n.starts_with("NAT request") {
                    if hot { request.0 = f.median } else { request.1 = f.median }
                }
                if hot {
                    f.target_max(38.0, "hot").goal("est-hot")
                } else {
                    f.target_max(116.0, "spread").goal("est-spread")
                }
            };
            figs.push(f);
        }
        Ok(figs)
    })?;
    let empties: Vec<f64> = figures.iter().filter_map(|f| f.baseline.as_ref().map(|b| b.1)).collect();
    let mut all = Vec::new();
    // Per-round empty medians are in each figure's baseline (median over its rounds); give the
    // range over figures as the "empty program" row.
    if !empties.is_empty() {
        all.push(
            Figure::new(
                "per-packet",
                "empty XDP program (xlb_pass), kernel-reported per repeat=1 call",
                "ns",
                &empties,
                Ok("verdict XDP_PASS; counts nothing".to_string()),
            )
            .target_text("floor subtracted from every per-packet figure (fast/slow CPU state shows here)"),
        );
    }
    all.extend(figures);
    res.figures.extend(all);
    drop(ns);
    Ok(())
}

/// Sections 1 and 2's new connections: for every implemented scheduler, a table of four DR
/// services of 2, 16, 256 and 1024 real servers, measured by [`measure_new_conns`]; the
/// 2-server figure is section 1's row and section 2's first. Next hops preset in the data
/// plane's cache (never expiring), so the figure is the scheduling and connection-creation work
/// alone. Also the non-VIP pass on a director without NAT (or fwmark) services.
pub fn sched_cost(size: &Size, res: &mut Results) -> anyhow::Result<()> {
    let cpu = bench_cpu();
    let mut did_pass = false;
    for (k, &(name, _)) in SCHED_NAMES.iter().enumerate() {
        let pins = TempPins::new("bench-sched")?;
        let services: Vec<Service> = SCHED_SIZES
            .iter()
            .enumerate()
            .map(|(j, &n)| {
                let dests: Vec<_> = (0..n)
                    .map(|i| (IpAddr::V4(Ipv4Addr::new(10, 64 + j as u8, (i >> 8) as u8, (i & 255) as u8)), 80, Fwd::Route, WEIGHT))
                    .collect();
                service(j as u32, Proto::Tcp, IpAddr::V4(Ipv4Addr::new(10, 50, k as u8, j as u8)), 80, name, &dests)
            })
            .collect();
        commit(pins.path(), services)?;
        for (j, &n) in SCHED_SIZES.iter().enumerate() {
            for i in 0..n {
                let mac = [0x02, 0x10, j as u8, (i >> 8) as u8, (i & 255) as u8, 1];
                set_next_hop(pins.path(), j as u32 * 1024 + i, mac, DIRECTOR_MAC, LOOPBACK_IFINDEX)?;
            }
        }
        std::thread::scope(|s| {
            s.spawn(|| -> anyhow::Result<()> {
                pin_to_cpu(cpu)?;
                let store = GlobalReader::open(pins.path())?;
                let mut runner = Runner::load(pins.path())?;
                let mut conns = conn_map(pins.path())?;
                let mut m = Measure { runner: &mut runner, store: &store, pairs: size.pairs };
                let targets: Vec<NewConn> = SCHED_SIZES
                    .iter()
                    .enumerate()
                    .map(|(j, &n)| NewConn {
                        name: format!("new connection, {name}, {n} real servers"),
                        block: k as u8,
                        vip: [10, 50, k as u8, j as u8],
                        ingress: 0,
                    })
                    .collect();
                let measured = measure_new_conns(&mut m, &mut conns, &targets, size)?;
                if !did_pass {
                    let pass_spec = PathSpec {
                        name: "non-VIP packet → kernel (no NAT or fwmark service)".to_string(),
                        frames: vec![syn_frame(CLIENT, 1234, NON_VIP)],
                        ingress: 0,
                        verdict: XDP_PASS,
                        equal: &["pass"],
                        zero: &["conn_hit", "conn_new", "nat_reply", "parse_fail"],
                    };
                    let mut pass_m = new_measured();
                    for _ in 0..size.rounds {
                        m.round(&pass_spec, 0, &mut pass_m)?;
                    }
                    finish_proof(&mut pass_m, &pass_spec);
                    res.figures.push(pass_m.figure("per-packet", pass_spec.name.clone()).target_max(15.0, "not for a service"));
                    did_pass = true;
                }
                let base2 = median_f(&measured[0].net);
                let (limit, goal) = new_conn_limit(name);
                res.figures.push(
                    measured[0]
                        .figure("per-packet", format!("new connection (TCP SYN, DR), {name} at 2 servers"))
                        .target_max(limit, &format!("{name} at 2 servers"))
                        .goal(goal),
                );
                for ((t, mm), &n) in targets.iter().zip(&measured).zip(SCHED_SIZES.iter()) {
                    let med = median_f(&mm.net);
                    let min = mm.net.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = mm.net.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let mut f = Figure::new("scheduling", t.name.clone(), "ns", &mm.net, mm.proof.clone())
                        .baseline(format!("{name} at 2 servers"), base2)
                        .ratio(med / base2);
                    if n == 2 {
                        f = f.target_text("the same measurement as section 1's row");
                    } else if SCAN_SCHEDS.contains(&name) && n >= 256 {
                        f = f.target_ratio(base2, &format!("{name} at 2 servers"), 1.5, false).goal("new-scale");
                    }
                    if mm.proof.is_ok() {
                        res.sched_points.push((name.to_string(), n, med, min, max));
                    }
                    res.figures.push(f);
                }
                Ok(())
            })
            .join()
            .map_err(|_| anyhow!("scheduling thread panicked"))?
        })?;
    }
    Ok(())
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Section 2b: what the new-connection figure depends on, each factor alone, by the same
/// [`measure_new_conns`]: a NAT service on the director (every new connection is first checked
/// for being a NAT reply), next hops from the FIB for a real ingress interface or preset for the
/// loopback one, and how full the connection table is.
pub fn factors(size: &Size, res: &mut Results) -> anyhow::Result<()> {
    let vip_fib = [192, 168, 88, 40];
    let vip_lo = [192, 168, 88, 41];
    let rr2 = |id: u32, vip: [u8; 4], a: [u8; 4], b: [u8; 4]| {
        service(id, Proto::Tcp, ip4(vip), 80, "rr", &[(ip4(a), 80, Fwd::Route, WEIGHT), (ip4(b), 80, Fwd::Route, WEIGHT)])
    };
    let plain = || vec![rr2(0, vip_fib, WEB1, WEB2), rr2(1, vip_lo, [10, 64, 0, 1], [10, 64, 0, 2])];
    let pins_plain = TempPins::new("bench-fac")?;
    let pins_nat = TempPins::new("bench-facn")?;
    commit(pins_plain.path(), plain())?;
    let mut with_nat = plain();
    with_nat.push(service(
        2,
        Proto::Tcp,
        ip4(VIP_NAT),
        80,
        "rr",
        &[(ip4(NAT1), 8080, Fwd::Masq, WEIGHT), (ip4(NAT2), 8080, Fwd::Masq, WEIGHT)],
    ));
    commit(pins_nat.path(), with_nat)?;
    for p in [pins_plain.path(), pins_nat.path()] {
        for i in 0..2 {
            set_next_hop(p, 1024 + i, [2, 0x10, 0, 0, i as u8, 1], DIRECTOR_MAC, LOOPBACK_IFINDEX)?;
        }
    }
    let d = DirectorNs::new("bfac", &[vip_fib, vip_lo, VIP_NAT])?;
    let (ns, if0) = (d.ns, d.eth0);
    let cpu = bench_cpu();
    let size = *size;
    let filler = if size.quick { 40_000 } else { 400_000 };
    let tables = [("no NAT service", pins_plain.path().to_path_buf()), ("NAT service configured", pins_nat.path().to_path_buf())];
    let figs = in_netns(&ns.name, Some(cpu), move || -> anyhow::Result<Vec<Figure>> {
        let mut figs = Vec::new();
        for (t, (table_label, path)) in tables.iter().enumerate() {
            let store = GlobalReader::open(path)?;
            let mut runner = Runner::load(path)?;
            let mut conns = conn_map(path)?;
            let mut m = Measure { runner: &mut runner, store: &store, pairs: size.pairs };
            for (level, fill_label) in ["the round's own connections only", "the round's own + 400,000 other connections"].iter().enumerate() {
                if level == 1 {
                    for i in 0..filler {
                        let (c, p) = new_client(100, i);
                        conns.insert(conn_key_in(c, p, [10, 1, 1, 1]), lb_common::Conn::default(), 0)?;
                    }
                }
                let fill_label = fill_label.replace("400,000", &thousands(filler));
                let block = 40 + (t * 4 + level * 2) as u8;
                let targets = [
                    NewConn {
                        name: format!("rr at 2 servers: {table_label}, loopback ingress + preset next hops, table holds {fill_label}"),
                        block,
                        vip: vip_lo,
                        ingress: 0,
                    },
                    NewConn {
                        name: format!("rr at 2 servers: {table_label}, eth0 ingress + FIB next hops, table holds {fill_label}"),
                        block: block + 1,
                        vip: vip_fib,
                        ingress: if0,
                    },
                ];
                let measured = measure_new_conns(&mut m, &mut conns, &targets, &size)?;
                for (tg, mm) in targets.iter().zip(&measured) {
                    figs.push(mm.figure("factors", tg.name.clone()));
                }
                if t == 1 && level == 0 {
                    let (limit, _) = new_conn_limit("rr");
                    figs.push(
                        measured[0]
                            .figure("per-packet", "new connection (TCP SYN, DR), rr at 2 servers, NAT service also configured")
                            .target_max(limit, "rr at 2 servers (not counted in the summary: see 2b)"),
                    );
                }
            }
        }
        Ok(figs)
    })?;
    let med = |table: &str, ctx: &str, level: &str| {
        figs.iter()
            .find(|f| f.section == "factors" && f.name.contains(table) && f.name.contains(ctx) && f.name.ends_with(level))
            .map_or(f64::NAN, |f| f.median)
    };
    let (no, yes, lo, fib) = ("no NAT service", "NAT service configured", "loopback ingress", "eth0 ingress");
    let own = "own connections only";
    let full = "other connections";
    res.notes.push(format!(
        "New connections (sections 1, 2, 2b) are measured by one function, `measure_new_conns`: rounds of interleaved \
         (SYN of a never-seen client, empty program) pairs, the figures of a table taken in turn, and after every round the \
         connections it opened are deleted again (each one found, else the proof fails), so every round starts from the \
         same table. Section 1's row of a scheduler IS section 2's 2-server figure (one measurement, shown in both). \
         Before, the two were measured differently and disagreed (last report: rr at 2 servers 712 ns in section 1, \
         611 ns in section 2; the issue saw them about 250 ns apart). Section 2b measures each difference alone, in this \
         run: a NAT service on the director adds {:.0} ns to every new connection (loopback ingress: {:.0} → {:.0} ns; \
         eth0: {:.0} → {:.0} ns) — with a NAT real server configured (CFG_F_HAS_NAT) `xlb_new` first looks the packet up \
         as a NAT reply (one more XLB_CONNS lookup, a miss, in a 1M-bucket table: a cache miss); a real ingress with \
         next hops from the FIB instead of preset ones adds {:.0} ns; {} other connections in the table add {:.0} ns \
         without a NAT service and {:.0} ns with one (the conn-table lookups and the insert touch colder memory). Old \
         section 1 ran on a director with a NAT service (its rr figure paid the NAT-reply lookup), old section 2 on one \
         without, on a table growing by 20,000 connections per figure and round (never deleted, up to 400,000): the NAT \
         lookup explains the difference, the growing table made section 2's figures drift up by round. Experiment before \
         the change (full size, same method, rr at 2 servers, net ns; loopback/eth0): table with only the round's \
         connections: no NAT 581/591, NAT 711/721; + 60,000 established flows (as section 1): no NAT 581/601, NAT \
         721/741; + 460,000 connections: no NAT 631/651, NAT 891/912; the same without deleting the round's connections \
         (table growing to ~860,000): no NAT 721/732, NAT 981/1001.",
        med(yes, lo, own) - med(no, lo, own),
        med(no, lo, own),
        med(yes, lo, own),
        med(no, fib, own),
        med(yes, fib, own),
        med(no, fib, own) - med(no, lo, own),
        thousands(filler),
        med(no, lo, full) - med(no, lo, own),
        med(yes, lo, full) - med(yes, lo, own),
    ));
    res.figures.extend(figs);
    drop(ns);
    Ok(())
}
