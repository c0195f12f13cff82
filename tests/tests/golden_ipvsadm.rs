//! Every recorded invocation of the real ipvsadm 1.31 (tests/golden/ipvsadm/*.json), replayed
//! on the built lbadm binary invoked as `ipvsadm` with a real pinned table, compared byte for
//! byte (stdout, stderr, exit status). See `xlb_tests::golden` for the set-up and the skips.
use xlb_tests::golden::{self, Lbadm, Report};

#[test]
fn golden_ipvsadm_on_the_binary() {
    let stems = golden::stems().expect("recordings");
    assert!(!stems.is_empty(), "no recordings in {}", golden::golden_dir().display());
    // One table per recording file, the files side by side.
    let reports: Vec<(String, Report)> = std::thread::scope(|s| {
        let handles: Vec<_> = stems
            .iter()
            .map(|stem| {
                s.spawn(move || {
                    let cases = golden::load(stem).expect("load recordings");
                    let mut lb = Lbadm::new(&format!("golden-{stem}")).expect("lbadm set-up");
                    let rep = golden::replay(&mut lb, stem, &cases).expect("replay");
                    (stem.clone(), rep)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("replay thread")).collect()
    });
    let mut total = Report::default();
    for (stem, rep) in reports {
        eprintln!("{}", rep.summary(&format!("golden {stem}.json")).lines().next().unwrap_or_default());
        total.add(rep);
    }
    golden::check(&total, "golden ipvsadm (all files)");
}

/// The runs see no /etc/hosts (as the recording guest did): 127.0.0.1 stays numeric in `-L`.
#[test]
fn runs_see_the_guests_name_service() {
    let lb = Lbadm::new("golden-names").expect("lbadm set-up");
    lb.ok("-A -t 127.0.0.1:80 -s rr").expect("-A");
    let out = lb.ok("-L").expect("-L");
    assert!(out.contains("TCP  127.0.0.1:http rr"), "{out}");
}

/// Without XLB_ALLOW_ANY_SCHEDULER the binary refuses what the data plane cannot schedule.
#[test]
fn schedulers_beyond_the_data_plane_need_the_switch() {
    let lb = Lbadm::new("golden-sched").expect("lbadm set-up").without_any_scheduler();
    let args = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let o = lb.run(&args("-A -t 10.0.0.1:80 -s none"), None).expect("run");
    assert_eq!((o.status, o.stderr.as_slice()), (255, &b"Scheduler or persistence engine not found\n"[..]));
    let o = lb.run(&args("-A -t 10.0.0.1:80 -s rr"), None).expect("run");
    assert_eq!(o.status, 0);
}
