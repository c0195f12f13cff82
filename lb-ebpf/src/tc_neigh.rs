//! The slow path of a next hop the kernel has not resolved yet (see `nexthop`): the XDP program
//! passed the packet up; this tc ingress classifier finds its connection and sends it toward the
//! real server with `bpf_redirect_neigh`, which makes the kernel resolve the neighbour (ARP) and
//! queue the packet meanwhile. Packets without a DR connection continue untouched.
use aya_ebpf::{
    bindings::{bpf_redir_neigh, TC_ACT_OK},
    programs::TcContext,
};
use lb_common::{AF_INET, FWD_DROUTE};

use crate::{
    conn::key_in,
    dr::decrease_ttl,
    maps::XLB_CONNS,
    parse::{parse, Parsed, ETH_HLEN},
    schedule::usable_dest,
    stats::bump,
};

/// Enough linear bytes for Ethernet + the longest IPv4 header + a TCP header.
const PULL_LEN: u32 = (ETH_HLEN + 60 + 20) as u32;

#[inline(always)]
pub fn run(ctx: &TcContext) -> i32 {
    if ctx.data_end() - ctx.data() < PULL_LEN as usize {
        let _ = ctx.pull_data(PULL_LEN.min(ctx.len()));
    }
    let Parsed::Ok(p) = parse(ctx.data(), ctx.data_end()) else {
        return TC_ACT_OK;
    };
    let Some(c) = (unsafe { XLB_CONNS.get(&key_in(&p)) }) else {
        return TC_ACT_OK;
    };
    let Some(dest) = usable_dest(c.dest_id, c.svc_id) else {
        return TC_ACT_OK;
    };
    if dest.fwd != FWD_DROUTE || p.ttl <= 1 {
        return TC_ACT_OK;
    }
    if !decrease_ttl(ctx.data(), ctx.data_end()) {
        return TC_ACT_OK;
    }
    let mut nh: bpf_redir_neigh = unsafe { core::mem::zeroed() };
    nh.nh_family = AF_INET as u32;
    nh.__bindgen_anon_1.ipv4_nh = dest.addr.w[0];
    bump(|g| &mut g.neigh_miss);
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    unsafe {
        aya_ebpf::helpers::bpf_redirect_neigh(ifindex, &mut nh, core::mem::size_of::<bpf_redir_neigh>() as i32, 0)
            as i32
    }
}
