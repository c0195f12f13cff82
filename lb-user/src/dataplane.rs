//! Loading the XDP object and attaching its programs to interfaces, with the attachments pinned
//! (bpf links under `<pin dir>/links/`) so they outlive the process that made them and can be
//! replaced atomically by a newer build.
use std::{
    io,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow, bail};
use aya::{
    Ebpf,
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, LinkError, PinnedLink},
        tc,
        xdp::XdpLink,
        tc::SchedClassifierLink,
    },
    sys::SyscallError,
};

use crate::store::{self, CreateOptions};

/// Which XDP program to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpProgram {
    /// The load balancer (plus its tc neighbour slow path).
    Balancer,
    /// A do-nothing XDP_PASS program: what a veth peer needs to receive XDP_TX frames.
    Pass,
    /// IPIP decapsulation for a TUN real server without an ipip device.
    Decap,
}

impl XdpProgram {
    fn name(self) -> &'static str {
        match self {
            XdpProgram::Balancer => "xlb_xdp",
            XdpProgram::Pass => "xlb_pass",
            XdpProgram::Decap => "xlb_decap",
        }
    }
}

const TC_PROGRAM: &str = "xlb_tc_neigh";

pub fn links_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("links")
}

fn xdp_link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    links_dir(pin_dir).join(format!("xdp_{iface}"))
}

fn tc_link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    links_dir(pin_dir).join(format!("tc_{iface}"))
}

/// Interface names become file names: refuse anything that could leave the links directory.
fn check_iface(iface: &str) -> anyhow::Result<()> {
    let ok = !iface.is_empty()
        && iface.len() < 16
        && iface.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        && iface != "."
        && iface != "..";
    if !ok {
        bail!("invalid interface name {iface:?}");
    }
    Ok(())
}

fn open_pinned(path: &Path) -> anyhow::Result<Option<FdLink>> {
    match PinnedLink::from_pin(path) {
        Ok(p) => Ok(Some(FdLink::from(p))),
        Err(LinkError::SyscallError(SyscallError { io_error, .. })) if io_error.kind() == io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("cannot open pinned link {}", path.display())),
    }
}

/// Attaches `program` to `iface` (XDP in `mode`), replacing atomically what an earlier attach
/// put there, and pins the link. For the balancer also attaches the tc slow path.
pub fn attach(pin_dir: &Path, iface: &str, program: XdpProgram, mode: XdpMode) -> anyhow::Result<()> {
    check_iface(iface)?;
    let mut ebpf = match program {
        XdpProgram::Decap => load_decap_object(pin_dir)?,
        _ => store::load_object(pin_dir, CreateOptions::default())?,
    };
    std::fs::create_dir_all(links_dir(pin_dir))?;
    if program == XdpProgram::Decap {
        fill_decap_addrs(&mut ebpf, iface)?;
    }
    attach_xdp(&mut ebpf, pin_dir, iface, program, mode)?;
    if program == XdpProgram::Balancer {
        attach_tc(&mut ebpf, pin_dir, iface)?;
    }
    Ok(())
}

/// A real server runs only the decap program: every director table is created with one
/// entry (a real server's pin directory is not a director's).
fn load_decap_object(dir: &Path) -> anyhow::Result<Ebpf> {
    let obj = crate::ebpf_object();
    if obj.is_empty() {
        bail!("this build has no XDP object (built with AYA_BUILD_SKIP)");
    }
    store::ensure_pin_dir(dir)?;
    let mut loader = aya::EbpfLoader::new();
    loader.default_map_pin_directory(dir);
    for name in lb_common::names::ALL.iter().filter(|n| **n != lb_common::names::DECAP_ADDRS) {
        loader.map_max_entries(name, 1);
    }
    loader.load(obj).with_context(|| format!("cannot create or open the maps in {}", dir.display()))
}

/// The IPv4 addresses of `iface` become the ones IPIP is stripped for.
fn fill_decap_addrs(ebpf: &mut Ebpf, iface: &str) -> anyhow::Result<()> {
    let map = ebpf
        .map_mut(lb_common::names::DECAP_ADDRS)
        .ok_or_else(|| anyhow!("no map {}", lb_common::names::DECAP_ADDRS))?;
    let mut addrs: aya::maps::HashMap<_, lb_common::Addr, u8> = aya::maps::HashMap::try_from(map)?;
    let found = interface_ipv4_addrs(iface)?;
    if found.is_empty() {
        bail!("{iface} has no IPv4 address to decapsulate IPIP for");
    }
    for a in found {
        addrs.insert(lb_common::Addr::v4(u32::from_ne_bytes(a.octets())), 1, 0)?;
    }
    Ok(())
}

