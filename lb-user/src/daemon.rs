//! `lbd run`: the daemon loop. Periodic data-plane housekeeping (connection expiry, fwmark
//! rules, rate estimation), and with a configuration file: health checks and the reconcile step
//! that turns the configuration plus the checks' verdicts into the table — through `ctl` on a
//! loaded [`Table`] and one [`Store::commit`], as one lbadm command does.
//!
//! The store (and its lock) is opened for one step and closed again, on a blocking thread,
//! never across an await: lbadm stays usable and the checkers keep running meanwhile.
//!
//! Nothing here is needed for forwarding: the table lives in pinned maps, so while lbd is down
//! (killed, restarting) established and new connections keep flowing with the table as it was.
//! What waits for lbd: health changes, and the expiry of entries whose flows never come back
//! (the data plane replaces an expired entry itself when its flow returns), so ActiveConn /
//! InActConn counts of such flows stay until lbd sweeps them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{self, Check, DesiredConfig, Format};
use crate::ctl::{DestSpec, Errno};
use crate::health::{self, CheckId, Health, Verdict};
use crate::metrics::Shared;
use crate::model::{SvcKey, Table, dest_name, svc_name};
use crate::store::Store;

/// What `lbd run` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    pub pin_dir: PathBuf,
    /// Housekeeping period.
    pub interval: Duration,
    pub config: Option<PathBuf>,
    pub format: Format,
    pub metrics: Option<SocketAddr>,
}

/// The periodic work of `lbd run`, once: expiry, the interfaces, the fwmark classifier, the
/// local real servers. The one place where periodic data-plane work goes, but for the
/// estimator ([`estimate`]), which keeps its own clock. `interval`: the time to the next run
/// (templates that expire before it are re-armed now if IPVS would re-arm them).
pub fn periodic(dir: &Path, interval: Duration) -> anyhow::Result<usize> {
    // Twice the interval: a late tick must not open a gap either.
    let expired = Store::open_at(dir, Default::default())?.expire_connections(interval * 2)?;
    // Interface addresses and indexes, as they are now (IPIP's source without fib_src).
    if !crate::dataplane::attached(dir).is_empty()
        && let Err(e) = crate::dataplane::sync_ifaces(dir)
    {
        tracing::warn!(error = %format!("{e:#}"), "interface list not updated: {e:#}");
    }
    // fwmark services: the mangle MARK rules, as they are now.
    if let Err(e) = crate::fwmark::sync(dir) {
        tracing::warn!(error = %format!("{e:#}"), "fwmark classifier not updated: {e:#}");
    }
    // Real servers local to the director (crate::local), when the addresses changed.
    if let Err(e) = refresh_local(dir) {
        tracing::warn!(error = %format!("{e:#}"), "local real servers not updated: {e:#}");
    }
    Ok(expired)
}

/// One tick of IPVS's estimator (`ipvsadm --rate`). It assumes exactly
/// `estimator::TICK_SECS` since the last tick, so it runs on a timer of its own: checked from
/// the housekeeping interval, a 2 s tick came every 3 s at `--interval 1`.
pub fn estimate(dir: &Path) -> anyhow::Result<()> {
    Store::open_at(dir, Default::default())?.tick_rates()
}

/// Re-marks the real servers local to the director when this namespace's addresses differ from
/// the last time (the first call always looks).
fn refresh_local(dir: &Path) -> anyhow::Result<()> {
    static SEEN: Mutex<Option<Vec<IpAddr>>> = Mutex::new(None);
    let now = crate::local::interface_addrs();
    let Ok(mut seen) = SEEN.lock() else { return Ok(()) };
    if seen.as_ref() == Some(&now) {
        return Ok(());
    }
    let mut store = Store::open_at(dir, Default::default())?;
    let before = store.load()?;
    let mut after = before.clone();
    crate::local::forget();
    if after.refresh_local() {
        store.commit(&before, &after)?;
    }
    *seen = Some(now);
    Ok(())
}

