//! Where lbd's `tracing` events go: the systemd journal when lbd's stderr is the journal's
//! stream (as systemd sets it up for a unit), stderr otherwise; and, when the configuration names
//! one (ldirectord's `logfile`), that file as well. `RUST_LOG` filters (default `info`).
//!
//! In the journal each event's fields are journal fields of their own (`SERVICE`, `REAL`,
//! `REASON`, ...), so `journalctl -u lbd SERVICE='TCP 10.0.0.1:80'` finds a service's events.
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, format, time::FormatTime as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt as _, util::SubscriberInitExt as _};

/// The configuration's `logfile`, set (and changed by a reload) after the subscriber exists.
static LOGFILE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Whether events go to the journal (set by [`init`]).
static TO_JOURNAL: AtomicBool = AtomicBool::new(false);

/// Whether [`init`] sent events to the journal: lbd's last word (a fatal error) is then an
/// event too, with its priority, rather than an unprioritised stderr line.
pub fn to_journal() -> bool {
    TO_JOURNAL.load(Ordering::Relaxed)
}

/// Points the file copy of the log at `path` (None: no file).
pub fn set_logfile(path: Option<PathBuf>) {
    if let Ok(mut g) = LOGFILE.lock() {
        *g = path;
    }
}

/// Whether stderr is the journal's stream: systemd's documented test, JOURNAL_STREAM
/// (`DEVICE:INODE`) naming the descriptor stderr is. A child that inherited the variable but not
/// the descriptor (output redirected) is not logging to the journal.
pub fn stderr_is_journal() -> bool {
    let Some(want) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = want.to_str().and_then(|s| s.split_once(':')) else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills `st` for a valid descriptor number and fails otherwise.
    if unsafe { libc::fstat(libc::STDERR_FILENO, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so `st` is initialised.
    let st = unsafe { st.assume_init() };
    st.st_dev == dev && st.st_ino == ino
}

/// Installs the subscriber for this process (once; later calls do nothing).
pub fn init() {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Fields keep their names in the journal (no `F_` prefix): SERVICE, REAL, REASON.
    let journald = if stderr_is_journal() {
        // INFO is journald's "informational" (6), as syslog has it, not the crate's "notice".
        let priorities = tracing_journald::PriorityMappings {
            info: tracing_journald::Priority::Informational,
            debug: tracing_journald::Priority::Debug,
            ..tracing_journald::PriorityMappings::new()
        };
        tracing_journald::layer()
            .ok()
            .map(|l| l.with_field_prefix(None).with_syslog_identifier("lbd".into()).with_priority_mappings(priorities))
    } else {
        None
    };
    TO_JOURNAL.store(journald.is_some(), Ordering::Relaxed);
    let stderr = journald.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .event_format(TextLine)
            .with_writer(std::io::stderr)
            .with_filter(filter())
    });
    let file = tracing_subscriber::fmt::layer()
        .event_format(TextLine)
        .with_writer(|| LogFileWriter)
        .with_filter(filter());
    let _ = tracing_subscriber::registry()
        .with(journald.map(|j| j.with_filter(filter())))
        .with(stderr)
        .with(file)
        .try_init();
}

/// A text line (stderr, logfile): time, level, the message, then those fields whose value the
/// message does not already say (lbd's messages are written whole for journalctl's short
/// output; the fields are there for matching).
struct TextLine;

/// Fields for matching in the journal only: their message says the same in other words.
const JOURNAL_ONLY: &[&str] = &["change"];

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut w: format::Writer<'_>, event: &tracing::Event<'_>) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut w)?;
        write!(w, " {:>5} {}", event.metadata().level(), fields.message)?;
        for (name, value) in &fields.others {
            if !fields.message.contains(value.as_str()) && !JOURNAL_ONLY.contains(name) {
                write!(w, " {name}={value}")?;
            }
        }
        writeln!(w)
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.others.push((field.name(), value));
        }
    }
}

/// Appends each formatted event (one `write` per event) to the current `logfile`, if any;
/// opened per event so that a rotated file (logrotate's move) is recreated.
struct LogFileWriter;

impl Write for LogFileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let path = LOGFILE.lock().ok().and_then(|g| g.clone());
        if let Some(path) = path {
            std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
