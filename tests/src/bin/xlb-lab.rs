//! `xlb-lab demo [--mode dr|tun|nat|bridge|dr6|tun6|nat6]`: the demo lab of the README (`cargo
//! xtask demo` runs it). The `6` modes build the dual-stack lab and balance an IPv6 service.
use lb_user::store::Store;
use xlb_tests::{
    lab::{CLIENT, CLIENT6, DIP, DIP6, Lab, Mode, RS1, RS1_6, RS2, RS2_6, ROUTER, ROUTER6, VIP, VIP6, WEB1, WEB1_6, WEB2, WEB2_6},
    lab_checks::sock,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.iter().position(|a| a == "--mode").map(|i| args.get(i + 1)) {
        None => Some((Mode::Dr, false)),
        Some(m) => m.and_then(|m| match m.strip_suffix('6') {
            Some(m4) => Mode::parse(m4).filter(|m| *m != Mode::Bridge).map(|m| (m, true)),
            None => Mode::parse(m).map(|m| (m, false)),
        }),
    };
    let r = match (args.first().map(String::as_str), mode) {
        (Some("demo"), Some((mode, false))) => demo(mode),
        (Some("demo"), Some((mode, true))) => demo6(mode),
        _ => {
            eprintln!("usage: xlb-lab demo [--mode dr|tun|nat|bridge|dr6|tun6|nat6]");
            std::process::exit(2);
        }
    };
    if let Err(e) = r {
        eprintln!("xlb-lab: {e:#}");
        std::process::exit(1);
    }
}

fn demo(mode: Mode) -> anyhow::Result<()> {
    match mode {
        Mode::Dr => println!(
            "== DR lab: client1 {CLIENT} -> lvs1 {DIP} (VIP {VIP}) -> web1 {WEB1}, web2 {WEB2} (one L2 segment)"
        ),
        Mode::Tun => println!(
            "== TUN lab: client1 {CLIENT} -> lvs1 {DIP} (VIP {VIP}) -> IPIP via router {ROUTER} -> web1 {RS1}, \
             web2 {RS2} (decap by xlb_decap); replies straight to the client"
        ),
        Mode::Nat => println!(
            "== NAT lab: client1 {CLIENT} (gw {DIP}) -> lvs1 eth0 {DIP} / eth1 192.168.99.5 -> web1 {RS1}, \
             web2 {RS2} (gw lvs1)"
        ),
        Mode::Bridge => println!(
            "== DR behind the director's bridge: client1 {CLIENT} -> lvs1 eth0 {DIP} (VIP {VIP}) / br0 \
             192.168.99.5 -> web1 {RS1}, web2 {RS2} (ports of br0; gw lvs1)"
        ),
    }
    let lab = Lab::new("demo", mode)?;
    lab.attach()?;
    println!("== xlb attached to lvs1 (XDP, native mode)");
    let status = lab.lbd_in(&lab.lvs1.ns, &["status"])?;
    println!("[root@lvs1 ~]# lbd status | head -4");
    for line in String::from_utf8_lossy(&status.stdout).lines().take(4) {
        println!("{line}");
    }
    for line in mode.lines() {
        println!("[root@lvs1 ~]# ipvsadm {}", line.join(" "));
        print!("{}", lab.ipvsadm_ok(line)?);
    }
    println!("[root@lvs1 ~]# ipvsadm -Ln");
    print!("{}", lab.ipvsadm_ok(&["-Ln"])?);
    let vip = mode.vip();
    println!("[root@client1 ~]# for i in {{1..6}}; do curl http://{vip}/; done");
    for _ in 0..6 {
        println!("{}", lab.curl_vip()?);
    }
    println!("[root@lvs1 ~]# ipvsadm -Ln --stats");
    print!("{}", lab.ipvsadm_ok(&["-Ln", "--stats"])?);
    let g = Store::open_at(lab.pin_dir(), Default::default())?.global_stats()?;
    println!(
        "== data plane on lvs1: {} frames seen, {} sent by XDP (TX {}, redirect {}), {} sent by the tc slow \
         path (bpf_redirect_neigh), {} passed to the kernel, {} dropped",
        g.rx,
        g.tx + g.redirect,
        g.tx,
        g.redirect,
        g.neigh_miss,
        g.pass,
        g.drop
    );
    println!("== removing the lab");
    Ok(())
}

/// The IPv6 demo: the dual-stack lab of `mode`, an IPv6 service over the two real servers,
/// six `curl -6` requests, the listing.
fn demo6(mode: Mode) -> anyhow::Result<()> {
    let [r1, r2] = mode.reals6();
    match mode {
        Mode::Dr => println!("== IPv6 DR lab: client1 {CLIENT6} -> lvs1 {DIP6} (VIP {VIP6}) -> web1 {WEB1_6}, web2 {WEB2_6} (one L2 segment, VIP on lo)"),
        Mode::Tun => println!(
            "== IPv6 TUN lab: client1 {CLIENT6} -> lvs1 {DIP6} (VIP {VIP6}) -> IPv6-in-IPv6 via router {ROUTER6} -> \
             web1 {RS1_6}, web2 {RS2_6} (decap by xlb_decap); replies straight to the client"
        ),
        Mode::Nat | Mode::Bridge => println!(
            "== NAT66 lab: client1 {CLIENT6} (gw {DIP6}) -> lvs1 eth0 {DIP6} / eth1 2001:db8:99::5 -> web1 {RS1_6}, web2 {RS2_6} (gw lvs1)"
        ),
    }
    let lab = Lab::new6("demo6", mode)?;
    lab.attach()?;
    println!("== xlb attached to lvs1 (XDP)");
    let vip = mode.vip6();
    let svc = sock(vip, 80);
    let lines = [
        format!("-A -t {svc} -s rr"),
        format!("-a -t {svc} -r {} {} -w 1", sock(r1, 80), mode.flag()),
        format!("-a -t {svc} -r {} {} -w 1", sock(r2, 80), mode.flag()),
    ];
    for l in &lines {
        println!("[root@lvs1 ~]# ipvsadm {l}");
        print!("{}", lab.ipvsadm_ok(&l.split_whitespace().collect::<Vec<_>>())?);
    }
    println!("[root@lvs1 ~]# ipvsadm -Ln");
    print!("{}", lab.ipvsadm_ok(&["-Ln"])?);
    println!("[root@client1 ~]# for i in {{1..6}}; do curl -6 -g http://{svc}/; done");
    for _ in 0..6 {
        println!("{}", lab.curl(vip, 80)?);
    }
    println!("[root@lvs1 ~]# ipvsadm -Ln --stats");
    print!("{}", lab.ipvsadm_ok(&["-Ln", "--stats"])?);
    println!("== removing the lab");
    Ok(())
}
