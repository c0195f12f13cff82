//! Section 7: what a running sync master costs the per-packet path (issue 17: "sending never
//! slows the per-packet path, and a flood drops sync messages (counted) before it drops
//! packets"). One DR service, its established flows (one hot, many spread) measured as section 1
//! measures them, in five states taken in turn within every round: no master, twice (the second
//! a control of the pairing's noise); a master with a reader draining `XLB_SYNC_EVENTS` on the
//! other CPU, polling every 5 ms or reading every 20 ms; a master whose queue nobody reads (filled
//! first, so every record the round owes is dropped). Proof, per round: every verdict XDP_TX,
//! conn_hit and tx equal to the calls, the flows' `in_pkts` moved by the calls, and
//! `sync_queued` / `sync_dropped` moved by exactly the sends IPVS's rule owes for those packet
//! counts (none without a master; all queued, and all read, with a reader; all dropped when full).
use std::{
    path::Path,
    sync::{
        Barrier,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use aya::maps::{Map, MapData, RingBuf};
use lb_common::{ConnKey, GlobalStats, names, tcp_state::STATE_ESTABLISHED};
use lb_user::{
    model::{Fwd, Proto, SyncDaemonCfg},
    store::{CreateOptions, Store},
};

use super::{
    Check, Figure, Results, Size, bench_cpu, in_netns, median_f,
    packet::{
        ConnMap, GlobalReader, Measure, Measured, PathSpec, Runner, WEIGHT, commit, conn_key_in, conn_map, counter, data_frame,
        established_specs, finish_proof, new_measured, syn_frame,
    },
    pin_to_cpu,
};
use crate::{
    director::{CLIENT, DirectorNs, VIP_DR, WEB1, WEB2, ip4},
    pins::TempPins,
    table::service,
    xdp::{XDP_TX, verdict_name},
};

/// Ratio target of a master's figure to the no-master figure of the same flows (net medians of
/// the same run). Why 1.10: see the section's note.
const LIMIT: f64 = 1.10;

/// The states, taken in turn within every round (the order rotated round by round).
const STATES: [&str; 5] = [
    "no master",
    "no master again (control: the pairing's noise)",
    "master, reader polling every 5 ms",
    "master, reader every 20 ms (as IPVS's master)",
    "master, queue full (nobody reading)",
];
const NO_MASTER: usize = 0;
const CONTROL: usize = 1;
const POLL: usize = 2;
const TIMER: usize = 3;
const FULL: usize = 4;

fn master(state: usize) -> bool {
    !matches!(state, NO_MASTER | CONTROL)
}

/// How often the timer reader reads: IPVS's master thread is woken at most this long after a
/// buffer is queued (`IPVS_SYNC_SEND_DELAY`, HZ/50), unless 8 buffers are waiting.
const READ_EVERY: Duration = Duration::from_millis(20);

/// Each of size's rounds is cut into this many shorter ones, so that every state sees the
/// machine's (shared, noisy) moments alike.
const SPLIT: usize = 5;

/// A master daemon as `lbadm --start-daemon master --mcast-interface lo` records it.
fn master_cfg() -> SyncDaemonCfg {
    SyncDaemonCfg {
        ifname: "lo".into(),
        ifindex: crate::xdp::LOOPBACK_IFINDEX,
        syncid: 0,
        maxlen: 1472,
        group: ip4(lb_common::sync::SYNC_GROUP_V4),
        port: lb_common::sync::SYNC_PORT,
        ttl: lb_common::sync::SYNC_TTL,
        generation: 1,
    }
}

/// Starts (`on`) or stops the master as lbadm does: a table commit that changes only the daemons.
fn set_master(pins: &Path, on: bool) -> anyhow::Result<()> {
    let mut store = Store::open_at(pins, CreateOptions::default())?;
    let before = store.load()?;
    let mut after = before.clone();
    after.daemons.master = on.then(master_cfg);
    store.commit(&before, &after)
}

fn sysctl(pins: &Path, setting: &str) -> anyhow::Result<()> {
    let mut store = Store::open_at(pins, CreateOptions::default())?;
    store.update_config(|c| lb_user::sysctl::apply(c, &[setting.to_string()]))?;
    Ok(())
}

fn open_ring(pins: &Path) -> anyhow::Result<RingBuf<MapData>> {
    let data = MapData::from_pin(pins.join(names::SYNC_EVENTS)).context("XLB_SYNC_EVENTS pin")?;
    Ok(RingBuf::try_from(Map::RingBuf(data))?)
}

/// Reads every record waiting; counts them, and the ones that are not an IPv4 connection key.
fn drain(ring: &mut RingBuf<MapData>) -> (u64, u64) {
    let (mut n, mut odd) = (0, 0);
    while let Some(rec) = ring.next() {
        n += 1;
        if rec.len() != size_of::<ConnKey>() {
            odd += 1;
        }
    }
    (n, odd)
}

/// lbd's master side of the queue until `stop`, then a last read: `poll`: waits up to 5 ms on the
/// ring buffer's fd (the data plane queues without waking it, so the wait ends at its timeout)
/// and reads what is there; else reads every [`READ_EVERY`] without waiting on the fd. Returns (records
/// read, odd-sized ones).
/// `ready` is passed once the ring buffer is mapped: mapping and unmapping it interrupt the
/// other CPUs of the process (TLB shootdown), so neither may happen while packets are measured.
fn reader(pins: &Path, cpu: Option<usize>, poll: bool, ready: &Barrier, stop: &AtomicBool) -> anyhow::Result<(u64, u64)> {
    use std::os::fd::AsRawFd as _;
    let ring = (|| {
        if let Some(c) = cpu {
            pin_to_cpu(c)?;
        }
        open_ring(pins)
    })();
    ready.wait();
    let mut ring = ring?;
    let (mut n, mut odd) = (0, 0);
    let mut next = Instant::now() + READ_EVERY;
    while !stop.load(Ordering::Acquire) {
        if !poll {
            // Unparked by `stop`.
            std::thread::park_timeout(next.saturating_duration_since(Instant::now()));
            if Instant::now() < next {
                continue;
            }
            next += READ_EVERY;
            let (a, b) = drain(&mut ring);
            n += a;
            odd += b;
            continue;
        }
        let mut p = libc::pollfd { fd: ring.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, 5) } < 0 {
            bail!("poll XLB_SYNC_EVENTS: {}", std::io::Error::last_os_error());
        }
        let (a, b) = drain(&mut ring);
        n += a;
        odd += b;
    }
    let (a, b) = drain(&mut ring);
    Ok((n + a, odd + b))
}

/// Sends IPVS's rule owes a connection that stays ESTABLISHED while its client-packet count goes
/// from `from` to `to` (threshold `t`, period `p`; `sync_refresh_period` 0): counts k in
/// (from, to] with k mod p = t.
fn owed(from: u32, to: u32, t: u32, p: u32) -> u64 {
    (from.wrapping_add(1)..=to).filter(|k| k % p == t).count() as u64
}

/// IRQ work interrupts taken so far by `cpu` (/proc/interrupts, "IWI"; 0 when not listed): how
/// the ring buffer wakes its reader.
fn irq_work(cpu: usize) -> u64 {
    let text = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    text.lines()
        .find(|l| l.trim_start().starts_with("IWI:"))
        .and_then(|l| l.split_whitespace().nth(1 + cpu))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `in_pkts` of every flow.
fn in_pkts(conns: &ConnMap, keys: &[ConnKey]) -> anyhow::Result<Vec<u32>> {
    keys.iter().map(|k| Ok(conns.get(k, 0).context("an established flow left the table")?.in_pkts)).collect()
}

/// One measured round of `spec` in state `state` (of [`STATES`]), with its sync proof
/// added to `m` (the verdict, conn_hit and tx proof is `Measure::round`'s).
#[allow(clippy::too_many_arguments)]
fn round(
    m: &mut Measure,
    conns: &ConnMap,
    spec: &PathSpec,
    keys: &[ConnKey],
    state: usize,
    start: usize,
    rule: (u32, u32),
    mm: &mut Measured,
    sent: &mut u64,
) -> anyhow::Result<()> {
    let before_pkts = in_pkts(conns, keys)?;
    let before: GlobalStats = m.store.global_stats()?;
    m.round(spec, start, mm)?;
    let after = m.store.global_stats()?;
    let after_pkts = in_pkts(conns, keys)?;
    let counted: u64 = before_pkts.iter().zip(&after_pkts).map(|(b, a)| a.wrapping_sub(*b) as u64).sum();
    let due: u64 = if !master(state) {
        0
    } else {
        before_pkts.iter().zip(&after_pkts).map(|(b, a)| owed(*b, *a, rule.0, rule.1)).sum()
    };
    let delta = |c: &str| counter(&after, c).wrapping_sub(counter(&before, c));
    let (queued, dropped) = (delta("sync_queued"), delta("sync_dropped"));
    let (want_q, want_d) = match state {
        NO_MASTER | CONTROL => (0, 0),
        FULL => (0, due),
        _ => (due, 0),
    };
    let mut bad = Vec::new();
    if counted != m.pairs as u64 {
        bad.push(format!("in_pkts +{counted} != {} calls", m.pairs));
    }
    if (queued, dropped) != (want_q, want_d) {
        bad.push(format!("sync_queued +{queued}, sync_dropped +{dropped}; the rule owes {due} (want +{want_q}, +{want_d})"));
    }
    if !bad.is_empty() && mm.proof.is_ok() {
        mm.proof = Err(bad.join("; "));
    }
    *sent += due;
    Ok(())
}

/// Fills the queue: with every packet to be sent ("0 1"), the hot flow's packets until a record
/// is dropped (each still forwarded), then IPVS's defaults again.
fn fill(m: &mut Measure, pins: &Path, hot: &[u8], ingress: u32) -> anyhow::Result<u64> {
    sysctl(pins, "sync_threshold=0 1")?;
    let before = m.store.global_stats()?;
    let ctx = super::packet::xdp_ctx(ingress, hot.len());
    let mut n = 0u64;
    loop {
        for _ in 0..256 {
            let (v, _) = m.runner.run("xlb_xdp", hot, ctx.as_ref().map(|c| &c[..]))?;
            if v != XDP_TX {
                bail!("filling the queue: {} instead of XDP_TX", verdict_name(v));
            }
        }
        n += 256;
        let g = m.store.global_stats()?;
        if g.sync_dropped > before.sync_dropped {
            break;
        }
        if n > 100_000 {
            bail!("{n} packets and XLB_SYNC_EVENTS still not full");
        }
    }
    sysctl(pins, "sync_threshold=3 50")?;
    Ok(m.store.global_stats()?.sync_queued - before.sync_queued)
}

pub fn run(size: &Size, res: &mut Results) -> anyhow::Result<()> {
    let pins = TempPins::new("bench-sync")?;
    commit(
        pins.path(),
        vec![service(0, Proto::Tcp, ip4(VIP_DR), 80, "rr", &[(ip4(WEB1), 80, Fwd::Route, WEIGHT), (ip4(WEB2), 80, Fwd::Route, WEIGHT)])],
    )?;
    let d = DirectorNs::new("bsync", &[VIP_DR])?;
    let (ns, if0) = (d.ns, d.eth0);
    let cpu = bench_cpu();
    // The reader runs where lbd would: on another CPU than the packets.
    let reader_cpu = (cpu > 0).then_some(0);
    let size = *size;
    let path = pins.path().to_path_buf();
    let (figs, note) = in_netns(&ns.name, Some(cpu), move || -> anyhow::Result<(Vec<Figure>, String)> {
        let store = GlobalReader::open(&path)?;
        let mut runner = Runner::load(&path)?;
        let conns = conn_map(&path)?;
        let mut m = Measure { runner: &mut runner, store: &store, pairs: size.pairs };
        let cfg = Store::open_at(&path, CreateOptions::default())?.config()?;
        let rule = (cfg.sync_threshold, cfg.sync_period);
        if rule != (3, 50) || cfg.sync_refresh_period != 0 {
            bail!("sync sysctls are not IPVS's defaults: {cfg:?}");
        }
        let hot_port = 50_000u16;
        let ports: Vec<u16> = std::iter::once(hot_port).chain((0..size.spread_flows as u16).map(|i| 20_000 + i)).collect();
        let syns: Vec<Vec<u8>> = ports.iter().map(|&p| syn_frame(CLIENT, p, VIP_DR)).collect();
        m.create(&syns, if0, XDP_TX)?;
        // ESTABLISHED, and the spread flows' packet counts spread over the period, so that each
        // round owes about calls/50 sends (in lockstep, all would fall due in the same round).
        let ctx = |f: &[u8]| super::packet::xdp_ctx(if0, f.len());
        for (i, &p) in ports.iter().enumerate() {
            let f = data_frame(CLIENT, p, VIP_DR);
            for _ in 0..1 + i % rule.1 as usize {
                let (v, _) = m.runner.run("xlb_xdp", &f, ctx(&f).as_ref().map(|c| &c[..]))?;
                if v != XDP_TX {
                    bail!("warming flow {p}: {}", verdict_name(v));
                }
            }
        }
        let keys: Vec<ConnKey> = ports.iter().map(|&p| conn_key_in(CLIENT, p, VIP_DR)).collect();
        for k in &keys {
            let c = conns.get(k, 0).context("a flow is missing")?;
            if c.state != STATE_ESTABLISHED {
                bail!("flow {} not ESTABLISHED (state {})", u16::from_be(k.cport), c.state);
            }
        }
        let spread = ports[1..].iter().map(|&p| data_frame(CLIENT, p, VIP_DR)).collect();
        let specs = established_specs("DR", data_frame(CLIENT, hot_port, VIP_DR), spread, if0, XDP_TX);
        let flow_keys = [&keys[..1], &keys[1..]];
        let mut measured: Vec<Vec<Measured>> = (0..2).map(|_| STATES.iter().map(|_| new_measured()).collect()).collect();
        let mut sent = [[0u64; STATES.len()]; 2];
        let (mut read, mut odd, mut filled) = ([0u64; STATES.len()], 0u64, 0u64);
        let mut iwi = [0u64; STATES.len()];
        let mut ring = open_ring(&path)?;
        m.pairs = (size.pairs / SPLIT).max(1);
        for r in 0..size.rounds * SPLIT {
            for k in 0..STATES.len() {
                let state = (r + k) % STATES.len();
                set_master(&path, master(state))?;
                match state {
                    // What a filling left: lbd reads it before the round.
                    POLL | TIMER => _ = drain(&mut ring),
                    FULL => filled += fill(&mut m, &path, &specs[0].frames[0], if0)?,
                    _ => {}
                }
                let stop = AtomicBool::new(false);
                let ready = Barrier::new(2);
                let start = r * m.pairs;
                let iwi_before = irq_work(cpu);
                let got = std::thread::scope(|s| -> anyhow::Result<Option<(u64, u64)>> {
                    let h = matches!(state, POLL | TIMER).then(|| s.spawn(|| reader(&path, reader_cpu, state == POLL, &ready, &stop)));
                    if h.is_some() {
                        ready.wait();
                    }
                    let mut out = Ok(());
                    for (j, spec) in specs.iter().enumerate() {
                        out = round(&mut m, &conns, spec, flow_keys[j], state, start, rule, &mut measured[j][state], &mut sent[j][state]);
                        if out.is_err() {
                            break;
                        }
                    }
                    stop.store(true, Ordering::Release);
                    if let Some(h) = &h {
                        h.thread().unpark();
                    }
                    let got = match h {
                        Some(h) => Some(h.join().map_err(|_| anyhow!("reader thread panicked"))??),
                        None => None,
                    };
                    out.map(|_| got)
                })?;
                iwi[state] += irq_work(cpu).saturating_sub(iwi_before);
                if let Some((n, o)) = got {
                    read[state] += n;
                    odd += o;
                }
            }
        }
        set_master(&path, false)?;
        let mut figs = Vec::new();
        for (j, spec) in specs.iter().enumerate() {
            let mut mean_rows = Vec::new();
            let (base_net, base_mean) = (measured[j][NO_MASTER].net.clone(), measured[j][NO_MASTER].mean_net.clone());
            for (state, label) in STATES.iter().enumerate() {
                let mm = &mut measured[j][state];
                finish_proof(mm, spec);
                let due = sent[j][state];
                let queued: u64 = sent.iter().map(|s| s[state]).sum();
                if let Ok(p) = &mut mm.proof {
                    p.push_str(&format!(", in_pkts=+{}", mm.calls));
                    match state {
                        NO_MASTER | CONTROL => p.push_str(", sync_queued=+0, sync_dropped=+0"),
                        FULL => p.push_str(&format!(
                            ", sync_dropped=+{due} (the rule's count), sync_queued=+0; queue filled before each round ({filled} records in all, then one dropped)"
                        )),
                        _ => p.push_str(&format!(
                            ", sync_queued=+{due} (the rule's count), sync_dropped=+0; the reader read all {queued} records of the hot and spread rows"
                        )),
                    }
                }
                if master(state) && due == 0 && mm.proof.is_ok() {
                    mm.proof = Err("the rule owed no send in this state: nothing was measured".to_string());
                }
                if matches!(state, POLL | TIMER) && mm.proof.is_ok() && (read[state] != queued || odd != 0) {
                    mm.proof = Err(format!("the reader read {} records ({odd} not a ConnKey), {queued} were queued", read[state]));
                }
                let mut f = mm.figure("sync", format!("{}: {label}", spec.name));
                if state == NO_MASTER {
                    figs.push(f.target_text("baseline of the rows below"));
                    continue;
                }
                // Paired by round: the machine (shared, its speed changing by the second) is the same
                // for the states of one round, not across rounds.
                let paired_ratio = median_f(&mm.net.iter().zip(&base_net).map(|(a, b)| a / b).collect::<Vec<_>>());
                let paired_diff = median_f(&mm.mean_net.iter().zip(&base_mean).map(|(a, b)| a - b).collect::<Vec<_>>());
                f = f.baseline("no master", median_f(&base_net)).ratio(paired_ratio);
                let mut mean_row = Figure::new("sync", format!("{}: {label}, mean", spec.name), "ns", &mm.mean_net, mm.proof.clone())
                    .baseline("no master, mean", median_f(&base_mean))
                    .ratio(median_f(&mm.mean_net.iter().zip(&base_mean).map(|(a, b)| a / b).collect::<Vec<_>>()));
                if state == CONTROL {
                    f = f.target_text(format!("none: the same state twice, {paired_ratio:.2}× is this run's noise"));
                    mean_row = mean_row.target_text(format!("{paired_diff:+.1} ns per packet: this run's noise"));
                } else {
                    let check = Check { value: paired_ratio, limit: LIMIT, at_least: false, unit: "×".to_string() };
                    f.target = Some(format!("≤ {LIMIT}× no master, same round ({paired_ratio:.2}×): {}", check.verdict()));
                    f.check = Some(check);
                    // The mean includes the calls that queue a record: what one send costs.
                    let per_send = paired_diff * mm.calls as f64 / due.max(1) as f64;
                    mean_row = mean_row
                        .target_text(format!("{paired_diff:+.1} ns per packet over no master = {per_send:.0} ns per send ({due} sends)"));
                }
                figs.push(f);
                mean_rows.push(mean_row);
            }
            figs.extend(mean_rows);
        }
        let note = format!(
            "Sync (section 7): the DR service's established flows of section 1 (1 hot, {} spread, the spread \
             flows' packet counts offset so that 1 in 50 falls due in any run of consecutive flows), in {} states \
             taken in turn in {} rounds of {} (path, empty) pairs each (order rotated round by round): no master, \
             twice (the second a control: its ratio to the first is what noise alone gives in this run); \
             a master (`--start-daemon master`, committed as lbadm does) with a reader thread on CPU {} draining \
             XLB_SYNC_EVENTS, either polling it every 5 ms or reading every {} ms (as lbd's master does) \
             without waiting on the fd (IPVS wakes its master thread {} ms after a buffer is queued, or at the \
             8th buffer); a master whose queue nobody reads, filled before each of its rounds (sync_threshold \
             \"0 1\" on the hot flow until a record is dropped, then \"3 50\" again), so every send the round owes \
             is dropped. IPVS's rule (3 50) owes one send per 50 packets of a flow: the median packet sends \
             nothing, so the medians are the cost every packet pays (counting in_pkts, the rule's test); the mean \
             rows (per round mean(path) − mean(empty), median over rounds) include the sends, and their target \
             column says what one send cost (the difference of the means × calls ÷ sends). The data plane queues \
             with BPF_RB_NO_WAKEUP: with the default flags a record queued while the reader had read everything \
             made the kernel queue an irq_work on the packet's CPU to wake the reader, about 16 µs per send in \
             the VM this section was written on (3,669 IRQ work interrupts for 4,000 sends); IRQ work interrupts \
             taken by CPU {cpu} during the rounds now (/proc/interrupts IWI) — no master {}, reader polling every \
             5 ms {}, reader every 20 ms {}, queue full {}, for {} sends in each master state. Ratios are paired by round (median over rounds of the round's figure ÷ \
             the no-master figure of the same round): this shared machine's speed changes from one second to the \
             next, and the figures of one round are measured within about a second. Target ≤ {LIMIT}× no master: \
             the rule's test is a few instructions on a connection already in cache; on the 2-CPU VM the section \
             was written on, the kernel's durations came in steps of about 10 ns (151, 160, 170 ns), one step is \
             6–7% of the hot figure, and the control's paired ratio ranged 0.92–1.04× from run to run; a send per \
             packet, or a wakeup per send, would be far over.",
            specs[1].frames.len(),
            STATES.len(),
            size.rounds * SPLIT,
            m.pairs,
            reader_cpu.map_or("(the same)".to_string(), |c| c.to_string()),
            READ_EVERY.as_millis(),
            READ_EVERY.as_millis(),
            iwi[NO_MASTER] + iwi[CONTROL],
            iwi[POLL],
            iwi[TIMER],
            iwi[FULL],
            sent[0][POLL] + sent[1][POLL],
        );
        Ok((figs, note))
    })?;
    res.figures.extend(figs);
    res.notes.push(note);
    drop(ns);
    Ok(())
}
