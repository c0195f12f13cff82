//! Health checks of real servers (ldirectord's connect/negotiate, keepalived's TCP_CHECK,
//! HTTP_GET and SSL_GET, piranha nanny's send/expect), one tokio task per check so that a slow
//! server never delays another's verdict.
//!
//! A checker reports a verdict when its server's state changes: up after one good check (a
//! server that was down: after `rise_after` good checks in a row, piranha's `reentry`), down
//! after `fail_after` consecutive failures (retried every `retry_delay` meanwhile). Before the
//! first verdict the state is unknown.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::config::{Check, CheckKind};

pub mod dns;
pub mod external;
pub mod http;
pub mod smtp;
pub mod udp;

/// Most of an answer a check reads.
const MAX_ANSWER: usize = 1 << 20;

/// Which check of which real server of which service (indexes into the configuration), and
/// the configuration's generation (verdicts of replaced checkers are ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CheckId {
    pub generation: u64,
    pub service: usize,
    pub real: usize,
    pub check: usize,
}

/// A state change.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub id: CheckId,
    pub up: bool,
    /// The weight an up server's check asks for (keepalived's `misc_dynamic`), if any.
    pub weight: Option<i32>,
    /// What the last check said (the failure's reason, or "ok").
    pub detail: String,
    pub at: Instant,
}

/// Runs one check once: up (with the weight a `misc_dynamic` command asked for), or why not.
pub async fn check_once(c: &Check) -> Result<Option<i32>, String> {
    match &c.kind {
        CheckKind::On => Ok(None),
        CheckKind::Off => Err("checktype off".into()),
        // The command is killed at the timeout itself (a dropped future would leave it running).
        CheckKind::External { argv, dynamic } => external::run(argv, *dynamic, c.timeout).await,
        kind => match tokio::time::timeout(c.timeout, run(c, kind)).await {
            Ok(r) => r.map(|()| None),
            Err(_) => Err(format!("no answer within {:?}", c.timeout)),
        },
    }
}

/// The checks with a file of their own (HTTP(S), DNS, SMTP, UDP, ping; external: `check_once`).
async fn run_protocol(c: &Check, kind: &CheckKind) -> Option<Result<(), String>> {
    Some(match kind {
        CheckKind::Http(h) => http::check(c, h).await,
        CheckKind::Dns { name, qtype, tcp, expect } => dns::check(c.target, name, qtype, *tcp, expect.as_deref()).await,
        CheckKind::Smtp { helo } => smtp::check(c.target, helo).await,
        CheckKind::Udp { payload, reply } => udp::check(c.target, payload, reply.as_ref(), c.timeout).await,
        CheckKind::Ping => udp::ping(c.target.ip()).await,
        _ => return None,
    })
}