/// IPv4 addresses configured on `iface` (getifaddrs).
pub fn interface_ipv4_addrs(iface: &str) -> anyhow::Result<Vec<std::net::Ipv4Addr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        bail!("getifaddrs: {}", io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        let ifa = unsafe { &*cur };
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() == iface.as_bytes()
            && !ifa.ifa_addr.is_null()
            && unsafe { (*ifa.ifa_addr).sa_family } as i32 == libc::AF_INET
        {
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            out.push(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
        }
        cur = ifa.ifa_next;
    }
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Loads the programs `xlb_xdp` tail-calls (new connections and NAT replies, ICMP errors, a new
/// connection's first packet) and installs them in `XLB_PROGS`. Done before `xlb_xdp` is
/// attached, so it never runs without them.
pub fn install_new_flow_program(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    let mut fds = Vec::new();
    for name in lb_common::TAIL_PROGRAMS {
        let prog: &mut Xdp = ebpf.program_mut(name).ok_or_else(|| anyhow!("no program {name}"))?.try_into()?;
        prog.load().with_context(|| format!("the kernel refused program {name}"))?;
        fds.push(prog.fd()?.try_clone()?);
    }
    let map = ebpf
        .map_mut(lb_common::names::PROGS)
        .ok_or_else(|| anyhow!("no map {}", lb_common::names::PROGS))?;
    let mut progs: aya::maps::ProgramArray<_> = aya::maps::ProgramArray::try_from(map)?;
    for (i, fd) in fds.iter().enumerate() {
        progs.set(i as u32, fd, 0)?;
    }
    Ok(())
}

fn attach_xdp(ebpf: &mut Ebpf, pin_dir: &Path, iface: &str, program: XdpProgram, mode: XdpMode) -> anyhow::Result<()> {
    if program == XdpProgram::Balancer {
        install_new_flow_program(ebpf)?;
    }
    let prog: &mut Xdp = ebpf
        .program_mut(program.name())
        .ok_or_else(|| anyhow!("no program {}", program.name()))?
        .try_into()?;
    prog.load().with_context(|| format!("the kernel refused program {}", program.name()))?;
    let pin = xdp_link_pin(pin_dir, iface);
    let id = match open_pinned(&pin)? {
        Some(old) => {
            let link = XdpLink::try_from(old)?;
            prog.attach_to_link(link).with_context(|| format!("cannot replace the program on {iface}"))?
        }
        None => prog.attach(iface, mode).with_context(|| format!("cannot attach XDP to {iface}"))?,
    };
    let link: FdLink = prog.take_link(id)?.try_into()?;
    let _ = std::fs::remove_file(&pin);
    link.pin(&pin).with_context(|| format!("cannot pin {}", pin.display()))?;
    Ok(())
}

fn attach_tc(ebpf: &mut Ebpf, pin_dir: &Path, iface: &str) -> anyhow::Result<()> {
    // clsact is needed only on kernels without tcx; an existing one is fine.
    let _ = tc::qdisc_add_clsact(iface);
    let prog: &mut SchedClassifier =
        ebpf.program_mut(TC_PROGRAM).ok_or_else(|| anyhow!("no program {TC_PROGRAM}"))?.try_into()?;
    prog.load().with_context(|| format!("the kernel refused program {TC_PROGRAM}"))?;
    let pin = tc_link_pin(pin_dir, iface);
    let id = match open_pinned(&pin)? {
        Some(old) => prog.attach_to_link(SchedClassifierLink::try_from(old)?)?,
        None => prog
            .attach(iface, TcAttachType::Ingress)
            .with_context(|| format!("cannot attach the tc classifier to {iface}"))?,
    };
    let link: FdLink = prog
        .take_link(id)?
        .try_into()
        .map_err(|_| anyhow!("tc attachment on {iface} is not a bpf link (kernel without tcx)"))?;
    let _ = std::fs::remove_file(&pin);
    link.pin(&pin).with_context(|| format!("cannot pin {}", pin.display()))?;
    Ok(())
}

/// Detaches whatever xlb attached to `iface` (unpinning the last reference destroys the link).
/// Returns false when nothing was attached.
pub fn detach(pin_dir: &Path, iface: &str) -> anyhow::Result<bool> {
    check_iface(iface)?;
    let mut found = false;
    for pin in [xdp_link_pin(pin_dir, iface), tc_link_pin(pin_dir, iface)] {
        match std::fs::remove_file(&pin) {
            Ok(()) => found = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", pin.display())),
        }
    }
    Ok(found)
}

/// Interfaces with a pinned XDP attachment.
pub fn attached(pin_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(links_dir(pin_dir))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("xdp_")).map(str::to_string))
        .collect();
    v.sort();
    v
}

/// Detaches everything and removes every pin: the table is gone afterwards.
pub fn teardown(pin_dir: &Path) -> anyhow::Result<()> {
    if pin_dir.exists() {
        std::fs::remove_dir_all(pin_dir).with_context(|| format!("cannot remove {}", pin_dir.display()))?;
    }
    crate::journal::Journal::for_pin_dir(pin_dir).end()
}
