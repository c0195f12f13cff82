//! The director pair of a piranha lvs.cf (what piranha's pulse does), when it has
//! `backup_active = 1` and `heartbeat = 1`: the node owning the `primary` address and the node
//! owning the `backup` address exchange UDP heartbeats on `heartbeat_port` every `keepalive`;
//! one of them is active and holds the virtual servers' addresses (`address = VIP dev:alias`,
//! and `nat_router`), the other is passive.
//!
//! - A passive node that hears nothing from its peer for `deadtime` becomes active: it adds
//!   each address (`ip addr add VIP/prefix dev DEV label DEV:ALIAS`) and announces it with
//!   gratuitous ARP (three, a second apart).
//! - The primary takes over whenever it hears the backup (piranha's primary takes the service
//!   back once it is up again); the backup, hearing the primary active, gives the addresses
//!   back (deletes them). The overlap is one heartbeat at most; the primary's ARP wins.
//! - A node stopped by SIGTERM/SIGINT gives its addresses back and says so ("leaving"): its
//!   peer takes over at once instead of after `deadtime`. A node killed says nothing: its peer
//!   waits `deadtime`.
//! - With `syncdaemon = 1`, the active node's connection sync daemon runs as master, the
//!   passive one's as backup.
//!
//! The addresses belong to lbd while the heartbeat runs: do not configure them statically.
//!
//! Heartbeat datagram (12 bytes, not pulse's): `XLBH` (4 bytes), version 1 (1 byte), role
//! (1 primary, 2 backup), state (0 passive, 1 active, 2 leaving), 0 (1 byte), sequence number
//! (4 bytes, big endian). Only datagrams from the peer's address count.
//!
//! Hand-written: piranha's heartbeat is its own protocol; a gratuitous ARP is one raw frame.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::piranha::{Pair, Vip};

/// Which address of the pair this node owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Backup,
}

/// Whether this node holds the addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Passive,
    Active,
}

/// What a heartbeat says of its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    Passive,
    Active,
    Leaving,
}

const MAGIC: &[u8; 4] = b"XLBH";
const VERSION: u8 = 1;
pub const HEARTBEAT_LEN: usize = 12;

/// One heartbeat datagram.
pub fn encode(role: Role, state: PeerState, seq: u32) -> [u8; HEARTBEAT_LEN] {
    let mut b = [0u8; HEARTBEAT_LEN];
    b[..4].copy_from_slice(MAGIC);
    b[4] = VERSION;
    b[5] = match role {
        Role::Primary => 1,
        Role::Backup => 2,
    };
    b[6] = match state {
        PeerState::Passive => 0,
        PeerState::Active => 1,
        PeerState::Leaving => 2,
    };
    b[8..12].copy_from_slice(&seq.to_be_bytes());
    b
}

/// A heartbeat's sender role and state; none for anything else.
pub fn decode(b: &[u8]) -> Option<(Role, PeerState)> {
    if b.len() != HEARTBEAT_LEN || &b[..4] != MAGIC || b[4] != VERSION {
        return None;
    }
    let role = match b[5] {
        1 => Role::Primary,
        2 => Role::Backup,
        _ => return None,
    };
    let state = match b[6] {
        0 => PeerState::Passive,
        1 => PeerState::Active,
        2 => PeerState::Leaving,
        _ => return None,
    };
    Some((role, state))
}

/// This node's next state when it hears its peer.
pub fn on_heard(role: Role, me: State, peer: PeerState) -> State {
    match (role, peer) {
        (_, PeerState::Leaving) => State::Active,
        (Role::Primary, _) => State::Active,
        (Role::Backup, PeerState::Active) => State::Passive,
        (Role::Backup, PeerState::Passive) => me,
    }
}

