//! `xlb-lab demo [--mode dr|tun|nat|bridge]`: the demo lab of the README (`cargo xtask demo` runs it).
use lb_user::store::Store;
use xlb_tests::lab::{CLIENT, DIP, Lab, Mode, RS1, RS2, ROUTER, VIP, WEB1, WEB2};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.iter().position(|a| a == "--mode").map(|i| args.get(i + 1)) {
        None => Some(Mode::Dr),
        Some(m) => m.and_then(|m| Mode::parse(m)),
    };
    let r = match (args.first().map(String::as_str), mode) {
        (Some("demo"), Some(mode)) => demo(mode),
        _ => {
            eprintln!("usage: xlb-lab demo [--mode dr|tun|nat|bridge]");
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
