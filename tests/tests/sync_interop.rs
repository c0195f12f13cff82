//! The sync daemon against the real kernel's (issue 17): kernel IPVS in director A and xlb in
//! director B on one segment (the pair lab), the same services on both (a `-p 300` TCP service,
//! a plain rr TCP service, a UDP service, DR). Kernel IPVS master and xlb backup, then xlb master
//! and kernel IPVS backup (and once more with xlb sending version 0): real connections from the
//! client through the master, some left ESTABLISHED, some closed (FIN_WAIT), some reset (CLOSE),
//! UDP flows; then the backup's `-Lnc` must list the master's connections and persistence
//! templates, row for row but the expire column.
//!
//! Runs where the kernel has IPVS (the kernel matrix's guests); elsewhere it says why and passes.
//! XLB_SYNC_PEER=ipvs puts kernel IPVS in B too: the harness's own check (two kernel IPVS agree).
use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use xlb_tests::{
    compare::side::Kind,
    ipvs_host,
    pair::{self, Director, End, PERSISTENT_PORT, PLAIN_PORT, Pair, client_ip, conn_rows},
};

/// How long the backup may take to list what the master has: IPVS's master sends a buffer when
/// it is full or two seconds old; TCG slows everything down.
const SYNC_WAIT: Duration = Duration::from_secs(20);

fn peer_kind() -> Kind {
    if std::env::var("XLB_SYNC_PEER").is_ok_and(|v| v == "ipvs") { Kind::Ipvs } else { Kind::Xlb }
}

/// IPVS's sync_version (`net.ipv4.vs.sync_version`, or `lbd sysctl` on xlb's side).
fn set_sync_version(d: &Director, version: u8) -> anyhow::Result<()> {
    match d.kind {
        Kind::Ipvs => d.ns.sysctl("net.ipv4.vs.sync_version", &version.to_string()),
        Kind::Xlb => d.lbd(&["sysctl", &format!("sync_version={version}")]).map(|_| ()),
    }
}

/// Connections from `clients` through the master: per client two to the persistent service
/// (one kept, one closed), three to the plain one (kept, closed, reset), two UDP flows of three
/// datagrams (IPVS syncs a connection on its third packet, and at once on a TCP state change).
fn traffic(pair: &Pair, clients: &[Ipv4Addr]) -> anyhow::Result<Vec<String>> {
    let mut answers = Vec::new();
    for &c in clients {
        let p1 = pair.tcp_request(c, 41001, PERSISTENT_PORT, End::Keep)?;
        let p2 = pair.tcp_request(c, 41002, PERSISTENT_PORT, End::Close)?;
        anyhow::ensure!(p1 == p2, "{c}: the persistent service sent it to {p1} then {p2}");
        answers.push(format!("{c}: :80 {p1} {p2}"));
        let mut plain = Vec::new();
        for (sport, end) in [(41003, End::Keep), (41004, End::Close), (41005, End::Reset)] {
            plain.push(pair.tcp_request(c, sport, PLAIN_PORT, end)?);
        }
        answers.push(format!("{c}: :8080 {}", plain.join(" ")));
        let u: Vec<String> = [41006, 41007].iter().map(|&s| pair.udp_flow(c, s, 3)).collect::<anyhow::Result<_>>()?;
        answers.push(format!("{c}: udp/53 {}", u.join(" ")));
    }
    Ok(answers)
}

/// One direction: `master` holds the VIP and syncs to `backup`; Err describes a difference.
fn direction(pair: &Pair, master_is_a: bool, clients: &[Ipv4Addr], version: u8) -> anyhow::Result<()> {
    let (master, backup) = if master_is_a { (&pair.a, &pair.b) } else { (&pair.b, &pair.a) };
    let title = format!("{} master -> {} backup, sync_version {version}", master.name(), backup.name());
    println!("=== {title}");
    set_sync_version(master, version)?;
    backup.ipvsadm_ok(&["--start-daemon", "backup", "--mcast-interface", "eth0"])?;
    master.ipvsadm_ok(&["--start-daemon", "master", "--mcast-interface", "eth0"])?;
    for d in [master, backup] {
        print!("{} -L --daemon:\n{}", d.name(), d.ipvsadm_ok(&["-L", "--daemon"])?);
    }
    master.take_vip()?;
    pair.client_forget_vip()?;
    // The backup's receiving socket joins the group as its daemon starts; a moment for xlb's.
    std::thread::sleep(Duration::from_millis(500));
    let result = (|| -> anyhow::Result<()> {
        for a in traffic(pair, clients)? {
            println!("  {a}");
        }
        // The master's rows once the traffic is over (no state changes after it).
        let master_listing = master.ipvsadm_ok(&["-Lnc"])?;
        let want = conn_rows(&master_listing, clients);
        // Per client: 5 TCP connections, 2 UDP flows, 1 persistence template.
        anyhow::ensure!(
            want.len() == 8 * clients.len(),
            "{} lists {} rows of these clients, not {}:\n{master_listing}",
            master.name(),
            want.len(),
            8 * clients.len()
        );
        let (same, backup_listing, waited) = pair::poll(SYNC_WAIT, || {
            let l = backup.ipvsadm_ok(&["-Lnc"])?;
            Ok((conn_rows(&l, clients) == want, l))
        })?;
        println!("{} -Lnc (master):\n{master_listing}", master.name());
        println!("{} -Lnc (backup, after {:.1} s):\n{backup_listing}", backup.name(), waited.as_secs_f64());
        if !same {
            let got = conn_rows(&backup_listing, clients);
            let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).collect();
            let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).collect();
            anyhow::bail!("{title}: the backup's rows differ from the master's after {SYNC_WAIT:?}\n  missing: {missing:?}\n  extra: {extra:?}");
        }
        println!("{title}: {} rows the same (expire column aside)", want.len());
        Ok(())
    })();
    pair.close_kept();
    master.drop_vip()?;
    master.ipvsadm_ok(&["--stop-daemon", "master"])?;
    backup.ipvsadm_ok(&["--stop-daemon", "backup"])?;
    set_sync_version(master, 1)?;
    result
}

#[test]
fn backup_lists_the_masters_connections_both_ways() {
    if let Some(why) = ipvs_host::ipvs_unavailable() {
        println!("skipped: {why}: the interoperability runs need kernel IPVS (the kernel matrix runs them)");
        return;
    }
    let t0 = std::time::Instant::now();
    let pair = Pair::new("si", Kind::Ipvs, peer_kind(), Arc::new(Vec::new())).expect("lab");
    for d in [&pair.a, &pair.b] {
        d.add_services().expect("services");
    }
    println!("lab ready in {:.1} s ({})", t0.elapsed().as_secs_f64(), pair.setup);
    let clients = |from: u8| -> Vec<Ipv4Addr> { (from..from + 3).map(client_ip).collect() };
    let mut failures = Vec::new();
    for (master_is_a, from, version) in [(true, 0, 1), (false, 10, 1), (false, 20, 0)] {
        if let Err(e) = direction(&pair, master_is_a, &clients(from), version) {
            println!("FAILED: {e:#}");
            failures.push(format!("{e:#}"));
        }
    }
    if !failures.is_empty() {
        for d in [&pair.a, &pair.b].into_iter().filter(|d| d.kind == Kind::Xlb) {
            println!("{} lbd run's log:\n{}", d.name(), d.lbd_log());
        }
    }
    println!("sync_interop took {:.1} s", t0.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
