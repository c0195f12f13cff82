//! Tunnelling for IPv6 services (`-i`): IPv6-in-IPv6 (next header 41) to an IPv6 real
//! server, as IPVS's `ip_vs_tunnel_xmit_v6`. The header pushing is the tunnel work's (tun.rs);
//! until it lands, the packet is dropped here, the one place to swap.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};

use crate::{parse::Pkt, xmit::Target6};

#[inline(always)]
pub fn forward(_ctx: &XdpContext, _p: &Pkt, _t: &Target6, _dest_af: u8) -> u32 {
    xdp_action::XDP_DROP
}
