//! The ICMPv6 errors the IPv6 data plane answers itself, as IPVS does: hop limit exceeded
//! (`ip6_forward`'s ICMPV6_TIME_EXCEED) and, for a new connection without a usable real server,
//! port unreachable (`ip_vs_leave`: `icmpv6_send(skb, ICMPV6_DEST_UNREACH,
//! ICMPV6_PORT_UNREACH, 0)`), and Packet Too Big for a tunnel the packet no longer fits
//! (`ip_vs_tunnel_xmit_v6`'s PMTU check). The builders are icmp6.rs's (the tunnel work's); until they land
//! these drop the packet, the one place to swap.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};

/// Hop limit <= 1: ICMPv6 Time Exceeded to the sender (for now: dropped).
#[inline(always)]
pub fn time_exceeded(_ctx: &XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// No usable real server: ICMPv6 port unreachable to the client (for now: dropped).
#[inline(always)]
pub fn port_unreachable(_ctx: &XdpContext, _now: u64) -> u32 {
    xdp_action::XDP_DROP
}

/// The packet does not fit the tunnel's route once wrapped: ICMPv6 Packet Too Big with `mtu`
/// (for now: dropped).
#[inline(always)]
pub fn packet_too_big(_ctx: &XdpContext, _mtu: u32) -> u32 {
    xdp_action::XDP_DROP
}
