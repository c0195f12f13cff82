//! The sync daemon's sockets, set up as the kernel's `make_send_sock` / `make_receive_sock`
//! set up theirs, so that a kernel IPVS peer sees the same datagrams (source address, TTL,
//! interface) and ours hears the same ones.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use anyhow::Context as _;
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

use super::DaemonCfg;

/// The first IPv4 address of interface `ifname` (the kernel's `inet_select_addr(dev, 0,
/// RT_SCOPE_UNIVERSE)` takes the primary one, which is listed first).
pub fn iface_ipv4(ifname: &str) -> Option<Ipv4Addr> {
    let mut found = None;
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list we free below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return None;
    }
    let mut p = ifap;
    while !p.is_null() && found.is_none() {
        // SAFETY: a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a NUL-terminated name from getifaddrs.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: ifa_addr is non-null and points to a sockaddr of its family.
        if name.to_bytes() != ifname.as_bytes() || i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: an AF_INET sockaddr is a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        let a = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        // Link-local and loopback addresses are not of universe scope.
        if !a.is_loopback() && !a.is_link_local() {
            found = Some(a);
        }
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(ifap) };
    found
}

fn setsockopt<T>(s: &Socket, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a live value of the option's type and size.
    let rc = unsafe {
        libc::setsockopt(s.as_raw_fd(), level, name, v as *const T as *const libc::c_void, std::mem::size_of::<T>() as libc::socklen_t)
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn domain(group: &IpAddr) -> Domain {
    if group.is_ipv6() { Domain::IPV6 } else { Domain::IPV4 }
}

/// The master's socket: multicast out of the daemon's interface with its TTL, loop off,
/// fragmentation allowed, bound to the interface's address (IPv4), connected to group:port.
pub fn send_socket(cfg: &DaemonCfg) -> anyhow::Result<Socket> {
    let s = Socket::new(domain(&cfg.group), Type::DGRAM, Some(Protocol::UDP)).context("sync: socket")?;
    match cfg.group {
        IpAddr::V4(_) => {
            let mreq = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr { s_addr: 0 },
                imr_address: libc::in_addr { s_addr: 0 },
                imr_ifindex: cfg.ifindex as i32,
            };
            setsockopt(&s, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreq).context("sync: multicast interface")?;
            s.set_multicast_loop_v4(false)?;
            s.set_multicast_ttl_v4(u32::from(cfg.ttl))?;
            setsockopt(&s, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, &libc::IP_PMTUDISC_DONT)?;
            // Without an address the kernel logs it and binds to 0.0.0.0: routing picks one.
            let src = iface_ipv4(&cfg.ifname).unwrap_or(Ipv4Addr::UNSPECIFIED);
            s.bind(&SocketAddr::new(IpAddr::V4(src), 0).into()).with_context(|| format!("sync: cannot bind to {src}"))?;
        }
        IpAddr::V6(_) => {
            s.set_multicast_if_v6(cfg.ifindex)?;
            s.set_multicast_loop_v6(false)?;
            s.set_multicast_hops_v6(u32::from(cfg.ttl))?;
            setsockopt(&s, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, &libc::IP_PMTUDISC_DONT)?;
        }
    }
    let to = SocketAddr::new(cfg.group, cfg.port);
    s.connect(&to.into()).with_context(|| format!("sync: cannot connect to {to}"))?;
    Ok(s)
}

/// The backup's socket: bound to the daemon's interface and to group:port, with the group
/// joined on that interface; address reuse on (several backups on one host).
pub fn receive_socket(cfg: &DaemonCfg) -> anyhow::Result<Socket> {
    let s = Socket::new(domain(&cfg.group), Type::DGRAM, Some(Protocol::UDP)).context("sync: socket")?;
    s.set_reuse_address(true)?;
    s.bind_device(Some(cfg.ifname.as_bytes())).with_context(|| format!("sync: cannot bind to interface {}", cfg.ifname))?;
    let at = SocketAddr::new(cfg.group, cfg.port);
    s.bind(&at.into()).with_context(|| format!("sync: cannot bind to {at}"))?;
    match cfg.group {
        IpAddr::V4(g) => s.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(cfg.ifindex)),
        IpAddr::V6(g) => s.join_multicast_v6(&g, cfg.ifindex),
    }
    .with_context(|| format!("sync: cannot join {} on {}", cfg.group, cfg.ifname))?;
    // The receiving thread looks at its stop flag this often.
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s)
}
