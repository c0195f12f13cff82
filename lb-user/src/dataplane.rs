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
    maps::MapData,
    programs::{
        LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, Link as _, LinkError, PinnedLink},
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
        xdp::XdpLink,
    },
    sys::SyscallError,
};
use lb_common::{
    IFACE_TC_NETLINK, IFACE_TC_TCX, IFACE_XDP_NATIVE, IFACE_XDP_NONE, IFACE_XDP_SKB, IfaceInfo,
};

use crate::{
    features,
    store::{self, CreateOptions},
};

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

/// The balancer's link is `xdp_IFACE` (what `attached` lists: the interfaces that carry the
/// table); the helper programs' links have names of their own, so a lab's veth peer with the
/// pass program, or a real server's decap program, never counts as carrying the table.
fn xdp_link_pin_of(pin_dir: &Path, iface: &str, program: XdpProgram) -> PathBuf {
    let kind = match program {
        XdpProgram::Balancer => "xdp",
        XdpProgram::Pass => "xdp-pass",
        XdpProgram::Decap => "xdp-decap",
    };
    links_dir(pin_dir).join(format!("{kind}_{iface}"))
}

fn xdp_link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    xdp_link_pin_of(pin_dir, iface, XdpProgram::Balancer)
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

/// How to attach XDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Native where the driver takes it, else generic (skb).
    Auto,
    Native,
    Skb,
}

/// Attaches `program` to `iface` (XDP in `mode`), replacing atomically what an earlier attach
/// put there, and pins the link. For the balancer, first probes the kernel (a missing required
/// feature refuses the attach), then also attaches the tc slow path and records both in
/// `XLB_IFACES`. A failed first attach leaves nothing attached.
pub fn attach(pin_dir: &Path, iface: &str, program: XdpProgram, mode: Mode) -> anyhow::Result<()> {
    attach_with_gue_ports(pin_dir, iface, program, mode, &[])
}

/// [`attach`]; for the decap program, UDP datagrams to `gue_ports` are GUE (`lbd attach --program
/// decap --gue-port N`). IPVS and the kernel's fou give GUE no default port: neither does this.
pub fn attach_with_gue_ports(
    pin_dir: &Path,
    iface: &str,
    program: XdpProgram,
    mode: Mode,
    gue_ports: &[u16],
) -> anyhow::Result<()> {
    check_iface(iface)?;
    if program != XdpProgram::Decap && !gue_ports.is_empty() {
        bail!("GUE ports are for the decap program");
    }
    let mut ebpf = match program {
        XdpProgram::Decap => load_decap_object(pin_dir)?,
        _ => store::load_object(pin_dir, CreateOptions::default())?,
    };
    std::fs::create_dir_all(links_dir(pin_dir))?;
    if program == XdpProgram::Decap {
        fill_decap_addrs(&mut ebpf, iface, gue_ports)?;
    }
    if program != XdpProgram::Balancer {
        attach_xdp(&mut ebpf, pin_dir, iface, program, mode)?;
        return Ok(());
    }
    let probed = features::probe(&mut ebpf)?;
    let mut store = store::Store::open_at(pin_dir, Default::default())?;
    features::apply(&mut store, probed)?;
    let ifindex = ifindex_of(iface)?;
    let before = ifaces(pin_dir)?.get(&ifindex, 0).ok();
    let fresh = !xdp_link_pin(pin_dir, iface).exists();
    let result = (|| {
        let xdp = attach_xdp(&mut ebpf, pin_dir, iface, program, mode)?;
        // Fault drill: the tc attachment refused after XDP is on (tests/tests/lbd_attach.rs).
        if std::env::var_os("XLB_FAILPOINT_ATTACH_TC").is_some() {
            bail!("cannot attach the tc classifier to {iface} (XLB_FAILPOINT_ATTACH_TC)");
        }
        let tc = attach_tc(&mut ebpf, pin_dir, iface, before)?;
        let info = IfaceInfo { xdp, ..tc };
        ifaces(pin_dir)?.insert(ifindex, info, 0)?;
        update_ifaces(pin_dir).map(|_| ())
    })();
    if result.is_err() && fresh {
        // Nothing half-attached: an XDP program without its slow path (or unrecorded) would
        // forward some packets and lose others.
        let _ = detach_unrecorded(pin_dir, iface);
    }
    ifaces_changed(&mut store)?;
    result
}

