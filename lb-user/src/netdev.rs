//! A network interface's facts as the kernel has them in this process's network namespace
//! (ioctls on a socket, not /sys, which shows the namespace sysfs was mounted in).
//!
//! Hand-written: two ioctls (MTU, flags) through libc, beside std's if_nametoindex.
use std::ffi::CString;

/// What `--start-daemon` needs of `--mcast-interface`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetDev {
    pub index: u32,
    pub mtu: u32,
    /// IFF_MULTICAST: the kernel routes IPv6 multicast only through such interfaces.
    pub multicast: bool,
}

/// The interface named `name` in this network namespace, if there is one.
pub fn lookup(name: &str) -> Option<NetDev> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return None;
    }
    let cname = CString::new(name).ok()?;
    // SAFETY: a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return None;
    }
    // SAFETY: plain socket creation; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    let ifreq = || {
        // SAFETY: ifreq is plain data; all zeroes is a valid value.
        let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in r.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        r
    };
    let mut mtu = ifreq();
    let mut flags = ifreq();
    // SAFETY: valid ifreq buffers for these requests, on an open socket.
    let ok = unsafe {
        libc::ioctl(fd, libc::SIOCGIFMTU, &mut mtu) == 0 && libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut flags) == 0
    };
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    if !ok {
        return None;
    }
    // SAFETY: the union members these two ioctls filled in.
    let (mtu, flags) = unsafe { (mtu.ifr_ifru.ifru_mtu, flags.ifr_ifru.ifru_flags) };
    Some(NetDev { index, mtu: mtu.max(0) as u32, multicast: flags as i32 & libc::IFF_MULTICAST != 0 })
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_and_a_missing_one() {
        let lo = super::lookup("lo").expect("lo");
        assert!(lo.index > 0 && lo.mtu >= 1500 && !lo.multicast, "{lo:?}");
        assert_eq!(super::lookup("nosuchif0"), None);
        assert_eq!(super::lookup(""), None);
        assert_eq!(super::lookup("a-name-far-too-long-for-linux"), None);
    }
}
