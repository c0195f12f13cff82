//! `/metrics` of `lbd run --metrics ADDR`: the table's IPVS counters, the real servers' and the
//! checks' health, the checks' latency, the data plane's verdicts, events and XDP modes, the
//! sync daemons' counters and lbd's build, encoded by the official Prometheus client crate
//! (`prometheus-client`) and served by hyper ([`server`]).
//!
//! A scrape-time collector: the table is read from the pinned maps at each scrape (so the
//! counters are IPVS's, as `ipvsadm -Ln --stats` shows them, whoever changed the table); only
//! the check latencies are kept here between scrapes ([`observe_check`]).

pub mod server;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use lb_common::GlobalStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::config::{CheckKind, DesiredConfig};
use crate::dataplane::Attachment;
use crate::health::{CheckId, Health};
use crate::model::{Counters, Dest, Table, dest_name, svc_name};

pub use server::serve;

/// The default listening address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9177";

/// What `lbd run` shares with the metrics endpoint: the configuration, its generation (the
/// checkers' [`CheckId::generation`]) and the checks' verdicts.
#[derive(Clone, Debug, Default)]
pub struct Shared {
    pub cfg: Option<Arc<DesiredConfig>>,
    pub generation: u64,
    pub health: Health,
}

/// Upper bounds of the check latency buckets, in seconds: a connect on the same segment
/// (under a millisecond) up to keepalived's and ldirectord's longest usual timeouts.
const CHECK_BUCKETS: [f64; 15] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// One check's record since its checker started.
#[derive(Clone, Debug)]
struct CheckRecord {
    duration: Histogram,
    failures: u64,
}

/// The checks' records, by checker; those of replaced checkers are dropped at the next scrape.
static CHECKS: LazyLock<Mutex<HashMap<CheckId, CheckRecord>>> = LazyLock::new(Default::default);

/// Records one run of a check: how long it took and whether it passed (`health::spawn`).
pub fn observe_check(id: CheckId, took: Duration, passed: bool) {
    let Ok(mut checks) = CHECKS.lock() else { return };
    let r = checks.entry(id).or_insert_with(|| CheckRecord { duration: Histogram::new(CHECK_BUCKETS), failures: 0 });
    r.duration.observe(took.as_secs_f64());
    if !passed {
        r.failures += 1;
    }
}

