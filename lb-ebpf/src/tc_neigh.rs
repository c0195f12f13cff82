//! The slow path of a next hop the kernel has not resolved yet (see `nexthop`): the XDP program
//! rewrote the frame and passed it up with metadata naming the egress interface and the next
//! hop; this tc ingress classifier sends it there with `bpf_redirect_neigh`, which makes the
//! kernel resolve the neighbour (ARP) and queue the packet meanwhile. Anything else continues.
use aya_ebpf::{
    bindings::{bpf_redir_neigh, TC_ACT_OK},
    programs::TcContext,
};
use lb_common::{SlowPathMeta, SLOW_PATH_MAGIC};

use crate::stats::bump;

#[inline(always)]
pub fn run(ctx: &TcContext) -> i32 {
    let skb = ctx.skb.skb;
    let (meta, data) = unsafe { ((*skb).data_meta as usize, (*skb).data as usize) };
    if meta + core::mem::size_of::<SlowPathMeta>() > data {
        return TC_ACT_OK;
    }
    let m = unsafe { *(meta as *const SlowPathMeta) };
    if m.magic != SLOW_PATH_MAGIC {
        return TC_ACT_OK;
    }
    let mut nh: bpf_redir_neigh = unsafe { core::mem::zeroed() };
    nh.nh_family = m.family;
    nh.__bindgen_anon_1.ipv4_nh = m.nh.w[0];
    bump(|g| &mut g.neigh_miss);
    unsafe {
        aya_ebpf::helpers::bpf_redirect_neigh(m.ifindex, &mut nh, core::mem::size_of::<bpf_redir_neigh>() as i32, 0)
            as i32
    }
}
