//! Replays the recordings of the real ipvsadm 1.31 (`tests/golden/ipvsadm/*.json`) against the
//! built `lbadm` binary invoked as `ipvsadm`, on a real pinned table, byte for byte.
//!
//! The binary runs with:
//! - argv[0] `ipvsadm` (a symlink of that name to lbadm; the recordings ran plain `ipvsadm`),
//!   and `ipvsadm-save` / `ipvsadm-restore` symlinks for the wrappers;
//! - `XLB_PIN_DIR` = a private pin directory ([`TempPins`]);
//! - `XLB_ALLOW_ANY_SCHEDULER=1`: the recordings also use `-s none`, which lbadm accepts only
//!   with this control-plane switch (the data plane has every other IPVS scheduler);
//! - names as in the recording guest: each run gets a private mount namespace in which
//!   `/etc/hosts` is empty and `/etc/resolv.conf` names no reachable server, so reverse
//!   lookups fail (fast) as they did there. `/etc/services` is the host's, as it was there.
//!
//! Every case starts from an empty table. Like the recorder, the runner resets the table
//! between cases with `-C`, `--set 900 120 300` and `-Z` (run through the binary, checked);
//! `XLB_GOLDEN_FRESH=1` uses a fresh pin directory per case instead.
use std::{
    ffi::CString,
    io::Write as _,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::{pins::TempPins, workspace_bin};

/// The recordings' schema and loading: `lb_user::ipvsadm::recording`, the one home of both, for
/// lb-user's in-memory replay and this one.
pub use lb_user::ipvsadm::recording::{Case, Step, golden_dir, load, stems};

/// Why recorded steps are run but not compared: `lb_user::ipvsadm::golden_skip`, the one skip
/// list of this replay, lb-user's in-memory one and the malformed corpus.
pub use lb_user::ipvsadm::golden_skip::CaseSkips;

/// What one run of the binary produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: i32,
}

impl Outcome {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Empty files bind-mounted over the name-service files in each run's mount namespace.
struct NameFiles {
    hosts: CString,
    resolv: CString,
    etc_hosts: CString,
    etc_resolv: CString,
}

/// lbadm installed as `ipvsadm`, `ipvsadm-save` and `ipvsadm-restore` in a private directory,
/// on a private pin directory.
pub struct Lbadm {
    pins: TempPins,
    tag: String,
    dir: PathBuf,
    names: Option<NameFiles>,
    /// Extra environment for every run.
    env: Vec<(String, String)>,
}

/// The names lbadm answers to.
pub const NAMES: [&str; 3] = ["ipvsadm", "ipvsadm-save", "ipvsadm-restore"];

impl Lbadm {
    pub fn new(tag: &str) -> anyhow::Result<Lbadm> {
        let bin = workspace_bin("lbadm");
        if !bin.exists() {
            bail!("{} is missing: run `cargo build --bins` with the same CARGO_TARGET_DIR first", bin.display());
        }
        let pins = TempPins::new(tag)?;
        let dir = std::env::temp_dir().join(format!("xlb-golden-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        for n in NAMES {
            std::os::unix::fs::symlink(&bin, dir.join(n))?;
        }
        std::fs::write(dir.join("hosts"), "")?;
        // No server at all: glibc then tries 127.0.0.1 once, which refuses at once.
        std::fs::write(dir.join("resolv.conf"), "options timeout:1 attempts:1\n")?;
        let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).ok();
        let names = match (c(&dir.join("hosts")), c(&dir.join("resolv.conf"))) {
            (Some(hosts), Some(resolv)) if std::env::var_os("XLB_GOLDEN_HOST_NAMES").is_none() => Some(NameFiles {
                hosts,
                resolv,
                etc_hosts: c"/etc/hosts".into(),
                etc_resolv: c"/etc/resolv.conf".into(),
            }),
            _ => None,
        };
        Ok(Lbadm { pins, tag: tag.to_string(), dir, names, env: vec![("XLB_ALLOW_ANY_SCHEDULER".into(), "1".into())] })
    }

    pub fn pin_dir(&self) -> &Path {
        self.pins.path()
    }

    /// Path of the symlink `name` (one of [`NAMES`]).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Drops the `XLB_ALLOW_ANY_SCHEDULER` setting (lbadm then refuses what the data plane
    /// cannot schedule).
    pub fn without_any_scheduler(mut self) -> Self {
        self.env.retain(|(k, _)| k != "XLB_ALLOW_ANY_SCHEDULER");
        self
    }

    /// A fresh, empty pin directory.
    pub fn fresh_pins(&mut self) -> anyhow::Result<()> {
        self.pins = TempPins::new(&self.tag)?;
        Ok(())
    }

