//! Shared between the XDP program (lb-ebpf) and userspace (lb-user): the layout of every
//! BPF map key and value, and the constants both sides must agree on.
//!
//! Every address field is an [`Addr`] (16 bytes) so IPv6 needs no new layouts: an IPv4
//! address sits in the first word and the other three words are zero.
#![no_std]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

pub mod bench;
pub mod dest_mem;
mod global_stats;
pub mod maps;
pub mod sched;
pub mod sync;
pub mod tcp_state;
pub mod tunnel;
pub mod verifier;

pub use dest_mem::*;
pub use maps::*;

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

pub const IPPROTO_IP: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_IPV6: u8 = 41;
pub const IPPROTO_SCTP: u8 = 132;

/// Capacities of the data plane's tables (the arrays are indexed by these ids).
pub const MAX_SERVICES: u32 = 65_536;
pub const MAX_DESTS: u32 = 262_144;
/// Scheduling tables of all services live in one flat array of dest ids; a service owns a slice.
pub const MAX_SCHED_SLOTS: u32 = 1 << 22;
/// Default capacity of the connection table (entries, templates included); `lbd`/`lbadm` can
/// create it with another size.
pub const DEFAULT_MAX_CONNS: u32 = 1 << 20;
/// The data plane remembers the keys of the last this many TCP connections it opened: when the
/// connection table is full, the oldest of them still half-open (SYN_RECV) makes room for a new
/// connection, so a SYN flood cannot lock new clients out. A power of two (XLB_HALF_OPEN's size).
pub const HALF_OPEN_SLOTS: u32 = 1 << 16;


/// Kernel IPVS version reported by the listing (`IP Virtual Server version 1.2.1`).
pub const IPVS_VERSION: u32 = 0x010201;
/// Size of IPVS's connection hash table shown by the listing (`size=4096`).
pub const IPVS_CONN_TAB_SIZE: u32 = 4096;

/// Version of the map layouts below. Stored in the pinned `XLB_META` map; a binary refuses to
/// use pinned maps of another layout instead of misreading them.
pub const LAYOUT_VERSION: u32 = 10;

/// Helper: an `Addr` word built from IPv4 octets, in network byte order as the packet has it.
#[inline(always)]
pub const fn ipv4_word(o: [u8; 4]) -> u32 {
    u32::from_ne_bytes(o)
}

#[cfg(feature = "user")]
mod pod {
    use crate::maps::*;
    // SAFETY: all of these are #[repr(C)] plain data with explicit padding fields.
    unsafe impl aya::Pod for Addr {}
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for Service {}
    unsafe impl aya::Pod for Dest {}
    unsafe impl aya::Pod for DestNeigh {}
    unsafe impl aya::Pod for DestConns {}
    unsafe impl aya::Pod for SvcState {}
    unsafe impl aya::Pod for Stats {}
    unsafe impl aya::Pod for GlobalStats {}
    unsafe impl aya::Pod for ConnKey {}
    unsafe impl aya::Pod for Conn {}
    unsafe impl aya::Pod for ConnKey6 {}
    unsafe impl aya::Pod for Conn6 {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for crate::sync::SyncDaemon {}
    unsafe impl aya::Pod for Meta {}
    unsafe impl aya::Pod for SlowPathMark {}
    unsafe impl aya::Pod for IfaceInfo {}
    unsafe impl aya::Pod for RateEst {}
    unsafe impl aya::Pod for LblcKey {}
    unsafe impl aya::Pod for LblcrSet {}
    unsafe impl aya::Pod for crate::bench::GenCfg {}
    unsafe impl aya::Pod for crate::bench::SinkCounts {}
    unsafe impl aya::Pod for crate::bench::SinkCfg {}
}
