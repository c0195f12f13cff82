//! Tunnel encapsulation for every combination IPVS allows: outer IPv4 or IPv6 (the real
//! server's family) around an inner IPv4 or IPv6 packet (the service's family), as IPIP (protocol
//! 4 / 41), GUE (UDP to the dest's port, a 4-byte GUE header) or GRE (with or without its
//! checksum). The headers are written as `ip_vs_tunnel_xmit{,_v6}` leaves them on the wire:
//!
//! - outer TTL / hop limit = the inner one after the decrement; TOS / traffic class = the inner
//!   DSCP with ECN encapsulated (CE becomes ECT(0)); IPv6 flow label 0.
//! - IPv4 outer: DF copied from an IPv4 inner packet, clear for an IPv6 one; the id is the inner
//!   packet's (IPv4 inner), a random one for an IPv6 inner packet (whose outer packet may be
//!   fragmented on the way).
//! - GUE: source port from the flow hash (`lb_common::tunnel::gue_src_port`), UDP checksum 0
//!   with `--tun-nocsum` (also over IPv6: RFC 6935, the kernel's `udp6_set_csum` does the same),
//!   else the full checksum (0 sent as 0xffff). `--tun-remcsum` writes no option for a forwarded
//!   packet (see `lb_common::tunnel::TUN_F_REMCSUM`).
//! - GRE: `gre_build_header` with no key or sequence; with `--tun-csum` the C bit and the
//!   checksum over the GRE header and payload.
//!
//! The frame must hold Ethernet then the inner packet (already TTL-decremented) at offset 14;
//! afterwards it holds Ethernet (type set for the outer family, addresses for `xmit` to fill),
//! the outer headers and the inner packet.
use aya_ebpf::programs::XdpContext;
use lb_common::{
    tunnel::{
        gue_src_port, inner_proto, ETH_P_IP, ETH_P_IPV6, GRE_F_CSUM, IPPROTO_GRE, TUN_F_CSUM, TUN_F_REMCSUM,
        TUN_TYPE_GRE, TUN_TYPE_GUE,
    },
    Addr, AF_INET6, IPPROTO_UDP,
};

use crate::{
    csum,
    parse::{header, ETH_HLEN},
};

/// The outer side: the real server's family and address, the director's source address on the
/// route there, and the dest's tunnel (`Dest::tun_type`, `tun_port` in host order, `tun_flags`).
/// The addresses are references (into map values): read word by word as they are written, they
/// are never all held on the stack, which the callers' deep frames leave little of.
pub struct Outer<'a> {
    pub af: u8,
    pub src: &'a Addr,
    pub dst: &'a Addr,
    pub tun_type: u8,
    pub tun_port: u16,
    pub tun_flags: u16,
}

/// The inner packet already in the frame at offset 14.
pub struct Inner {
    pub af: u8,
    /// Its whole length (IPv4 total length; IPv6 40 + payload length).
    pub len: u16,
    /// TTL / hop limit after the decrement: the outer one.
    pub hop: u8,
    /// IPv4 TOS / IPv6 traffic class.
    pub tos: u8,
    /// IPv4 DF (false for IPv6).
    pub df: bool,
    /// IPv4 id (memory order), copied to an outer IPv4 header.
    pub id: [u8; 2],
    /// The flow hash (`lb_common::tunnel::flow_hash`): GUE's source port.
    pub hash: u32,
}

/// RFC 6040 / the kernel's INET_ECN_encapsulate: copy ECN, except CE which becomes ECT(0).
#[inline(always)]
pub fn encap_tos(inner: u8) -> u8 {
    let ecn = inner & 3;
    (inner & !3) | if ecn == 3 { 2 } else { ecn }
}

/// Wraps the inner packet. `false`: the frame could not grow, or a checksum was asked for over
/// more than `csum::SUM_MAX` bytes (the packet is then to be dropped; the frame may have moved).
#[inline(always)]
pub fn encap(ctx: &XdpContext, o: &Outer, i: &Inner) -> bool {
    let gue = o.tun_type == TUN_TYPE_GUE;
    let gre = o.tun_type == TUN_TYPE_GRE;
    let gue_csum = gue && o.tun_flags & (TUN_F_CSUM | TUN_F_REMCSUM) != 0;
    let gre_csum = gre && o.tun_flags & TUN_F_CSUM != 0;
    // One instance per header size: every write and check has a constant length.
    if o.af == AF_INET6 {
        if gue {
            push::<true, 12, { ETH_HLEN + 40 + 12 }>(ctx, o, i, gue_csum)
        } else if gre_csum {
            push::<true, 8, { ETH_HLEN + 40 + 8 }>(ctx, o, i, true)
        } else if gre {
            push::<true, 4, { ETH_HLEN + 40 + 4 }>(ctx, o, i, false)
        } else {
            push::<true, 0, { ETH_HLEN + 40 }>(ctx, o, i, false)
        }
    } else if gue {
        push::<false, 12, { ETH_HLEN + 20 + 12 }>(ctx, o, i, gue_csum)
    } else if gre_csum {
        push::<false, 8, { ETH_HLEN + 20 + 8 }>(ctx, o, i, true)
    } else if gre {
        push::<false, 4, { ETH_HLEN + 20 + 4 }>(ctx, o, i, false)
    } else {
        push::<false, 0, { ETH_HLEN + 20 }>(ctx, o, i, false)
    }
}

