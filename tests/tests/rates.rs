//! `ipvsadm -Ln --rate`: IPVS's estimator over the data plane's counters (lbd ticks it every
//! 2 s; here the ticks are driven by hand so the expected figures are exact), and `-Z`.
use lb_user::{estimator, model::Counters, store::Store};
use xlb_tests::{
    frames::{Frame, SYN, sa},
    golden::Lbadm,
    xdp::XdpUnderTest,
};

#[test]
fn rates_follow_the_kernel_estimator_and_zero() {
    let lb = Lbadm::new("rates").expect("lbadm");
    lb.ok("-A -t 10.1.0.1:80 -s rr").expect("-A");
    lb.ok("-a -t 10.1.0.1:80 -r 10.1.1.1 -g").expect("-a");
    lb.ok("-a -t 10.1.0.1:80 -r 10.1.1.2 -g").expect("-a");
    let mut xdp = XdpUnderTest::load(lb.pin_dir(), "xlb_xdp").expect("load");
    let mut port = 10000u16;
    let mut send = |n: u16| {
        for _ in 0..n {
            port += 1;
            let f = Frame::tcp(sa([10, 9, 9, 9], port), sa([10, 1, 0, 1], 80), SYN);
            xdp.run(&f.bytes()).expect("run");
        }
    };
    send(10);
    let tick = || Store::open_at(lb.pin_dir(), Default::default()).and_then(|mut s| s.tick_rates()).expect("tick");
    // A new service's estimator starts from zero counters (IPVS's `ip_vs_zero_estimator` at
    // creation): the first tick counts the 10 connections made before it.
    tick();
    send(40);
    tick();
    send(40);
    tick();
    // The same three ticks by the estimator's own rules: 10, then 40 connections per 2 s twice.
    let mut c = Counters::default();
    let mut e = estimator::start(&c);
    for n in [10, 40, 40] {
        c.conns += n;
        c.inpkts += n;
        c.inbytes += n * 40;
        estimator::tick(&mut e, &c);
    }
    let want = estimator::read(&e);
    assert!(want.cps > 0 && want.inbps > 0, "{want:?}");
    let out = lb.ok("-Ln --rate").expect("--rate");
    let svc_line = out.lines().find(|l| l.starts_with("TCP  10.1.0.1:80")).expect("service line");
    let cols: Vec<u64> = svc_line.split_whitespace().skip(2).map(|v| v.parse().expect("number")).collect();
    assert_eq!(cols, vec![want.cps, want.inpps, want.outpps, want.inbps, want.outbps], "{out}");
    // -Z zeroes the counters and the rates.
    lb.ok("-Z").expect("-Z");
    let out = lb.ok("-Ln --rate").expect("--rate");
    let svc_line = out.lines().find(|l| l.starts_with("TCP  10.1.0.1:80")).expect("service line");
    assert!(svc_line.split_whitespace().skip(2).all(|v| v == "0"), "{out}");
    // ... and the estimator starts again from zero: 20 connections, one tick.
    send(20);
    tick();
    let mut e = estimator::start(&Counters::default());
    estimator::tick(&mut e, &Counters { conns: 20, inpkts: 20, inbytes: 20 * 40, ..Default::default() });
    let want = estimator::read(&e);
    let out = lb.ok("-Ln --rate").expect("--rate");
    let svc_line = out.lines().find(|l| l.starts_with("TCP  10.1.0.1:80")).expect("service line");
    let cols: Vec<u64> = svc_line.split_whitespace().skip(2).map(|v| v.parse().expect("number")).collect();
    assert_eq!(cols, vec![want.cps, want.inpps, want.outpps, want.inbps, want.outbps], "after -Z: {out}");
}