async fn run(c: &Check, kind: &CheckKind) -> Result<(), String> {
    if let Some(r) = run_protocol(c, kind).await {
        return r;
    }
    if let CheckKind::SendExpect { send, expect, regex, udp: true } = kind {
        return udp_send_expect(c, send.as_deref(), expect.as_deref(), *regex).await;
    }
    let mut s = TcpStream::connect(c.target).await.map_err(|e| format!("connect to {}: {e}", c.target))?;
    match kind {
        CheckKind::Connect => Ok(()),
        CheckKind::SimpleTcp { request, receive } => {
            if !request.is_empty() {
                let req = request.replace("\\r", "\r").replace("\\n", "\n");
                s.write_all(req.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
            }
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                if String::from_utf8_lossy(&got).contains(receive.as_str()) {
                    return Ok(());
                }
                let n = s.read(&mut buf).await.map_err(|e| format!("receive: {e}"))?;
                if n == 0 || got.len() > MAX_ANSWER {
                    return Err(format!("answer does not contain {receive:?}"));
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        CheckKind::SendExpect { send, expect, regex, .. } => {
            if let Some(req) = send {
                s.write_all(req.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
            }
            let Some(want) = expect else { return Ok(()) };
            // nanny reads as many bytes as it expects (254 for a regular expression).
            let need = if *regex { NANNY_READ } else { want.len().clamp(1, NANNY_READ) };
            let mut got = Vec::new();
            let mut buf = [0u8; NANNY_READ];
            while got.len() < need {
                let n = s.read(&mut buf[..need - got.len()]).await.map_err(|e| format!("receive: {e}"))?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if *regex || want == "*" {
                    break;
                }
            }
            nanny_match(&got, want, *regex)
        }
        // Handled by check_once and run_protocol.
        CheckKind::On
        | CheckKind::Off
        | CheckKind::Http(_)
        | CheckKind::External { .. }
        | CheckKind::Dns { .. }
        | CheckKind::Smtp { .. }
        | CheckKind::Udp { .. }
        | CheckKind::Ping => Ok(()),
    }
}

/// The most of an answer nanny reads (its buffer).
const NANNY_READ: usize = 254;

/// nanny's verdict on an answer: `*` takes any; a regular expression matches anywhere in it;
/// else the answer starts with `want`.
fn nanny_match(got: &[u8], want: &str, regex: bool) -> Result<(), String> {
    let text = String::from_utf8_lossy(got);
    if got.is_empty() {
        return Err("no answer".into());
    }
    let ok = if want == "*" {
        true
    } else if regex {
        regex_lite::Regex::new(want).map_err(|e| format!("expect: {e}"))?.is_match(&text)
    } else {
        got.starts_with(want.as_bytes())
    };
    if ok { Ok(()) } else { Err(format!("answer {:?} does not {} {want:?}", text, if regex { "match" } else { "start with" })) }
}

/// nanny's UDP check: the send string as one datagram, then one answer (of at least a byte).
async fn udp_send_expect(c: &Check, send: Option<&str>, expect: Option<&str>, regex: bool) -> Result<(), String> {
    let bind: std::net::SocketAddr = if c.target.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let s = tokio::net::UdpSocket::bind(bind).await.map_err(|e| format!("socket: {e}"))?;
    s.connect(c.target).await.map_err(|e| format!("connect to {}: {e}", c.target))?;
    s.send(send.unwrap_or_default().as_bytes()).await.map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; NANNY_READ];
    let n = s.recv(&mut buf).await.map_err(|e| format!("receive: {e}"))?;
    match expect {
        Some(want) => nanny_match(&buf[..n], want, regex),
        None if n > 0 => Ok(()),
        None => Err("empty answer".into()),
    }
}

/// Starts the checker task of one check; it sends a [`Verdict`] on every state change and
/// runs until aborted or until the receiver is gone.
pub fn spawn(id: CheckId, check: Check, tx: UnboundedSender<Verdict>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut fails = 0u32;
        let mut oks = 0u32;
        let mut state: Option<bool> = None;
        let mut weight: Option<i32> = None;
        loop {
            let started = tokio::time::Instant::now();
            let r = check_once(&check).await;
            crate::metrics::observe_check(id, started.elapsed(), r.is_ok());
            let change = match r {
                Ok(w) => {
                    fails = 0;
                    oks = oks.saturating_add(1);
                    // Unknown: the first good check says up; down: `rise_after` in a row.
                    let risen = state.is_none() || oks >= check.rise_after;
                    // An up server whose command asks for another weight is a change too.
                    let reweighted = state == Some(true) && w != weight;
                    weight = w;
                    ((state != Some(true) && risen) || reweighted).then(|| (true, "ok".to_string()))
                }
                Err(why) => {
                    oks = 0;
                    fails = fails.saturating_add(1);
                    (fails >= check.fail_after && state != Some(false)).then_some((false, why))
                }
            };
            if let Some((up, detail)) = change {
                state = Some(up);
                if tx.send(Verdict { id, up, weight: if up { weight } else { None }, detail, at: Instant::now() }).is_err() {
                    return;
                }
            }
            // A failing server that is not down yet is retried sooner (keepalived's
            // delay_before_retry; ldirectord retries at its interval).
            let wait = if fails > 0 && state != Some(false) { check.retry_delay } else { check.interval };
            tokio::time::sleep_until(started + wait).await;
        }
    })
}

/// What the checks say of each real server: `[service][real][check]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub states: Vec<Vec<Vec<Option<bool>>>>,
    /// Weights up checks asked for (keepalived's `misc_dynamic`): `(service, real, check)`.
    pub weights: std::collections::BTreeMap<(usize, usize, usize), i32>,
}