/// The running heartbeat.
pub struct Pulse {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Pulse {
    /// Gives the addresses back (when active), tells the peer, ends the task.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// This node's role: the pair's address it owns.
pub fn own_role(pair: &Pair, local: &[IpAddr]) -> Option<(Role, Ipv4Addr)> {
    let owns = |a: Option<Ipv4Addr>| a.filter(|a| !a.is_unspecified() && local.contains(&IpAddr::V4(*a)));
    if let Some(peer) = owns(pair.primary).and(pair.backup) {
        return Some((Role::Primary, peer));
    }
    owns(pair.backup).and(pair.primary).map(|peer| (Role::Backup, peer))
}

/// Starts the heartbeat when the configuration asks for one and this node is one of the pair.
pub async fn start(pair: Pair, dir: PathBuf) -> anyhow::Result<Option<Pulse>> {
    if !(pair.backup_active && pair.heartbeat) {
        return Ok(None);
    }
    let local = crate::local::interface_addrs();
    let Some((role, peer)) = own_role(&pair, &local) else {
        tracing::warn!(
            "pair: this node owns neither primary {} nor backup {}: no heartbeat, the virtual addresses are not managed",
            fmt_opt(pair.primary),
            fmt_opt(pair.backup)
        );
        return Ok(None);
    };
    let sock = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], pair.heartbeat_port)))
        .await
        .with_context(|| format!("heartbeat: cannot listen on UDP port {}", pair.heartbeat_port))?;
    tracing::info!(
        role = ?role,
        %peer,
        "pair: {role:?} node, heartbeat with {peer} on UDP port {} every {:?}, dead after {:?}",
        pair.heartbeat_port,
        pair.keepalive,
        pair.deadtime
    );
    set_sync_role(false, &pair, &dir);
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(run(pair, dir, role, peer, sock, rx));
    Ok(Some(Pulse { stop: tx, task }))
}

fn fmt_opt(a: Option<Ipv4Addr>) -> String {
    a.map_or_else(|| "(none)".into(), |a| a.to_string())
}

async fn run(pair: Pair, dir: PathBuf, role: Role, peer: Ipv4Addr, sock: UdpSocket, mut stop: oneshot::Receiver<()>) {
    let to = SocketAddr::from((peer, pair.heartbeat_port));
    let mut state = State::Passive;
    let mut seq = 0u32;
    let mut heard = Instant::now();
    let mut tick = tokio::time::interval(pair.keepalive);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = [0u8; 64];
    let mut strangers = 0u32;
    loop {
        let next = tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {
                send(&sock, to, role, state, &mut seq).await;
                continue;
            }
            _ = tokio::time::sleep_until(heard + pair.deadtime), if state == State::Passive => {
                tracing::warn!(%peer, "pair: nothing heard from {peer} for {:?}: taking over", pair.deadtime);
                heard = Instant::now();
                State::Active
            }
            r = sock.recv_from(&mut buf) => {
                let (n, from) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "pair: heartbeat receive failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let said = decode(&buf[..n]).filter(|(r, _)| *r != role);
                match said {
                    Some((_, peer_state)) if from.ip() == IpAddr::V4(peer) => {
                        heard = Instant::now();
                        let next = on_heard(role, state, peer_state);
                        if next != state {
                            tracing::info!(%peer, peer_state = ?peer_state, "pair: {peer} says {peer_state:?}");
                        }
                        next
                    }
                    _ => {
                        strangers = strangers.saturating_add(1);
                        if strangers.is_power_of_two() {
                            tracing::warn!(%from, "pair: ignored {strangers} datagram(s) that are not {peer}'s heartbeat (last from {from})");
                        }
                        continue;
                    }
                }
            }
        };
        if next != state {
            state = next;
            match state {
                State::Active => activate(&pair).await,
                State::Passive => deactivate(&pair).await,
            }
            set_sync_role(state == State::Active, &pair, &dir);
            send(&sock, to, role, state, &mut seq).await;
        }
    }
    if state == State::Active {
        deactivate(&pair).await;
    }
    seq = seq.wrapping_add(1);
    let _ = sock.send_to(&encode(role, PeerState::Leaving, seq), to).await;
    tracing::info!("pair: left (heartbeat stopped)");
}