/// Tells the data plane that `XLB_IFACES` changed: its cached next hops check their egress
/// again (`Config::iface_gen`, `NEIGH_F_XDP_EGRESS`).
fn ifaces_changed(store: &mut store::Store) -> anyhow::Result<()> {
    store.update_config(|c| {
        c.iface_gen = c.iface_gen.wrapping_add(1);
        Ok(())
    })
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

/// The IPv4 and IPv6 addresses of `iface` become the ones tunnelled packets are stripped for;
/// UDP datagrams to `gue_ports` (to one of those addresses) are GUE.
fn fill_decap_addrs(ebpf: &mut Ebpf, iface: &str, gue_ports: &[u16]) -> anyhow::Result<()> {
    let mut addrs: Vec<std::net::IpAddr> = interface_ipv4_addrs(iface)?.into_iter().map(Into::into).collect();
    addrs.extend(interface_ipv6_addrs(iface)?.into_iter().map(std::net::IpAddr::from));
    if addrs.is_empty() {
        bail!("{iface} has no IPv4 or IPv6 address to decapsulate tunnelled packets for");
    }
    fill_decap_maps(ebpf, &addrs, gue_ports)
}

/// The decap program's maps of a loaded object: packets tunnelled to `addrs` are stripped, UDP
/// to `gue_ports` is GUE.
pub fn fill_decap_maps(ebpf: &mut Ebpf, addrs: &[std::net::IpAddr], gue_ports: &[u16]) -> anyhow::Result<()> {
    let map = ebpf
        .map_mut(lb_common::names::DECAP_ADDRS)
        .ok_or_else(|| anyhow!("no map {}", lb_common::names::DECAP_ADDRS))?;
    let mut map: aya::maps::HashMap<_, lb_common::Addr, u8> = aya::maps::HashMap::try_from(map)?;
    for a in addrs {
        let key = match a {
            std::net::IpAddr::V4(a) => lb_common::Addr::v4(u32::from_ne_bytes(a.octets())),
            std::net::IpAddr::V6(a) => addr_of_v6(*a),
        };
        map.insert(key, 1, 0)?;
    }
    let max = lb_common::tunnel::DECAP_GUE_PORTS_MAX as usize;
    if gue_ports.len() > max {
        bail!("at most {max} GUE ports");
    }
    let name = lb_common::tunnel::DECAP_GUE_PORTS;
    let map = ebpf.map_mut(name).ok_or_else(|| anyhow!("no map {name}"))?;
    let mut ports: aya::maps::HashMap<_, u16, u8> = aya::maps::HashMap::try_from(map)?;
    for p in gue_ports {
        if *p == 0 {
            bail!("GUE port 0 is no port");
        }
        ports.insert(p.to_be(), 1, 0)?;
    }
    Ok(())
}

/// An IPv6 address as `lb_common::Addr` (words in network order, as the packet has them).
fn addr_of_v6(a: std::net::Ipv6Addr) -> lb_common::Addr {
    let o = a.octets();
    let w = |i: usize| u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]);
    lb_common::Addr::v6([w(0), w(1), w(2), w(3)])
}

/// IPv4 addresses configured on `iface` (getifaddrs).
pub fn interface_ipv4_addrs(iface: &str) -> anyhow::Result<Vec<std::net::Ipv4Addr>> {
    Ok(ipv4_addrs_by_iface()?.remove(iface).unwrap_or_default())
}

