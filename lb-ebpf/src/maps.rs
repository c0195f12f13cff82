//! The data plane's maps. Names and layouts come from lb-common; all are pinned by name so
//! lbadm, lbd and every attached program share one table.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use lb_common::*;

use crate::{
    handoff::Handoff,
    nexthop::{ClientKey, ClientKey6},
};

/// Declares the pinned maps. A map's name in the object is its static's name; this does not
/// compile unless those names are exactly `lb_common::names::ALL`, the names userspace opens.
macro_rules! pinned_maps {
    ($($(#[$doc:meta])* $name:ident: $ty:ty = $init:expr;)*) => {
        $(
            $(#[$doc])*
            #[map]
            pub static $name: $ty = $init;
        )*
        const _: () = {
            let declared = [$(stringify!($name)),*];
            assert!(declared.len() == names::ALL.len(), "pinned maps and lb_common::names::ALL differ");
            let mut i = 0;
            while i < names::ALL.len() {
                let mut found = false;
                let mut j = 0;
                while j < declared.len() {
                    found |= str_eq(names::ALL[i], declared[j]);
                    j += 1;
                }
                assert!(found, "a map of lb_common::names::ALL is not declared here");
                i += 1;
            }
        };
    };
}

pinned_maps! {
    XLB_META: Array<Meta> = Array::pinned(1, 0);
    XLB_SERVICES: HashMap<ServiceKey, Service> = HashMap::pinned(MAX_SERVICES, 0);
    XLB_SVC_KEYS: Array<ServiceKey> = Array::pinned(MAX_SERVICES, 0);
    XLB_SVC_STATE: Array<SvcState> = Array::pinned(MAX_SERVICES, 0);
    XLB_SVC_STATS: PerCpuArray<Stats> = PerCpuArray::pinned(MAX_SERVICES, 0);
    XLB_DESTS: Array<Dest> = Array::pinned(MAX_DESTS, MAP_F_MMAPABLE);
    XLB_DEST_NEIGH: Array<DestNeigh> = Array::pinned(MAX_DESTS, 0);
    XLB_DEST_CONNS: Array<DestConns> = Array::pinned(MAX_DESTS, MAP_F_MMAPABLE);
    XLB_DEST_STATS: PerCpuArray<Stats> = PerCpuArray::pinned(MAX_DESTS, 0);
    XLB_SCHED_SLOTS: Array<u32> = Array::pinned(MAX_SCHED_SLOTS, MAP_F_MMAPABLE);
    /// The connection-count schedulers' tournament trees (`lb_common::sched::tree`): built by
    /// userspace, kept up to date by every count change on both sides.
    XLB_SCHED_TREE: Array<u32> = Array::pinned(lb_common::sched::tree::MAX_SCHED_TREE, MAP_F_MMAPABLE);
    /// Not LRU: a silent eviction would leave ActiveConn/InActConn counting a connection that is
    /// gone. Entries expire lazily here and are swept by lbd.
    XLB_CONNS: HashMap<ConnKey, Conn> = HashMap::pinned(DEFAULT_MAX_CONNS, 0);
    /// The ring of recently opened TCP connections and its cursor: the eviction candidates of
    /// `conn::evict_half_open`. One for all CPUs: a flood on one CPU must not lock out a client
    /// whose packets another CPU handles.
    XLB_HALF_OPEN: Array<ConnKey> = Array::pinned(HALF_OPEN_SLOTS, 0);
    XLB_HALF_OPEN_CURSOR: Array<HalfOpenCursor> = Array::pinned(1, 0);
    /// When this CPU last answered "port unreachable" (ns): at most one per millisecond per CPU, as
    /// the kernel rate-limits the ICMP errors IPVS sends.
    XLB_ICMP_LIMIT: PerCpuArray<u64> = PerCpuArray::pinned(1, 0);
    /// lblc's cache: (service, packet destination) -> real server (see `schedule::lblc_pick`).
    XLB_LBLC: LruHashMap<LblcKey, LblcValue> = LruHashMap::pinned(LBLC_MAX_ENTRIES, 0);
    /// lblcr's cache: (service, packet destination) -> server set (see `schedule::lblcr_pick`).
    XLB_LBLCR: LruHashMap<LblcKey, LblcrSet> = LruHashMap::pinned(LBLC_MAX_ENTRIES, 0);
    /// Where lblcr builds a new server set before inserting it (not on the stack: lblcr's
    /// program is near the kernel's 512-byte stack limit).
    XLB_LBLCR_NEW: PerCpuArray<LblcrSet> = PerCpuArray::pinned(1, 0);
    XLB_GLOBAL_STATS: PerCpuArray<GlobalStats> = PerCpuArray::pinned(1, 0);
    XLB_CONFIG: Array<Config> = Array::pinned(1, 0);
    /// The sync daemons' settings (`lb_common::sync`): written by lbadm, read by lbd.
    XLB_SYNC_DAEMONS: Array<sync::SyncDaemon> = Array::pinned(2, 0);
    /// Connections for the sync master to send (see sync.rs).
    XLB_SYNC_EVENTS: RingBuf = RingBuf::pinned(sync::SYNC_EVENTS_BYTES, 0);
    /// This namespace's interfaces (by ifindex), written by lbd: whether XDP can transmit there and
    /// the address IPIP is sourced from when the FIB cannot say.
    XLB_IFACES: HashMap<u32, IfaceInfo> = HashMap::pinned(MAX_IFACES, 0);
    /// Addresses of this host for which the decap program strips IPIP (real servers without an
    /// ipip device).
    XLB_DECAP_ADDRS: HashMap<Addr, u8> = HashMap::pinned(256, 0);
    /// Tail calls: slot `p.index()` holds `lb_common::TailProgram` `p`.
    XLB_PROGS: ProgramArray = ProgramArray::pinned(TailProgram::ALL.len() as u32, 0);
    /// The rate estimator's state (written by lbd, read by lbadm `--rate`); allocated on demand.
    XLB_RATES: HashMap<u32, RateEst> = HashMap::pinned(MAX_SERVICES + MAX_DESTS + 1, 1);
    /// fwmark classification of (protocol, VIP, port or 0) -> mark (see lb-common).
    XLB_FWMARKS: HashMap<ServiceKey, u32> = HashMap::pinned(FWMARK_MAX_RULES, 0);
    /// "Could this be for a service?" by address hash (see lb-common's `GATE_*`).
    XLB_GATE: Array<u64> = Array::pinned(GATE_WORDS, MAP_F_MMAPABLE);
    /// What `xlb_xdp` hands to the programs it tail-calls (see handoff.rs).
    XLB_HANDOFF: PerCpuArray<Handoff> = PerCpuArray::pinned(1, 0);
    /// The next hops toward clients (NAT replies), cached per client as `XLB_DEST_NEIGH` caches
    /// them per real server: a FIB lookup per reply cost more than the rest of the reply's path.
    /// An LRU: a client not seen for long is forgotten, and looked up again when it returns.
    XLB_CLIENT_NEIGH: LruHashMap<ClientKey, DestNeigh> = LruHashMap::pinned(CLIENT_NEIGH_MAX, 0);
    /// The IPv6 connection table (see conn6.rs): its own, so the IPv4 key stays 16 bytes. Sized
    /// as `XLB_CONNS` (userspace sets both from the same option).
    XLB_CONNS6: HashMap<ConnKey6, Conn6> = HashMap::pinned(DEFAULT_MAX_CONNS, 0);
    /// The IPv6 table's ring of recently opened TCP connections and its cursor (see
    /// `XLB_HALF_OPEN`, conn6.rs).
    XLB_HALF_OPEN6: Array<ConnKey6> = Array::pinned(HALF_OPEN_SLOTS, 0);
    XLB_HALF_OPEN6_CURSOR: Array<HalfOpenCursor> = Array::pinned(1, 0);
    /// `XLB_CLIENT_NEIGH` for IPv6 clients.
    XLB_CLIENT_NEIGH6: LruHashMap<ClientKey6, DestNeigh> = LruHashMap::pinned(CLIENT_NEIGH_MAX, 0);
}
