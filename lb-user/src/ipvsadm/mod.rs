//! `lbadm`: a byte-exact drop-in for `ipvsadm` 1.31 working on xlb's table.
//!
//! One invocation loads the table once (lazily, when a command needs it), applies the command
//! with the kernel's semantics (`crate::ctl`), and commits once at the end if anything changed.
//! `-R` applies every line to the same in-memory table and commits once, also when a line
//! aborts the restore (ipvsadm would have applied the earlier lines).
//!
//! Where things are: [`cli::parse`] reads argv (popt's tokens from `popt`) into a checked
//! [`command::Entry`]; this module runs it on the table; [`format`] prints every listing, `-S`
//! rule, usage and version; [`names`] reads and prints host and service names; [`restore`]
//! splits `-R` lines; [`recording`] loads the real ipvsadm's recordings that the replays
//! compare with, minus the steps [`golden_skip`] leaves out.

pub mod cli;
pub mod command;
pub mod format;
pub mod golden_skip;
pub mod names;
mod popt;
pub mod recording;
pub mod restore;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;

use cli::{Flow, Io};
use command::{Cmd, Entry};
use crate::ctl::{DestSpec, Errno, ServiceSpec};
use crate::model::{Af, ConnEntry, Proto, SvcKey, Table, Tunnel};

/// Where the table lives (the pinned maps in production, memory in tests).
pub trait Backend {
    fn load(&mut self) -> anyhow::Result<Table>;
    fn commit(&mut self, before: &Table, after: &Table) -> anyhow::Result<()>;
    fn connections(&mut self) -> anyhow::Result<Vec<ConnEntry>>;
    /// `--mcast-interface`'s facts (the host's by default; the replays emulate the recording
    /// guest's).
    fn interface(&mut self, name: &str) -> Option<crate::netdev::NetDev> {
        crate::netdev::lookup(name)
    }
}

impl Backend for crate::store::Store {
    fn load(&mut self) -> anyhow::Result<Table> {
        crate::store::Store::load(self)
    }

    fn commit(&mut self, before: &Table, after: &Table) -> anyhow::Result<()> {
        crate::store::Store::commit(self, before, after)
    }

    fn connections(&mut self) -> anyhow::Result<Vec<ConnEntry>> {
        crate::store::Store::connections(self)
    }
}

fn init_failure(err: &mut dyn Write, what: &str) -> i32 {
    let _ = writeln!(
        err,
        "Can't initialize ipvs: {what}\nAre you sure that IP Virtual Server is built in the kernel or as module?"
    );
    2
}

/// What lbadm was invoked as (the base name of argv[0]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Personality {
    /// `ipvsadm`, `lbadm` or any other name.
    Ipvsadm,
    /// `ipvsadm-save [-n]`: Debian's wrapper, `ipvsadm -S $1`.
    Save,
    /// `ipvsadm-restore`: Debian's wrapper, `INPUT="$(grep -v '^#')"; ipvsadm -C;
    /// echo "$INPUT" | ipvsadm -R`.
    Restore,
}

impl Personality {
    pub fn of(argv0: Option<&OsString>) -> Personality {
        let base = argv0.and_then(|a| std::path::Path::new(a).file_name().map(|n| n.as_bytes().to_vec()));
        match base.as_deref() {
            Some(b"ipvsadm-save") => Personality::Save,
            Some(b"ipvsadm-restore") => Personality::Restore,
            _ => Personality::Ipvsadm,
        }
    }
}

