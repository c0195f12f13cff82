//! Direct routing (`-g`, "Route"): the frame goes to the real server's MAC with the IP packet
//! unchanged but for the TTL (IPVS decrements it like a router), out the interface the kernel's
//! FIB names (XDP_TX when that is the one it came in on).
use aya_ebpf::bindings::xdp_action;
use lb_common::DestNeigh;
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

use crate::parse::Pkt;

/// IPv4 TTL decrement with the incremental header checksum update of RFC 1624 (as the kernel's
/// `ip_decrease_ttl`). The caller has checked TTL > 1.
#[inline(always)]
pub fn decrease_ttl(ip: *mut Ipv4Hdr) {
    unsafe {
        let mut check = u16::from_ne_bytes((*ip).check) as u32;
        check += 0x0100u16.to_be() as u32;
        (*ip).check = ((check + (check >= 0xffff) as u32) as u16).to_ne_bytes();
        (*ip).ttl -= 1;
    }
}

/// Rewrites the Ethernet header toward `nh` and sends the frame.
#[inline(always)]
pub fn xmit(data: usize, p: &Pkt, nh: &DestNeigh, ingress_ifindex: u32) -> u32 {
    let eth = data as *mut EthHdr;
    unsafe {
        (*eth).dst_addr = nh.dmac;
        (*eth).src_addr = nh.smac;
    }
    decrease_ttl(p.l3 as *mut Ipv4Hdr);
    if nh.ifindex == ingress_ifindex {
        xdp_action::XDP_TX
    } else {
        unsafe { aya_ebpf::helpers::bpf_redirect(nh.ifindex, 0) as u32 }
    }
}
