//! Map names, keys and values. One source of truth: the XDP program declares its maps with these
//! names and types, userspace opens the pinned maps by the same names.

/// Names of the maps (and of their pins under the pin directory). The data plane's map statics
/// bear these names: lb-ebpf's `pinned_maps!` does not compile unless they are exactly [`ALL`].
pub mod names {
    pub const META: &str = "XLB_META";
    pub const SERVICES: &str = "XLB_SERVICES";
    pub const SVC_KEYS: &str = "XLB_SVC_KEYS";
    pub const SVC_STATE: &str = "XLB_SVC_STATE";
    pub const SVC_STATS: &str = "XLB_SVC_STATS";
    pub const DESTS: &str = "XLB_DESTS";
    pub const DEST_NEIGH: &str = "XLB_DEST_NEIGH";
    pub const DEST_CONNS: &str = "XLB_DEST_CONNS";
    pub const DEST_STATS: &str = "XLB_DEST_STATS";
    pub const SCHED_SLOTS: &str = "XLB_SCHED_SLOTS";
    pub const SCHED_TREE: &str = "XLB_SCHED_TREE";
    pub const CONNS: &str = "XLB_CONNS";
    pub const GLOBAL_STATS: &str = "XLB_GLOBAL_STATS";
    pub const CONFIG: &str = "XLB_CONFIG";
    pub const DECAP_ADDRS: &str = "XLB_DECAP_ADDRS";
    pub const PROGS: &str = "XLB_PROGS";
    pub const RATES: &str = "XLB_RATES";
    pub const FWMARKS: &str = "XLB_FWMARKS";
    pub const HALF_OPEN: &str = "XLB_HALF_OPEN";
    pub const HALF_OPEN_CURSOR: &str = "XLB_HALF_OPEN_CURSOR";
    pub const ICMP_LIMIT: &str = "XLB_ICMP_LIMIT";
    pub const LBLC: &str = "XLB_LBLC";
    pub const LBLCR: &str = "XLB_LBLCR";
    pub const LBLCR_NEW: &str = "XLB_LBLCR_NEW";
    pub const IFACES: &str = "XLB_IFACES";
    pub const GATE: &str = "XLB_GATE";
    pub const HANDOFF: &str = "XLB_HANDOFF";
    pub const CLIENT_NEIGH: &str = "XLB_CLIENT_NEIGH";
    pub const CONNS6: &str = "XLB_CONNS6";
    pub const CLIENT_NEIGH6: &str = "XLB_CLIENT_NEIGH6";
    pub const HALF_OPEN6: &str = "XLB_HALF_OPEN6";
    pub const HALF_OPEN6_CURSOR: &str = "XLB_HALF_OPEN6_CURSOR";
    pub const SYNC_DAEMONS: &str = "XLB_SYNC_DAEMONS";
    pub const SYNC_EVENTS: &str = "XLB_SYNC_EVENTS";

    /// Every map, for tools that pin, list or remove them all.
    pub const ALL: &[&str] = &[
        META,
        SERVICES,
        SVC_KEYS,
        SVC_STATE,
        SVC_STATS,
        DESTS,
        DEST_NEIGH,
        DEST_CONNS,
        DEST_STATS,
        SCHED_SLOTS,
        SCHED_TREE,
        CONNS,
        GLOBAL_STATS,
        CONFIG,
        DECAP_ADDRS,
        PROGS,
        RATES,
        FWMARKS,
        HALF_OPEN,
        HALF_OPEN_CURSOR,
        ICMP_LIMIT,
        LBLC,
        LBLCR,
        LBLCR_NEW,
        IFACES,
        GATE,
        HANDOFF,
        CLIENT_NEIGH,
        CONNS6,
        CLIENT_NEIGH6,
        HALF_OPEN6,
        HALF_OPEN6_CURSOR,
        SYNC_DAEMONS,
        SYNC_EVENTS,
    ];

}

/// The programs the data plane reaches by tail call through `XLB_PROGS`: the slot of each is its
/// discriminant, the data plane calls by it and userspace installs by it, so the two cannot
/// disagree. Each is verified on its own, which keeps every one within the verifier's budget and
/// the established path short.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailProgram {
    /// `xlb_new`: packets of no established connection (NAT replies, new connections).
    New = 0,
    /// `xlb_icmp`: ICMP errors about connections.
    Icmp = 1,
    /// `xlb_fwd`: the first packet of a connection `xlb_new*` has just created.
    Fwd = 2,
    /// `xlb_new_set`: new connections of lblcr (per-destination server sets).
    NewSet = 3,
    /// `xlb_new_scan`: new connections of the connection-count schedulers.
    NewScan = 4,
    /// `xlb_new_twos`: new connections of twos.
    NewTwos = 5,
    /// `xlb_xdp6`: every IPv6 frame `xlb_xdp` receives (the IPv4 path pays one ethertype
    /// branch for IPv6).
    Xdp6 = 6,
    /// `xlb_new6*`: new IPv6 connections, by scheduler group as their IPv4 twins.
    New6 = 7,
    NewSet6 = 8,
    NewScan6 = 9,
    NewTwos6 = 10,
    /// `xlb_fwd6`: the first packet of an IPv6 connection `xlb_new6*` has just created.
    Fwd6 = 11,
    /// `xlb_reply6`: IPv6 packets from a NAT real server's address without a client-side
    /// connection (replies); apart from `xlb_xdp6` to keep each within the 512-byte stack.
    Reply6 = 12,
    /// `xlb_icmp6`: ICMPv6 errors about connections.
    Icmp6 = 13,
    /// `xlb_icmp6_tun`: an ICMPv6 error about a tunnelled connection, which `xlb_icmp6` found;
    /// apart from it because the tunnel's encapsulation function adds its frame to the caller's
    /// in the 512-byte stack.
    Icmp6Tun = 14,
}

