//! Host and port names the way ipvsadm reads and prints them: `inet_aton`, `inet_pton`,
//! `gethostbyname` (IPv4 only), `getservbyname`/`getservbyport` from /etc/services, and
//! reverse DNS for listings without `-n`.

use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[cfg(test)]
thread_local! {
    /// Unit tests never ask DNS: reverse lookups fail as on a machine without a resolver.
    static NO_DNS: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

fn dns_allowed() -> bool {
    #[cfg(test)]
    if NO_DNS.with(|c| c.get()) {
        return false;
    }
    true
}

/// glibc `inet_aton`: 1 to 4 parts (`a`, `a.b`, `a.b.c`, `a.b.c.d`), each decimal, octal
/// (leading 0) or hex (0x); trailing whitespace and anything after it is ignored.
pub fn inet_aton(s: &[u8]) -> Option<Ipv4Addr> {
    let mut parts: Vec<u64> = Vec::with_capacity(4);
    let mut i = 0;
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let val;
    loop {
        let mut c = at(i);
        if !c.is_ascii_digit() {
            return None;
        }
        let mut v: u64 = 0;
        let mut base = 10;
        if c == b'0' {
            i += 1;
            c = at(i);
            if c == b'x' || c == b'X' {
                base = 16;
                i += 1;
                c = at(i);
            } else {
                base = 8;
            }
        }
        loop {
            if c.is_ascii_digit() {
                if base == 8 && (c == b'8' || c == b'9') {
                    return None;
                }
                v = v.saturating_mul(base).saturating_add(u64::from(c - b'0'));
            } else if base == 16 && c.is_ascii_hexdigit() {
                let d = if c.is_ascii_lowercase() { c - b'a' + 10 } else { c - b'A' + 10 };
                v = v.saturating_mul(16).saturating_add(u64::from(d));
            } else {
                break;
            }
            i += 1;
            c = at(i);
        }
        if c == b'.' {
            if parts.len() >= 3 || v > 0xff {
                return None;
            }
            parts.push(v);
            i += 1;
        } else {
            if c != 0 && !(c.is_ascii() && (c == b' ' || (b'\t'..=b'\r').contains(&c))) {
                return None;
            }
            val = v;
            break;
        }
    }
    let max: [u64; 4] = [0xffff_ffff, 0x00ff_ffff, 0xffff, 0xff];
    if val > max[parts.len()] {
        return None;
    }
    let mut word: u64 = 0;
    for (n, p) in parts.iter().enumerate() {
        word |= p << (24 - 8 * n);
    }
    word |= val;
    Some(Ipv4Addr::from(word as u32))
}

/// `inet_pton(AF_INET6, ...)`.
pub fn inet_pton6(s: &[u8]) -> Option<Ipv6Addr> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// `inet_pton(AF_INET, ...)`: strict dotted quad.
pub fn inet_pton4(s: &[u8]) -> Option<Ipv4Addr> {
    let t = std::str::from_utf8(s).ok()?;
    // Rust rejects leading zeros like glibc's inet_pton does.
    t.parse().ok()
}

/// `gethostbyname` restricted to IPv4 answers (ipvsadm's `host_to_addr`).
pub fn host_to_addr(name: &[u8]) -> Option<Ipv4Addr> {
    if name.is_empty() {
        return None;
    }
    // glibc answers names made of digits and dots itself, without asking DNS.
    if name.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
        return None;
    }
    if !dns_allowed() && name != b"localhost" {
        return None;
    }
    let cname = CString::new(name).ok()?;
    // SAFETY: plain getaddrinfo call with a zeroed hints struct; the result list is freed below.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_family = libc::AF_INET;
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        if libc::getaddrinfo(cname.as_ptr(), std::ptr::null(), &hints, &mut res) != 0 || res.is_null() {
            return None;
        }
        let mut out = None;
        let ai = &*res;
        if ai.ai_family == libc::AF_INET && !ai.ai_addr.is_null() {
            let sin = &*(ai.ai_addr as *const libc::sockaddr_in);
            out = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
        }
        libc::freeaddrinfo(res);
        out
    }
}

fn proto_name(proto: u8) -> Option<&'static CStr> {
    match proto {
        lb_common::IPPROTO_TCP => Some(c"tcp"),
        lb_common::IPPROTO_UDP => Some(c"udp"),
        lb_common::IPPROTO_SCTP => Some(c"sctp"),
        _ => None,
    }
}