async fn send(sock: &UdpSocket, to: SocketAddr, role: Role, state: State, seq: &mut u32) {
    *seq = seq.wrapping_add(1);
    let s = match state {
        State::Passive => PeerState::Passive,
        State::Active => PeerState::Active,
    };
    // A lost heartbeat is what the peer's deadtime is for; nothing to do here.
    let _ = sock.send_to(&encode(role, s, *seq), to).await;
}

/// Adds the addresses and announces them.
async fn activate(pair: &Pair) {
    tracing::warn!(role = "active", "pair: active: bringing up the virtual addresses");
    let vips = pair.vips.clone();
    let r = tokio::task::spawn_blocking(move || {
        for v in &vips {
            if let Err(e) = add_vip(v) {
                tracing::error!(address = %v.addr, "pair: {}: {e:#}", v.addr);
            }
        }
        vips
    })
    .await;
    // Gratuitous ARP three times, a second apart (a neighbour may drop one), off the loop.
    if let Ok(vips) = r {
        tokio::spawn(async move {
            for i in 0..3 {
                if i > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                for v in vips.iter().filter(|v| !v.dev.is_empty()) {
                    if let Err(e) = gratuitous_arp(&v.dev, v.addr)
                        && i == 0
                    {
                        tracing::warn!(address = %v.addr, device = %v.dev, "pair: gratuitous ARP for {} on {}: {e}", v.addr, v.dev);
                    }
                }
            }
        });
    }
}

/// Deletes the addresses.
async fn deactivate(pair: &Pair) {
    tracing::warn!(role = "passive", "pair: passive: giving the virtual addresses back");
    let vips = pair.vips.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for v in vips.iter().filter(|v| !v.dev.is_empty()) {
            let cidr = format!("{}/{}", v.addr, v.prefix);
            if let Err(e) = ip(&["addr", "del", &cidr, "dev", &v.dev]) {
                tracing::error!(address = %v.addr, "pair: {}: {e:#}", v.addr);
            }
        }
    })
    .await;
}

