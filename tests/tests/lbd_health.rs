//! lbd's health checks with real traffic in the DR lab: a stopped HTTP server is quiesced (or
//! removed) within checkinterval × failurecount + checktimeout and comes back when restarted,
//! in ldirectord and keepalived syntax; with every real server down the fallback answers.
use std::time::Duration;

use xlb_tests::lab::{Lab, Mode, WEB1, WEB2};
use xlb_tests::lab_health::{
    Lbd, SORRY, keepalived_conf, ldirectord_cf, requests, sorry_host, start_http, stop_http, wait_weights,
};

fn w(v: &[(&str, i32)]) -> Vec<(String, i32)> {
    let mut v: Vec<(String, i32)> = v.iter().map(|(a, w)| (a.to_string(), *w)).collect();
    v.sort();
    v
}

fn has(v: &[(String, i32)], want: &[(&str, i32)]) -> bool {
    v == w(want).as_slice()
}

fn count(answers: &[String], what: &str) -> usize {
    answers.iter().filter(|a| a.as_str() == what).count()
}

/// Stop web1, wait for the table, check the traffic; restart, wait, check again. Returns the
/// measured (detection, recovery) times.
fn down_and_back(lab: &Lab, lbd: &Lbd, down: &[(&str, i32)], bound: Duration) -> (Duration, Duration) {
    let up = [(WEB1, 1), (WEB2, 1)];
    wait_weights(lab, Duration::from_secs(5), |v| has(v, &up)).unwrap_or_else(|e| panic!("{e}\n{}", lbd.log_text()));
    // Both serve.
    let a = requests(lab, 21000, 4).expect("requests");
    assert_eq!((count(&a, "Welcome from web1"), count(&a, "Welcome from web2")), (2, 2), "{a:?}");

    stop_http(&lab.web[0].ns, 80).expect("stop web1");
    let detect = wait_weights(lab, bound + Duration::from_secs(2), |v| has(v, down))
        .unwrap_or_else(|e| panic!("web1 not taken out: {e}\n{}", lbd.log_text()));
    let a = requests(lab, 22000, 6).expect("requests");
    assert_eq!(count(&a, "Welcome from web2"), 6, "all new requests go to web2: {a:?}");

    let _web1 = start_http(&lab.web[0].ns, 80, &lab.dir.join("www1")).expect("restart web1");
    let recover = wait_weights(lab, bound + Duration::from_secs(2), |v| has(v, &up))
        .unwrap_or_else(|e| panic!("web1 not back: {e}\n{}", lbd.log_text()));
    let a = requests(lab, 23000, 4).expect("requests");
    assert_eq!((count(&a, "Welcome from web1"), count(&a, "Welcome from web2")), (2, 2), "web1 is back: {a:?}");
    assert!(detect <= bound, "detection took {detect:?} > {bound:?}\n{}", lbd.log_text());
    assert!(recover <= bound, "recovery took {recover:?} > {bound:?}\n{}", lbd.log_text());
    (detect, recover)
}

#[test]
fn ldirectord_quiesces_a_stopped_server_and_restores_it() {
    let lab = Lab::new("hld", Mode::Dr).expect("lab");
    lab.attach().expect("attach");
    let cfg = lab.dir.join("ldirectord.cf");
    std::fs::write(&cfg, ldirectord_cf(true, 2, None)).expect("config");
    let lbd = Lbd::start(&lab, &cfg, &["--metrics", "127.0.0.1:9177"], &lab.dir.join("lbd.log")).expect("lbd");
    // checkinterval 1 × failurecount 2 + checktimeout 1.
    let bound = Duration::from_secs(3);
    let (detect, recover) = down_and_back(&lab, &lbd, &[(WEB1, 0), (WEB2, 1)], bound);
    println!("ldirectord (quiescent=yes): detection {detect:?}, recovery {recover:?}");

    // The metrics endpoint, in the director's namespace.
    let out = lab.lvs1.ns.exec("curl", &["-sS", "--max-time", "5", "http://127.0.0.1:9177/metrics"]).expect("metrics");
    let svc = "service=\"TCP 192.168.88.15:80\"";
    assert!(out.contains(&format!("xlb_real_up{{{svc},real=\"192.168.88.100:80\"}} 1")), "{out}");
    assert!(out.contains(&format!("xlb_service_connections_total{{{svc}}} 14")), "{out}");
    assert!(out.contains("xlb_real_active_connections{"), "{out}");
    assert!(out.contains("xlb_dataplane_verdicts_total{verdict=\"tx\"}"), "{out}");
}

#[test]
fn keepalived_removes_a_stopped_server_and_readds_it() {
    let lab = Lab::new("hka", Mode::Dr).expect("lab");
    lab.attach().expect("attach");
    let cfg = lab.dir.join("keepalived.conf");
    std::fs::write(&cfg, keepalived_conf()).expect("config");
    let lbd = Lbd::start(&lab, &cfg, &[], &lab.dir.join("lbd.log")).expect("lbd");
    // delay_loop 1 + delay_before_retry 1 × retry 1 + connect_timeout 1.
    let bound = Duration::from_secs(3);
    let (detect, recover) = down_and_back(&lab, &lbd, &[(WEB2, 1)], bound);
    println!("keepalived (removal): detection {detect:?}, recovery {recover:?}");
}

#[test]
fn fallback_answers_when_every_real_server_is_down() {
    let lab = Lab::new("hfb", Mode::Dr).expect("lab");
    lab.attach().expect("attach");
    let sorry = sorry_host(&lab).expect("sorry host");
    let cfg = lab.dir.join("ldirectord.cf");
    std::fs::write(&cfg, ldirectord_cf(false, 1, Some(SORRY))).expect("config");
    let lbd = Lbd::start(&lab, &cfg, &[], &lab.dir.join("lbd.log")).expect("lbd");
    let bound = Duration::from_secs(3);
    wait_weights(&lab, bound, |v| has(v, &[(WEB1, 1), (WEB2, 1)])).unwrap_or_else(|e| panic!("{e}\n{}", lbd.log_text()));
    stop_http(&lab.web[0].ns, 80).expect("stop web1");
    stop_http(&lab.web[1].ns, 80).expect("stop web2");
    let t = wait_weights(&lab, bound + Duration::from_secs(2), |v| has(v, &[(SORRY, 1)]))
        .unwrap_or_else(|e| panic!("no fallback: {e}\n{}", lbd.log_text()));
    let a = requests(&lab, 24000, 3).expect("requests");
    assert_eq!(count(&a, "Sorry from fallback"), 3, "{a:?}");
    let _web2 = start_http(&lab.web[1].ns, 80, &lab.dir.join("www2")).expect("restart web2");
    let back = wait_weights(&lab, bound + Duration::from_secs(2), |v| has(v, &[(WEB2, 1)]))
        .unwrap_or_else(|e| panic!("fallback not replaced: {e}\n{}", lbd.log_text()));
    let a = requests(&lab, 25000, 3).expect("requests");
    assert_eq!(count(&a, "Welcome from web2"), 3, "{a:?}");
    println!("fallback in after {t:?}, out after {back:?}");
    drop(sorry);
}
