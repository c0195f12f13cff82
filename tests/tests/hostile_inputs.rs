//! Hostile control inputs for lbadm (the ipvsadm front end).
//!
//! - `malformed_corpus_on_the_binary`: tests/corpus/malformed/*.json (built by
//!   tests/corpus/gen_malformed.py: every failing step of the real ipvsadm's recordings, plus
//!   generated mutations following the recorded rules) run against the built binary as
//!   `ipvsadm` on a real pinned table: exact stderr, stdout and exit status, and `-Sn` before ==
//!   after for every input that must change nothing, IPv6 and GUE/GRE inputs included.
//! - proptest targets on `lb_user::ipvsadm::run` with an in-memory backend: random argv and
//!   random `-R` input never panic nor hang; a failing command changes nothing; a restore
//!   applies a prefix of its lines, as ipvsadm does.
use std::{
    ffi::OsString,
    sync::mpsc,
    time::Duration,
};

use lb_user::{
    ipvsadm::{self, Backend},
    model::{ConnEntry, Table},
};
use proptest::prelude::*;
use serde::Deserialize;
use xlb_tests::golden::Lbadm;

// ------------------------------------------------------------------------------------------
// The corpus, on the binary.

#[derive(Deserialize)]
struct GoldenStep {
    argv: Vec<String>,
    stdin: Option<String>,
    stdout: String,
    stderr: String,
    status: i32,
    malformed: bool,
    unchanged: bool,
}

#[derive(Deserialize)]
struct GoldenCase {
    case: String,
    steps: Vec<GoldenStep>,
}

#[derive(Deserialize)]
struct GoldenFile {
    cases: Vec<GoldenCase>,
}

#[derive(Deserialize)]
struct Entry {
    rule: String,
    argv: Vec<String>,
    stdin: Option<String>,
    stdout: String,
    stderr: String,
    status: i32,
}

#[derive(Deserialize)]
struct Generated {
    setup: Vec<Vec<String>>,
    entries: Vec<Entry>,
}

fn corpus_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/malformed")
}

fn save(lb: &Lbadm) -> String {
    lb.ok("-Sn").expect("-Sn")
}

/// Runs one malformed input and compares; returns a failure description if any.
fn check_one(lb: &Lbadm, what: &str, argv: &[String], stdin: Option<&str>, want: (&str, &str, i32), unchanged: bool) -> Option<String> {
    let before = save(lb);
    let o = lb.run(argv, stdin.map(str::as_bytes)).expect("run lbadm");
    let got = (o.stdout_str(), String::from_utf8_lossy(&o.stderr).into_owned(), o.status);
    let mut bad = Vec::new();
    if (got.0.as_str(), got.1.as_str(), got.2) != want {
        bad.push(format!("want status {} stderr {:?} stdout {:?}\n   got status {} stderr {:?} stdout {:?}", want.2, want.1, want.0, got.2, got.1, got.0));
    }
    if unchanged {
        let after = save(lb);
        if after != before {
            bad.push(format!("table changed:\n--- before\n{before}--- after\n{after}"));
        }
    }
    if bad.is_empty() { None } else { Some(format!("{what}: ipvsadm {argv:?} stdin {stdin:?}\n   {}", bad.join("\n   "))) }
}