/// IPv6 addresses configured on `iface` (getifaddrs; link-local ones included: a tunnel may
/// be addressed to one).
pub fn interface_ipv6_addrs(iface: &str) -> anyhow::Result<Vec<std::net::Ipv6Addr>> {
    let mut out = Vec::new();
    for_each_ifaddr(|name, sa| {
        // SAFETY: `sa` is a valid sockaddr of getifaddrs' list; an AF_INET6 one is a sockaddr_in6.
        if name == iface && unsafe { (*sa).sa_family } as i32 == libc::AF_INET6 {
            let sin6 = unsafe { &*(sa as *const libc::sockaddr_in6) };
            out.push(std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr));
        }
    })?;
    Ok(out)
}

/// Calls `f` with every interface address's interface name and address (getifaddrs).
fn for_each_ifaddr(mut f: impl FnMut(&str, *const libc::sockaddr)) -> anyhow::Result<()> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        bail!("getifaddrs: {}", io::Error::last_os_error());
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: getifaddrs returned a valid list; each node lives until freeifaddrs below.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }.to_string_lossy();
            f(&name, ifa.ifa_addr);
        }
        cur = ifa.ifa_next;
    }
    unsafe { libc::freeifaddrs(head) };
    Ok(())
}

/// Every interface's IPv4 addresses, in the kernel's order (the primary first), from one
/// getifaddrs call.
fn ipv4_addrs_by_iface() -> anyhow::Result<std::collections::HashMap<String, Vec<std::net::Ipv4Addr>>> {
    let mut out: std::collections::HashMap<String, Vec<std::net::Ipv4Addr>> = Default::default();
    for_each_ifaddr(|name, sa| {
        // SAFETY: `sa` is a valid sockaddr of getifaddrs' list; an AF_INET one is a sockaddr_in.
        if unsafe { (*sa).sa_family } as i32 == libc::AF_INET {
            let sin = unsafe { &*(sa as *const libc::sockaddr_in) };
            out.entry(name.to_string()).or_default().push(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
        }
    })?;
    Ok(out)
}

/// Loads the programs `xlb_xdp` tail-calls (new connections and NAT replies, ICMP errors, a new
/// connection's first packet) and installs them in `XLB_PROGS`. Done before `xlb_xdp` is
/// attached, so it never runs without them.
pub fn install_new_flow_program(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    install_tail_programs(ebpf, &lb_common::TailProgram::ALL)
}

/// Loads `tails` and puts them in their `XLB_PROGS` slots; a slot left empty makes its tail
/// call fall through (packet tests that need only a few programs verify only those).
pub fn install_tail_programs(ebpf: &mut Ebpf, tails: &[lb_common::TailProgram]) -> anyhow::Result<()> {
    let mut fds = Vec::new();
    for &p in tails {
        let name = p.name();
        let prog: &mut Xdp = ebpf.program_mut(name).ok_or_else(|| anyhow!("no program {name}"))?.try_into()?;
        prog.load().with_context(|| format!("the kernel refused program {name}"))?;
        fds.push((p.index(), prog.fd()?.try_clone()?));
    }
    let map = ebpf
        .map_mut(lb_common::names::PROGS)
        .ok_or_else(|| anyhow!("no map {}", lb_common::names::PROGS))?;
    let mut progs: aya::maps::ProgramArray<_> = aya::maps::ProgramArray::try_from(map)?;
    for (index, fd) in &fds {
        progs.set(*index, fd, 0)?;
    }
    Ok(())
}

/// Attaches the XDP program; returns the mode it runs in (`IFACE_XDP_*`).
fn attach_xdp(ebpf: &mut Ebpf, pin_dir: &Path, iface: &str, program: XdpProgram, mode: Mode) -> anyhow::Result<u32> {
    if program == XdpProgram::Balancer {
        install_new_flow_program(ebpf)?;
    }
    let prog: &mut Xdp = ebpf
        .program_mut(program.name())
        .ok_or_else(|| anyhow!("no program {}", program.name()))?
        .try_into()?;
    prog.load().with_context(|| format!("the kernel refused program {}", program.name()))?;
    let pin = xdp_link_pin_of(pin_dir, iface, program);
    let (id, xdp) = match open_pinned(&pin)? {
        Some(old) => {
            // Replacing the program of a link keeps its mode.
            let was = ifindex_of(iface).ok().and_then(|i| ifaces(pin_dir).ok()?.get(&i, 0).ok()).map_or(IFACE_XDP_NATIVE, |f| f.xdp);
            let link = XdpLink::try_from(old)?;
            (prog.attach_to_link(link).with_context(|| format!("cannot replace the program on {iface}"))?, was)
        }
        None => {
            let native = mode != Mode::Skb && !(mode == Mode::Auto && features::forced_off("native"));
            let first = if native { prog.attach(iface, XdpMode::Driver) } else { prog.attach(iface, XdpMode::Skb) };
            match first {
                Ok(id) => (id, if native { IFACE_XDP_NATIVE } else { IFACE_XDP_SKB }),
                Err(e) if native && mode == Mode::Auto => {
                    let id = prog.attach(iface, XdpMode::Skb).with_context(|| {
                        format!("cannot attach XDP to {iface} (native mode: {e}; skb mode failed too)")
                    })?;
                    (id, IFACE_XDP_SKB)
                }
                Err(e) => return Err(e).with_context(|| format!("cannot attach XDP to {iface}")),
            }
        }
    };
    let link: FdLink = prog.take_link(id)?.try_into()?;
    let _ = std::fs::remove_file(&pin);
    link.pin(&pin).with_context(|| format!("cannot pin {}", pin.display()))?;
    Ok(xdp)
}

/// Attaches the tc slow path: a tcx link (pinned) where the kernel has tcx, else a clsact
/// qdisc's ingress filter. `before` is what an earlier attach recorded (replaced here).
fn attach_tc(ebpf: &mut Ebpf, pin_dir: &Path, iface: &str, before: Option<IfaceInfo>) -> anyhow::Result<IfaceInfo> {
    let prog: &mut SchedClassifier =
        ebpf.program_mut(TC_PROGRAM).ok_or_else(|| anyhow!("no program {TC_PROGRAM}"))?.try_into()?;
    prog.load().map_err(|e| {
        anyhow!(
            "this kernel ({}) refused the tc slow path ({e}): xlb needs bpf_redirect_neigh (Linux 5.10 or later)",
            features::kernel_release()
        )
    })?;
    let pin = tc_link_pin(pin_dir, iface);
    let mut info = IfaceInfo::default();
    if let Some(old) = open_pinned(&pin)? {
        prog.attach_to_link(SchedClassifierLink::try_from(old)?)?;
        info.tc = IFACE_TC_TCX;
        return Ok(info);
    }
    let tcx = if features::forced_off("tcx") {
        None
    } else {
        prog.attach_with_options(iface, TcAttachType::Ingress, TcAttachOptions::TcxOrder(LinkOrder::default())).ok()
    };
    if let Some(id) = tcx {
        let link: FdLink =
            prog.take_link(id)?.try_into().map_err(|_| anyhow!("the tcx attachment on {iface} is not a bpf link"))?;
        let _ = std::fs::remove_file(&pin);
        link.pin(&pin).with_context(|| format!("cannot pin {}", pin.display()))?;
        info.tc = IFACE_TC_TCX;
    } else {
        // No tcx (before 6.6): clsact + a netlink filter. An existing clsact is fine.
        let _ = tc::qdisc_add_clsact(iface);
        let id = prog
            .attach_with_options(iface, TcAttachType::Ingress, TcAttachOptions::Netlink(NlOptions::default()))
            .with_context(|| format!("cannot attach the tc classifier to {iface}"))?;
        let link = prog.take_link(id)?;
        info.tc = IFACE_TC_NETLINK;
        info.tc_priority = link.priority()? as u32;
        info.tc_handle = u32::from(link.handle()?);
        // The filter stays after this process exits; lbd detach/teardown removes it by the
        // priority and handle recorded in XLB_IFACES.
        std::mem::forget(link);
    }
    // A filter an earlier attach left (the new one is in place first: no gap).
    if let Some(b) = before {
        remove_tc_filter(iface, &b);
    }
    Ok(info)
}

fn remove_tc_filter(iface: &str, info: &IfaceInfo) {
    if info.tc != IFACE_TC_NETLINK {
        return;
    }
    if let Ok(link) = SchedClassifierLink::attached(
        iface,
        TcAttachType::Ingress,
        info.tc_priority as u16,
        TcHandle::from(info.tc_handle),
        None,
    ) {
        let _ = link.detach();
    }
}

/// `XLB_IFACES`, opened from its pin.
fn ifaces(pin_dir: &Path) -> anyhow::Result<aya::maps::HashMap<MapData, u32, IfaceInfo>> {
    let data = MapData::from_pin(pin_dir.join(lb_common::names::IFACES))
        .with_context(|| format!("cannot open {}", lb_common::names::IFACES))?;
    Ok(aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data))?)
}