fn add_vip(v: &Vip) -> anyhow::Result<()> {
    if v.dev.is_empty() {
        bail!("line {}: no device to bring it up on (`address = VIP DEVICE:ALIAS`)", v.line);
    }
    let cidr = format!("{}/{}", v.addr, v.prefix);
    let mut args = vec!["addr", "add", &cidr, "dev", &v.dev];
    if !v.label.is_empty() {
        args.extend(["label", &v.label]);
    }
    match ip(&args) {
        Err(e) if format!("{e:#}").contains("File exists") => Ok(()),
        r => r,
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip").args(args).output().context("cannot run ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Announces `addr` on `dev` with an unsolicited ARP request (sender and target address both
/// `addr`, as `arping -U` sends), broadcast.
pub fn gratuitous_arp(dev: &str, addr: Ipv4Addr) -> std::io::Result<()> {
    let name = std::ffi::CString::new(dev).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated name; returns 0 when there is no such interface.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let proto = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, i32::from(proto)) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mac = hw_addr(&sock, dev)?;
    let mut arp = [0u8; 28];
    arp[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    arp[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    arp[4] = 6;
    arp[5] = 4;
    arp[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    arp[8..14].copy_from_slice(&mac);
    arp[14..18].copy_from_slice(&addr.octets());
    arp[24..28].copy_from_slice(&addr.octets());
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: the buffer and the address are valid for the lengths given.
    let n = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            arp.as_ptr().cast(),
            arp.len(),
            0,
            (&raw const sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The interface's MAC address (SIOCGIFHWADDR: this network namespace's, unlike /sys).
fn hw_addr(sock: &OwnedFd, dev: &str) -> std::io::Result<[u8; 6]> {
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if dev.len() >= req.ifr_name.len() {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(dev.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads ifr_name and fills ifr_hwaddr of the request we own.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the ioctl filled the hwaddr member of the union.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data.iter()) {
        *m = *d as u8;
    }
    Ok(mac)
}

/// With `syncdaemon = 1` the sync daemon follows the pair, as pulse runs `ipvsadm
/// --start-daemon`: master on the active node, backup on the passive one, on `syncd_iface` with
/// `syncd_id`. The table records it (what `ipvsadm -L --daemon` shows) and lbd's sync task runs it.
fn set_sync_role(active: bool, pair: &Pair, dir: &Path) {
    if !pair.syncdaemon {
        return;
    }
    let role = if active { "master" } else { "backup" };
    let r = (|| -> anyhow::Result<bool> {
        let mut store = crate::store::Store::open_at(dir, Default::default())?;
        let before = store.load()?;
        let mut t = before.clone();
        let arg = crate::ipvsadm::command::DaemonArg {
            master: active,
            mcast_ifn: pair.syncd_iface.clone(),
            syncid: pair.syncd_id as u32,
            ..Default::default()
        };
        let cfg = crate::ipvsadm::daemon_cfg(&arg, crate::netdev::lookup(&pair.syncd_iface))
            .map_err(|e| anyhow::anyhow!("{}", std::io::Error::from_raw_os_error(e)))?;
        let _ = t.stop_daemon(!active);
        let same = |d: &Option<crate::model::SyncDaemonCfg>| d.as_ref().is_some_and(|d| crate::model::SyncDaemonCfg { generation: 0, ..d.clone() } == cfg);
        if !same(if active { &t.daemons.master } else { &t.daemons.backup }) {
            let _ = t.stop_daemon(active);
            t.start_daemon(active, cfg).map_err(|e| anyhow::anyhow!("{}", std::io::Error::from_raw_os_error(e)))?;
        }
        let changed = t != before;
        store.commit(&before, &t)?;
        Ok(changed)
    })();
    match r {
        Ok(true) => tracing::info!(
            sync_role = %role,
            interface = %pair.syncd_iface,
            syncid = pair.syncd_id,
            "pair: sync daemon now {role} on {} (syncid {})",
            pair.syncd_iface,
            pair.syncd_id
        ),
        Ok(false) => {}
        Err(e) => tracing::error!(sync_role = %role, "pair: cannot run the sync daemon as {role} on {}: {e:#}", pair.syncd_iface),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_round_trips_and_rejects_noise() {
        let b = encode(Role::Backup, PeerState::Active, 7);
        assert_eq!(&b, b"XLBH\x01\x02\x01\x00\x00\x00\x00\x07");
        assert_eq!(decode(&b), Some((Role::Backup, PeerState::Active)));
        assert_eq!(decode(&b[..11]), None);
        let mut bad = b;
        bad[6] = 9;
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(b"hello, world"), None);
    }

    #[test]
    fn the_primary_takes_over_and_the_backup_yields() {
        use PeerState as P;
        use State::*;
        assert_eq!(on_heard(Role::Primary, Passive, P::Active), Active);
        assert_eq!(on_heard(Role::Primary, Passive, P::Passive), Active);
        assert_eq!(on_heard(Role::Backup, Active, P::Active), Passive);
        assert_eq!(on_heard(Role::Backup, Active, P::Passive), Active);
        assert_eq!(on_heard(Role::Backup, Passive, P::Passive), Passive);
        assert_eq!(on_heard(Role::Backup, Passive, P::Leaving), Active);
    }

    #[test]
    fn role_from_the_local_addresses() {
        let text = "primary = 10.0.0.1\nbackup = 10.0.0.2\nbackup_active = 1\nheartbeat = 1\n";
        let cfg = crate::config::parse(text, crate::config::Format::Piranha).expect("config");
        let pair = cfg.pair.expect("pair");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(own_role(&pair, &[ip("10.0.0.1")]), Some((Role::Primary, "10.0.0.2".parse().expect("ip"))));
        assert_eq!(own_role(&pair, &[ip("127.0.0.1"), ip("10.0.0.2")]), Some((Role::Backup, "10.0.0.1".parse().expect("ip"))));
        assert_eq!(own_role(&pair, &[ip("10.0.0.3")]), None);
    }
}