/// What `lbd status` says of the attachments and the kernel features in use.
pub fn attachment_report(dir: &Path, store: &Store) -> Vec<String> {
    let att = crate::dataplane::attachments(dir);
    let mut out = Vec::new();
    if att.is_empty() {
        out.push(format!("attached: none: {NOT_CARRIED}"));
    } else {
        let list: Vec<String> = att.iter().map(|a| format!("{} (xdp {}, tc {})", a.iface, a.xdp, a.tc)).collect();
        out.push(format!("attached: {}", list.join(" ")));
    }
    let fib_src = store.config().map(|c| c.flags & lb_common::CFG_F_FIB_SRC != 0).unwrap_or(false);
    let mut feats = format!("features: fib_src {}", if fib_src { "yes" } else { "no (IPIP sourced from the egress interface's address)" });
    let forced: Vec<&str> = crate::features::OPTIONAL.into_iter().filter(|f| crate::features::forced_off(f)).collect();
    if !forced.is_empty() {
        feats.push_str(&format!("; forced off by XLB_FEATURES_OFF: {}", forced.join(",")));
    }
    out.push(feats);
    out
}

/// What the operator is told while no interface carries the data plane.
pub const NOT_CARRIED: &str =
    "no interface carries the data plane, so the table is not carried out (connections to its services are not balanced): run `lbd attach IFACE`";

/// One change a reconcile step made to the table: what lbd logs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub service: String,
    /// The real server (or fallback server) concerned; None: the service itself.
    pub real: Option<String>,
    pub kind: ChangeKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    ServiceAdded { scheduler: String },
    ServiceRemoved,
    ServiceUpdated,
    RealAdded { weight: i32 },
    RealWeight { weight: i32 },
    /// Down and not quiescent: out of the table until it is up again.
    RealRemovedDown,
    /// No longer in the configuration.
    RealRemoved,
    /// Every real server is down: the fallback server takes the traffic.
    FallbackIn { weight: i32 },
    /// Some real server is up again: the fallback server leaves.
    FallbackOut,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, r) = (&self.service, self.real.as_deref().unwrap_or(""));
        match &self.kind {
            ChangeKind::ServiceAdded { scheduler } => write!(f, "{s}: added (scheduler {scheduler})"),
            ChangeKind::ServiceRemoved => write!(f, "{s}: removed (no longer configured)"),
            ChangeKind::ServiceUpdated => write!(f, "{s}: settings updated"),
            ChangeKind::RealAdded { weight } => write!(f, "{s}: real server {r}: added with weight {weight}"),
            ChangeKind::RealWeight { weight } => write!(f, "{s}: real server {r}: weight {weight}"),
            ChangeKind::RealRemovedDown => write!(f, "{s}: real server {r} down: removed"),
            ChangeKind::RealRemoved => write!(f, "{s}: real server {r} removed"),
            ChangeKind::FallbackIn { weight } => write!(f, "{s}: fallback {r} in (every real server is down), weight {weight}"),
            ChangeKind::FallbackOut => write!(f, "{s}: fallback {r} removed (a real server is up)"),
        }
    }
}

impl Change {
    fn service(key: &SvcKey, kind: ChangeKind) -> Change {
        Change { service: svc_name(key), real: None, kind }
    }

    fn real(key: &SvcKey, addr: &IpAddr, port: u16, kind: ChangeKind) -> Change {
        Change { service: svc_name(key), real: Some(dest_name(addr, port)), kind }
    }