impl TailProgram {
    /// Every tail-called program, in slot order (`ALL[p.index()] == p`).
    pub const ALL: [TailProgram; 15] = [
        TailProgram::New,
        TailProgram::Icmp,
        TailProgram::Fwd,
        TailProgram::NewSet,
        TailProgram::NewScan,
        TailProgram::NewTwos,
        TailProgram::Xdp6,
        TailProgram::New6,
        TailProgram::NewSet6,
        TailProgram::NewScan6,
        TailProgram::NewTwos6,
        TailProgram::Fwd6,
        TailProgram::Reply6,
        TailProgram::Icmp6,
        TailProgram::Icmp6Tun,
    ];

    /// Its slot in `XLB_PROGS`.
    #[inline(always)]
    pub const fn index(self) -> u32 {
        self as u32
    }

    /// The name of its program in the object (the data plane's function name).
    pub const fn name(self) -> &'static str {
        match self {
            TailProgram::New => "xlb_new",
            TailProgram::Icmp => "xlb_icmp",
            TailProgram::Fwd => "xlb_fwd",
            TailProgram::NewSet => "xlb_new_set",
            TailProgram::NewScan => "xlb_new_scan",
            TailProgram::NewTwos => "xlb_new_twos",
            TailProgram::Xdp6 => "xlb_xdp6",
            TailProgram::New6 => "xlb_new6",
            TailProgram::NewSet6 => "xlb_new_set6",
            TailProgram::NewScan6 => "xlb_new_scan6",
            TailProgram::NewTwos6 => "xlb_new_twos6",
            TailProgram::Fwd6 => "xlb_fwd6",
            TailProgram::Reply6 => "xlb_reply6",
            TailProgram::Icmp6 => "xlb_icmp6",
            TailProgram::Icmp6Tun => "xlb_icmp6_tun",
        }
    }
}

/// `a == b`, in a const context (compile-time checks of names shared with the data plane).
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const _: () = {
    let mut i = 0;
    while i < TailProgram::ALL.len() {
        assert!(TailProgram::ALL[i].index() as usize == i, "TailProgram::ALL is out of slot order");
        i += 1;
    }
};

/// An IPv4 or IPv6 address as four words in network byte order. IPv4: `w[0]`, rest zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    pub w: [u32; 4],
}

impl Addr {
    pub const ZERO: Addr = Addr { w: [0; 4] };

    #[inline(always)]
    pub const fn v4(be_word: u32) -> Addr {
        Addr { w: [be_word, 0, 0, 0] }
    }

    #[inline(always)]
    pub const fn v6(words: [u32; 4]) -> Addr {
        Addr { w: words }
    }

    /// `self & mask`, word by word (persistence netmasks).
    #[inline(always)]
    pub const fn masked(&self, mask: &Addr) -> Addr {
        Addr {
            w: [
                self.w[0] & mask.w[0],
                self.w[1] & mask.w[1],
                self.w[2] & mask.w[2],
                self.w[3] & mask.w[3],
            ],
        }
    }
}

/// Key of `XLB_SERVICES`: a virtual service as IPVS identifies it.
///
/// - TCP/UDP/SCTP service: `proto`, `addr` (VIP), `port` (network order; 0 = all ports).
/// - fwmark service: `proto` = [`IPPROTO_IP`](crate::IPPROTO_IP), `addr.w[0]` = the mark
///   (host order), `port` = 0; `af` tells IPv4 or IPv6 marks apart as `-f N -6` does.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub addr: Addr,
    pub port: u16,
    pub proto: u8,
    pub af: u8,
}

/// Service flags, the values of IPVS's `IP_VS_SVC_F_*` so they print and save the same.
pub const SVC_F_PERSISTENT: u32 = 0x0001;
pub const SVC_F_HASHED: u32 = 0x0002;
pub const SVC_F_ONEPACKET: u32 = 0x0004;
pub const SVC_F_SCHED1: u32 = 0x0008;
pub const SVC_F_SCHED2: u32 = 0x0010;
pub const SVC_F_SCHED3: u32 = 0x0020;

/// Value of `XLB_SERVICES`: what the data plane needs to schedule a new connection.
/// Replaced as a whole by userspace on every change, so a packet sees a service either before or
/// after an edit, never a mix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Index into the per-service arrays (`XLB_SVC_STATE`, `XLB_SVC_STATS`, `XLB_SVC_KEYS`).
    pub id: u32,
    /// `SVC_F_*`.
    pub flags: u32,
    /// Persistence timeout in seconds (`-p`).
    pub timeout: u32,
    /// Start and length of this service's scheduling table in `XLB_SCHED_SLOTS`.
    pub sched_off: u32,
    pub sched_len: u32,
    /// Persistence mask applied to the client address (`-M`).
    pub netmask: Addr,
    /// `sched::SCHED_*`.
    pub sched: u8,
    /// Persistence engine (`--pe`): 0 none, [`PE_SIP`].
    pub pe: u8,
    pub _pad: [u8; 2],
}

