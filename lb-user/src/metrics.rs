//! Prometheus text exposition (format 0.0.4) of the table's counters, the real servers' health
//! and the data plane's verdict counters, served by `lbd run --metrics ADDR` on `/metrics`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lb_common::GlobalStats;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::DesiredConfig;
use crate::health::Health;
use crate::model::{Table, dest_name, svc_name};

/// The default listening address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9177";

/// What `lbd run` shares with the metrics endpoint: the configuration and the checks' verdicts.
#[derive(Clone, Default)]
pub struct Shared {
    pub cfg: Option<Arc<DesiredConfig>>,
    pub health: Health,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", esc(v))).collect();
        if l.is_empty() {
            let _ = writeln!(self.out, "{name} {v}");
        } else {
            let _ = writeln!(self.out, "{name}{{{}}} {v}", l.join(","));
        }
    }
}

/// Renders everything as Prometheus text.
pub fn render(t: &Table, g: &GlobalStats, shared: Option<&Shared>, attached: &[crate::dataplane::Attachment]) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    type Counter = fn(&crate::model::Counters) -> u64;
    let svc_counters: [(&str, &str, Counter); 5] = [
        ("connections_total", "connections scheduled", |c| c.conns),
        ("in_packets_total", "packets from clients", |c| c.inpkts),
        ("out_packets_total", "packets to clients (NAT only)", |c| c.outpkts),
        ("in_bytes_total", "bytes from clients", |c| c.inbytes),
        ("out_bytes_total", "bytes to clients (NAT only)", |c| c.outbytes),
    ];
    for (suffix, help, get) in svc_counters {
        let name = format!("xlb_service_{suffix}");
        f.head(&name, "counter", &format!("Virtual service: {help} (ipvsadm -Ln --stats)."));
        for s in &t.services {
            f.sample(&name, &[("service", &svc_name(&s.key))], get(&s.stats));
        }
        let name = format!("xlb_real_{suffix}");
        f.head(&name, "counter", &format!("Real server: {help}."));
        for s in &t.services {
            let sn = svc_name(&s.key);
            for d in &s.dests {
                f.sample(&name, &[("service", &sn), ("real", &dest_name(&d.addr, d.port))], get(&d.stats));
            }
        }
    }
    type DestGauge = fn(&crate::model::Dest) -> i64;
    let gauges: [(&str, &str, DestGauge); 4] = [
        ("xlb_real_active_connections", "ActiveConn (ipvsadm -Ln).", |d| d.active_conns as i64),
        ("xlb_real_inactive_connections", "InActConn (ipvsadm -Ln).", |d| d.inact_conns as i64),
        ("xlb_real_persistent_connections", "Persistence templates (ipvsadm -Ln --persistent-conn).", |d| d.persist_conns as i64),
        ("xlb_real_weight", "Weight (0: quiesced).", |d| d.weight as i64),
    ];
    for (name, help, get) in gauges {
        f.head(name, "gauge", help);
        for s in &t.services {
            let sn = svc_name(&s.key);
            for d in &s.dests {
                f.sample(name, &[("service", &sn), ("real", &dest_name(&d.addr, d.port))], get(d));
            }
        }
    }
    if let Some(sh) = shared
        && let Some(cfg) = &sh.cfg
    {
        f.head("xlb_real_up", "gauge", "Health check verdict: 1 up, 0 down (absent: no verdict yet).");
        for (si, s) in cfg.services.iter().enumerate() {
            let sn = svc_name(&s.spec.key);
            for (ri, r) in s.reals.iter().enumerate() {
                if let Some(up) = sh.health.real(si, ri) {
                    f.sample("xlb_real_up", &[("service", &sn), ("real", &dest_name(&r.dest.addr, r.dest.port))], up as u8);
                }
            }
        }
    }
    f.head(
        "xlb_dataplane_attached_interfaces",
        "gauge",
        "Interfaces the data plane is attached to; 0: the table is not carried out.",
    );
    f.sample("xlb_dataplane_attached_interfaces", &[], attached.len());
    f.head("xlb_dataplane_attachment_info", "gauge", "One per attached interface, with its XDP mode and tc attachment.");
    for a in attached {
        f.sample("xlb_dataplane_attachment_info", &[("interface", &a.iface), ("xdp_mode", a.xdp), ("tc", a.tc)], 1);
    }
    f.head("xlb_dataplane_verdicts_total", "counter", "XDP verdicts of the data plane.");
    for (v, n) in g.verdicts() {
        f.sample("xlb_dataplane_verdicts_total", &[("verdict", v)], n);
    }
    f.head("xlb_dataplane_events_total", "counter", "Data plane events and errors.");
    for (v, n) in g.events() {
        f.sample("xlb_dataplane_events_total", &[("event", v)], n);
    }
    f.head("xlb_sync_total", "counter", "The sync daemon's work in this lbd (crate::sync::Counters).");
    for (name, _, n) in crate::sync::COUNTERS.all() {
        f.sample("xlb_sync_total", &[("counter", name.trim_start_matches("sync_"))], n);
    }
    out
}

/// Loads the table and the counters (a short store lock) and renders them.
pub fn scrape(dir: &Path, shared: Option<&Shared>) -> anyhow::Result<String> {
    let store = crate::store::Store::open_at(dir, Default::default())?;
    let t = store.load()?;
    let g = store.global_stats()?;
    drop(store);
    Ok(render(&t, &g, shared, &crate::dataplane::attachments(dir)))
}

/// Serves `GET /metrics` (and `/`) until the task is dropped.
pub async fn serve(listener: TcpListener, dir: PathBuf, shared: Arc<Mutex<Shared>>) {
    loop {
        let Ok((conn, _)) = listener.accept().await else { continue };
        let (dir, shared) = (dir.clone(), shared.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), answer(conn, dir, shared)).await;
        });
    }
}

async fn answer(mut conn: TcpStream, dir: PathBuf, shared: Arc<Mutex<Shared>>) -> std::io::Result<()> {
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && !req.windows(2).any(|w| w == b"\n\n") && req.len() < 16384 {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&req).lines().next().unwrap_or_default().to_string();
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = path.split('?').next().unwrap_or_default();
    let (status, body) = if method != "GET" && method != "HEAD" {
        ("405 Method Not Allowed", "only GET\n".to_string())
    } else if path != "/metrics" && path != "/" {
        ("404 Not Found", "see /metrics\n".to_string())
    } else {
        let snapshot = shared.lock().map(|s| s.clone()).unwrap_or_default();
        match tokio::task::spawn_blocking(move || scrape(&dir, Some(&snapshot))).await {
            Ok(Ok(text)) => ("200 OK", text),
            Ok(Err(e)) => ("500 Internal Server Error", format!("{e:#}\n")),
            Err(e) => ("500 Internal Server Error", format!("{e}\n")),
        }
    };
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        conn.write_all(body.as_bytes()).await?;
    }
    conn.shutdown().await
}
