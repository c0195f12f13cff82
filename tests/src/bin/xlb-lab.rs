//! `xlb-lab demo`: the demo lab of the README (`cargo xtask demo` runs it).
use lb_user::store::Store;
use xlb_tests::lab::{DrLab, SEED_DR_LINES};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("demo") => demo(),
        _ => {
            eprintln!("usage: xlb-lab demo");
            std::process::exit(2);
        }
    };
    if let Err(e) = r {
        eprintln!("xlb-lab: {e:#}");
        std::process::exit(1);
    }
}

fn demo() -> anyhow::Result<()> {
    println!("== lab: client1 {} -> lvs1 {} (VIP {}) -> web1 {}, web2 {} (DR, one L2 segment)",
        xlb_tests::lab::CLIENT, xlb_tests::lab::DIP, xlb_tests::lab::VIP, xlb_tests::lab::WEB1, xlb_tests::lab::WEB2);
    let lab = DrLab::up("demo")?;
    lab.attach()?;
    println!("== xlb attached to lvs1 eth0 (XDP, native mode)");
    for line in SEED_DR_LINES {
        println!("[root@lvs1 ~]# ipvsadm {}", line.join(" "));
        print!("{}", lab.ipvsadm_ok(line)?);
    }
    println!("[root@lvs1 ~]# ipvsadm -Ln");
    print!("{}", lab.ipvsadm_ok(&["-Ln"])?);
    println!("[root@client1 ~]# for i in {{1..6}}; do curl http://{}/; done", xlb_tests::lab::VIP);
    for _ in 0..6 {
        println!("{}", lab.curl_vip()?);
    }
    println!("[root@lvs1 ~]# ipvsadm -Ln --stats");
    print!("{}", lab.ipvsadm_ok(&["-Ln", "--stats"])?);
    let g = Store::open_at(lab.pin_dir(), Default::default())?.global_stats()?;
    println!(
        "== data plane on lvs1: {} frames seen, {} forwarded (XDP_TX), {} passed to the kernel, {} dropped",
        g.rx, g.tx, g.pass, g.drop
    );
    println!("== removing the lab");
    Ok(())
}