pub const PE_SIP: u8 = 1;

/// `BPF_F_MMAPABLE`: arrays userspace reads and writes through a shared mapping (whole tables
/// at memory speed instead of one syscall per element).
pub const MAP_F_MMAPABLE: u32 = 1 << 10;

/// Forwarding methods, the values of IPVS's `IP_VS_CONN_F_FWD_MASK` field.
pub const FWD_MASQ: u8 = 0;
pub const FWD_LOCAL: u8 = 1;
pub const FWD_TUNNEL: u8 = 2;
pub const FWD_DROUTE: u8 = 3;
pub const FWD_BYPASS: u8 = 4;

/// Dest flags (`Dest::flags`).
/// The slot is in use (a configured real server). Cleared slots are free for reuse.
pub const DEST_F_IN_USE: u32 = 0x01;
/// IPVS's `IP_VS_DEST_F_AVAILABLE`: the dest is linked to its service (not deleted).
pub const DEST_F_AVAILABLE: u32 = 0x02;
/// IPVS's `IP_VS_DEST_F_OVERLOAD`: above its upper connection threshold.
pub const DEST_F_OVERLOAD: u32 = 0x04;

/// Value of `XLB_DESTS` (an array indexed by dest id): one real server of one service.
/// lbadm writes every field but `flags`; `flags` is shared with the data plane (see
/// [`crate::dest_mem`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dest {
    pub addr: Addr,
    /// Network order.
    pub port: u16,
    /// `FWD_*`.
    pub fwd: u8,
    pub af: u8,
    /// `DEST_F_*`. A word of its own, changed only by atomic OR/AND on both sides: the data
    /// plane sets and lifts OVERLOAD while lbadm adds and deletes the dest.
    pub flags: u32,
    pub weight: i32,
    /// Id of the service this dest belongs to.
    pub svc_id: u32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    /// Tunnel type (`--tun-type`: 0 ipip, 1 gue, 2 gre), port and checksum flags.
    pub tun_type: u8,
    /// The method the dest was given (`FWD_*`, what ipvsadm lists) when `fwd` is `FWD_LOCAL`
    /// because its address is local to the director (lb-user's `local`); unused otherwise.
    pub listed_fwd: u8,
    pub tun_port: u16,
    pub tun_flags: u16,
    pub _pad1: u16,
    /// Last non-zero weight (IPVS `last_weight`: mh keeps a quiesced dest's slots by it).
    pub last_weight: i32,
    /// Its leaf in its service's scheduling tree (`sched::tree`), `sched::tree::NO_LEAF` for
    /// none. Written by userspace; the data plane reads it to update the tree.
    pub tree_leaf: u32,
    /// Insertion sequence: IPVS's list order is newest first, i.e. descending `seq`.
    pub seq: u64,
}

/// Value of `XLB_DEST_NEIGH` (indexed by dest id): the next hop toward the real server as the
/// kernel's FIB and neighbour table last said, cached by the data plane for `NEIGH_TTL_NS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestNeigh {
    pub dmac: [u8; 6],
    pub smac: [u8; 6],
    /// Egress interface.
    pub ifindex: u32,
    /// MTU of the route.
    pub mtu: u32,
    /// `NEIGH_F_*` in the low 16 bits; in the high 16, the low bits of `Config::iface_gen`
    /// when the answer was cached ([`neigh_gen`]).
    pub flags: u32,
    /// Next-hop address (the real server, or the gateway toward it).
    pub nh: Addr,
    /// The director's source address on that route (the outer source of IPIP).
    pub src: Addr,
    /// Coarse monotonic time (ns) after which the cache entry must be looked up again.
    pub expires: u64,
}

/// The FIB gave a complete answer (neighbour MAC included): XDP can send directly.
pub const NEIGH_F_RESOLVED: u32 = 0x1;
/// Route known (egress, next hop) but no neighbour entry yet: the tc slow path resolves it.
pub const NEIGH_F_ROUTED: u32 = 0x2;
/// xlb runs natively on the egress interface (`IFACE_XDP_NATIVE` in `XLB_IFACES` when the
/// answer was cached): an XDP_REDIRECT there is delivered, without asking `XLB_IFACES` per
/// packet.
pub const NEIGH_F_XDP_EGRESS: u32 = 0x4;
/// Where `DestNeigh::flags` keeps the attachment generation its [`NEIGH_F_XDP_EGRESS`] was
/// taken at: the flag is trusted only while `Config::iface_gen` is unchanged since (lbd bumps it
/// whenever an attachment changes).
pub const NEIGH_GEN_SHIFT: u32 = 16;

/// `iface_gen` as `DestNeigh::flags` holds it.
#[inline(always)]
pub const fn neigh_gen(iface_gen: u32) -> u32 {
    iface_gen << NEIGH_GEN_SHIFT
}

/// Whether a cached next hop (`DestNeigh::flags`) knows its egress runs xlb natively, as of
/// attachment generation `iface_gen` (`Config::iface_gen`).
#[inline(always)]
pub const fn neigh_xdp_egress(flags: u32, iface_gen: u32) -> bool {
    flags & NEIGH_F_XDP_EGRESS != 0 && flags & !((1 << NEIGH_GEN_SHIFT) - 1) == neigh_gen(iface_gen)
}