#[test]
fn malformed_corpus_on_the_binary() {
    let mut lb = Lbadm::new("corpus").expect("lbadm");
    let mut failures = Vec::new();
    let mut checked = 0usize;
    // A table that must survive every input that fails (also under the recorded cases' steps).
    let preamble = ["-A -t 10.255.0.1:8080 -s rr", "-a -t 10.255.0.1:8080 -r 10.255.0.2:8080 -m -w 3"];
    for stem in ["errors", "commands", "restore", "ipv6"] {
        let path = corpus_dir().join(format!("golden-{stem}.json"));
        let f: GoldenFile = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("parse");
        for case in &f.cases {
            lb.reset().expect("reset");
            // Cases whose listings or restores depend on the exact table run without the extra
            // service (their compared steps print nothing else).
            let lists = case.steps.iter().any(|s| !s.malformed && !s.stdout.is_empty())
                || case.steps.iter().any(|s| s.argv.iter().any(|a| a == "-R"));
            if !lists {
                for p in preamble {
                    lb.ok(p).expect("preamble");
                }
            }
            for (i, s) in case.steps.iter().enumerate() {
                let what = format!("{stem}/{} step {i}", case.case);
                if s.malformed {
                    checked += 1;
                    if let Some(f) = check_one(&lb, &what, &s.argv, s.stdin.as_deref(), (&s.stdout, &s.stderr, s.status), s.unchanged) {
                        failures.push(f);
                    }
                } else {
                    let o = lb.run(&s.argv, s.stdin.as_deref().map(str::as_bytes)).expect("run");
                    if o.status != s.status {
                        failures.push(format!("{what} (setup step) ipvsadm {:?}: status {} want {}", s.argv, o.status, s.status));
                    }
                }
            }
        }
    }
    let g: Generated =
        serde_json::from_str(&std::fs::read_to_string(corpus_dir().join("generated.json")).expect("read")).expect("parse");
    lb.reset().expect("reset");
    for argv in &g.setup {
        let o = lb.run(argv, None).expect("setup");
        assert_eq!(o.status, 0, "setup {argv:?}");
    }
    for (i, e) in g.entries.iter().enumerate() {
        let what = format!("generated #{i} ({})", e.rule);
        checked += 1;
        if let Some(f) = check_one(&lb, &what, &e.argv, e.stdin.as_deref(), (&e.stdout, &e.stderr, e.status), true) {
            failures.push(f);
        }
    }
    eprintln!("{checked} malformed inputs checked ({} generated), {} failures", g.entries.len(), failures.len());
    for f in failures.iter().take(30) {
        eprintln!("\n{f}");
    }
    assert!(checked >= 200, "corpus too small: {checked}");
    assert!(failures.is_empty(), "{} of {checked} malformed inputs misbehaved", failures.len());
}

// ------------------------------------------------------------------------------------------
// In memory: proptest.

#[derive(Default, Clone)]
struct Mem {
    table: Table,
}

impl Backend for Mem {
    fn load(&mut self) -> anyhow::Result<Table> {
        Ok(self.table.clone())
    }

    fn commit(&mut self, _before: &Table, after: &Table) -> anyhow::Result<()> {
        self.table = after.clone();
        Ok(())
    }

    fn connections(&mut self) -> anyhow::Result<Vec<ConnEntry>> {
        Ok(Vec::new())
    }
}

struct Ran {
    status: i32,
    table: Table,
}

/// `ipvsadm ARGS` with `stdin` on `b`, on a thread with a deadline (a hang fails the test).
fn run_mem(b: &Mem, args: Vec<OsString>, stdin: Vec<u8>) -> Result<Ran, String> {
    let mut b = b.clone();
    let (tx, rx) = mpsc::channel();
    let shown = format!("{args:?} stdin {:?}", String::from_utf8_lossy(&stdin));
    std::thread::spawn(move || {
        let mut argv: Vec<OsString> = vec!["ipvsadm".into()];
        argv.extend(args);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = ipvsadm::run(&argv, &mut b, &mut stdin.as_slice(), &mut out, &mut err);
        let _ = tx.send(Ran { status, table: b.table });
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(r) => Ok(r),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("hang (> 10 s): ipvsadm {shown}")),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(format!("panic: ipvsadm {shown}")),
    }
}

/// The table the properties start from: services of several kinds with real servers.
fn base() -> Mem {
    static BASE: std::sync::OnceLock<Mem> = std::sync::OnceLock::new();
    BASE.get_or_init(build_base).clone()
}

fn build_base() -> Mem {
    let mut b = Mem::default();
    for cmd in [
        "-A -t 10.0.0.1:80 -s rr",
        "-a -t 10.0.0.1:80 -r 192.168.1.1:80 -m -w 2",
        "-a -t 10.0.0.1:80 -r 192.168.1.2 -g",
        "-A -u 10.0.0.2:53 -s rr -o",
        "-a -u 10.0.0.2:53 -r 192.168.1.3 -i -w 0",
        "-A -f 7 -s rr -p 60",
        "-A -t [2001:db8::1]:443 -s rr",
        "-a -t [2001:db8::1]:443 -r [2001:db8::10]:443 -m",
        "-a -t [2001:db8::1]:443 -r 192.168.1.4 -i --tun-type gue --tun-port 6080",
        "--set 100 20 30",
    ] {
        let args = cmd.split_whitespace().map(OsString::from).collect();
        let r = run_mem(&b, args, Vec::new()).expect("base");
        assert_eq!(r.status, 0, "{cmd}");
        b.table = r.table;
    }
    b
}