    /// Runs `name ARGS` (argv[0] = `name`, as when found through PATH) with `stdin`
    /// (`None`: /dev/null).
    pub fn run_as(&self, name: &str, args: &[String], stdin: Option<&[u8]>) -> anyhow::Result<Outcome> {
        let mut cmd = Command::new(self.path(name));
        cmd.arg0(name)
            .args(args)
            .env("XLB_PIN_DIR", self.pins.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(n) = &self.names {
            let (hosts, resolv) = (n.hosts.clone(), n.resolv.clone());
            let (etc_hosts, etc_resolv) = (n.etc_hosts.clone(), n.etc_resolv.clone());
            // SAFETY: only async-signal-safe system calls on memory prepared before the fork.
            // Best effort: if the namespace cannot be made, the run sees the host's files.
            unsafe {
                cmd.pre_exec(move || {
                    // Its own network namespace too: only `lo`, as in the recording guest
                    // (`--start-daemon` looks its interface up).
                    if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWNET) == 0
                        && libc::mount(
                            std::ptr::null(),
                            c"/".as_ptr(),
                            std::ptr::null(),
                            libc::MS_REC | libc::MS_PRIVATE,
                            std::ptr::null(),
                        ) == 0
                    {
                        let bind = |src: &CString, dst: &CString| {
                            libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null())
                        };
                        bind(&hosts, &etc_hosts);
                        bind(&resolv, &etc_resolv);
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().with_context(|| format!("cannot run {}", self.path(name).display()))?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().context("no stdin pipe")?;
            // The binary may stop reading early (a restore that aborts): ignore EPIPE.
            let _ = pipe.write_all(input);
        }
        let out = child.wait_with_output()?;
        let status = match out.status.code() {
            Some(c) => c,
            None => bail!("{name} {args:?} died: {}", out.status),
        };
        Ok(Outcome { stdout: out.stdout, stderr: out.stderr, status })
    }

    /// `ipvsadm ARGS`.
    pub fn run(&self, args: &[String], stdin: Option<&[u8]>) -> anyhow::Result<Outcome> {
        self.run_as("ipvsadm", args, stdin)
    }

    /// `ipvsadm ARGS` (split on blanks) that must succeed; its stdout.
    pub fn ok(&self, cmdline: &str) -> anyhow::Result<String> {
        let args: Vec<String> = cmdline.split_whitespace().map(str::to_string).collect();
        let o = self.run(&args, None)?;
        if o.status != 0 || !o.stderr.is_empty() {
            bail!("ipvsadm {cmdline}: status {}: {}", o.status, String::from_utf8_lossy(&o.stderr));
        }
        Ok(o.stdout_str())
    }

    /// What the recorder runs between cases (`--stop-daemon master|backup`, `-C`,
    /// `--set 900 120 300`, `-Z`), or a fresh pin directory with `XLB_GOLDEN_FRESH=1`.
    pub fn reset(&mut self) -> anyhow::Result<()> {
        if std::env::var_os("XLB_GOLDEN_FRESH").is_some() {
            return self.fresh_pins();
        }
        for role in ["master", "backup"] {
            // "No daemon is running" when none was started: fine.
            self.run_as("ipvsadm", &["--stop-daemon".to_string(), role.to_string()], None)?;
        }
        for c in ["-C", "--set 900 120 300", "-Z"] {
            self.ok(c)?;
        }
        Ok(())
    }
}

impl Drop for Lbadm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Counts of one replay.
#[derive(Debug, Default)]
pub struct Report {
    pub cases: usize,
    pub cases_failed: usize,
    /// Steps run on the binary and compared.
    pub compared: usize,
    /// Steps run (to keep the table's state) but not compared: (file/case step, argv, reason).
    pub skipped: Vec<(String, String, &'static str)>,
    pub failures: Vec<String>,
}

impl Report {
    pub fn add(&mut self, other: Report) {
        self.cases += other.cases;
        self.cases_failed += other.cases_failed;
        self.compared += other.compared;
        self.skipped.extend(other.skipped);
        self.failures.extend(other.failures);
    }

    /// One line for the logs, then the skipped steps grouped by reason.
    pub fn summary(&self, what: &str) -> String {
        let mut s = format!(
            "{what}: {} cases ({} failed), {} invocations compared byte for byte on the binary, {} skipped",
            self.cases,
            self.cases_failed,
            self.compared,
            self.skipped.len()
        );
        let mut reasons: Vec<&str> = self.skipped.iter().map(|(_, _, r)| *r).collect();
        reasons.sort_unstable();
        reasons.dedup();
        for r in reasons {
            let n = self.skipped.iter().filter(|(_, _, x)| *x == r).count();
            s.push_str(&format!("\n  skipped {n}: {r}"));
        }
        s
    }
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Replays `cases` (from `<stem>.json`), resetting the table before each. Mismatches are
/// collected (with a diff-friendly dump), not fatal; a step that cannot run at all is.
pub fn replay(lb: &mut Lbadm, stem: &str, cases: &[Case]) -> anyhow::Result<Report> {
    let mut rep = Report::default();
    for case in cases {
        lb.reset()?;
        rep.cases += 1;
        let mut failed = false;
        let mut skips = CaseSkips::new(stem, &case.name);
        for (i, step) in case.steps.iter().enumerate() {
            let o = lb.run(&step.argv, step.stdin.as_deref().map(str::as_bytes))?;
            if let Some(reason) = skips.step(&step.argv, step.stdin.as_deref(), step.status, &step.stdout) {
                rep.skipped.push((format!("{stem}/{} step {i}", case.name), format!("{:?}", step.argv), reason));
                continue;
            }
            rep.compared += 1;
            if !step.answered_by(&o.stdout, &o.stderr, o.status) {
                failed = true;
                rep.failures.push(format!(
                    "{stem}/{} step {i}: ipvsadm {:?} stdin {:?}\n--- want status {}, stdout:\n{}--- got status {}, stdout:\n{}--- want stderr:\n{}--- got stderr:\n{}",
                    case.name,
                    step.argv,
                    step.stdin,
                    step.status,
                    step.stdout,
                    o.status,
                    show(&o.stdout),
                    step.stderr,
                    show(&o.stderr)
                ));
            }
        }
        if failed {
            rep.cases_failed += 1;
        }
    }
    Ok(rep)
}

/// Prints the report and fails the test on any mismatch.
pub fn check(rep: &Report, what: &str) {
    eprintln!("{}", rep.summary(what));
    for f in rep.failures.iter().take(20) {
        eprintln!("\n{f}");
    }
    assert!(rep.failures.is_empty(), "{what}: {} invocations differ from the real ipvsadm", rep.failures.len());
}