/// What the XDP program writes over a frame's two MAC addresses (the first 12 bytes) when it
/// hands the frame to the kernel for the tc slow path: send it out `ifindex` to IPv4 next hop
/// `nh`, resolving the neighbour. No XDP metadata is needed (many kernels and drivers refuse
/// `bpf_xdp_adjust_meta`), and the MACs are rewritten by the neighbour output anyway. `tag` is
/// `Config::slow_path_tag`, a per-table random value with the multicast bit clear, so a frame
/// from the wire cannot pose as one (and, unmatched, is dropped as addressed to another host).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlowPathMark {
    pub tag: u32,
    pub ifindex: u32,
    /// IPv4 frame: the next hop. IPv6 frame (whose next hop does not fit): 0 for the packet's
    /// own destination (the kernel resolves its route), else the id + 1 of the real server
    /// whose cached next hop (`XLB_DEST_NEIGH`) it is.
    pub nh: u32,
}

/// A slow-path tag: `random` with the first byte's multicast bit clear and locally-administered
/// bit set (a unicast address no NIC has).
pub const fn slow_path_tag(random: u32) -> u32 {
    let mut b = random.to_ne_bytes();
    b[0] = (b[0] & !0x01) | 0x02;
    u32::from_ne_bytes(b)
}

/// Value of `XLB_IFACES` (keyed by ifindex), written by lbd for every interface of its network
/// namespace: what the data plane needs to know of an egress interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceInfo {
    /// Its primary IPv4 address (network order; 0: none): the outer source of IPIP when the
    /// kernel's FIB lookup cannot give the route's source (`CFG_F_FIB_SRC` off).
    pub addr: u32,
    /// `IFACE_XDP_*`: how xlb's XDP program is attached there.
    pub xdp: u32,
    /// `IFACE_TC_*`: how its tc slow path is attached.
    pub tc: u32,
    /// A netlink tc filter's priority and handle (`IFACE_TC_NETLINK`): what lbd removes.
    pub tc_priority: u32,
    pub tc_handle: u32,
    /// Its first global IPv6 address (zero: none): an IPv6 tunnel's outer source when the FIB
    /// cannot give the route's source (as `addr` for IPv4).
    pub addr6: Addr,
}

/// No tc program of xlb's.
pub const IFACE_TC_NONE: u32 = 0;
/// A tcx link (Linux 6.6), pinned beside the XDP link.
pub const IFACE_TC_TCX: u32 = 1;
/// A clsact qdisc's ingress filter, set up through netlink (kernels without tcx).
pub const IFACE_TC_NETLINK: u32 = 2;

/// Not attached: XDP cannot send frames there (a bridge has no XDP transmit, and a driver
/// without an XDP program may not either): frames for it take the tc slow path.
pub const IFACE_XDP_NONE: u32 = 0;
/// Attached in native (driver) mode: XDP_REDIRECT there works.
pub const IFACE_XDP_NATIVE: u32 = 1;
/// Attached in generic (skb) mode: its program's redirects go through the kernel's transmit
/// path, so they reach any interface.
pub const IFACE_XDP_SKB: u32 = 2;
/// Capacity of `XLB_IFACES`.
pub const MAX_IFACES: u32 = 1024;

/// Capacity of `XLB_CLIENT_NEIGH`, the next hops toward NAT clients.
pub const CLIENT_NEIGH_MAX: u32 = 65_536;

/// How long the data plane trusts a cached next hop before asking the kernel's FIB again.
pub const NEIGH_TTL_NS: u64 = 1_000_000_000;
/// How long the data plane waits before asking the FIB again after it had no answer.
pub const NEIGH_RETRY_NS: u64 = 10_000_000;

/// Value of `XLB_DEST_CONNS` (indexed by dest id): connection counts IPVS keeps per dest,
/// updated atomically by the data plane on every state change and by the expiry in `lbd`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestConns {
    // u64: the BPF target has 64-bit atomics only.
    pub active: u64,
    pub inactive: u64,
    pub persist: u64,
}

/// Value of `XLB_SVC_STATE` (indexed by service id): scheduler state shared by all CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SvcState {
    /// rr/wrr: the next pick is `slots[rr_next % len]`; incremented atomically per new
    /// connection by the data plane.
    pub rr_next: u64,
    /// Userspace bookkeeping of the last table build: `rr_next` then, and where IPVS's cursor
    /// rested (dest id + 1, 0 = the list head; wrr's current weight). While `rr_next == base`
    /// nothing was picked since, and the anchor is the cursor.
    pub base: u64,
    pub anchor: u64,
    pub anchor_cw: u64,
}

/// Traffic counters, IPVS's `ip_vs_stats` fields. Per CPU; readers sum them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    /// Bytes of the IP packets (IP header included, link header not), as IPVS counts them.
    pub inbytes: u64,
    pub outbytes: u64,
}

impl Stats {
    /// Adds `o` (another CPU's share) into `self`; readers sum per-CPU values with it.
    pub fn accumulate(&mut self, o: &Stats) {
        self.conns = self.conns.wrapping_add(o.conns);
        self.inpkts = self.inpkts.wrapping_add(o.inpkts);
        self.outpkts = self.outpkts.wrapping_add(o.outpkts);
        self.inbytes = self.inbytes.wrapping_add(o.inbytes);
        self.outbytes = self.outbytes.wrapping_add(o.outbytes);
    }
}

