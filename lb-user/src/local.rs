//! Which addresses are local to the director: a real server at one of them is served by the
//! director's own stack. IPVS finds this per connection from its route to the real server (a
//! local route: the packet goes up the director's stack, DNATed first for `-m`) and lists the
//! real server with the method it was given (the oracle, `tests/golden/traffic`: `127.0.0.1:80
//! Route`, `[::1]:8080 Route`, `10.0.2.1:8080 Masq` for the director's own address). xlb learns
//! it when a real server is added or edited and again whenever lbd sees the addresses change
//! ([`crate::daemon::periodic`]), and tells the data plane with `FWD_LOCAL` (XDP_PASS) while the
//! table keeps the given method for listing (`store::codec`).
//!
//! Local: the loopback networks (the kernel's `local 127.0.0.0/8 dev lo` route, `::1`) and every
//! address of an interface of this network namespace (getifaddrs).
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one reading of the interface addresses is used (a `-R` of many real servers reads
/// them once).
const FRESH: Duration = Duration::from_secs(1);

/// One reading: (when, interface addresses, their IPv4 broadcast addresses).
type Reading = (Instant, Vec<IpAddr>, Vec<Ipv4Addr>);

static CACHE: Mutex<Option<Reading>> = Mutex::new(None);

fn with_reading<T>(f: impl FnOnce(&Reading) -> T) -> Option<T> {
    let mut g = CACHE.lock().ok()?;
    let fresh = g.as_ref().is_some_and(|(t, _, _)| t.elapsed() < FRESH);
    if !fresh {
        let (addrs, bcast) = read_interfaces();
        *g = Some((Instant::now(), addrs, bcast));
    }
    g.as_ref().map(f)
}

/// Whether `addr` is local to the director (this network namespace).
pub fn is_local(addr: &IpAddr) -> bool {
    addr.is_loopback() || with_reading(|(_, v, _)| v.contains(addr)).unwrap_or(false)
}

/// Whether `addr` is the broadcast address of one of the director's IPv4 networks (the
/// kernel's `broadcast` routes in its local table, `inet_addr_type` RTN_BROADCAST; an explicit
/// `brd` other than the network's is not seen).
pub fn is_local_broadcast(addr: &Ipv4Addr) -> bool {
    with_reading(|(_, _, b)| b.contains(addr)).unwrap_or(false)
}

/// Drops the cached reading: the next [`is_local`] reads the addresses again.
pub fn forget() {
    if let Ok(mut g) = CACHE.lock() {
        *g = None;
    }
}

/// The addresses of this namespace's interfaces, sorted (a change of the set is a change of
/// the sorted list), read now.
pub fn interface_addrs() -> Vec<IpAddr> {
    read_interfaces().0
}

/// The interfaces' addresses and IPv4 broadcast addresses, each sorted.
fn read_interfaces() -> (Vec<IpAddr>, Vec<Ipv4Addr>) {
    let mut out = Vec::new();
    let mut bcast = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed below by freeifaddrs; every node and
    // its sockaddr are read only while the list lives, by the family the sockaddr says.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return (out, bcast);
        }
        let mut p = head;
        while !p.is_null() {
            let sa = (*p).ifa_addr;
            if !sa.is_null() {
                match i32::from((*sa).sa_family) {
                    libc::AF_INET => {
                        let s = &*(sa as *const libc::sockaddr_in);
                        out.push(IpAddr::from(s.sin_addr.s_addr.to_ne_bytes()));
                        // The kernel adds `broadcast prefix|~mask` for every address with a
                        // prefix shorter than /31 (fib_add_ifaddr), whatever `brd` says.
                        let m = (*p).ifa_netmask;
                        if !m.is_null() && i32::from((*m).sa_family) == libc::AF_INET {
                            let mask = u32::from_be((*(m as *const libc::sockaddr_in)).sin_addr.s_addr);
                            let a = u32::from_be(s.sin_addr.s_addr);
                            if mask.count_ones() < 31 && mask.leading_ones() == mask.count_ones() {
                                bcast.push(Ipv4Addr::from(a | !mask));
                            }
                        }
                    }
                    libc::AF_INET6 => {
                        let s = &*(sa as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(s.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out.sort();
    out.dedup();
    bcast.sort();
    bcast.dedup();
    (out, bcast)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_interface_addresses_are_local() {
        for a in ["127.0.0.1", "127.0.0.2", "127.255.255.254", "::1"] {
            assert!(is_local(&a.parse().expect("addr")), "{a}");
        }
        // Documentation addresses are nobody's.
        for a in ["192.0.2.77", "2001:db8::77", "0.0.0.0"] {
            assert!(!is_local(&a.parse().expect("addr")), "{a}");
        }
        // Whatever getifaddrs says this namespace has (lo at least).
        let mine = interface_addrs();
        assert!(mine.contains(&"127.0.0.1".parse().expect("addr")), "{mine:?}");
        assert!(mine.iter().all(is_local));
    }
}
