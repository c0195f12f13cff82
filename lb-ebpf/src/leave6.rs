//! The ICMPv6 errors the IPv6 data plane answers itself, as IPVS does: hop limit exceeded
//! (`ip6_forward`'s ICMPV6_TIME_EXCEED) and, for a new connection without a usable real server,
//! port unreachable (`ip_vs_leave`: `icmpv6_send(skb, ICMPV6_DEST_UNREACH,
//! ICMPV6_PORT_UNREACH, 0)`), built by icmp6.rs.
use aya_ebpf::programs::XdpContext;

use crate::icmp6;

/// Hop limit <= 1: ICMPv6 Time Exceeded to the sender.
#[inline(always)]
pub fn time_exceeded(ctx: &XdpContext) -> u32 {
    icmp6::time_exceeded(ctx)
}

/// No usable real server: ICMPv6 port unreachable to the client (rate-limited).
#[inline(always)]
pub fn port_unreachable(ctx: &XdpContext, now: u64) -> u32 {
    icmp6::port_unreachable(ctx, now)
}