/// Value of `XLB_RATES`: IPVS's rate estimator for one service or dest, kept by `lbd` (the data
/// plane does not touch it): the counters at the last 2-second tick and the smoothed rates,
/// scaled as the kernel scales them (`ip_vs_est.c`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateEst {
    pub last: Stats,
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// Keys of `XLB_RATES`.
pub const fn rate_key_service(id: u32) -> u32 {
    id
}
pub const fn rate_key_dest(id: u32) -> u32 {
    0x8000_0000 | id
}
/// The global totals' estimator.
pub const RATE_KEY_TOTAL: u32 = u32::MAX;

/// Value of `XLB_GLOBAL_STATS[0]`: its counters are declared in their own file.
pub use crate::global_stats::GlobalStats;

/// Key of `XLB_CONNS`: IPVS's connection key, the client side of the flow
/// (protocol, client addr:port, virtual addr:port). Templates (persistence) use the same map:
/// `kind` = [`CONN_KIND_TEMPLATE`], client address masked, `cport` 0.
///
/// IPv4 only, 16 bytes: the kernel hashes and compares the whole key on every lookup, and a
/// 40-byte key with room for IPv6 addresses cost every IPv4 packet that (IPv6 connections, when
/// the data plane forwards IPv6, get a table of their own).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// IPv4 addresses, network order.
    pub caddr: u32,
    pub vaddr: u32,
    /// Network order.
    pub cport: u16,
    pub vport: u16,
    pub proto: u8,
    /// `CONN_KIND_*`: a client-side entry, a reply-side entry (NAT), or a template.
    pub kind: u8,
    pub _pad: u16,
}

impl ConnKey {
    /// The reply-side (NAT) key of a client-side key: the real server `rs`:`rport` where the
    /// VIP was (what a reply from the real server carries as its destination side).
    #[inline(always)]
    pub const fn reply_side(&self, rs: u32, rport: u16) -> ConnKey {
        ConnKey { vaddr: rs, vport: rport, kind: CONN_KIND_OUT, ..*self }
    }
}

/// Key of `XLB_CONNS6`, the IPv6 connection table: [`ConnKey`] with IPv6 addresses. Its own
/// table, so the IPv4 key stays 16 bytes. Same kinds; a template's `caddr` is masked by the
/// service's `-M` prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey6 {
    pub caddr: Addr,
    pub vaddr: Addr,
    /// Network order.
    pub cport: u16,
    pub vport: u16,
    pub proto: u8,
    /// `CONN_KIND_*`.
    pub kind: u8,
    pub _pad: u16,
}

impl ConnKey6 {
    /// The reply-side (NAT) key of a client-side key (see [`ConnKey::reply_side`]).
    #[inline(always)]
    pub const fn reply_side(&self, rs: Addr, rport: u16) -> ConnKey6 {
        ConnKey6 { vaddr: rs, vport: rport, kind: CONN_KIND_OUT, ..*self }
    }
}

/// Value of `XLB_CONNS6`: a [`Conn`] and, in a NAT reply-side entry, the VIP the client
/// addressed (an IPv6 address does not fit `Conn::timeout`, which the IPv4 table uses for
/// it); zero elsewhere.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conn6 {
    pub c: Conn,
    pub vip: Addr,
}

/// The persistence template of an IPv6 connection ([`template_key`]'s rules; the client
/// address masked by the service's prefix).
#[inline(always)]
pub fn template_key6(caddr: &Addr, netmask: &Addr, vaddr: &Addr, proto: u8, svc_port: u16, fwmark: u32) -> ConnKey6 {
    let vport = if svc_port == 21u16.to_be() { 0 } else { svc_port };
    let (vaddr, proto) = if fwmark != 0 { (Addr::v4(fwmark), crate::IPPROTO_IP) } else { (*vaddr, proto) };
    ConnKey6 { caddr: caddr.masked(netmask), vaddr, cport: 0, vport, proto, kind: CONN_KIND_TEMPLATE, _pad: 0 }
}

pub const CONN_KIND_IN: u8 = 0;
pub const CONN_KIND_OUT: u8 = 1;
pub const CONN_KIND_TEMPLATE: u8 = 2;

/// Conn flags.
/// Counted in the dest's `inactive` (else `active`) count.
pub const CONN_F_INACTIVE: u8 = 0x01;
/// No reply seen yet (DR/TUN never see one): the input-only TCP table applies.
pub const CONN_F_NOOUTPUT: u8 = 0x02;
/// Created through a persistence template (IPVS: `cp->control` set): never rescheduled by
/// conn_reuse_mode.
pub const CONN_F_CONTROLLED: u8 = 0x04;
/// Would have assured its persistence template (IPVS `ip_vs_control_assure_ct`): a TCP
/// connection that entered ESTABLISHED, a UDP one a reply passed. lbd's expiry carries it over
/// to the template (`TEMPLATE_S_ASSURED`) when the connection ends.
pub const CONN_F_ASSURED: u8 = 0x08;

/// A template's `state` (IPVS `IP_VS_CTPL_S_*`; `-Lc` shows NONE or ASSURED).
pub const TEMPLATE_S_ASSURED: u8 = 0x01;