    /// The event: fallback changes are warnings (the service is out of real servers or comes back).
    pub fn log(&self) {
        let real = self.real.as_deref().unwrap_or("");
        let change = match &self.kind {
            ChangeKind::ServiceAdded { .. } => "service added",
            ChangeKind::ServiceRemoved => "service removed",
            ChangeKind::ServiceUpdated => "service updated",
            ChangeKind::RealAdded { .. } => "real server added",
            ChangeKind::RealWeight { .. } => "real server weight",
            ChangeKind::RealRemovedDown => "real server removed (down)",
            ChangeKind::RealRemoved => "real server removed",
            ChangeKind::FallbackIn { .. } => "fallback in",
            ChangeKind::FallbackOut => "fallback out",
        };
        match &self.kind {
            ChangeKind::FallbackIn { weight } => {
                tracing::warn!(service = %self.service, real = real, fallback = real, weight, change, "{self}")
            }
            ChangeKind::FallbackOut => tracing::warn!(service = %self.service, real = real, fallback = real, change, "{self}"),
            ChangeKind::RealAdded { weight } | ChangeKind::RealWeight { weight } => {
                tracing::info!(service = %self.service, real = real, weight, change, "{self}")
            }
            _ if self.real.is_some() => tracing::info!(service = %self.service, real = real, change, "{self}"),
            _ => tracing::info!(service = %self.service, change, "{self}"),
        }
    }
}

fn errno_text(e: Errno) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

/// Brings `table` to what `cfg` and `health` ask for; `gone` are services of an earlier
/// configuration to remove. Returns what changed (for the log). The table is untouched when an
/// error is returned only in the sense that the caller must not commit it.
///
/// Per real server: up: present with its weight; down: weight 0 (quiescent) or absent;
/// unknown (no verdict yet, e.g. just after a restart): left as the table has it, added with
/// its weight when missing. The fallback is present while every real server is down, left as
/// it is while some are unknown and none up, absent otherwise. Other dests of a configured
/// service are removed: the file is authoritative for its services.
pub fn reconcile(table: &mut Table, cfg: &DesiredConfig, health: &Health, gone: &[SvcKey]) -> Result<Vec<Change>, Vec<String>> {
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    for key in gone {
        if cfg.services.iter().any(|s| s.spec.key == *key) || table.find_service(key).is_none() {
            continue;
        }
        match table.del_service(key) {
            Ok(()) => changes.push(Change::service(key, ChangeKind::ServiceRemoved)),
            Err(e) => errors.push(format!("{}: cannot remove: {}", svc_name(key), errno_text(e))),
        }
    }
    for (si, vs) in cfg.services.iter().enumerate() {
        let key = vs.spec.key;
        let name = svc_name(&key);
        match table.find_service(&key) {
            None => match table.add_service(&vs.spec) {
                Ok(_) => changes.push(Change::service(&key, ChangeKind::ServiceAdded { scheduler: vs.spec.sched.to_string() })),
                Err(e) => {
                    errors.push(format!("line {}: {name}: {}", vs.line, errno_text(e)));
                    continue;
                }
            },
            Some(s) => {
                let same = s.sched == vs.spec.sched
                    && s.flags & !lb_common::SVC_F_HASHED == vs.spec.flags
                    && s.timeout == vs.spec.timeout
                    && s.netmask == vs.spec.netmask
                    && s.pe_name == vs.spec.pe_name;
                if !same {
                    match table.edit_service(&vs.spec) {
                        Ok(()) => changes.push(Change::service(&key, ChangeKind::ServiceUpdated)),
                        Err(e) => errors.push(format!("line {}: {name}: {}", vs.line, errno_text(e))),
                    }
                }
            }
        }
        // (dest, health, line, is the fallback)
        let mut wanted: Vec<(DestSpec, Option<bool>, usize, bool)> = Vec::new();
        let states: Vec<Option<bool>> = (0..vs.reals.len()).map(|ri| health.real(si, ri)).collect();
        for (ri, r) in vs.reals.iter().enumerate() {
            let spec = match states[ri] {
                Some(true) | None => Some(DestSpec { weight: health.weight(si, ri, r.dest.weight), ..r.dest.clone() }),
                Some(false) if r.quiescent => Some(DestSpec { weight: 0, ..r.dest.clone() }),
                Some(false) => None,
            };
            match spec {
                Some(d) => wanted.push((d, states[ri], r.line, false)),
                None => {
                    if let Some(e) = del_if_present(table, &key, &r.dest.addr, r.dest.port) {
                        match e {
                            Ok(()) => changes.push(Change::real(&key, &r.dest.addr, r.dest.port, ChangeKind::RealRemovedDown)),
                            Err(e) => errors.push(format!("line {}: {name}: {}", r.line, errno_text(e))),
                        }
                    }
                }
            }
        }
        let any_up = states.contains(&Some(true));
        let all_down = states.iter().all(|s| *s == Some(false));
        if let Some(fb) = &vs.fallback {
            let is_real = vs.reals.iter().any(|r| r.dest.addr == fb.addr && r.dest.port == fb.port);
            if !is_real {
                if all_down {
                    wanted.push((fb.clone(), Some(true), vs.line, true));
                } else if !any_up {
                    // Unknown: keep whatever the table has.
                    wanted.push((fb.clone(), None, vs.line, true));
                } else if let Some(e) = del_if_present(table, &key, &fb.addr, fb.port) {
                    match e {
                        Ok(()) => changes.push(Change::real(&key, &fb.addr, fb.port, ChangeKind::FallbackOut)),
                        Err(e) => errors.push(format!("line {}: {name}: {}", vs.line, errno_text(e))),
                    }
                }
            }
        }
        for (d, state, line, is_fallback) in &wanted {
            let cur = table.find_service(&key).and_then(|s| s.dests.iter().find(|x| x.addr == d.addr && x.port == d.port));
            let r = match cur {
                None if state.is_none() && vs.fallback.as_ref().is_some_and(|f| f.addr == d.addr && f.port == d.port) => continue,
                None if *is_fallback => table.add_dest(&key, d).map(|_| ChangeKind::FallbackIn { weight: d.weight }),
                None => table.add_dest(&key, d).map(|_| ChangeKind::RealAdded { weight: d.weight }),
                // Unknown: as the table has it.
                Some(_) if state.is_none() => continue,
                Some(x) if x.weight == d.weight && x.fwd == d.fwd && x.u_threshold == d.u_threshold && x.l_threshold == d.l_threshold => {
                    continue;
                }
                Some(_) => table.edit_dest(&key, d).map(|_| ChangeKind::RealWeight { weight: d.weight }),
            };
            match r {
                Ok(kind) => changes.push(Change::real(&key, &d.addr, d.port, kind)),
                Err(e) => errors.push(format!("line {line}: {name}: real server {}: {}", dest_name(&d.addr, d.port), errno_text(e))),
            }
        }
        // Dests the file does not name.
        let extra: Vec<(IpAddr, u16)> = table
            .find_service(&key)
            .map(|s| {
                s.dests
                    .iter()
                    .filter(|d| !wanted.iter().any(|(w, ..)| w.addr == d.addr && w.port == d.port))
                    .map(|d| (d.addr, d.port))
                    .collect()
            })
            .unwrap_or_default();
        for (a, p) in extra {
            match table.del_dest(&key, &a, p) {
                Ok(()) => changes.push(Change::real(&key, &a, p, ChangeKind::RealRemoved)),
                Err(e) => errors.push(format!("{name}: {}", errno_text(e))),
            }
        }
    }
    if errors.is_empty() { Ok(changes) } else { Err(errors) }
}