/// Sum of `N` bytes as 16-bit words in memory order (`csum` convention).
#[inline(always)]
fn sum_words<const N: usize>(b: &[u8; N], from: usize, len: usize) -> u64 {
    let mut s = 0u64;
    let mut k = 0;
    while k + 1 < len {
        if from + k + 1 < N {
            s += u16::from_ne_bytes([b[from + k], b[from + k + 1]]) as u64;
        }
        k += 2;
    }
    s
}

/// A 16-bit number as the memory-order word the packet holds it as.
#[inline(always)]
fn be_word(v: u16) -> u64 {
    u16::from_ne_bytes(v.to_be_bytes()) as u64
}

/// Pushes `H - 14` bytes of outer headers (`TUN` of them the tunnel header: 0 IPIP, 12 UDP+GUE,
/// 4 GRE, 8 GRE with checksum) in front of the inner packet; `csum`: fill the tunnel checksum.
#[inline(always)]
fn push<const V6: bool, const TUN: usize, const H: usize>(ctx: &XdpContext, o: &Outer, i: &Inner, csum: bool) -> bool {
    let ip_hlen = if V6 { 40 } else { 20 };
    let grow = H - ETH_HLEN;
    let ip_total = i.len as usize + grow;
    let l4_len = i.len as usize + TUN;
    if ip_total > 0xffff {
        return false;
    }
    // IPv6 inner in IPv4 outer: no inner id to copy, and the outer packet may be fragmented.
    let id = if !V6 && i.af == AF_INET6 {
        // SAFETY: a helper without arguments.
        (unsafe { aya_ebpf::helpers::bpf_get_prandom_u32() } as u16).to_ne_bytes()
    } else {
        i.id
    };
    // SAFETY: `ctx.ctx` is this program's xdp_md; no pointer into the frame is used after it moves
    // (they are taken again below).
    if unsafe { aya_ebpf::helpers::bpf_xdp_adjust_head(ctx.ctx, -(grow as i32)) } != 0 {
        return false;
    }
    let (data, end) = (ctx.data(), ctx.data_end());
    let Some(h) = header::<[u8; H]>(data, end, 0) else {
        return false;
    };
    // SAFETY: `header` checked that these bytes lie in the frame, which is not moved while this
    // lives.
    let h = unsafe { &mut *h };
    let tun_proto = if TUN == 12 {
        IPPROTO_UDP
    } else if TUN != 0 {
        IPPROTO_GRE
    } else {
        inner_proto(i.af)
    };
    let tos = encap_tos(i.tos);
    let et = if V6 { ETH_P_IPV6 } else { ETH_P_IP }.to_be_bytes();
    h[12] = et[0];
    h[13] = et[1];
    const O: usize = ETH_HLEN;
    let (s, d) = (&o.src.w, &o.dst.w);
    if V6 {
        h[O] = 0x60 | (tos >> 4);
        h[O + 1] = tos << 4;
        h[O + 2] = 0;
        h[O + 3] = 0;
        let plen = (l4_len as u16).to_be_bytes();
        h[O + 4] = plen[0];
        h[O + 5] = plen[1];
        h[O + 6] = tun_proto;
        h[O + 7] = i.hop;
        // Word by word (even offsets), each stored as soon as it is had (volatile: not all
        // first, held on the stack).
        let p = h.as_mut_ptr();
        for w in 0..4 {
            // SAFETY: the offsets lie in `h` (checked above), which is not moved while this lives.
            unsafe {
                let (sw, dw) = (s[w].to_ne_bytes(), d[w].to_ne_bytes());
                core::ptr::write_volatile(p.add(O + 8 + 4 * w) as *mut u16, u16::from_ne_bytes([sw[0], sw[1]]));
                core::ptr::write_volatile(p.add(O + 10 + 4 * w) as *mut u16, u16::from_ne_bytes([sw[2], sw[3]]));
                core::ptr::write_volatile(p.add(O + 24 + 4 * w) as *mut u16, u16::from_ne_bytes([dw[0], dw[1]]));
                core::ptr::write_volatile(p.add(O + 26 + 4 * w) as *mut u16, u16::from_ne_bytes([dw[2], dw[3]]));
            }
        }
    } else {
        h[O] = 0x45;
        h[O + 1] = tos;
        let len = (ip_total as u16).to_be_bytes();
        h[O + 2] = len[0];
        h[O + 3] = len[1];
        h[O + 4] = id[0];
        h[O + 5] = id[1];
        h[O + 6] = if i.df && i.af != AF_INET6 { 0x40 } else { 0 };
        h[O + 7] = 0;
        h[O + 8] = i.hop;
        h[O + 9] = tun_proto;
        h[O + 10] = 0;
        h[O + 11] = 0;
        let s4 = s[0].to_ne_bytes();
        let d4 = d[0].to_ne_bytes();
        for b in 0..4 {
            h[O + 12 + b] = s4[b];
            h[O + 16 + b] = d4[b];
        }
        let check = csum::ipv4_header(h, O).to_ne_bytes();
        h[O + 10] = check[0];
        h[O + 11] = check[1];
    }
    let t = O + ip_hlen;
    if TUN == 12 {
        let sport = gue_src_port(i.hash).to_be_bytes();
        let dport = o.tun_port.to_be_bytes();
        let ulen = (l4_len as u16).to_be_bytes();
        h[t] = sport[0];
        h[t + 1] = sport[1];
        h[t + 2] = dport[0];
        h[t + 3] = dport[1];
        h[t + 4] = ulen[0];
        h[t + 5] = ulen[1];
        // The checksum (0 for now); GUE version 0, no control, no options; the inner protocol;
        // no flags. (16-bit stores at even offsets: byte runs of zeros become a memset call,
        // whose frame the kernel adds to the callers'.)
        let p = h.as_mut_ptr();
        // SAFETY: the offsets lie in `h` (checked above), which is not moved while this lives.
        unsafe {
            core::ptr::write_volatile(p.add(t + 6) as *mut u16, 0);
            core::ptr::write_volatile(p.add(t + 8) as *mut u16, u16::from_ne_bytes([0, inner_proto(i.af)]));
            core::ptr::write_volatile(p.add(t + 10) as *mut u16, 0);
        }
    } else if TUN != 0 {
        let flags = if TUN == 8 { GRE_F_CSUM } else { 0 }.to_be_bytes();
        let proto = if i.af == AF_INET6 { ETH_P_IPV6 } else { ETH_P_IP }.to_be_bytes();
        h[t] = flags[0];
        h[t + 1] = flags[1];
        h[t + 2] = proto[0];
        h[t + 3] = proto[1];
        if TUN == 8 {
            let p = h.as_mut_ptr();
            // SAFETY: as above.
            unsafe {
                core::ptr::write_volatile(p.add(t + 4) as *mut u16, 0);
                core::ptr::write_volatile(p.add(t + 6) as *mut u16, 0);
            }
        }
    }
    if !csum || TUN == 0 {
        return true;
    }
    // The tunnel checksum covers its own header and the whole inner packet (GUE: and the UDP
    // pseudo-header).
    let mut sum = sum_words(h, t, TUN);
    if TUN == 12 {
        if V6 {
            // (Volatile reads of the addresses just written: summed as read, not all held.)
            let p = h.as_ptr();
            for k in 0..16 {
                // SAFETY: the offset lies in `h` (checked above), which is not moved meanwhile.
                sum += unsafe { core::ptr::read_volatile(p.add(O + 8 + 2 * k) as *const u16) } as u64;
            }
        } else {
            sum += sum_words(h, O + 12, 8);
        }
        sum += be_word(IPPROTO_UDP as u16) + be_word(l4_len as u16);
    }
    let Some(inner) = csum::sum_bytes(data + H, end, i.len as usize) else {
        return false;
    };
    let mut c = !csum::fold(sum + inner);
    if TUN == 12 && c == 0 {
        // A computed UDP checksum of 0 is sent as 0xffff (0 means none).
        c = 0xffff;
    }
    let Some(h) = header::<[u8; H]>(data, end, 0) else {
        return false;
    };
    let at = if TUN == 12 { t + 6 } else { t + 4 };
    let c = c.to_ne_bytes();
    // SAFETY: `header` checked these bytes are in the frame (taken again after the summing loop).
    unsafe {
        (*h)[at] = c[0];
        (*h)[at + 1] = c[1];
    }
    true
}