/// Value of `XLB_CONNS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conn {
    pub dest_id: u32,
    pub svc_id: u32,
    /// Coarse monotonic time (ns) of the last packet.
    pub last_seen: u64,
    /// Timeout (seconds) of the current state; the entry expires at `last_seen + timeout`.
    /// A NAT reply-side entry has no timeout of its own (it lives as long as its client-side
    /// entry): there this field holds the VIP the client addressed (IPv4, network order), which
    /// for a fwmark service the service key does not tell.
    pub timeout: u32,
    /// `tcp_state::*` (UDP: `STATE_UDP`).
    pub state: u8,
    /// `CONN_F_*`.
    pub flags: u8,
    /// Client-side entry: the real server's port for this connection (network order; NAT
    /// rewrites the destination port to it). Reply-side entry: the virtual port.
    pub port: u16,
    /// Client packets seen (IPVS `in_pkts`): the sync daemon's packet rule counts them.
    pub in_pkts: u32,
    /// What the sync master last sent of it (see `sync::sync_needed`): the state in the low 4
    /// bits, refresh retries in bits 4-5 (IPVS `old_state`, `sync_endtime & 3`).
    pub sync_state: u8,
    pub _pad: u8,
    /// Its expected end time when last sent, seconds modulo 65536 (IPVS `sync_endtime`).
    pub sync_end: u16,
}

/// `XLB_FWMARKS`: what the director's `iptables -t mangle ... -j MARK --set-mark N` rules mark,
/// as (protocol, destination address, destination port or 0 for any) -> mark, read by lbd from
/// `iptables-save`. XDP runs before netfilter, so the data plane classifies with this map.
pub const FWMARK_MAX_RULES: u32 = 4096;

/// `XLB_GATE`: the first question the data plane asks of every TCP/UDP packet, "could this be
/// for a service?", answered by one array element (the kernel inlines array lookups) before any
/// hash lookup, checksum or tail call. The IPv4 address space is hashed into
/// `1 << GATE_SLOTS_LOG2` slots of 4 bits, 16 slots to a `u64` word; a slot's bits say which
/// kind of address some configured address hashing there is. A clear bit proves the packet is
/// for no service (it goes to the kernel at once); a set bit only sends it on to the exact
/// lookups. Each writer owns its bits and changes them with atomic OR/AND: lbadm's commit the
/// VIP and NAT real-server bits, lbd's fwmark sync the fwmark bit.
pub const GATE_SLOTS_LOG2: u32 = 16;
pub const GATE_SLOTS_PER_WORD: u32 = 16;
pub const GATE_WORDS: u32 = (1 << GATE_SLOTS_LOG2) / GATE_SLOTS_PER_WORD;
/// The destination address of an address service (any port, any protocol).
pub const GATE_VIP: u64 = 0x1;
/// The source address of a NAT real server's replies.
pub const GATE_NAT_RS: u64 = 0x2;
/// The destination address of a fwmark rule (`XLB_FWMARKS`).
pub const GATE_FWMARK: u64 = 0x4;

/// The gate slot of IPv4 address `addr` (network order, as in the packet): a multiplicative
/// hash's top bits, the same on both sides.
#[inline(always)]
pub const fn gate_slot(addr: u32) -> u32 {
    addr.wrapping_mul(0x9E37_79B1) >> (32 - GATE_SLOTS_LOG2)
}

/// The gate slot of IPv6 address `w` (four words in network order, as in the packet): its
/// words folded by XOR into one, then [`gate_slot`]. The same on both sides.
#[inline(always)]
pub const fn gate_slot6(w: &[u32; 4]) -> u32 {
    gate_slot(w[0] ^ w[1] ^ w[2] ^ w[3])
}

/// Where slot `slot`'s bits live: (word index, shift).
#[inline(always)]
pub const fn gate_pos(slot: u32) -> (u32, u32) {
    (slot / GATE_SLOTS_PER_WORD, (slot % GATE_SLOTS_PER_WORD) * 4)
}

/// Value of `XLB_CONFIG[0]`: settings userspace writes and the data plane reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Timeouts (seconds) indexed by `tcp_state::*`, plus `STATE_UDP`.
    pub timeouts: [u32; crate::tcp_state::NUM_STATES],
    /// `CFG_F_*`.
    pub flags: u32,
    /// IPVS's sysctls that change forwarding (`/proc/sys/net/ipv4/vs/*`; `SYSCTLS`).
    pub conn_reuse_mode: u8,
    pub expire_nodest_conn: u8,
    pub expire_quiescent_template: u8,
    pub sloppy_tcp: u8,
    /// `lblcr_expiration` (seconds).
    pub lblcr_expiration: u32,
    /// `SlowPathMark::tag` (set by lbd attach when 0).
    pub slow_path_tag: u32,
    /// Bumped by lbd whenever an interface's attachment changes: cached next hops re-check
    /// their egress then (`DestNeigh::iface_gen`).
    pub iface_gen: u32,
    /// IPVS's sync sysctls (`SYNC_SYSCTLS`): `sync_threshold` is the pair (threshold, period).
    pub sync_threshold: u32,
    pub sync_period: u32,
    /// Seconds.
    pub sync_refresh_period: u32,
    pub sync_version: u8,
    pub sync_retries: u8,
    pub _pad: u16,
    pub _reserved: [u32; 3],
}