/// Opens the store, wires the standard streams and runs one invocation (or, invoked as
/// `ipvsadm-save` / `ipvsadm-restore`, what those wrappers run).
pub fn main(argv: Vec<OsString>) -> i32 {
    let mut store = match crate::store::Store::open() {
        Ok(s) => s,
        Err(e) => return init_failure(&mut std::io::stderr(), &format!("{e:#}")),
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut err = std::io::stderr();
    let status = match Personality::of(argv.first()) {
        Personality::Ipvsadm => run(&argv, &mut store, &mut input, &mut out, &mut err),
        Personality::Save => run_save(&argv, &mut store, &mut out, &mut err),
        Personality::Restore => run_restore(&mut input, &mut store, &mut out, &mut err),
    };
    let _ = out.flush();
    status
}

/// `ipvsadm-save [-n]`: `ipvsadm -S $1` (the first argument, unquoted: split on blanks; the
/// others are ignored).
pub fn run_save(argv: &[OsString], backend: &mut dyn Backend, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut args: Vec<OsString> = vec!["ipvsadm".into(), "-S".into()];
    if let Some(first) = argv.get(1) {
        args.extend(
            first
                .as_bytes()
                .split(|c| matches!(c, b' ' | b'\t' | b'\n'))
                .filter(|w| !w.is_empty())
                .map(|w| OsString::from(std::ffi::OsStr::from_bytes(w))),
        );
    }
    run(&args, backend, &mut std::io::empty(), out, err)
}

/// The text `ipvsadm-restore` pipes into `ipvsadm -R`: `echo "$(grep -v '^#')"`. Lines that
/// start with `#` go; command substitution drops NUL bytes and every trailing newline; echo
/// adds one newline, and (bash's builtin) takes a whole input like `-n` or `-e` as its options.
pub fn restore_input(raw: &[u8]) -> Vec<u8> {
    let mut kept = Vec::with_capacity(raw.len());
    for line in raw.split_inclusive(|&c| c == b'\n') {
        if !line.starts_with(b"#") {
            kept.extend(line.iter().filter(|&&c| c != 0));
            if !line.ends_with(b"\n") {
                kept.push(b'\n');
            }
        }
    }
    while kept.last() == Some(&b'\n') {
        kept.pop();
    }
    let echo_options = kept.len() >= 2 && kept[0] == b'-' && kept[1..].iter().all(|c| matches!(c, b'n' | b'e' | b'E'));
    if echo_options {
        return if kept.contains(&b'n') { Vec::new() } else { b"\n".to_vec() };
    }
    kept.push(b'\n');
    kept
}

/// `ipvsadm-restore`: reads all of `stdin`, runs `ipvsadm -C` (its status is ignored), then
/// `ipvsadm -R` on what is left of the input ([`restore_input`]); the status is -R's.
pub fn run_restore(stdin: &mut dyn BufRead, backend: &mut dyn Backend, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut raw = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(stdin, &mut raw) {
        let _ = writeln!(err, "ipvsadm-restore: cannot read the input: {e}");
        return 1;
    }
    let input = restore_input(&raw);
    let _ = run(&["ipvsadm".into(), "-C".into()], backend, &mut std::io::empty(), out, err);
    run(&["ipvsadm".into(), "-R".into()], backend, &mut input.as_slice(), out, err)
}

/// The table as loaded and as changed so far.
struct Session<'a> {
    backend: &'a mut dyn Backend,
    before: Option<Table>,
    table: Option<Table>,
    /// Lookups over `table` for changes, built on the first change (`-R` makes many).
    index: Option<crate::ctl::Index>,
}

impl Session<'_> {
    fn table(&mut self, io: &mut Io) -> Result<&mut Table, Flow> {
        if self.table.is_none() {
            match self.backend.load() {
                Ok(t) => {
                    self.before = Some(t.clone());
                    self.table = Some(t);
                }
                Err(e) => return Err(Flow::Exit(init_failure(io.err, &format!("{e:#}")))),
            }
        }
        match self.table.as_mut() {
            Some(t) => Ok(t),
            None => Err(Flow::Exit(255)),
        }
    }

    /// The table with its index, to change it.
    fn indexed(&mut self, io: &mut Io) -> Result<(&mut Table, &mut crate::ctl::Index), Flow> {
        self.table(io)?;
        match (self.table.as_mut(), &mut self.index) {
            (Some(t), ix) => {
                let ix = ix.get_or_insert_with(|| crate::ctl::Index::new(t));
                Ok((t, ix))
            }
            (None, _) => Err(Flow::Exit(255)),
        }
    }

    /// Writes the changes back; false (after printing why) if that failed.
    fn commit(&mut self, err: &mut dyn Write) -> bool {
        let (Some(before), Some(after)) = (&self.before, &self.table) else {
            return true;
        };
        if before == after {
            return true;
        }
        match self.backend.commit(before, after) {
            Ok(()) => true,
            Err(e) => {
                let _ = writeln!(err, "{e:#}");
                false
            }
        }
    }
}

