//! Direct routing (`-g`, "Route"): the frame goes to the real server's MAC with the IP packet
//! unchanged but for the TTL (IPVS decrements it like a router), out the interface the kernel's
//! FIB names (XDP_TX when that is the one it came in on).
use aya_ebpf::bindings::xdp_action;
use lb_common::DestNeigh;
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

use crate::parse::{header, ETH_HLEN};

/// IPv4 TTL decrement with the incremental header checksum update of RFC 1624 (as the kernel's
/// `ip_decrease_ttl`) on the IPv4 header after the Ethernet header of `[data, data_end)`.
/// The caller has checked TTL > 1. False if the header is not there.
#[inline(always)]
pub fn decrease_ttl(data: usize, data_end: usize) -> bool {
    let Some(ip) = header::<Ipv4Hdr>(data, data_end, ETH_HLEN) else {
        return false;
    };
    unsafe {
        let mut check = u16::from_ne_bytes((*ip).check) as u32;
        check += 0x0100u16.to_be() as u32;
        (*ip).check = ((check + (check >= 0xffff) as u32) as u16).to_ne_bytes();
        (*ip).ttl -= 1;
    }
    true
}

/// Rewrites the Ethernet header toward `nh` and sends the frame.
#[inline(always)]
pub fn xmit(data: usize, data_end: usize, nh: &DestNeigh, ingress_ifindex: u32) -> u32 {
    let Some(eth) = header::<EthHdr>(data, data_end, 0) else {
        return xdp_action::XDP_ABORTED;
    };
    unsafe {
        (*eth).dst_addr = nh.dmac;
        (*eth).src_addr = nh.smac;
    }
    if !decrease_ttl(data, data_end) {
        return xdp_action::XDP_ABORTED;
    }
    if nh.ifindex == ingress_ifindex {
        xdp_action::XDP_TX
    } else {
        unsafe { aya_ebpf::helpers::bpf_redirect(nh.ifindex, 0) as u32 }
    }
}