/// The IPVS sysctls xlb implements (names as under /proc/sys/net/ipv4/vs/, IPVS's defaults in
/// `Config::default`), with their field in `Config`:
/// - conn_reuse_mode (1): a SYN that finds a connection in TIME_WAIT (bit 2: also FIN_WAIT of a
///   DR/TUN connection) not controlled by a persistence template expires it and is scheduled
///   anew; 0 reuses the old connection and real server.
/// - expire_nodest_conn (0): 1 expires a connection whose real server was deleted at its next
///   packet (which is then handled as new: a SYN is scheduled, anything else goes to the
///   kernel); also a SYN finding a connection to a weight-0 server is scheduled anew. 0 drops
///   its packets until it times out.
/// - expire_quiescent_template (0): 1 expires a persistence template whose real server has
///   weight 0, so its clients are scheduled anew; 0 keeps them on the quiesced server.
/// - sloppy_tcp (0): 1 lets any TCP packet but a RST create a connection, not only a SYN.
/// - lblcr_expiration (86400 s): an lblcr server set of more than one member that has not
///   changed for this long loses its most loaded member at its next use.
pub const SYSCTLS: [&str; 5] =
    ["conn_reuse_mode", "expire_nodest_conn", "expire_quiescent_template", "sloppy_tcp", "lblcr_expiration"];

/// Where a sysctl lives in `Config`.
enum SysctlField<'a> {
    Switch(&'a mut u8),
    Seconds(&'a mut u32),
}

impl Config {
    /// The timeout of TCP state (or `STATE_UDP`) `state`, in a form 6.1's verifier accepts.
    #[inline(always)]
    pub fn timeout(&self, state: u8) -> Option<u32> {
        let i = state as usize;
        if i >= crate::tcp_state::NUM_STATES {
            return None;
        }
        const _: () = assert!(crate::tcp_state::NUM_STATES <= 16 && core::mem::size_of::<Config>() >= 16 * 4);
        let i = crate::verifier::masked::<15>(i);
        // SAFETY: i < NUM_STATES (checked above; the mask leaves it unchanged).
        Some(unsafe { *self.timeouts.get_unchecked(i) })
    }

    /// The field of sysctl `name` (one of `SYSCTLS`).
    fn sysctl_field(&mut self, name: &str) -> Option<SysctlField<'_>> {
        use SysctlField::*;
        match name {
            "conn_reuse_mode" => Some(Switch(&mut self.conn_reuse_mode)),
            "expire_nodest_conn" => Some(Switch(&mut self.expire_nodest_conn)),
            "expire_quiescent_template" => Some(Switch(&mut self.expire_quiescent_template)),
            "sloppy_tcp" => Some(Switch(&mut self.sloppy_tcp)),
            "lblcr_expiration" => Some(Seconds(&mut self.lblcr_expiration)),
            _ => None,
        }
    }

    /// The value of sysctl `name`.
    pub fn sysctl(&self, name: &str) -> Option<u32> {
        let mut c = *self;
        c.sysctl_field(name).map(|f| match f {
            SysctlField::Switch(v) => *v as u32,
            SysctlField::Seconds(v) => *v,
        })
    }

    /// Largest value sysctl `name` takes: conn_reuse_mode is a bit set, the other switches are
    /// 0 or 1, lblcr_expiration is seconds (what fits the kernel's jiffies `int` at HZ 1000).
    pub fn sysctl_max(name: &str) -> u32 {
        match name {
            "conn_reuse_mode" => 3,
            "lblcr_expiration" => i32::MAX as u32 / 1000,
            _ => 1,
        }
    }

    /// Sets sysctl `name` (`v` at most [`Config::sysctl_max`]); false for an unknown name.
    pub fn set_sysctl(&mut self, name: &str, v: u32) -> bool {
        match self.sysctl_field(name) {
            Some(SysctlField::Switch(f)) => *f = v.min(u8::MAX as u32) as u8,
            Some(SysctlField::Seconds(f)) => *f = v,
            None => return false,
        }
        true
    }
}

/// The kernel's `bpf_fib_lookup` takes BPF_FIB_LOOKUP_SRC (Linux 6.7): the route's source
/// address comes with the answer. Set by lbd attach from its probe.
pub const CFG_F_FIB_SRC: u32 = 0x2;
/// A master sync daemon runs (`--start-daemon master`): the data plane queues the connections
/// IPVS's rules say to send on `XLB_SYNC_EVENTS`.
pub const CFG_F_SYNC_MASTER: u32 = 0x4;

impl Config {
    /// The sync sysctls the data plane applies.
    #[inline(always)]
    pub fn sync_rules(&self) -> crate::sync::SyncRules {
        crate::sync::SyncRules {
            threshold: self.sync_threshold,
            period: self.sync_period,
            refresh_period: self.sync_refresh_period,
            retries: self.sync_retries as u32,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeouts: crate::tcp_state::DEFAULT_TIMEOUTS,
            flags: 0,
            conn_reuse_mode: 1,
            expire_nodest_conn: 0,
            expire_quiescent_template: 0,
            sloppy_tcp: 0,
            lblcr_expiration: LBLCR_EXPIRATION_S as u32,
            slow_path_tag: 0,
            iface_gen: 0,
            sync_threshold: 3,
            sync_period: 50,
            sync_refresh_period: 0,
            sync_version: 1,
            sync_retries: 0,
            _pad: 0,
            _reserved: [0; 3],
        }
    }
}