/// getservbyname/getservbyport answer in one static buffer: one caller at a time (lbd's and the
/// tests' threads list concurrently).
static SERVENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `getservbyname(name, proto)` (ipvsadm's `service_to_port`).
pub fn service_to_port(name: &[u8], proto: u8) -> Option<u16> {
    let p = proto_name(proto)?;
    let cname = CString::new(name).ok()?;
    let _one = SERVENT.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: getservbyname returns a pointer into static storage or NULL; read at once.
    unsafe {
        let se = libc::getservbyname(cname.as_ptr(), p.as_ptr());
        if se.is_null() {
            return None;
        }
        Some(u16::from_be((*se).s_port as u16))
    }
}

/// `getservbyport(port, proto)` (ipvsadm's `port_to_service`).
pub fn port_to_service(port: u16, proto: u8) -> Option<String> {
    let p = proto_name(proto)?;
    let _one = SERVENT.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: getservbyport returns a pointer into static storage or NULL; copied at once.
    unsafe {
        let se = libc::getservbyport(i32::from(port.to_be()), p.as_ptr());
        if se.is_null() || (*se).s_name.is_null() {
            return None;
        }
        Some(CStr::from_ptr((*se).s_name).to_string_lossy().into_owned())
    }
}

/// Reverse lookup (`gethostbyaddr`): the host name, or None.
pub fn addr_to_host(addr: &IpAddr) -> Option<String> {
    if !dns_allowed() {
        return None;
    }
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: the socket address is zeroed storage (large and aligned enough for either family)
    // filled in as one family, and outlives the call; the output buffer length is passed.
    let rc = unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let len = match addr {
            IpAddr::V4(a) => {
                let sin = &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_addr.s_addr = u32::from(*a).to_be();
                std::mem::size_of::<libc::sockaddr_in>()
            }
            IpAddr::V6(a) => {
                let sin6 = &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_addr.s6_addr = a.octets();
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        libc::getnameinfo(
            (&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr>(),
            len as libc::socklen_t,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: getnameinfo NUL-terminates on success.
    let name = unsafe { CStr::from_ptr(host.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// ipvsadm's `addrport_to_anyname`: `a.b.c.d:port` / `[v6]:port`, or with names when not
/// numeric. At most 59 bytes (ipvsadm's 60-byte buffer).
pub fn addrport(addr: &IpAddr, port: u16, proto: u8, numeric: bool) -> String {
    let (l, r) = if addr.is_ipv4() { ("", "") } else { ("[", "]") };
    let mut s = if numeric {
        format!("{l}{addr}{r}:{port}")
    } else {
        let host = addr_to_host(addr).unwrap_or_else(|| addr.to_string());
        let serv = port_to_service(port, proto).unwrap_or_else(|| port.to_string());
        format!("{l}{host}{r}:{serv}")
    };
    truncate_bytes(&mut s, 59);
    s
}

/// Cuts `s` to at most `n` bytes (on a char boundary).
pub fn truncate_bytes(s: &mut String, n: usize) {
    if s.len() > n {
        let mut cut = n;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aton_forms() {
        let a = |s: &str| inet_aton(s.as_bytes()).map(|a| a.to_string());
        assert_eq!(a("1.2.3.4").as_deref(), Some("1.2.3.4"));
        assert_eq!(a("10.1").as_deref(), Some("10.0.0.1"));
        assert_eq!(a("1.2.3").as_deref(), Some("1.2.0.3"));
        assert_eq!(a("10").as_deref(), Some("0.0.0.10"));
        assert_eq!(a("0x10.010.1.1").as_deref(), Some("16.8.1.1"));
        assert_eq!(a("1.2.3.4 junk").as_deref(), Some("1.2.3.4"));
        assert_eq!(a("10.0.0.256"), None);
        assert_eq!(a("1.2.3.4.5"), None);
        assert_eq!(a(""), None);
        assert_eq!(a("09"), None);
        assert_eq!(a("a.b"), None);
    }

    #[test]
    fn services() {
        if std::path::Path::new("/etc/services").exists() {
            assert_eq!(service_to_port(b"http", lb_common::IPPROTO_TCP), Some(80));
            assert_eq!(port_to_service(80, lb_common::IPPROTO_TCP).as_deref(), Some("http"));
        }
        assert_eq!(service_to_port(b"http", 0), None);
        assert_eq!(port_to_service(80, 0), None);
    }

    #[test]
    fn addrport_forms() {
        let v6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(addrport(&v6, 80, 6, true), "[::1]:80");
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(addrport(&v4, 12345, 6, false), "10.0.0.1:12345");
    }
}