fn del_if_present(table: &mut Table, key: &SvcKey, addr: &IpAddr, port: u16) -> Option<Result<(), Errno>> {
    let present = table.find_service(key).is_some_and(|s| s.dests.iter().any(|d| d.addr == *addr && d.port == port));
    present.then(|| table.del_dest(key, addr, port))
}

/// One reconcile step on the pinned table: load, reconcile, commit when something changed.
pub fn apply(dir: &Path, cfg: &DesiredConfig, health: &Health, gone: &[SvcKey]) -> anyhow::Result<Vec<Change>> {
    let mut store = Store::open_at(dir, Default::default())?;
    let before = store.load()?;
    let mut after = before.clone();
    let changes = match reconcile(&mut after, cfg, health, gone) {
        Ok(c) => c,
        Err(errors) => bail!("the table cannot be programmed as configured:\n  {}", errors.join("\n  ")),
    };
    if after != before {
        store.commit(&before, &after)?;
        for c in &changes {
            c.log();
        }
        let n = changes.len();
        tracing::info!(changes = n, "{n} change{} committed", if n == 1 { "" } else { "s" });
    }
    Ok(changes)
}

/// The loaded configuration and its checkers.
struct Running {
    path: PathBuf,
    format: Format,
    cfg: Arc<DesiredConfig>,
    mtime: Option<SystemTime>,
    generation: u64,
    health: Health,
    checkers: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for c in &self.checkers {
            c.abort();
        }
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn load_config(path: &Path, format: Format) -> anyhow::Result<DesiredConfig> {
    let cfg = config::load(path, format)?;
    for w in &cfg.warnings {
        tracing::warn!(config = %path.display(), line = w.line, "{}:{}: warning: {}", path.display(), w.line, w.msg);
    }
    Ok(cfg)
}

fn start_checkers(cfg: &DesiredConfig, generation: u64, tx: &mpsc::UnboundedSender<Verdict>) -> Vec<JoinHandle<()>> {
    let mut out = Vec::new();
    for (si, s) in cfg.services.iter().enumerate() {
        for (ri, r) in s.reals.iter().enumerate() {
            for (ci, c) in r.checks.iter().enumerate() {
                let id = CheckId { generation, service: si, real: ri, check: ci };
                out.push(health::spawn(id, c.clone(), tx.clone()));
            }
        }
    }
    out
}

/// Health states of the old configuration's real servers that the new one checks the same way.
fn carry_health(old: &Running, new: &DesiredConfig) -> Health {
    type Known<'a> = (&'a Vec<Check>, &'a Vec<Option<bool>>);
    let mut by_key: HashMap<(SvcKey, IpAddr, u16), Known> = HashMap::new();
    for (si, s) in old.cfg.services.iter().enumerate() {
        for (ri, r) in s.reals.iter().enumerate() {
            if let Some(st) = old.health.states.get(si).and_then(|x| x.get(ri)) {
                by_key.insert((s.spec.key, r.dest.addr, r.dest.port), (&r.checks, st));
            }
        }
    }
    let mut h = Health::unknown(new);
    for (si, s) in new.services.iter().enumerate() {
        for (ri, r) in s.reals.iter().enumerate() {
            if let Some((checks, st)) = by_key.get(&(s.spec.key, r.dest.addr, r.dest.port))
                && **checks == r.checks
            {
                h.states[si][ri] = (*st).clone();
            }
        }
    }
    h
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f).await.context("worker thread failed")?
}