/// Value of `XLB_META[0]`: identifies the layout of the pinned maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub layout_version: u32,
    pub _pad: u32,
    /// Next dest insertion sequence number (see `Dest::seq`).
    pub next_seq: u64,
}

/// The position in the ring of recently opened connections (`XLB_HALF_OPEN_CURSOR`, shared by
/// all CPUs, changed with atomic adds): the next slot written, and the oldest one not yet looked
/// at for eviction. Both count up forever; the slot is the count modulo `HALF_OPEN_SLOTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HalfOpenCursor {
    pub head: u64,
    pub tail: u64,
}

/// The persistence template a new connection of a persistent service uses (IPVS
/// `ip_vs_sched_persist`): the client address masked by the service's netmask, client port 0;
/// for a fwmark service (IP, the mark, port 0), which covers every address, port and protocol of
/// the mark; else the VIP, the protocol and the service's port, 0 for a port-0 service and for
/// FTP's control port 21. `svc_port` is in network order.
#[inline(always)]
pub fn template_key(caddr: u32, netmask: &Addr, vaddr: u32, proto: u8, svc_port: u16, fwmark: u32) -> ConnKey {
    let vport = if svc_port == 21u16.to_be() { 0 } else { svc_port };
    let (vaddr, proto) = if fwmark != 0 { (fwmark, crate::IPPROTO_IP) } else { (vaddr, proto) };
    ConnKey { caddr: caddr & netmask.w[0], vaddr, cport: 0, vport, proto, kind: CONN_KIND_TEMPLATE, _pad: 0 }
}

/// How long an expired template that still controls live connections is re-armed for (IPVS
/// `ip_vs_conn_expire`: 60 s), instead of being freed.
pub const TEMPLATE_REARM_S: u32 = 60;

/// Key of `XLB_LBLC`, lblc's cache (`ip_vs_lblc.c`): per service, a packet destination
/// address -> the real server it was last given.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LblcKey {
    pub svc_id: u32,
    pub af: u8,
    pub _pad: [u8; 3],
    pub addr: Addr,
}

/// Value of `XLB_LBLC`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LblcValue {
    pub dest_id: u32,
    pub _pad: u32,
    /// Coarse monotonic ns of the last lookup (lbd drops entries unused for `LBLC_EXPIRATION_S`).
    pub lastuse: u64,
}

/// lblc's cache size (an LRU: a full cache forgets its least recently used address, as the
/// kernel's GC does when its table is over 16384 entries).
pub const LBLC_MAX_ENTRIES: u32 = 65536;
/// `lblc_expiration` (sysctl default, 24 h).
pub const LBLC_EXPIRATION_S: u64 = 86400;

/// Most real servers one lblcr server set holds. The kernel's set is a list without a bound,
/// but it only grows when every member is busy (`lblc_busy`) while another dest is half idle,
/// and loses its most loaded member after `lblcr_expiration` without change; a full set still
/// gives the new connection wlc's pick, it just does not remember it.
pub const LBLCR_SET_MAX: usize = 16;
/// `lblcr_expiration`'s default (24 h; the sysctl is in `Config`): a set of more than one
/// member that was not changed for this long drops its most loaded member at its next use.
pub const LBLCR_EXPIRATION_S: u64 = 86400;

/// Value of `XLB_LBLCR` (key: [`LblcKey`]), lblcr's cache (`ip_vs_lblcr.c`): a packet
/// destination address -> a set of real servers, newest first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LblcrSet {
    /// Coarse monotonic ns of the last lookup.
    pub lastuse: u64,
    /// Coarse monotonic ns of the last change of the set.
    pub lastmod: u64,
    /// Members in `set[..len]`.
    pub len: u32,
    pub _pad: u32,
    pub set: [u32; LBLCR_SET_MAX],
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    // The layouts are an ABI between two compilers (bpfel and the host): pin their sizes.
    #[test]
    fn layout_sizes() {
        assert_eq!(size_of::<Addr>(), 16);
        assert_eq!(size_of::<ServiceKey>(), 20);
        assert_eq!(size_of::<Service>(), 40);
        assert_eq!(size_of::<Dest>(), 64);
        assert_eq!(core::mem::offset_of!(Dest, flags) % 4, 0);
        assert_eq!(size_of::<DestConns>(), 24);
        assert_eq!(size_of::<DestNeigh>(), 64);
        assert_eq!(size_of::<SlowPathMark>(), 12);
        assert_eq!(size_of::<IfaceInfo>(), 36);
        assert_eq!(size_of::<ConnKey>(), 16);
        assert_eq!((size_of::<ConnKey6>(), size_of::<Conn6>()), (40, 48));
        assert_eq!(size_of::<Conn>(), 32);
        assert_eq!(size_of::<crate::sync::SyncDaemon>(), 56);
        assert_eq!(size_of::<Stats>(), 40);
        assert_eq!(size_of::<GlobalStats>(), 40 + 18 * 8);
        assert_eq!(size_of::<HalfOpenCursor>(), 16);
        assert_eq!((size_of::<LblcKey>(), size_of::<LblcValue>()), (24, 16));
        assert_eq!(size_of::<LblcrSet>(), 24 + 4 * LBLCR_SET_MAX);
    }
}