const WORDS: &[&str] = &[
    "-A", "-E", "-D", "-C", "-R", "-S", "-a", "-e", "-d", "-L", "-l", "-Z", "-t", "-u", "-f", "-s", "-p", "-M", "-r", "-w",
    "-x", "-y", "-g", "-i", "-m", "-n", "-c", "-6", "-o", "-b", "-X", "-h", "-v", "--set", "--start-daemon", "--stop-daemon",
    "--stats", "--rate", "--thresholds", "--persistent-conn", "--nosort", "--exact", "--tun-type", "--tun-port",
    "--tun-nocsum", "--tun-csum", "--tun-remcsum", "--pe", "--sctp-service", "--timeout", "--daemon", "--syncid",
    "--mcast-interface", "--add-service", "--tcp-service=10.0.0.1:80", "--weight=3", "--", "-At", "-Ln", "-Lnc", "-ps",
    "10.0.0.1:80", "10.0.0.2:53", "10.0.0.9:80", "192.168.1.1", "192.168.1.1:80", "192.168.1.2", "192.168.1.9:8080",
    "[2001:db8::1]:443", "[fd00::1]", "7", "1", "0", "-1", "60", "65535", "65536", "2147483648", "rr", "wlc", "sh",
    "mh", "sh-port", "sh-fallback,sh-port", "sip", "gue", "ipip", "gre", "255.255.255.0", "64", "master", "backup",
    "lo", "", "%s%n", "ipvsadm", "#",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => "[-0-9a-z.:\\[\\]%=,]{0,24}",
        1 => any::<String>().prop_map(|s| s.chars().take(40).collect()),
    ]
}

fn argv() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(word(), 0..10)
}

fn restore_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(argv(), 0..8).prop_map(|lines| {
            let mut t = String::new();
            for (i, l) in lines.iter().enumerate() {
                t.push_str(&l.join(if i % 3 == 0 { "\t" } else { " " }));
                t.push_str(if i % 5 == 4 { "\r\n" } else { "\n" });
            }
            t.into_bytes()
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

/// `XLB_PROPTEST_CASES` cases (default 600: listings without -n make reverse lookups, which
/// keeps a case at tens of milliseconds).
fn config() -> ProptestConfig {
    let cases = std::env::var("XLB_PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    /// Any argv: no panic, no hang, and a command that fails leaves the table as it was (stdin
    /// is empty, so a `-R` among them applies nothing).
    #[test]
    fn argv_never_panics_and_failures_change_nothing(args in argv()) {
        let b = base();
        let r = run_mem(&b, args.iter().map(OsString::from).collect(), Vec::new()).map_err(TestCaseError::fail)?;
        if r.status != 0 {
            prop_assert!(r.table == b.table, "ipvsadm {args:?} failed with {} but changed the table", r.status);
        }
    }

    /// Any `-R` input: no panic, no hang, and the table afterwards is the one after some prefix
    /// of its lines, each run alone (ipvsadm applies lines until one ends the restore).
    #[test]
    fn restore_applies_a_prefix_of_its_lines(text in restore_text()) {
        let b = base();
        let r = run_mem(&b, vec!["-R".into()], text.clone()).map_err(TestCaseError::fail)?;
        let mut reader = text.as_slice();
        let mut states = vec![b.table.clone()];
        let mut cur = b.clone();
        while let Some(line) = ipvsadm::restore::read_argv(&mut reader, b"ipvsadm") {
            if line.len() <= 1 {
                continue;
            }
            let args: Vec<OsString> = line[1..].iter().map(|w| OsString::from(String::from_utf8_lossy(w).into_owned())).collect();
            // A line is parsed from raw bytes by -R; run alone it gets the same words.
            let one = run_mem(&cur, args, Vec::new()).map_err(TestCaseError::fail)?;
            cur.table = one.table;
            states.push(cur.table.clone());
        }
        prop_assert!(states.contains(&r.table), "-R {:?}: table is not that of any prefix of its lines", String::from_utf8_lossy(&text));
    }

    /// `ipvsadm-restore` (the Debian wrapper: -C then -R of the filtered input) on any input:
    /// no panic, no hang.
    #[test]
    fn restore_wrapper_survives_any_input(text in restore_text()) {
        let b = base();
        let (tx, rx) = mpsc::channel();
        let t2 = text.clone();
        std::thread::spawn(move || {
            let mut b = b;
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let s = ipvsadm::run_restore(&mut t2.as_slice(), &mut b, &mut out, &mut err);
            let _ = tx.send(s);
        });
        let r = rx.recv_timeout(Duration::from_secs(10));
        prop_assert!(r.is_ok(), "ipvsadm-restore on {:?}: {:?}", String::from_utf8_lossy(&text), r.err());
    }
}