/// Runs the daemon until SIGTERM/SIGINT. Errors in the configuration or in its first
/// programming end it before anything runs.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run_async(opts))
}

async fn run_async(opts: Options) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let dir = opts.pin_dir.clone();
    let (tx, mut rx) = mpsc::unbounded_channel::<Verdict>();
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut generation = 0u64;

    let mut running: Option<Running> = None;
    if let Some(path) = &opts.config {
        let cfg = Arc::new(load_config(path, opts.format)?);
        crate::logging::set_logfile(cfg.logfile.clone());
        let health = Health::unknown(&cfg);
        let (d, c, h) = (dir.clone(), cfg.clone(), health.clone());
        blocking(move || apply(&d, &c, &h, &[])).await?;
        tracing::info!(
            config = %path.display(),
            services = cfg.services.len(),
            "{}: {} virtual services, health checks started",
            path.display(),
            cfg.services.len()
        );
        let checkers = start_checkers(&cfg, generation, &tx);
        running = Some(Running {
            path: path.clone(),
            format: opts.format,
            mtime: mtime(path),
            cfg,
            generation,
            health,
            checkers,
        });
    }
    // lvs.cf's director pair (crate::pulse), for the life of this process.
    let pulse = match running.as_ref().and_then(|r| r.cfg.pair.clone()) {
        Some(pair) => crate::pulse::start(pair, dir.clone()).await?,
        None => None,
    };
    if let Some(addr) = opts.metrics {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("metrics: cannot listen on {addr}"))?;
        tracing::info!(%addr, "metrics on http://{addr}/metrics");
        tokio::spawn(crate::metrics::serve(listener, dir.clone(), shared.clone()));
    }
    publish(&shared, &running);
    // The sync daemons (`--start-daemon`) follow XLB_SYNC_DAEMONS on a thread of their own.
    crate::sync::spawn(dir.clone()).context("cannot start the sync thread")?;
    // Ready for systemd (Type=notify): the configuration is loaded and its first commit is done.
    let mut status = status_line(&running);
    notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
    // The watchdog is kept from this loop: a loop that hangs (a stuck store lock, a blocked
    // step) stops the keep-alives and systemd restarts lbd.
    let watchdog_every = watchdog_period();
    let watchdog_on = watchdog_every.is_some();
    let mut watchdog = tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut tick = tokio::time::interval(opts.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rate_tick = tokio::time::interval(Duration::from_secs(crate::estimator::TICK_SECS));
    rate_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_carried: Option<bool> = None;
    // A reconcile that failed (store busy, ...) is retried on the next tick.
    let mut dirty = false;
    loop {
        let mut reload = false;
        tokio::select! {
            _ = rate_tick.tick() => {
                let d = dir.clone();
                if let Err(e) = blocking(move || estimate(&d)).await {
                    tracing::warn!(error = %format!("{e:#}"), "estimator tick failed: {e:#}");
                }
            }
            _ = tick.tick() => {
                let attached = crate::dataplane::attached(&dir);
                let carried = !attached.is_empty();
                if was_carried != Some(carried) {
                    if carried {
                        let interfaces = attached.join(" ");
                        tracing::info!(%interfaces, "data plane attached to {interfaces}");
                    } else {
                        tracing::warn!("{NOT_CARRIED}");
                    }
                    was_carried = Some(carried);
                }
                // Periodic data-plane work: the one place for it.
                let d = dir.clone();
                let every = opts.interval;
                if let Err(e) = blocking(move || periodic(&d, every)).await {
                    tracing::warn!(error = %format!("{e:#}"), "housekeeping failed: {e:#}");
                }
                if let Some(r) = &running
                    && r.cfg.autoreload
                    && mtime(&r.path) != r.mtime
                {
                    reload = true;
                }
            }
            Some(v) = rx.recv() => {
                let mut batch = vec![v];
                while let Ok(v) = rx.try_recv() {
                    batch.push(v);
                }
                if let Some(r) = &mut running {
                    for v in batch.iter().filter(|v| v.id.generation == r.generation) {
                        r.health.set(&v.id, v.up);
                        r.health.set_weight(&v.id, v.weight);
                        if let Some(real) = r.cfg.services.get(v.id.service).and_then(|s| s.reals.get(v.id.real))
                            && let Some(s) = r.cfg.services.get(v.id.service)
                        {
                            let (service, real, reason) = (svc_name(&s.spec.key), dest_name(&real.dest.addr, real.dest.port), &v.detail);
                            if v.up {
                                let weight = v.weight.map(|w| format!(" with weight {w}")).unwrap_or_default();
                                tracing::info!(%service, %real, %reason, weight = v.weight, "{service}: real server {real} is up{weight} ({reason})");
                            } else {
                                tracing::warn!(%service, %real, %reason, "{service}: real server {real} is down ({reason})");
                            }
                        }
                    }
                    dirty = true;
                }
            }
            _ = watchdog.tick(), if watchdog_on => notify(&[sd_notify::NotifyState::Watchdog]),
            _ = hup.recv() => reload = running.is_some(),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
        if reload && let Some(mut old) = running.take() {
            reloading();
            generation += 1;
            let new_mtime = mtime(&old.path);
            match load_config(&old.path, old.format) {
                Ok(cfg) => {
                    let cfg = Arc::new(cfg);
                    crate::logging::set_logfile(cfg.logfile.clone());
                    let health = carry_health(&old, &cfg);
                    let gone: Vec<SvcKey> = old
                        .cfg
                        .services
                        .iter()
                        .map(|s| s.spec.key)
                        .filter(|k| !cfg.services.iter().any(|n| n.spec.key == *k))
                        .collect();
                    let (d, c, h) = (dir.clone(), cfg.clone(), health.clone());
                    match blocking(move || apply(&d, &c, &h, &gone)).await {
                        Ok(_) => {
                            tracing::info!(
                                config = %old.path.display(),
                                services = cfg.services.len(),
                                "{}: reloaded, {} virtual services",
                                old.path.display(),
                                cfg.services.len()
                            );
                            let checkers = start_checkers(&cfg, generation, &tx);
                            let path = old.path.clone();
                            let format = old.format;
                            drop(old);
                            running = Some(Running { path, format, cfg, mtime: new_mtime, generation, health, checkers });
                        }
                        Err(e) => {
                            tracing::error!(config = %old.path.display(), error = %format!("{e:#}"), "{}: not reloaded: {e:#}", old.path.display());
                            old.mtime = new_mtime;
                            running = Some(old);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(config = %old.path.display(), error = %format!("{e:#}"), "not reloaded, the running configuration stays: {e:#}");
                    old.mtime = new_mtime;
                    running = Some(old);
                }
            }
            dirty = false;
        }
        if dirty && let Some(r) = &running {
            let (d, c, h) = (dir.clone(), r.cfg.clone(), r.health.clone());
            match blocking(move || apply(&d, &c, &h, &[])).await {
                Ok(_) => dirty = false,
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "table not updated (retrying): {e:#}"),
            }
        }
        publish(&shared, &running);
        if reload {
            status = status_line(&running);
            notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
        } else if status_line(&running) != status {
            status = status_line(&running);
            notify(&[sd_notify::NotifyState::Status(&status)]);
        }
    }
    notify(&[sd_notify::NotifyState::Stopping, sd_notify::NotifyState::Status("stopping")]);
    if let Some(p) = pulse {
        p.stop().await;
    }
    // ldirectord's `cleanstop = yes` (its default): the services it configured go with it.
    if let Some(r) = running.take()
        && !r.cfg.cleanstop.is_empty()
    {
        let keys = r.cfg.cleanstop.clone();
        let d = dir.clone();
        match blocking(move || apply(&d, &DesiredConfig::default(), &Health::default(), &keys)).await {
            Ok(_) => tracing::info!("stopping; cleanstop: the virtual services that ask for it are removed"),
            Err(e) => tracing::error!(error = %format!("{e:#}"), "stopping (cleanstop): the virtual services could not be removed: {e:#}"),
        }
        return Ok(());
    }
    tracing::info!("stopping; the table and the data plane stay as they are");
    Ok(())
}

/// A message to systemd's notification socket; nothing without one (not run by systemd).
fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

/// Half of WATCHDOG_USEC when systemd asks this process for keep-alives. Read here, not with
/// `sd_notify::watchdog_enabled`: that one requires WATCHDOG_PID, which sd_watchdog_enabled(3)
/// treats as optional (checked only when set).
fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok().filter(|u| *u > 0)?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

/// RELOADING=1 with the monotonic time systemd 253+ asks for with it.
fn reloading() {
    match sd_notify::NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[sd_notify::NotifyState::Reloading, now]),
        Err(_) => notify(&[sd_notify::NotifyState::Reloading]),
    }
}

