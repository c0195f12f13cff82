//! For real servers of TUN services that have no ipip device (this kernel has none): strips the
//! outer IPv4 header of IPIP packets addressed to one of this host's addresses (listed in
//! `XLB_DECAP_ADDRS` by `lbd attach --program decap`) and hands the inner packet to the kernel,
//! which delivers it to the VIP on lo. Everything else passes untouched.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{Addr, IPPROTO_IPIP};
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

use crate::{
    maps::XLB_DECAP_ADDRS,
    parse::{header, ETH_HLEN, ETH_P_IP, IPV4_HLEN},
};

#[inline(always)]
pub fn run(ctx: &XdpContext) -> u32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    let Some(eth) = header::<EthHdr>(data, end, 0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    if u16::from_be(unsafe { (*eth).ether_type }) != ETH_P_IP {
        return xdp_action::XDP_PASS;
    }
    let Some(outer) = header::<Ipv4Hdr>(data, end, ETH_HLEN) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let outer = unsafe { &*outer };
    let ihl = (outer.vihl & 0x0f) as usize * 4;
    if outer.vihl >> 4 != 4 || outer.proto != IPPROTO_IPIP || ihl < IPV4_HLEN {
        return xdp_action::XDP_PASS;
    }
    // Fragments of the outer packet: the kernel reassembles them (and cannot decapsulate);
    // leave them alone rather than strip a partial datagram.
    if u16::from_be_bytes(outer.frags) & 0x3fff != 0 {
        return xdp_action::XDP_PASS;
    }
    let dst = Addr::v4(u32::from_ne_bytes(outer.dst_addr));
    // SAFETY: a hash map value stays valid until the program returns (RCU); it is read at once, not
    // kept.
    if unsafe { XLB_DECAP_ADDRS.get(&dst) }.is_none() {
        return xdp_action::XDP_PASS;
    }
    // The inner packet must be a whole IPv4 header at least.
    let Some(inner) = header::<Ipv4Hdr>(data, end, ETH_HLEN + ihl) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    if unsafe { (*inner).vihl } >> 4 != 4 {
        return xdp_action::XDP_PASS;
    }
    let Some(e) = header::<[u8; ETH_HLEN]>(data, end, 0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let mac = unsafe { *e };
    // SAFETY: `ctx.ctx` is this program's xdp_md; the frame moves, and nothing read before is used
    // through old pointers after (they are looked up again below).
    if unsafe { aya_ebpf::helpers::bpf_xdp_adjust_head(ctx.ctx, ihl as i32) } != 0 {
        return xdp_action::XDP_PASS;
    }
    let Some(e) = header::<[u8; ETH_HLEN]>(ctx.data(), ctx.data_end(), 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    unsafe { *e = mac };
    xdp_action::XDP_PASS
}
