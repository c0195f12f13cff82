//! The next hop toward a real server, from the kernel's FIB and neighbour table.
//!
//! The data plane never keeps a MAC address of its own invention: it asks `bpf_fib_lookup` and
//! caches the answer per dest for `NEIGH_TTL_NS`, so a changed neighbour entry is followed within
//! that time. When the kernel has no neighbour entry yet, the packet is handed to the kernel
//! (XDP_PASS) where the `xlb_tc_neigh` classifier sends it with `bpf_redirect_neigh`, which
//! resolves the neighbour the normal way: the first packet is delayed, never black-holed.
//! `bpf_fib_lookup` also refuses to answer on an interface with forwarding disabled
//! (`net.ipv4.conf.IFACE.forwarding=0`); traffic then takes the same slow path, correct but at
//! the kernel's speed (`lbd attach` warns about it).
use aya_ebpf::bindings::{bpf_fib_lookup, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_OUTPUT};
use lb_common::{Dest, DestNeigh, AF_INET, NEIGH_RETRY_NS, NEIGH_TTL_NS};

use crate::maps::XLB_DEST_NEIGH;

/// The cached or freshly looked-up next hop of `dest_id`, or `None` when the kernel cannot
/// give one now (no neighbour entry yet, no route).
#[inline(always)]
pub fn resolve(ctx: *mut core::ffi::c_void, dest_id: u32, dest: &Dest, ifindex: u32, now: u64) -> Option<DestNeigh> {
    let cache = XLB_DEST_NEIGH.get_ptr_mut(dest_id)?;
    let cached = unsafe { &mut *cache };
    if cached.expires > now {
        // ifindex 0: the kernel had no next hop a moment ago (see below).
        return if cached.ifindex != 0 { Some(*cached) } else { None };
    }
    let mut fib: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    fib.family = AF_INET;
    fib.ifindex = ifindex;
    fib.__bindgen_anon_4.ipv4_dst = dest.addr.w[0];
    // Egress view: the director need not have forwarding enabled for DR (IPVS does not).
    let rc = unsafe {
        aya_ebpf::helpers::bpf_fib_lookup(
            ctx,
            &mut fib,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            BPF_FIB_LOOKUP_OUTPUT,
        )
    };
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        // No neighbour yet, or forwarding disabled on the interface (the helper insists on
        // it): the slow path carries the packets; ask the FIB again shortly, not per packet.
        *cached = DestNeigh { expires: now + NEIGH_RETRY_NS, ..DestNeigh::default() };
        return None;
    }
    *cached = DestNeigh { dmac: fib.dmac, smac: fib.smac, ifindex: fib.ifindex, expires: now + NEIGH_TTL_NS };
    Some(*cached)
}
