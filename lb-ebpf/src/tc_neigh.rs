//! The slow path of a frame XDP cannot send itself (see `nexthop` and `xmit`): the next hop has
//! no neighbour entry yet, or XDP cannot transmit on the egress. The XDP program rewrote the
//! frame, wrote a `SlowPathMark` over its MAC addresses and passed it up; this tc ingress
//! classifier sends it out the marked interface with `bpf_redirect_neigh`, which makes the
//! kernel resolve the neighbour (ARP) and queue the packet meanwhile. Anything else continues.
use aya_ebpf::{
    bindings::{bpf_redir_neigh, TC_ACT_OK},
    programs::TcContext,
};
use lb_common::{SlowPathMark, AF_INET, AF_INET6};

use crate::{conn, maps::XLB_DEST_NEIGH, parse::header, stats::bump};

const ETH_P_IP: [u8; 2] = [0x08, 0x00];
const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];
const PACKET_HOST: u32 = 0;

#[inline(always)]
pub fn run(ctx: &TcContext) -> i32 {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    // Cheap checks first: this runs for every frame the XDP program passes up.
    let Some(ether_type) = header::<[u8; 2]>(data, data_end, 12) else {
        return TC_ACT_OK;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let et = unsafe { *ether_type };
    if et != ETH_P_IP && et != ETH_P_IPV6 {
        return TC_ACT_OK;
    }
    let Some(m) = header::<SlowPathMark>(data, data_end, 0) else {
        return TC_ACT_OK;
    };
    // SAFETY: `header` checked the mark is in the packet.
    let m = unsafe { *m };
    if m.tag == 0 || conn::with_config(|c| c.slow_path_tag != m.tag).unwrap_or(true) {
        return TC_ACT_OK;
    }
    if et == ETH_P_IPV6 {
        return redirect6(ctx, &m);
    }
    // SAFETY: bpf_redir_neigh is plain integers: all zeroes is a valid value.
    let mut nh: bpf_redir_neigh = unsafe { core::mem::zeroed() };
    nh.nh_family = AF_INET as u32;
    nh.__bindgen_anon_1.ipv4_nh = m.nh;
    bump(|g| &mut g.neigh_miss);
    // SAFETY: helpers called with a valid skb context and a stack struct of the size given.
    unsafe {
        // The mark made the frame look addressed to another host; it is being sent, not received.
        aya_ebpf::helpers::bpf_skb_change_type(ctx.skb.skb, PACKET_HOST);
        aya_ebpf::helpers::bpf_redirect_neigh(m.ifindex, &mut nh, core::mem::size_of::<bpf_redir_neigh>() as i32, 0)
            as i32
    }
}

/// An IPv6 frame's slow path (`SlowPathMark::nh`: 0, the packet's own destination, whose route
/// the kernel looks up; else a real server's id + 1, whose cached next hop is used).
#[inline(always)]
fn redirect6(ctx: &TcContext, m: &SlowPathMark) -> i32 {
    bump(|g| &mut g.neigh_miss);
    // SAFETY: bpf_redir_neigh is plain integers: all zeroes is a valid value.
    let mut nh: bpf_redir_neigh = unsafe { core::mem::zeroed() };
    let known = m.nh != 0 && {
        match XLB_DEST_NEIGH.get(m.nh - 1) {
            Some(n) if n.nh.w != [0; 4] => {
                nh.nh_family = AF_INET6 as u32;
                nh.__bindgen_anon_1.ipv6_nh = n.nh.w;
                true
            }
            _ => false,
        }
    };
    // SAFETY: helpers called with a valid skb context and, when given, a stack struct of the
    // size given.
    unsafe {
        aya_ebpf::helpers::bpf_skb_change_type(ctx.skb.skb, PACKET_HOST);
        if known {
            aya_ebpf::helpers::bpf_redirect_neigh(m.ifindex, &mut nh, core::mem::size_of::<bpf_redir_neigh>() as i32, 0) as i32
        } else {
            aya_ebpf::helpers::bpf_redirect_neigh(m.ifindex, core::ptr::null_mut(), 0, 0) as i32
        }
    }
}
