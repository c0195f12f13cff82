//! Every program of the XDP object passes the kernel's verifier, and how much of the verifier's
//! budget (1,000,000 processed instructions per program) each one uses, printed so that a change
//! that brings a program near the limit shows in the test log before it crosses it.
use aya::programs::{Xdp, SchedClassifier};
use lb_user::store::{self, CreateOptions};
use xlb_tests::pins::TempPins;

/// The verifier's limit (`BPF_COMPLEXITY_LIMIT_INSNS`).
const LIMIT: u32 = 1_000_000;

#[test]
fn every_program_is_verified_within_budget() {
    let pins = TempPins::new("verifier").expect("pin dir");
    let mut ebpf = store::load_object(pins.path(), CreateOptions::default()).expect("object");
    let mut report = Vec::new();
    let mut load_ms: Vec<(String, f64)> = Vec::new();
    let names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_string()).collect();
    // Every program is tried: one refusal does not hide the others' (each is reported).
    let mut refused = Vec::new();
    for name in names {
        let prog = ebpf.program_mut(&name).expect("program");
        let start = std::time::Instant::now();
        let info = if let Ok(x) = <&mut Xdp>::try_from(&mut *prog) {
            match if x.fd().is_err() { x.load() } else { Ok(()) } {
                Ok(()) => x.info(),
                Err(e) => {
                    refused.push(format!("verifier refused {name}: {e:#}"));
                    continue;
                }
            }
        } else if let Ok(t) = <&mut SchedClassifier>::try_from(&mut *prog) {
            match t.load() {
                Ok(()) => t.info(),
                Err(e) => {
                    refused.push(format!("verifier refused {name}: {e:#}"));
                    continue;
                }
            }
        } else {
            panic!("{name}: unexpected program type");
        };
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        let n = info.expect("program info").verified_instruction_count().unwrap_or(0);
        load_ms.push((name.clone(), ms));
        report.push((name, n));
    }
    report.sort();
    let kernel = lb_user::features::kernel_release();
    eprintln!("verifier: kernel {kernel}");
    for (name, n) in &report {
        let ms = load_ms.iter().find(|(m, _)| m == name).map_or(0.0, |(_, t)| *t);
        eprintln!(
            "verifier: {name:<18} {n:>8} instructions processed ({:.1}% of the limit), load {ms:.1} ms",
            *n as f64 * 100.0 / LIMIT as f64
        );
    }
    for r in &refused {
        eprintln!("{r}");
    }
    assert!(refused.is_empty(), "{} program(s) refused (above)", refused.len());
    assert!(report.iter().any(|(n, _)| n == "xlb_new"), "{report:?}");
    // Every tail-called program (the IPv6 ones included) is among those verified.
    for p in lb_common::TailProgram::ALL {
        assert!(report.iter().any(|(n, _)| n == p.name()), "{} not verified: {report:?}", p.name());
    }
    assert!(report.iter().all(|(_, n)| *n < LIMIT), "{report:?}");
    // Debian 12's own kernel: every program within half the budget, room for what comes next.
    if kernel.starts_with("6.1.") {
        assert!(report.iter().all(|(_, n)| *n < LIMIT / 2), "over half the budget on {kernel}: {report:?}");
    }
}