fn ifindex_of(iface: &str) -> anyhow::Result<u32> {
    let name = std::ffi::CString::new(iface)?;
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => bail!("no interface {iface}: {}", io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// This network namespace's interfaces (index, name), from the kernel (netlink).
fn interfaces() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let head = unsafe { libc::if_nameindex() };
    if head.is_null() {
        return out;
    }
    let mut cur = head;
    while unsafe { (*cur).if_index } != 0 {
        let i = unsafe { &*cur };
        if !i.if_name.is_null() {
            out.push((i.if_index, unsafe { std::ffi::CStr::from_ptr(i.if_name) }.to_string_lossy().into_owned()));
        }
        cur = unsafe { cur.add(1) };
    }
    unsafe { libc::if_freenameindex(head) };
    out
}

/// Brings `XLB_IFACES` up to date with this namespace's interfaces: every interface with its
/// primary IPv4 address, the attachment records kept, vanished interfaces removed. lbd attach
/// and detach call it, and `lbd run` every tick (addresses change).
pub fn sync_ifaces(pin_dir: &Path) -> anyhow::Result<()> {
    if update_ifaces(pin_dir)? {
        ifaces_changed(&mut store::Store::open_at(pin_dir, Default::default())?)?;
    }
    Ok(())
}

/// [`sync_ifaces`] but for telling the data plane; true when something changed.
fn update_ifaces(pin_dir: &Path) -> anyhow::Result<bool> {
    let mut map = ifaces(pin_dir)?;
    let mut changed = false;
    let now = interfaces();
    let stale: Vec<u32> = map.keys().filter_map(Result::ok).filter(|k| !now.iter().any(|(i, _)| i == k)).collect();
    for k in stale {
        changed |= map.remove(&k).is_ok();
    }
    let addrs = ipv4_addrs_by_iface()?;
    let addrs6 = ipv6_addrs_by_iface()?;
    for (index, name) in now {
        let addr = addrs.get(&name).and_then(|a| a.first()).map_or(0, |a| u32::from_ne_bytes(a.octets()));
        let addr6 = addrs6
            .get(&name)
            .and_then(|a| a.first())
            .map_or(lb_common::Addr::ZERO, |a| store::to_addr(&std::net::IpAddr::V6(*a)));
        let old = map.get(&index, 0).ok();
        if old.is_none_or(|o| o.addr != addr || o.addr6 != addr6) {
            map.insert(index, IfaceInfo { addr, addr6, ..old.unwrap_or_default() }, 0)?;
            changed = true;
        }
    }
    Ok(changed)
}

/// The global-scope IPv6 addresses of every interface (link-local ones cannot source a tunnel
/// to another link), in getifaddrs order.
fn ipv6_addrs_by_iface() -> anyhow::Result<std::collections::HashMap<String, Vec<std::net::Ipv6Addr>>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head it allocates; freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        bail!("getifaddrs: {}", io::Error::last_os_error());
    }
    let mut out: std::collections::HashMap<String, Vec<std::net::Ipv6Addr>> = Default::default();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: getifaddrs returned a valid list; each node lives until freeifaddrs below.
        let ifa = unsafe { &*cur };
        // SAFETY: a non-null ifa_addr points to a sockaddr of its family.
        if !ifa.ifa_addr.is_null() && unsafe { (*ifa.ifa_addr).sa_family } as i32 == libc::AF_INET6 {
            // SAFETY: ifa_name is a NUL-terminated string of the list; an AF_INET6 address is a
            // sockaddr_in6.
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }.to_string_lossy().into_owned();
            let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
            let a = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let link_local = a.segments()[0] & 0xffc0 == 0xfe80;
            if !link_local && !a.is_loopback() && !a.is_unspecified() {
                out.entry(name).or_default().push(a);
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: the list getifaddrs returned, not used after.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// Records every interface of this namespace as if xlb were attached there in `xdp` mode
/// (`IFACE_XDP_*`), for BPF_PROG_TEST_RUN harnesses whose director has no real attachment.
pub fn record_all_attached_for_test(pin_dir: &Path, xdp: u32) -> anyhow::Result<()> {
    update_ifaces(pin_dir)?;
    let mut map = ifaces(pin_dir)?;
    for (i, _) in interfaces() {
        let old = map.get(&i, 0).unwrap_or_default();
        map.insert(i, IfaceInfo { xdp, ..old }, 0)?;
    }
    ifaces_changed(&mut store::Store::open_at(pin_dir, Default::default())?)
}

/// An attached interface as `lbd status` shows it.
pub struct Attachment {
    pub iface: String,
    pub xdp: &'static str,
    pub tc: &'static str,
}

/// The interfaces with a pinned XDP attachment, with their modes.
pub fn attachments(pin_dir: &Path) -> Vec<Attachment> {
    let map = ifaces(pin_dir).ok();
    attached(pin_dir)
        .into_iter()
        .map(|iface| {
            let info = ifindex_of(&iface).ok().and_then(|i| map.as_ref()?.get(&i, 0).ok()).unwrap_or_default();
            let xdp = match info.xdp {
                IFACE_XDP_NATIVE => "native",
                IFACE_XDP_SKB => "skb",
                _ => "unknown",
            };
            let tc = match info.tc {
                IFACE_TC_TCX => "tcx",
                IFACE_TC_NETLINK => "clsact",
                _ => "none",
            };
            Attachment { iface, xdp, tc }
        })
        .collect()
}

/// Detaches whatever xlb attached to `iface` (unpinning the last reference destroys the link).
/// Returns false when nothing was attached.
pub fn detach(pin_dir: &Path, iface: &str) -> anyhow::Result<bool> {
    let found = detach_unrecorded(pin_dir, iface)?;
    if found && pin_dir.join(lb_common::names::CONFIG).exists() {
        // Best effort: without it, cached next hops notice within their lifetime (1 s).
        let _ = store::Store::open_at(pin_dir, Default::default()).and_then(|mut s| ifaces_changed(&mut s));
    }
    Ok(found)
}

/// [`detach`] without telling the data plane (the caller holds the store).
fn detach_unrecorded(pin_dir: &Path, iface: &str) -> anyhow::Result<bool> {
    check_iface(iface)?;
    let mut found = false;
    if let (Ok(index), Ok(mut map)) = (ifindex_of(iface), ifaces(pin_dir))
        && let Ok(info) = map.get(&index, 0)
    {
        found |= info.tc == IFACE_TC_NETLINK || info.xdp != IFACE_XDP_NONE;
        remove_tc_filter(iface, &info);
        let _ = map.insert(index, IfaceInfo { addr: info.addr, addr6: info.addr6, ..IfaceInfo::default() }, 0);
    }
    let pins = [XdpProgram::Balancer, XdpProgram::Pass, XdpProgram::Decap].map(|p| xdp_link_pin_of(pin_dir, iface, p));
    for pin in pins.into_iter().chain([tc_link_pin(pin_dir, iface)]) {
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
    for iface in attached(pin_dir) {
        let _ = detach_unrecorded(pin_dir, &iface);
    }
    if pin_dir.exists() {
        std::fs::remove_dir_all(pin_dir).with_context(|| format!("cannot remove {}", pin_dir.display()))?;
    }
    crate::journal::Journal::for_pin_dir(pin_dir).end()
}