/// Runs one ipvsadm invocation. argv[0] is the program name as invoked (used in messages).
/// `stdin` is read only by -R. Returns the exit status.
pub fn run(
    argv: &[OsString],
    backend: &mut dyn Backend,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let words: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
    let prog = match words.first() {
        Some(p) => String::from_utf8_lossy(p).into_owned(),
        None => "ipvsadm".to_string(),
    };
    let words = if words.is_empty() { vec![prog.clone().into_bytes()] } else { words };
    let mut io = Io { out, err, prog: &prog };
    let mut sess = Session { backend, before: None, table: None, index: None };
    let result = if words.len() == 1 {
        // No arguments: list the table.
        sess.table(&mut io).map(|t| {
            let text = format::list_all(t, 0);
            let _ = io.out.write_all(&text);
            0
        })
    } else {
        process_options(&words, &mut sess, &mut io, stdin, false)
    };
    let status = match result {
        Ok(s) | Err(Flow::Exit(s)) | Err(Flow::Return(s)) => s,
    };
    if !sess.commit(io.err) {
        return 255;
    }
    status & 0xff
}

/// Which library call failed, for `ipvs_strerror`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    AddService,
    UpdateService,
    DelService,
    ZeroService,
    AddDest,
    UpdateDest,
    DelDest,
    GetService,
    StartDaemon,
    StopDaemon,
    Other,
}