/// The check's type as a label value, from its [`CheckKind`] variant's name (`Connect` →
/// `connect`, `SimpleTcp` → `simple_tcp`): derived from `Debug` so that every variant, those
/// to come included, gets its own name without a list to keep here.
pub fn check_type(kind: &CheckKind) -> String {
    let debug = format!("{kind:?}");
    let mut out = String::new();
    for c in debug.chars().take_while(char::is_ascii_alphanumeric) {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RealLabels {
    service: String,
    real: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    service: String,
    real: String,
    check_type: String,
    /// Where the check connects (`checkport`, `connect_port`, ...: not always the real's port).
    check_target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttachmentLabels {
    interface: String,
    xdp_mode: String,
    tc: String,
}

/// One check of the configuration as the metrics name it, with its verdict and record.
struct CheckSample {
    labels: CheckLabels,
    up: Option<bool>,
    record: Option<CheckRecord>,
}

/// Everything one scrape reports, read when the scrape comes.
pub struct Snapshot {
    table: Table,
    global: GlobalStats,
    attached: Vec<Attachment>,
    /// Per configured real server: its checks' aggregate verdict.
    reals_up: Vec<(RealLabels, bool)>,
    checks: Vec<CheckSample>,
    sync: Vec<(&'static str, &'static str, u64)>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("services", &self.table.services.len()).finish_non_exhaustive()
    }
}

impl Snapshot {
    /// The snapshot of a table, the data plane's counters and attachments, and, under
    /// `lbd run --config`, the configuration's health and its checks' records.
    pub fn new(table: Table, global: GlobalStats, shared: Option<&Shared>, attached: Vec<Attachment>) -> Snapshot {
        let mut reals_up = Vec::new();
        let mut checks = Vec::new();
        let records = current_records(shared.filter(|s| s.cfg.is_some()).map(|s| s.generation));
        if let Some(sh) = shared
            && let Some(cfg) = &sh.cfg
        {
            for (si, s) in cfg.services.iter().enumerate() {
                let service = svc_name(&s.spec.key);
                for (ri, r) in s.reals.iter().enumerate() {
                    let real = dest_name(&r.dest.addr, r.dest.port);
                    if let Some(up) = sh.health.real(si, ri) {
                        reals_up.push((RealLabels { service: service.clone(), real: real.clone() }, up));
                    }
                    let mut seen: Vec<CheckLabels> = Vec::new();
                    for (ci, c) in r.checks.iter().enumerate() {
                        let mut labels = CheckLabels {
                            service: service.clone(),
                            real: real.clone(),
                            check_type: check_type(&c.kind),
                            check_target: c.target.to_string(),
                        };
                        // Two checks of one type on one target (keepalived allows it): the
                        // second is `... #2`, so that no two series share their labels.
                        let twins = seen.iter().filter(|l| l.check_type == labels.check_type && l.check_target == labels.check_target).count();
                        seen.push(labels.clone());
                        if twins > 0 {
                            labels.check_target = format!("{} #{}", labels.check_target, twins + 1);
                        }
                        let id = CheckId { generation: sh.generation, service: si, real: ri, check: ci };
                        let up = sh.health.states.get(si).and_then(|s| s.get(ri)).and_then(|r| r.get(ci)).copied().flatten();
                        checks.push(CheckSample { labels, up, record: records.get(&id).cloned() });
                    }
                }
            }
        }
        Snapshot { table, global, attached, reals_up, checks, sync: crate::sync::COUNTERS.all() }
    }

    /// The exposition in the Prometheus text format 0.0.4 (what `curl` and promtool read).
    pub fn text(self) -> String {
        self.encode(Format::Text).0
    }

    /// The exposition in `format`, and its `Content-Type`.
    pub fn encode(self, format: Format) -> (String, &'static str) {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        // Writing into a String fails only if an encoder refuses a metric, which ours never
        // hand it (no native histograms, no exemplars).
        let r = match format {
            Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "metrics: encoding failed");
        }
        (out, format.content_type())
    }
}

/// The exposition formats `/metrics` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text (what Prometheus asks for first).
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names it, else text 0.0.4.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The records of the checkers of `generation` and later; older checkers' records are dropped
/// (a reload restarts every checker). No configuration: no checkers, nothing to drop.
fn current_records(generation: Option<u64>) -> HashMap<CheckId, CheckRecord> {
    let Ok(mut checks) = CHECKS.lock() else { return HashMap::new() };
    let Some(g) = generation else { return HashMap::new() };
    checks.retain(|id, _| id.generation >= g);
    checks.clone()
}

/// A counter family: `name` gets `_total`, and the unit's suffix before it.
fn counters<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    samples: impl IntoIterator<Item = (L, u64)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?;
    for (labels, v) in samples {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauges<L: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, i64)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in samples {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

type CounterOf = fn(&Counters) -> u64;

/// The IPVS counters of a service and of a real server (`ipvsadm -Ln --stats`): name (without
/// `_total`), unit, help, value.
const IPVS_COUNTERS: [(&str, Option<Unit>, &str, CounterOf); 5] = [
    ("connections", None, "connections scheduled (ipvsadm -Ln --stats: Conns)", |c| c.conns),
    ("in_packets", None, "packets from clients (InPkts)", |c| c.inpkts),
    ("out_packets", None, "packets to clients, NAT only (OutPkts)", |c| c.outpkts),
    ("in", Some(Unit::Bytes), "bytes from clients (InBytes)", |c| c.inbytes),
    ("out", Some(Unit::Bytes), "bytes to clients, NAT only (OutBytes)", |c| c.outbytes),
];

type GaugeOf = fn(&Dest) -> i64;

const REAL_GAUGES: [(&str, &str, GaugeOf); 4] = [
    ("xlb_real_active_connections", "Real server: connections established (ipvsadm -Ln: ActiveConn).", |d| d.active_conns.into()),
    ("xlb_real_inactive_connections", "Real server: connections in other states (ipvsadm -Ln: InActConn).", |d| d.inact_conns.into()),
    (
        "xlb_real_persistent_connections",
        "Real server: persistence templates (ipvsadm -Ln --persistent-conn: PersistConn).",
        |d| d.persist_conns.into(),
    ),
    ("xlb_real_weight", "Real server: weight in the table (0: quiesced).", |d| d.weight.into()),
];

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let services: Vec<(ServiceLabels, &crate::model::Service)> =
            self.table.services.iter().map(|s| (ServiceLabels { service: svc_name(&s.key) }, s)).collect();
        let dests: Vec<(RealLabels, &Dest)> = services
            .iter()
            .flat_map(|(sl, s)| {
                s.dests.iter().map(|d| (RealLabels { service: sl.service.clone(), real: dest_name(&d.addr, d.port) }, d))
            })
            .collect();
        for (name, unit, help, get) in IPVS_COUNTERS {
            let per_service = services.iter().map(|(l, s)| (l.clone(), get(&s.stats)));
            counters(&mut enc, &format!("xlb_service_{name}"), &format!("Virtual service: {help}."), unit.clone(), per_service)?;
            let per_real = dests.iter().map(|(l, d)| (l.clone(), get(&d.stats)));
            counters(&mut enc, &format!("xlb_real_{name}"), &format!("Real server: {help}."), unit, per_real)?;
        }
        for (name, help, get) in REAL_GAUGES {
            gauges(&mut enc, name, help, dests.iter().map(|(l, d)| (l.clone(), get(d))))?;
        }

        gauges(
            &mut enc,
            "xlb_real_up",
            "Real server: its checks' verdict, 1 up (all checks pass), 0 down (absent: no verdict yet).",
            self.reals_up.iter().map(|(l, up)| (l.clone(), i64::from(*up))),
        )?;
        gauges(
            &mut enc,
            "xlb_check_up",
            "Health check: its last verdict, 1 up, 0 down (absent: no verdict yet).",
            self.checks.iter().filter_map(|c| Some((c.labels.clone(), i64::from(c.up?)))),
        )?;
        counters(
            &mut enc,
            "xlb_check_failures",
            "Health check: runs that failed since its checker started.",
            None,
            self.checks.iter().filter_map(|c| Some((c.labels.clone(), c.record.as_ref()?.failures))),
        )?;
        let mut m = enc.encode_descriptor(
            "xlb_check_duration",
            "Health check: time one run took (failures included: a timeout counts its timeout).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for c in &self.checks {
            if let Some(r) = &c.record {
                r.duration.encode(m.encode_family(&c.labels)?)?;
            }
        }

        let attached = i64::try_from(self.attached.len()).unwrap_or(i64::MAX);
        let m = enc.encode_descriptor(
            "xlb_dataplane_attached_interfaces",
            "Interfaces the XDP program is attached to; 0: the table is not carried out.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(attached).encode(m)?;
        gauges(
            &mut enc,
            "xlb_dataplane_attachment_info",
            "One per attached interface: its XDP mode (native, skb) and tc attachment.",
            self.attached.iter().map(|a| {
                (AttachmentLabels { interface: a.iface.clone(), xdp_mode: a.xdp.to_string(), tc: a.tc.to_string() }, 1)
            }),
        )?;
        counters(
            &mut enc,
            "xlb_dataplane_verdicts",
            "XDP verdicts of the data plane, per verdict.",
            None,
            self.global.verdicts().map(|(v, n)| ([("verdict", v)], n)),
        )?;
        counters(
            &mut enc,
            "xlb_dataplane_events",
            "Data plane events and errors, per event (see lbd status).",
            None,
            self.global.events().map(|(e, n)| ([("event", e)], n)),
        )?;

        for (name, help, n) in &self.sync {
            let help = format!("Sync daemon: {help}, since this lbd started.");
            let name = format!("xlb_{name}");
            let m = enc.encode_descriptor(&name, &help, None, MetricType::Counter)?;
            ConstCounter::new(*n).encode(m)?;
        }

        let mut m = enc.encode_descriptor("xlb_lbd_build_info", "lbd's version (always 1).", None, MetricType::Gauge)?;
        ConstGauge::new(1i64).encode(m.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
        Ok(())
    }
}

/// Loads the table and the counters (a short store lock) and takes a snapshot of them.
pub fn snapshot(dir: &Path, shared: Option<&Shared>) -> anyhow::Result<Snapshot> {
    let store = crate::store::Store::open_at(dir, Default::default())?;
    let table = store.load()?;
    let global = store.global_stats()?;
    drop(store);
    Ok(Snapshot::new(table, global, shared, crate::dataplane::attachments(dir)))
}

/// The exposition (Prometheus text 0.0.4) of the table in `dir`.
pub fn scrape(dir: &Path, shared: Option<&Shared>) -> anyhow::Result<String> {
    Ok(snapshot(dir, shared)?.text())
}

/// The exposition of `table` and `global` alone (no configuration, nothing attached).
pub fn render(table: &Table, global: &GlobalStats) -> String {
    Snapshot::new(table.clone(), *global, None, Vec::new()).text()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Format as ConfigFormat};

    const CFG: &str = "checkinterval=1\nquiescent=yes\nvirtual=192.168.88.15:80\n    real=192.168.88.100:80 gate 1\n    \
                       real=192.168.88.200:80 gate 2\n    checktype=connect\n    scheduler=rr\n";

    #[test]
    fn check_types_are_their_variants_in_snake_case() {
        let names: Vec<String> = [
            CheckKind::Connect,
            CheckKind::SimpleTcp { request: String::new(), receive: String::new() },
            CheckKind::SendExpect { send: None, expect: None, regex: false, udp: true },
            CheckKind::On,
            CheckKind::Off,
        ]
        .iter()
        .map(check_type)
        .collect();
        assert_eq!(names, ["connect", "simple_tcp", "send_expect", "on", "off"]);
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        assert_eq!(Format::from_accept(None), Format::Text);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Text);
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                          text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
    }

    /// Per-check series under their configuration's names; a twin check gets its own series;
    /// records of replaced checkers are dropped; no verdict, no `up` series.
    #[test]
    fn checks_by_configuration() {
        let mut cfg = config::parse(CFG, ConfigFormat::Auto).expect("config");
        let twin = cfg.services[0].reals[0].checks[0].clone();
        cfg.services[0].reals[0].checks.push(twin);
        let mut t = Table::default();
        crate::daemon::reconcile(&mut t, &cfg, &Health::unknown(&cfg), &[]).expect("table");
        let mut health = Health::unknown(&cfg);
        health.states[0][0] = vec![Some(true), Some(false)];
        // Generations far above any other test's checkers (the records are process-wide).
        let (old, now) = (1 << 40, (1 << 40) + 1);
        let id = |generation, real, check| CheckId { generation, service: 0, real, check };
        observe_check(id(old, 0, 0), Duration::from_millis(1), true);
        observe_check(id(now, 0, 0), Duration::from_millis(3), true);
        observe_check(id(now, 0, 1), Duration::from_secs(2), false);
        observe_check(id(now, 0, 1), Duration::from_millis(700), false);
        let shared = Shared { cfg: Some(Arc::new(cfg)), generation: now, health };
        let text = Snapshot::new(t, GlobalStats::default(), Some(&shared), Vec::new()).text();
        let first = r#"service="TCP 192.168.88.15:80",real="192.168.88.100:80",check_type="connect",check_target="192.168.88.100:80""#;
        let second = r#"service="TCP 192.168.88.15:80",real="192.168.88.100:80",check_type="connect",check_target="192.168.88.100:80 #2""#;
        for want in [
            format!("xlb_check_up{{{first}}} 1\n"),
            format!("xlb_check_up{{{second}}} 0\n"),
            format!("xlb_check_failures_total{{{first}}} 0\n"),
            format!("xlb_check_failures_total{{{second}}} 2\n"),
            format!("xlb_check_duration_seconds_count{{{first}}} 1\n"),
            format!("xlb_check_duration_seconds_sum{{{second}}} 2.7\n"),
            format!("xlb_check_duration_seconds_bucket{{{first},le=\"0.005\"}} 1\n"),
            format!("xlb_check_duration_seconds_bucket{{{second},le=\"1\"}} 1\n"),
            format!("xlb_check_duration_seconds_bucket{{{second},le=\"2.5\"}} 2\n"),
            "xlb_real_up{service=\"TCP 192.168.88.15:80\",real=\"192.168.88.100:80\"} 0\n".to_string(),
            "xlb_real_weight{service=\"TCP 192.168.88.15:80\",real=\"192.168.88.200:80\"} 2\n".to_string(),
            "xlb_service_in_bytes_total{service=\"TCP 192.168.88.15:80\"} 0\n".to_string(),
            "# TYPE xlb_check_duration_seconds histogram\n".to_string(),
        ] {
            assert!(text.contains(&want), "{want}in\n{text}");
        }
        // web2's verdict is unknown yet: no `up` series for it.
        assert!(!text.contains("xlb_real_up{service=\"TCP 192.168.88.15:80\",real=\"192.168.88.200:80\"}"), "{text}");
        assert!(!CHECKS.lock().expect("records").contains_key(&id(old, 0, 0)), "the replaced checker's record stays");
    }
}