/// systemd's STATUS= (`systemctl status lbd`): the services and how many real servers are up.
fn status_line(running: &Option<Running>) -> String {
    let Some(r) = running else { return "running (no configuration: housekeeping only)".into() };
    let total: usize = r.cfg.services.iter().map(|s| s.reals.len()).sum();
    let up = r
        .cfg
        .services
        .iter()
        .enumerate()
        .flat_map(|(si, s)| (0..s.reals.len()).map(move |ri| (si, ri)))
        .filter(|&(si, ri)| r.health.real(si, ri) == Some(true))
        .count();
    format!("{} virtual services, {up} of {total} real servers up", r.cfg.services.len())
}

fn publish(shared: &Arc<Mutex<Shared>>, running: &Option<Running>) {
    if let Ok(mut s) = shared.lock() {
        s.cfg = running.as_ref().map(|r| r.cfg.clone());
        s.generation = running.as_ref().map_or(0, |r| r.generation);
        s.health = running.as_ref().map(|r| r.health.clone()).unwrap_or_default();
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "checkinterval=1\nquiescent=yes\nfallback=192.168.88.50:80 gate\nvirtual=192.168.88.15:80\n    \
                       real=192.168.88.100:80 gate 1\n    real=192.168.88.200:80 gate 2\n    checktype=connect\n    \
                       scheduler=rr\n";

    fn weights(t: &Table) -> Vec<(String, i32)> {
        t.services[0].dests.iter().map(|d| (d.addr.to_string(), d.weight)).collect()
    }

    fn w(v: &[(&str, i32)]) -> Vec<(String, i32)> {
        v.iter().map(|(a, w)| (a.to_string(), *w)).collect()
    }

    #[test]
    fn health_drives_weights_and_fallback() {
        let cfg = config::parse(CFG, Format::Auto).expect("config");
        let mut t = Table::default();
        let mut h = Health::unknown(&cfg);
        reconcile(&mut t, &cfg, &h, &[]).expect("first");
        assert_eq!(weights(&t), w(&[("192.168.88.200", 2), ("192.168.88.100", 1)]));
        // Nothing to do a second time.
        assert_eq!(reconcile(&mut t, &cfg, &h, &[]).expect("again"), Vec::<Change>::new());
        h.states[0][0] = vec![Some(false)];
        h.states[0][1] = vec![Some(true)];
        reconcile(&mut t, &cfg, &h, &[]).expect("web1 down");
        assert_eq!(weights(&t), w(&[("192.168.88.200", 2), ("192.168.88.100", 0)]));
        h.states[0][1] = vec![Some(false)];
        reconcile(&mut t, &cfg, &h, &[]).expect("all down");
        assert_eq!(weights(&t), w(&[("192.168.88.50", 1), ("192.168.88.200", 0), ("192.168.88.100", 0)]));
        // A restart: nothing known yet, the table stays as it is.
        let unknown = Health::unknown(&cfg);
        let before = t.clone();
        reconcile(&mut t, &cfg, &unknown, &[]).expect("restart");
        assert_eq!(t, before);
        h.states[0][0] = vec![Some(true)];
        reconcile(&mut t, &cfg, &h, &[]).expect("web1 back");
        assert_eq!(weights(&t), w(&[("192.168.88.200", 0), ("192.168.88.100", 1)]));
    }

    #[test]
    fn not_quiescent_removes_and_readds() {
        let cfg = config::parse(&CFG.replace("quiescent=yes", "quiescent=no"), Format::Auto).expect("config");
        let mut t = Table::default();
        let mut h = Health::unknown(&cfg);
        h.states[0][0] = vec![Some(false)];
        reconcile(&mut t, &cfg, &h, &[]).expect("down");
        assert_eq!(weights(&t), w(&[("192.168.88.200", 2)]));
        h.states[0][0] = vec![Some(true)];
        reconcile(&mut t, &cfg, &h, &[]).expect("up");
        assert_eq!(weights(&t), w(&[("192.168.88.100", 1), ("192.168.88.200", 2)]));
        // Removed from the file: gone from the table.
        let key = cfg.services[0].spec.key;
        reconcile(&mut t, &DesiredConfig::default(), &Health::default(), &[key]).expect("removed");
        assert!(t.services.is_empty());
    }

    #[test]
    fn metrics_render() {
        let cfg = config::parse(CFG, Format::Auto).expect("config");
        let mut t = Table::default();
        reconcile(&mut t, &cfg, &Health::unknown(&cfg), &[]).expect("first");
        let text = crate::metrics::render(&t, &lb_common::GlobalStats::default());
        assert!(text.contains("xlb_real_weight{service=\"TCP 192.168.88.15:80\",real=\"192.168.88.100:80\"} 1\n"), "{text}");
        assert!(text.contains("xlb_dataplane_verdicts_total{verdict=\"drop\"} 0\n"));
    }
}