impl Health {
    /// Every check unknown.
    pub fn unknown(cfg: &crate::config::DesiredConfig) -> Health {
        Health {
            states: cfg.services.iter().map(|s| s.reals.iter().map(|r| vec![None; r.checks.len()]).collect()).collect(),
            weights: Default::default(),
        }
    }

    /// Up (`Some(true)`), down, or unknown.
    pub fn real(&self, svc: usize, real: usize) -> Option<bool> {
        self.states.get(svc).and_then(|s| s.get(real)).and_then(|c| aggregate(c))
    }

    /// The weight of a real server configured with `configured`: keepalived's sum of what
    /// its dynamic checks ask over the configured weight (one check: what it asks), 0..=65535.
    pub fn weight(&self, svc: usize, real: usize, configured: i32) -> i32 {
        let asked = self.weights.range((svc, real, 0)..=(svc, real, usize::MAX)).map(|(_, w)| i64::from(*w - configured));
        (i64::from(configured) + asked.sum::<i64>()).clamp(0, 65535) as i32
    }

    /// Records the weight an up check asks for (`None`: none).
    pub fn set_weight(&mut self, id: &CheckId, weight: Option<i32>) {
        match weight {
            Some(w) => self.weights.insert((id.service, id.real, id.check), w),
            None => self.weights.remove(&(id.service, id.real, id.check)),
        };
    }

    /// Records one check's verdict.
    pub fn set(&mut self, id: &CheckId, up: bool) {
        if let Some(c) = self.states.get_mut(id.service).and_then(|s| s.get_mut(id.real)).and_then(|r| r.get_mut(id.check)) {
            *c = Some(up);
        }
    }
}

/// Aggregates the checks of one real server: down when any check is down, up when all are
/// up, unknown otherwise (none reported yet). No checks: up.
pub fn aggregate(states: &[Option<bool>]) -> Option<bool> {
    if states.contains(&Some(false)) {
        Some(false)
    } else if states.iter().all(|s| *s == Some(true)) {
        Some(true)
    } else {
        None
    }
}

/// How long a check of `c` may take to turn a dead server down at worst.
pub fn worst_detection(c: &Check) -> Duration {
    c.interval + c.retry_delay * c.fail_after.saturating_sub(1) + c.timeout
}

#[cfg(test)]
mod tests {
    use super::{CheckId, Health, nanny_match};

    /// keepalived's misc_dynamic: one check sets the weight; several add their differences
    /// to the configured weight; within 0..=65535; a check without a weight leaves it.
    #[test]
    fn dynamic_weights() {
        let mut h = Health::default();
        let id = |check| CheckId { generation: 0, service: 0, real: 1, check };
        assert_eq!(h.weight(0, 1, 5), 5);
        h.set_weight(&id(0), Some(10));
        assert_eq!(h.weight(0, 1, 5), 10);
        assert_eq!(h.weight(0, 0, 5), 5, "another real server");
        h.set_weight(&id(1), Some(7));
        assert_eq!(h.weight(0, 1, 5), 12);
        h.set_weight(&id(0), Some(0));
        h.set_weight(&id(1), Some(0));
        assert_eq!(h.weight(0, 1, 5), 0, "clamped at 0");
        h.set_weight(&id(0), None);
        h.set_weight(&id(1), None);
        assert_eq!(h.weight(0, 1, 5), 5);
    }

    /// nanny's comparisons: the answer's start, `*` for anything, a regular expression
    /// anywhere; an empty answer never passes.
    #[test]
    fn nanny_answers() {
        assert!(nanny_match(b"HTTP/1.0 200 OK\r\n", "HTTP", false).is_ok());
        assert!(nanny_match(b"<html>HTTP", "HTTP", false).is_err(), "nanny compares the start, not anywhere");
        assert!(nanny_match(b"HT", "HTTP", false).is_err());
        assert!(nanny_match(b"x", "*", false).is_ok());
        assert!(nanny_match(b"", "*", false).is_err());
        assert!(nanny_match(b"xx HTTP/1.1 503", "HTTP/1\\.[01] 5", true).is_ok());
        assert!(nanny_match(b"HTTP/1.1 200", "^HTTP/1\\.[01] 5", true).is_err());
    }
}