/// libipvs's `ipvs_strerror`.
fn ipvs_strerror(call: Call, errno: Errno) -> String {
    use Call::*;
    let specific: &[(Call, Errno, &str)] = &[
        (AddService, libc::EEXIST, "Service already exists"),
        (AddService, libc::ENOENT, "Scheduler or persistence engine not found"),
        (UpdateService, libc::ESRCH, "No such service"),
        (UpdateService, libc::ENOENT, "Scheduler or persistence engine not found"),
        (DelService, libc::ESRCH, "No such service"),
        (ZeroService, libc::ESRCH, "No such service"),
        (AddDest, libc::ESRCH, "Service not defined"),
        (AddDest, libc::EEXIST, "Destination already exists"),
        (UpdateDest, libc::ESRCH, "Service not defined"),
        (UpdateDest, libc::ENOENT, "No such destination"),
        (DelDest, libc::ESRCH, "Service not defined"),
        (DelDest, libc::ENOENT, "No such destination"),
        (GetService, libc::ESRCH, "No such service"),
        (StartDaemon, libc::EEXIST, "Daemon has already run"),
        (StopDaemon, libc::ESRCH, "No daemon is running"),
    ];
    if let Some((_, _, m)) = specific.iter().find(|(c, e, _)| *c == call && *e == errno) {
        return (*m).to_string();
    }
    let generic: &[(Errno, &str)] = &[
        (libc::EPERM, "Permission denied (you must be root)"),
        (libc::EINVAL, "Invalid operation.  Possibly wrong module version, address not unicast, ..."),
        (libc::ENOPROTOOPT, "Protocol not available"),
        (libc::ENOMEM, "Memory allocation problem"),
        (libc::EOPNOTSUPP, "Operation not supported with IPv6"),
        (libc::EAFNOSUPPORT, "Operation not supported with specified address family"),
        (libc::EMSGSIZE, "Module is wrong version"),
    ];
    if let Some((_, m)) = generic.iter().find(|(e, _)| *e == errno) {
        return (*m).to_string();
    }
    std::io::Error::from_raw_os_error(errno)
        .to_string()
        .split(" (os error")
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A daemon's settings completed as the kernel's `start_sync_thread` completes them: the
/// interface must exist (ENODEV); an IPv6 group needs a multicast interface to route through
/// (ENETUNREACH, as the kernel's connect answers); the largest message is the interface's MTU
/// (a master: 1500) less the IP and UDP headers unless given, clamped to what the role takes.
pub fn daemon_cfg(d: &command::DaemonArg, dev: Option<crate::netdev::NetDev>) -> Result<crate::model::SyncDaemonCfg, Errno> {
    let dev = dev.ok_or(libc::ENODEV)?;
    let group = d.group.unwrap_or(IpAddr::from(lb_common::sync::SYNC_GROUP_V4));
    if group.is_ipv6() && !dev.multicast {
        return Err(libc::ENETUNREACH);
    }
    let hlen = if group.is_ipv6() { 40 + 8 } else { 20 + 8 };
    let (mtu, min) = if d.master { (1500, 1) } else { (dev.mtu.clamp(1500, 65535), 1024) };
    let maxlen = if d.maxlen != 0 { d.maxlen.clamp(min, 65535 - hlen) } else { mtu - hlen };
    Ok(crate::model::SyncDaemonCfg {
        ifname: d.mcast_ifn.clone(),
        ifindex: dev.index,
        syncid: d.syncid.min(255) as u8,
        maxlen,
        group,
        port: if d.port != 0 { d.port } else { lb_common::sync::SYNC_PORT },
        ttl: if d.ttl != 0 { d.ttl } else { lb_common::sync::SYNC_TTL },
        generation: 0,
    })
}

/// The service key a command names.
fn svc_key(e: &Entry) -> Option<SvcKey> {
    if e.svc.fwmark != 0 {
        let af = if e.svc.af == command::AF_INET6 { Af::Inet6 } else { Af::Inet };
        return Some(SvcKey::Fwmark { mark: e.svc.fwmark, af });
    }
    let proto = Proto::from_number(e.svc.protocol)?;
    Some(SvcKey::Inet { proto, addr: e.svc.addr?, port: e.svc.port })
}

fn service_spec(e: &Entry, key: SvcKey) -> ServiceSpec {
    ServiceSpec {
        key,
        sched: e.svc.sched.clone(),
        flags: e.svc.flags,
        timeout: e.svc.timeout,
        netmask: e.svc.netmask,
        pe_name: e.svc.pe_name.clone(),
    }
}

fn dest_spec(e: &Entry, addr: IpAddr) -> DestSpec {
    DestSpec {
        addr,
        port: e.dest.port,
        fwd: e.dest.fwd,
        weight: e.dest.weight,
        u_threshold: e.dest.u_threshold,
        l_threshold: e.dest.l_threshold,
        tunnel: Tunnel { kind: e.dest.tun_type, port: e.dest.tun_port, flags: e.dest.tun_flags },
    }
}

/// ipvsadm's `process_options`: Ok(status) when it returns, Err(Exit) when it exits.
fn process_options(
    argv: &[Vec<u8>],
    sess: &mut Session,
    io: &mut Io,
    stdin: &mut dyn BufRead,
    reading_stdin: bool,
) -> Result<i32, Flow> {
    let e = match cli::parse(argv, io) {
        Ok(e) => e,
        Err(Flow::Return(r)) => return Ok(r),
        Err(x) => return Err(x),
    };
    let key = svc_key(&e);
    let (call, res): (Call, Result<(), Errno>) = match e.cmd {
        Cmd::List => return list(&e, key, sess, io).map(|_| 0),
        Cmd::Restore => {
            if reading_stdin {
                return Err(io.tryhelp(255));
            }
            let argv0 = argv.first().cloned().unwrap_or_default();
            let mut result = 0;
            while let Some(line) = restore::read_argv(stdin, &argv0) {
                if line.len() > 1 {
                    result = process_options(&line, sess, io, stdin, true)?;
                }
            }
            return Ok(result);
        }
        Cmd::Save => {
            let t = sess.table(io)?;
            let text = format::list_all(t, e.format | format::FMT_RULE);
            let _ = io.out.write_all(&text);
            return Ok(0);
        }
        Cmd::Flush => {
            let (t, ix) = sess.indexed(io)?;
            t.flush_in(ix);
            (Call::Other, Ok(()))
        }
        Cmd::Add | Cmd::Edit => {
            let (t, ix) = sess.indexed(io)?;
            let (call, r) = match key {
                Some(k) if e.cmd == Cmd::Add => (Call::AddService, t.add_service_in(ix, &service_spec(&e, k)).map(|_| ())),
                Some(k) => (Call::UpdateService, t.edit_service_in(ix, &service_spec(&e, k))),
                None => (Call::Other, Err(libc::EINVAL)),
            };
            (call, r)
        }
        Cmd::Del => {
            let (t, ix) = sess.indexed(io)?;
            (Call::DelService, key.map_or(Err(libc::EINVAL), |k| t.del_service_in(ix, &k)))
        }
        Cmd::Zero => {
            let (t, ix) = sess.indexed(io)?;
            let all = e.svc.fwmark == 0 && e.svc.port == 0 && e.svc.addr.is_none_or(|a| a.is_unspecified());
            let r = if all { t.zero_in(ix, None) } else { key.map_or(Err(libc::EINVAL), |k| t.zero_in(ix, Some(&k))) };
            (Call::ZeroService, r)
        }
        Cmd::AddDest | Cmd::EditDest | Cmd::DelDest => {
            let (t, ix) = sess.indexed(io)?;
            let call = match e.cmd {
                Cmd::AddDest => Call::AddDest,
                Cmd::EditDest => Call::UpdateDest,
                _ => Call::DelDest,
            };
            let r = match (key, e.dest.addr) {
                (Some(k), Some(addr)) => match e.cmd {
                    Cmd::AddDest => t.add_dest_in(ix, &k, &dest_spec(&e, addr)).map(|_| ()),
                    Cmd::EditDest => t.edit_dest_in(ix, &k, &dest_spec(&e, addr)),
                    _ => t.del_dest_in(ix, &k, &addr, e.dest.port),
                },
                _ => Err(libc::EINVAL),
            };
            (call, r)
        }
        Cmd::Timeout => {
            let [tcp, fin, udp] = e.timeouts;
            (Call::Other, sess.table(io)?.set_timeouts(tcp, fin, udp))
        }
        Cmd::StartDaemon => {
            let dev = sess.backend.interface(&e.daemon.mcast_ifn);
            let r = match daemon_cfg(&e.daemon, dev) {
                Ok(cfg) => sess.table(io)?.start_daemon(e.daemon.master, cfg),
                Err(errno) => Err(errno),
            };
            (Call::StartDaemon, r)
        }
        Cmd::StopDaemon => (Call::StopDaemon, sess.table(io)?.stop_daemon(e.daemon.master)),
    };
    match res {
        Ok(()) => Ok(0),
        Err(errno) => {
            let msg = ipvs_strerror(call, errno);
            let _ = writeln!(io.err, "{msg}");
            Ok(-1)
        }
    }
}

/// The `-L` family. Listing failures exit with status 1.
fn list(e: &Entry, key: Option<SvcKey>, sess: &mut Session, io: &mut Io) -> Result<(), Flow> {
    let text = if e.has(command::OPTC_CONNECTION) {
        match sess.backend.connections() {
            Ok(conns) => format::list_conn(&conns, e.format),
            Err(_) => {
                let _ = writeln!(io.err, "cannot open file /proc/net/ip_vs_conn");
                return Err(Flow::Exit(1));
            }
        }
    } else if e.has(command::OPTC_SERVICE) {
        let t = sess.table(io)?;
        match key.and_then(|k| t.find_service(&k)) {
            Some(s) => format::list_service(s, e.format),
            None => {
                let _ = writeln!(io.err, "{}", ipvs_strerror(Call::GetService, libc::ESRCH));
                return Err(Flow::Exit(1));
            }
        }
    } else if e.has(command::OPTC_TIMEOUT) {
        format::list_timeout(sess.table(io)?)
    } else if e.has(command::OPTC_DAEMON) {
        format::list_daemons(&sess.table(io)?.daemons)
    } else {
        format::list_all(sess.table(io)?, e.format)
    };
    let _ = io.out.write_all(&text);
    Ok(())
}
