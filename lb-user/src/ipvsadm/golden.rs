//! Replays the recordings of the real ipvsadm 1.31 ([`super::recording`]; another directory
//! with `LBADM_GOLDEN_DIR`) against `run` with an in-memory table, byte for byte.
//!
//! Every IPVS scheduler is enabled for the replay (`none` too), and reverse DNS is off (names resolve to nothing, as in the guest
//! that recorded them). The steps not compared are those of `golden_skip` (shared with the
//! replay on the binary); `LBADM_GOLDEN_NOSKIP=1` compares them too.

use std::path::PathBuf;

use super::golden_skip::CaseSkips;
use super::recording;
use super::tests::{MemBackend, run_args};

#[test]
fn golden_replay() {
    let dir = match std::env::var_os("LBADM_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => recording::golden_dir(),
    };
    let stems = recording::stems_in(&dir).unwrap_or_default();
    crate::ctl::ALL_SCHEDULERS.with(|c| c.set(true));
    let (mut passed, mut skipped, mut failed) = (0usize, 0usize, Vec::new());
    let mut reasons: Vec<&'static str> = Vec::new();
    for stem in &stems {
        let cases = match recording::load_from(&dir, stem) {
            Ok(c) => c,
            Err(e) => panic!("{e:#}"),
        };
        for case in &cases {
            let noskip = std::env::var_os("LBADM_GOLDEN_NOSKIP").is_some();
            let mut skips = CaseSkips::new(stem, &case.name);
            let mut b = MemBackend::default();
            let mut bad = None;
            for (i, step) in case.steps.iter().enumerate() {
                let args: Vec<&str> = step.argv.iter().map(String::as_str).collect();
                let o = run_args(&mut b, &args, step.stdin.as_deref());
                if let Some(r) = skips.step(&step.argv, step.stdin.as_deref(), step.status, &step.stdout)
                    && !noskip
                {
                    skipped += 1;
                    reasons.push(r);
                    continue;
                }
                if !step.answered_by(o.stdout.as_bytes(), o.stderr.as_bytes(), o.status) {
                    bad = Some(format!(
                        "{stem}/{} step {i} argv {:?} stdin {:?}\n--- want status {} stdout:\n{}--- got status {} stdout:\n{}--- want stderr:\n{}--- got stderr:\n{}",
                        case.name, step.argv, step.stdin, step.status, step.stdout, o.status, o.stdout, step.stderr, o.stderr
                    ));
                    break;
                }
            }
            match bad {
                None => passed += 1,
                Some(m) => failed.push(m),
            }
        }
    }
    crate::ctl::ALL_SCHEDULERS.with(|c| c.set(false));
    eprintln!(
        "golden: {} files, {passed} cases passed ({skipped} steps not compared), {} failed",
        stems.len(),
        failed.len()
    );
    reasons.sort_unstable();
    let mut counted = reasons.clone();
    counted.dedup();
    for r in counted {
        eprintln!("  not compared {}: {r}", reasons.iter().filter(|x| **x == r).count());
    }
    for f in failed.iter().take(12) {
        eprintln!("{f}\n");
    }
    assert!(failed.is_empty(), "{} golden cases differ", failed.len());
}
