//! Virtual-service lookup and the choice of a real server for a new connection: persistence
//! templates first (IPVS `ip_vs_sched_persist`), then the service's scheduler.
use lb_common::{
    sched::{
        addr_fold, dh_hash, lblc_busy, lblc_half_idle, mh_hash, rr_slot, sh_hash,
        tree::{self, Climb, RankFold, TreeMem},
        CountRule, DestState, Highest, LcKind, Rank, SetMax,
        SetMin, TwosChoose, TwosTotal, HASH_TAB_MASK, HASH_TAB_SIZE, MH_KEY1, MH_TAB_SIZE, NO_DEST, SCHED_DH, SCHED_FO,
        SCHED_LBLC, SCHED_LBLCR, SCHED_LC, SCHED_MH, SCHED_NQ, SCHED_OVF, SCHED_RR, SCHED_SED, SCHED_SH, SCHED_TWOS,
        SCHED_WLC, SCHED_WRR,
    },
    template_key, template_key6, Addr, Conn, Conn6, Dest, LblcKey, LblcValue, LblcrSet, Service, ServiceKey, AF_INET6, DEST_F_AVAILABLE,
    DEST_F_IN_USE, DEST_F_OVERLOAD, IPPROTO_IP, LBLCR_EXPIRATION_S, LBLCR_SET_MAX, SVC_F_PERSISTENT, SVC_F_SCHED1,
    SVC_F_SCHED2,
};

use core::ops::ControlFlow::{self, Break, Continue};

use aya_ebpf::{helpers::bpf_get_prandom_u32, programs::XdpContext};

use crate::{
    atomic,
    bpf_loop::{for_each, Step},
    conn::expired,
    maps::{
        XLB_CONNS, XLB_CONNS6, XLB_DESTS, XLB_DEST_CONNS, XLB_FWMARKS, XLB_LBLC, XLB_LBLCR, XLB_LBLCR_NEW, XLB_SCHED_SLOTS, XLB_SCHED_TREE, XLB_SERVICES,
        XLB_SVC_STATE,
    },
    parse::Pkt,
};

/// A matched virtual service, the port its key has (`0` for an "all ports" service) and, for a
/// fwmark service, the mark. `'a`: the program run (see [`find_service`]).
pub struct Matched<'a> {
    pub svc: &'a Service,
    pub port: u16,
    /// 0: an address service.
    pub fwmark: u32,
}

/// IPVS `ip_vs_service_find`: the exact (proto, VIP, port) service, else the VIP's port-0
/// ("all ports") service, else the fwmark service of the mark the director's mangle rules give
/// the packet (IPVS looks fwmark up first; a packet that is both marked and matches an address
/// service is rare enough that address services win here, saving a lookup per packet).
#[inline(always)]
///
/// The service is borrowed for as long as the program's context `run`: a hash map value stays
/// valid until the program returns (the kernel frees replaced values after an RCU grace period).
pub fn find_service<'a>(run: &'a XdpContext, p: &Pkt) -> Option<Matched<'a>> {
    let mut key = ServiceKey { addr: p.daddr, port: p.dport, proto: p.proto, af: p.af };
    if let Some(svc) = service(run, &key) {
        return Some(Matched { svc, port: p.dport, fwmark: 0 });
    }
    key.port = 0;
    if let Some(svc) = service(run, &key) {
        return Some(Matched { svc, port: 0, fwmark: 0 });
    }
    key.port = p.dport;
    let mark = match fwmark(&key) {
        Some(m) => m,
        None => {
            key.port = 0;
            fwmark(&key)?
        }
    };
    let fkey = ServiceKey { addr: Addr::v4(mark), port: 0, proto: IPPROTO_IP, af: p.af };
    service(run, &fkey).map(|svc| Matched { svc, port: 0, fwmark: mark })
}

/// The service of `key`, borrowed for as long as the program's context (the run).
#[inline(always)]
fn service<'a>(_run: &'a XdpContext, key: &ServiceKey) -> Option<&'a Service> {
    // SAFETY: a hash map value stays valid until the program returns (RCU), which `'a` (the
    // context's borrow) does not outlive. Userspace replaces a service by a whole
    // new value, and nothing here writes it.
    unsafe { XLB_SERVICES.get(key) }
}

/// The fwmark of `key`, copied out.
#[inline(always)]
fn fwmark(key: &ServiceKey) -> Option<u32> {
    // SAFETY: as in `service`: the value is valid for the run, and read at once.
    unsafe { XLB_FWMARKS.get(key) }.copied()
}

/// Runs `f` on dest `dest_id` if the data plane may send to it: configured, linked to `svc_id`.
/// `None` otherwise.
#[inline(always)]
pub fn usable_dest<R>(dest_id: u32, svc_id: u32, f: impl FnOnce(&Dest) -> R) -> Option<R> {
    let d = XLB_DESTS.get(dest_id)?;
    let want = DEST_F_IN_USE | DEST_F_AVAILABLE;
    if d.flags & want == want && d.svc_id == svc_id { Some(f(d)) } else { None }
}

/// Which program schedules a new connection: each is verified apart, so each stays well inside
/// every kernel's verifier budget (one program with every scheduler reached the 1M-instruction
/// limit on some 6.18 builds). `xlb_new` keeps the cheap ones and hands the others over.
pub const GROUP_NEW: u8 = 0;
/// `xlb_new_set`: lblcr's server sets.
pub const GROUP_SET: u8 = 1;
/// `xlb_new_scan`: the connection-count scans (lc wlc sed nq fo ovf) and lblc (wlc on a miss).
pub const GROUP_SCAN: u8 = 2;
/// `xlb_new_twos`: twos's two weighted draws over the whole table.
pub const GROUP_TWOS: u8 = 3;

/// The program group of scheduler `sched`.
#[inline(always)]
pub const fn group_of(sched: u8) -> u8 {
    match sched {
        SCHED_LBLCR => GROUP_SET,
        SCHED_TWOS => GROUP_TWOS,
        SCHED_LC | SCHED_WLC | SCHED_SED | SCHED_NQ | SCHED_FO | SCHED_OVF | SCHED_LBLC => GROUP_SCAN,
        _ => GROUP_NEW,
    }
}

/// Runs the service's scheduler over its table in `XLB_SCHED_SLOTS` (built by userspace with the
/// rules of `lb_common::sched`). `GROUP`: the program this is (see [`group_of`]); it has only
/// its group's schedulers. `None`: no usable real server.
#[inline(always)]
fn run_scheduler<const GROUP: u8>(svc: &Service, p: &Pkt, now: u64) -> Option<u32> {
    if svc.sched_len == 0 || group_of(svc.sched) != GROUP {
        return None;
    }
    if GROUP == GROUP_SET {
        return lblcr_pick(svc, p, now);
    }
    if GROUP == GROUP_TWOS {
        return twos_pick(svc);
    }
    if GROUP == GROUP_SCAN {
        return match svc.sched {
            SCHED_LBLC => lblc_pick(svc, p, now),
            _ => {
                let kind = match svc.sched {
                    SCHED_LC => LcKind::Lc,
                    SCHED_WLC => LcKind::Wlc,
                    SCHED_SED => LcKind::Sed,
                    _ => LcKind::Nq,
                };
                scan_dests(svc, kind, svc.sched == SCHED_FO || svc.sched == SCHED_OVF)
            }
        };
    }
    match svc.sched {
        // The table is one cycle (rr: the eligible dests; wrr: the expanded weighted cycle),
        // walked by a cursor all CPUs share.
        SCHED_RR | SCHED_WRR => {
            let id = cursor_pick(svc.id, svc.sched_off, svc.sched_len)?;
            if !overloaded(id) {
                return Some(id);
            }
            // IPVS walks on past OVERLOADed dests; the cursor moves with every one skipped.
            let mut probe = CursorProbe { svc_id: svc.id, off: svc.sched_off, len: svc.sched_len, found: NO_DEST };
            for_each(svc.sched_len, &mut probe);
            if probe.found == NO_DEST { None } else { Some(probe.found) }
        }
        SCHED_SH => {
            let fold = addr_fold(p.saddr.w, p.af == AF_INET6);
            let port = if svc.flags & SVC_F_SCHED2 != 0 { u16::from_be(p.sport) } else { 0 };
            hashed_pick(svc, fold, port, svc.flags & SVC_F_SCHED1 != 0)
        }
        SCHED_MH => {
            let fold = addr_fold(p.saddr.w, p.af == AF_INET6);
            let port = if svc.flags & SVC_F_SCHED2 != 0 { u16::from_be(p.sport) } else { 0 };
            maglev_pick(svc, fold, port, svc.flags & SVC_F_SCHED1 != 0)
        }
        SCHED_DH => {
            let fold = addr_fold(p.daddr.w, p.af == AF_INET6);
            let id = *XLB_SCHED_SLOTS.get(svc.sched_off + dh_hash(fold))?;
            if id != NO_DEST && hash_usable(id) { Some(id) } else { None }
        }
        _ => None,
    }
}

/// A connection-count scheduler's pick: the root of the service's scheduling tree when it is
/// usable (O(1)), else one pass over all the service's dests in list order by the same rule
/// (`highest`: fo/ovf's highest weight, else the least-connection rule of `kind`). The tree's
/// root is IPVS's pick (`lb_common::sched::tree`); the pass is for a tree that is missing
/// (being rebuilt), stale after a race between CPUs, or has no candidate, so that no
/// connection is lost to the tree. Both run in [`xlb_count_pick`], which the verifier checks
/// once: the caller sees one answer, not one path per way of finding it.
#[inline(always)]
fn scan_dests(svc: &Service, kind: LcKind, highest: bool) -> Option<u32> {
    let rule = if highest { Highest::new(svc.sched == SCHED_OVF).rule() } else { kind.rule() };
    let id = xlb_count_pick(svc.id, svc.sched_off, svc.sched_len, rule as u32);
    if id == NO_DEST { None } else { Some(id) }
}

/// [`scan_dests`] of service `svc_id` (scheduling table at `off`, `len` slots) under the rule
/// of code `rule` (`lb_common::sched::CountRule`): the dest, or [`NO_DEST`]. A global BPF
/// function. Its frame and its loop's are kept small: they sit on top of the deepest program
/// stacks (lblcr's), and the kernel's 512-byte limit counts every frame of the chain.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn xlb_count_pick(svc_id: u32, off: u32, len: u32, rule: u32) -> u32 {
    let Some(rule) = CountRule::from_code(rule) else {
        return NO_DEST;
    };
    if let Some(id) = tree::root_pick(&Trees(NO_DEST), svc_id, rule) {
        return id;
    }
    let mut walk = FoldWalk { off, len, fold: RankFold::new(rule.coeffs(), svc_id) };
    for_each(len, &mut walk);
    walk.fold.best
}

/// The fallback fold's walk over a scheduling table.
#[repr(C)]
struct FoldWalk {
    off: u32,
    len: u32,
    fold: RankFold,
}

impl Step for FoldWalk {
    #[inline(always)]
    fn step(&mut self, i: u32) -> ControlFlow<()> {
        if i >= self.len {
            return Break(());
        }
        let Some(&id) = XLB_SCHED_SLOTS.get(self.off + i) else {
            return Break(());
        };
        let r = Trees(NO_DEST).rank(id, self.fold.svc_id, self.fold.coeffs);
        self.fold.step(id, r);
        Continue(())
    }
}

/// The data plane's side of the scheduling trees (`lb_common::sched::tree::TreeMem`): the maps.
/// Its field: the dest whose count changes (for [`TreeMem::changed`]; else `NO_DEST`).
pub struct Trees(pub u32);

impl TreeMem for Trees {
    #[inline(always)]
    fn node(&self, i: u32) -> u32 {
        XLB_SCHED_TREE.get(i).copied().unwrap_or(NO_DEST)
    }

    #[inline(always)]
    fn set_node(&mut self, i: u32, v: u32) {
        if let Some(p) = XLB_SCHED_TREE.get_ptr_mut(i) {
            // SAFETY: an element of XLB_SCHED_TREE (an array: never freed), valid for the run; an
            // aligned u32 store, which no reader sees torn.
            unsafe { p.write_volatile(v) };
        }
    }

    #[inline(always)]
    fn rank(&self, id: u32, svc_id: u32, coeffs: u32) -> Rank {
        match (XLB_DESTS.get(id), XLB_DEST_CONNS.get(id)) {
            (Some(d), Some(c)) => tree::rank_of(coeffs, d, c, svc_id),
            _ => Rank::NONE,
        }
    }

    /// The path as a `bpf_loop`: its step is verified once, whatever the depth. (Its context
    /// is kept to 16 bytes: with the callback's frame it sits on top of the deepest program
    /// stacks, and the kernel's 512-byte limit counts every frame of the chain.)
    #[inline(always)]
    fn climb(&mut self, c: &Climb) {
        let mut step = ClimbStep { base: c.base, leaf: c.leaf, svc_id: c.svc_id, coeffs: c.coeffs };
        for_each(c.levels, &mut step);
    }

    /// In a global function ([`xlb_tree_changed`]), by the dest's id: the caller reads nothing.
    #[inline(always)]
    unsafe fn changed(&mut self, dest: *const Dest, what: u8) {
        // Most dests are in no tree (rr, wrr, sh, ...): no call for them (a call and its return
        // cost tens of ns on CPUs with return-thunk mitigations).
        // SAFETY: the caller's pointer is live (trait contract); an aligned u32 read.
        if unsafe { core::ptr::addr_of!((*dest).tree_leaf).read_volatile() } != tree::NO_LEAF {
            xlb_tree_changed(self.0, what as u32);
        }
    }
}

/// A [`Climb`] without its depth (the loop's count).
#[repr(C)]
struct ClimbStep {
    base: u32,
    leaf: u32,
    svc_id: u32,
    coeffs: u32,
}

impl Step for ClimbStep {
    #[inline(always)]
    fn step(&mut self, level: u32) -> ControlFlow<()> {
        let c = Climb { base: self.base, leaf: self.leaf, svc_id: self.svc_id, levels: 0, coeffs: self.coeffs };
        c.step(&mut Trees(NO_DEST), level);
        Continue(())
    }
}

/// Dest `dest_id` changed what `what` says (`lb_common::sched::READS_*`): its scheduling tree's
/// path is recomputed (`lb_common::sched::tree::dest_changed`). A global BPF function, which the
/// verifier checks once per program, on its own (arguments: any values), instead of once for
/// every path to every place a count changes. Returns 0.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn xlb_tree_changed(dest_id: u32, what: u32) -> i32 {
    if let Some(d) = XLB_DESTS.get(dest_id) {
        let (leaf, svc_id) = (d.tree_leaf, d.svc_id);
        tree::leaf_changed(&mut Trees(NO_DEST), leaf, svc_id, what as u8);
    }
    0
}


/// lblc (`ip_vs_lblc_schedule`): the real server cached for the packet's destination address,
/// while it is available, has weight and is not overloaded (`lblc_overloaded`); else wlc's pick,
/// which becomes the cached one.
#[inline(always)]
fn lblc_pick(svc: &Service, p: &Pkt, now: u64) -> Option<u32> {
    let key = LblcKey { svc_id: svc.id, af: p.af, _pad: [0; 3], addr: p.daddr };
    if let Some(e) = XLB_LBLC.get_ptr_mut(&key) {
        // SAFETY: a value of XLB_LBLC from a successful lookup: valid until the program returns
        // (RCU), even if evicted meanwhile; only `lastuse` is written.
        let e = unsafe { &mut *e };
        e.lastuse = now;
        let id = e.dest_id;
        if let Some(weight) = usable_dest(id, svc.id, |d| d.weight)
            && weight > 0
            && !lblc_overloaded(svc, id, weight)
        {
            return Some(id);
        }
    }
    let id = scan_dests(svc, LcKind::Wlc, false)?;
    let _ = XLB_LBLC.insert(&key, &LblcValue { dest_id: id, _pad: 0, lastuse: now }, 0);
    Some(id)
}

/// lblcr (`ip_vs_lblcr_schedule`): the least loaded member of the server set cached for the
/// packet's destination address (`SetMin`), unless it is overloaded (`lblc_overloaded`); then
/// wlc's pick, which joins the set. A set unchanged for `lblcr_expiration` loses its most loaded
/// member (`SetMax`) first. Concurrent updates of one set by two CPUs are not serialized (the
/// kernel takes `sched_lock`): the set then misses a member, and every member is checked
/// against the service before it is used.
#[inline(always)]
fn lblcr_pick(svc: &Service, p: &Pkt, now: u64) -> Option<u32> {
    let key = LblcKey { svc_id: svc.id, af: p.af, _pad: [0; 3], addr: p.daddr };
    let Some(e) = XLB_LBLCR.get_ptr_mut(&key) else {
        let id = scan_dests(svc, LcKind::Wlc, false)?;
        // Built in a per-CPU scratch value, not on the stack (see XLB_LBLCR_NEW).
        if let Some(v) = XLB_LBLCR_NEW.get_ptr_mut(0) {
            // SAFETY: this CPU's element of XLB_LBLCR_NEW (an array: never freed), valid for the
            // run and used by nothing else meanwhile (XDP does not nest on a CPU).
            let v = unsafe { &mut *v };
            *v = LblcrSet::new(id, now);
            let _ = XLB_LBLCR.insert(&key, v, 0);
        }
        return Some(id);
    };
    // SAFETY: a value of XLB_LBLCR from a successful lookup: valid until the program returns (RCU).
    // Concurrent updates of one set by two CPUs are not serialized (see above).
    let e = unsafe { &mut *e };
    e.lastuse = now;
    let mut walk = SetWalk { set: e, svc_id: svc.id, len: e.len, min: SetMin::default(), max: SetMax::default() };
    let n = if (e.len as usize) < LBLCR_SET_MAX { e.len } else { LBLCR_SET_MAX as u32 };
    for_each(n, &mut walk);
    // Only a set of more than one member can shrink: the sysctl is read for those alone.
    if e.len > 1
        && e.shrink_due(now, crate::conn::with_config(|c| c.lblcr_expiration as u64).unwrap_or(LBLCR_EXPIRATION_S) * 1_000_000_000)
        && let Some(m) = walk.max.result()
    {
        e.erase(m, now);
    }
    if let Some((id, weight)) = walk.min.result()
        && !lblc_overloaded(svc, id, weight)
    {
        return Some(id);
    }
    let id = scan_dests(svc, LcKind::Wlc, false)?;
    e.insert(id, now);
    Some(id)
}

/// A walk over an lblcr server set: its least and most loaded members. The set is read in
/// place (its map value, valid for the run), not copied: the program's stack is near its limit.
#[repr(C)]
struct SetWalk {
    set: *const LblcrSet,
    svc_id: u32,
    len: u32,
    min: SetMin,
    max: SetMax,
}

impl Step for SetWalk {
    #[inline(always)]
    fn step(&mut self, i: u32) -> ControlFlow<()> {
        let i = i as usize;
        if i >= self.len as usize {
            return Break(());
        }
        // SAFETY: the set's map value from a successful lookup, valid until the program returns
        // (RCU); another CPU may change a member meanwhile, which is checked as any member is.
        let Some(&id) = (unsafe { &(*self.set).set }).get(i) else {
            return Break(());
        };
        // A member may have been deleted since (the kernel keeps it, unavailable, in its trash).
        if let Some(d) = XLB_DESTS.get(id)
            && d.flags & DEST_F_IN_USE != 0
            && d.svc_id == self.svc_id
            && let Some(state) = state_of(id, d)
        {
            self.min.step(&state);
            self.max.step(&state);
        }
        Continue(())
    }
}

/// twos (`ip_vs_twos_schedule`): the sum of the eligible weights, two random draws, the two
/// weighted choices, the less loaded of them (`lb_common::sched::TwosTotal`/`TwosChoose`).
#[inline(always)]
fn twos_pick(svc: &Service) -> Option<u32> {
    let total = walk_table(svc, TwosTotal::default());
    // SAFETY: bpf_get_prandom_u32 takes no arguments and touches no memory of ours.
    let (r1, r2) = unsafe { (bpf_get_prandom_u32(), bpf_get_prandom_u32()) };
    let choose = walk_table(svc, total.choose(r1, r2)?);
    Some(choose.result())
}

impl DestStep for TwosTotal {
    #[inline(always)]
    fn visit(&mut self, d: &DestState) -> bool {
        self.step(d);
        true
    }
}

impl DestStep for TwosChoose {
    #[inline(always)]
    fn visit(&mut self, d: &DestState) -> bool {
        self.step(d)
    }
}

/// lblc's "overloaded" (`lb_common::sched::lblc_overloaded`) for dest `id` of weight `weight`.
#[inline(always)]
fn lblc_overloaded(svc: &Service, id: u32, weight: i32) -> bool {
    let Some(c) = XLB_DEST_CONNS.get(id) else {
        return true;
    };
    if !lblc_busy(c.active, weight) {
        return false;
    }
    walk_table(svc, HalfIdle(false)).0
}

/// Whether some dest of the table is half idle (lblc's overload test).
struct HalfIdle(bool);

impl DestStep for HalfIdle {
    #[inline(always)]
    fn visit(&mut self, d: &DestState) -> bool {
        self.0 = lblc_half_idle(d.active as u64, d.weight);
        !self.0
    }
}

/// The next slot of the service's cycle, by the shared cursor.
#[inline(always)]
fn cursor_pick(svc_id: u32, off: u32, len: u32) -> Option<u32> {
    if len == 0 {
        return None;
    }
    let st = XLB_SVC_STATE.get_ptr_mut(svc_id)?;
    // SAFETY: `st` is a valid map value pointer (checked by get_ptr_mut); addr_of_mut! only
    // computes the field's address.
    let n = atomic::fetch_add(unsafe { core::ptr::addr_of_mut!((*st).rr_next) }, 1);
    XLB_SCHED_SLOTS.get(off + rr_slot(n, len)).copied()
}

#[inline(always)]
fn overloaded(id: u32) -> bool {
    XLB_DESTS.get(id).is_none_or(|d| d.flags & DEST_F_OVERLOAD != 0)
}

#[repr(C)]
struct CursorProbe {
    svc_id: u32,
    off: u32,
    len: u32,
    found: u32,
}

impl Step for CursorProbe {
    #[inline(always)]
    fn step(&mut self, _k: u32) -> ControlFlow<()> {
        let Some(id) = cursor_pick(self.svc_id, self.off, self.len) else {
            return Break(());
        };
        if overloaded(id) {
            return Continue(());
        }
        self.found = id;
        Break(())
    }
}

/// One dest of a walk over a service's scheduling table ([`walk_table`]): false stops the walk.
trait DestStep {
    fn visit(&mut self, d: &DestState) -> bool;
}

#[repr(C)]
struct TableWalk<B> {
    off: u32,
    len: u32,
    body: B,
}

impl<B: DestStep> Step for TableWalk<B> {
    #[inline(always)]
    fn step(&mut self, i: u32) -> ControlFlow<()> {
        if i >= self.len {
            return Break(());
        }
        let Some(d) = dest_state(self.off + i) else {
            return Break(());
        };
        if self.body.visit(&d) { Continue(()) } else { Break(()) }
    }
}

/// Shows `body` every dest of `svc`'s table in list order (a `bpf_loop`: the verifier checks
/// the step once, not once per dest) until it stops; returns it.
#[inline(always)]
fn walk_table<B: DestStep>(svc: &Service, body: B) -> B {
    let mut walk = TableWalk { off: svc.sched_off, len: svc.sched_len, body };
    for_each(svc.sched_len, &mut walk);
    walk.body
}

/// What a scheduler sees of the dest in slot `slot` (a table holds only available dests).
#[inline(always)]
fn dest_state(slot: u32) -> Option<DestState> {
    let id = *XLB_SCHED_SLOTS.get(slot)?;
    state_of(id, XLB_DESTS.get(id)?)
}

/// What a scheduler sees of dest `id`: weight, OVERLOAD, availability and live counts.
#[inline(always)]
fn state_of(id: u32, d: &Dest) -> Option<DestState> {
    let c = XLB_DEST_CONNS.get(id)?;
    Some(DestState {
        id,
        weight: d.weight,
        last_weight: d.weight,
        overloaded: d.flags & DEST_F_OVERLOAD != 0,
        available: d.flags & DEST_F_AVAILABLE != 0,
        active: c.active as u32,
        inactive: c.inactive as u32,
        addr_fold: 0,
        port: 0,
    })
}

/// sh/dh: a bucket's dest may be used when it has weight and is not overloaded.
#[inline(always)]
fn hash_usable(id: u32) -> bool {
    XLB_DESTS.get(id).is_some_and(|d| d.weight > 0 && d.flags & DEST_F_OVERLOAD == 0)
}

/// sh (`ip_vs_sh_get` / `_get_fallback`): the client's bucket; with sh-fallback, probe further
/// buckets until a usable dest or an empty bucket.
#[inline(always)]
fn hashed_pick(svc: &Service, fold: u32, port: u16, fallback: bool) -> Option<u32> {
    let ihash = sh_hash(fold, port, 0);
    let id = *XLB_SCHED_SLOTS.get(svc.sched_off + ihash)?;
    if id == NO_DEST {
        return None;
    }
    if hash_usable(id) {
        return Some(id);
    }
    if !fallback {
        return None;
    }
    let mut probe = Probe { off: svc.sched_off, fold, port, ihash, found: NO_DEST };
    for_each(HASH_TAB_SIZE as u32, &mut probe);
    if probe.found == NO_DEST { None } else { Some(probe.found) }
}

/// mh (`ip_vs_mh_get` / `_get_fallback`): the client's slot of the 4093-slot Maglev table; with
/// mh-fallback, probe further slots until a usable dest or an empty one. All of it, the primary
/// slot included, runs as a `bpf_loop` callback: the hashing is verified once.
#[inline(always)]
fn maglev_pick(svc: &Service, fold: u32, port: u16, fallback: bool) -> Option<u32> {
    let m = MH_TAB_SIZE as u32;
    let mut probe = MhProbe { off: svc.sched_off, fold, port, fallback: fallback as u16, ihash: 0, found: NO_DEST };
    let n = if fallback { m + 1 } else { 1 };
    for_each(n, &mut probe);
    if probe.found == NO_DEST { None } else { Some(probe.found) }
}

#[repr(C)]
struct MhProbe {
    off: u32,
    fold: u32,
    port: u16,
    /// 1: mh-fallback.
    fallback: u16,
    ihash: u32,
    found: u32,
}

/// Step 0: the client's own slot; step k > 0: fallback probe k - 1.
impl Step for MhProbe {
    #[inline(always)]
    fn step(&mut self, k: u32) -> ControlFlow<()> {
        let m = MH_TAB_SIZE as u32;
        let slot = if k == 0 {
            self.ihash = mh_hash(self.fold, self.port, MH_KEY1, 0) % m;
            self.ihash
        } else {
            let roff = (k - 1 + self.ihash) % m;
            mh_hash(self.fold, self.port, MH_KEY1, roff) % m
        };
        let Some(id) = XLB_SCHED_SLOTS.get(self.off + slot).copied() else {
            return Break(());
        };
        if id == NO_DEST {
            return Break(());
        }
        if hash_usable(id) {
            self.found = id;
            return Break(());
        }
        // (Spelled out: the verifier wants a callback's return provably 0 or 1.)
        if self.fallback == 1 {
            return Continue(());
        }
        Break(())
    }
}

/// sh-fallback's walk over the buckets.
#[repr(C)]
struct Probe {
    off: u32,
    fold: u32,
    port: u16,
    ihash: u32,
    found: u32,
}

impl Step for Probe {
    #[inline(always)]
    fn step(&mut self, k: u32) -> ControlFlow<()> {
        let roff = (k + self.ihash) & HASH_TAB_MASK;
        let Some(id) = XLB_SCHED_SLOTS.get(self.off + sh_hash(self.fold, self.port, roff)).copied() else {
            return Break(());
        };
        if id == NO_DEST {
            return Break(());
        }
        if hash_usable(id) {
            self.found = id;
            return Break(());
        }
        Continue(())
    }
}

/// A template to `dest_id` was made: [`lb_common::conn_start`], as for a connection.
#[inline(always)]
fn template_start(dest_id: u32) {
    if let (Some(d), Some(n)) = (XLB_DESTS.get_ptr_mut(dest_id), XLB_DEST_CONNS.get_ptr_mut(dest_id)) {
        // SAFETY: both point to the dest's elements of XLB_DESTS and XLB_DEST_CONNS (arrays: never
        // freed), valid for the run; every write through them is atomic (lb_common::dest_mem).
        unsafe { lb_common::conn_start::<atomic::Bpf, _>(d, n, lb_common::Held::Persist, &mut Trees(dest_id)) };
    }
}

/// A template to `dest_id` was removed: [`lb_common::conn_end`], as lbd's expiry does.
#[inline(always)]
fn template_end(dest_id: u32) {
    if let (Some(d), Some(n)) = (XLB_DESTS.get_ptr_mut(dest_id), XLB_DEST_CONNS.get_ptr_mut(dest_id)) {
        // SAFETY: both point to the dest's elements of XLB_DESTS and XLB_DEST_CONNS.
        unsafe { lb_common::conn_end::<atomic::Bpf, _>(d, n, lb_common::Held::Persist, &mut Trees(dest_id)) };
    }
}

/// The real server for a new connection of `p` to `svc` (`GROUP`: see [`run_scheduler`]).
#[inline(always)]
pub fn choose_dest<const GROUP: u8>(m: &Matched, p: &Pkt, now: u64) -> Option<u32> {
    let svc = m.svc;
    let persistent = svc.flags & SVC_F_PERSISTENT != 0;
    let key = template_key(p.saddr.w[0], &svc.netmask, p.daddr.w[0], p.proto, m.port, m.fwmark);
    if persistent
        && let Some(t) = XLB_CONNS.get_ptr_mut(&key)
    {
        // SAFETY: a template of XLB_CONNS from a successful lookup: valid until the program returns
        // (RCU).
        let t = unsafe { &mut *t };
        // ip_vs_check_template: a template to a deleted server (or, with
        // expire_quiescent_template, a weight-0 one) is expired.
        let quiesced_expires = crate::conn::with_config(|c| c.expire_quiescent_template != 0).unwrap_or(false);
        let usable = usable_dest(t.dest_id, svc.id, |d| !(quiesced_expires && d.weight == 0)).unwrap_or(false);
        if !expired(t, now) && usable {
            // A new connection through the template restarts its timer.
            t.last_seen = now;
            t.timeout = svc.timeout;
            return Some(t.dest_id);
        }
        // Its count is given back by whoever removes it (lbd's expiry may have).
        let dest_id = t.dest_id;
        if XLB_CONNS.remove(&key).is_ok() {
            template_end(dest_id);
        }
    }
    // One call site: the scheduler's branches are verified once.
    let dest_id = run_scheduler::<GROUP>(svc, p, now)?;
    if persistent {
        let t = Conn { dest_id, svc_id: svc.id, last_seen: now, timeout: svc.timeout, ..Conn::default() };
        if XLB_CONNS.insert(&key, &t, 0).is_ok() {
            template_start(dest_id);
        }
    }
    Some(dest_id)
}

/// [`choose_dest`] for an IPv6 connection: its template (the client masked by the `-M` prefix)
/// lives in `XLB_CONNS6`; the schedulers are the same (sh/dh/mh fold the IPv6 address as the
/// kernel's `ip_vs_*_hashkey`; lblc/lblcr key their caches by the whole address).
#[inline(always)]
pub fn choose_dest6<const GROUP: u8>(m: &Matched, p: &Pkt, now: u64) -> Option<u32> {
    let svc = m.svc;
    let persistent = svc.flags & SVC_F_PERSISTENT != 0;
    let key = template_key6(&p.saddr, &svc.netmask, &p.daddr, p.proto, m.port, m.fwmark);
    if persistent
        && let Some(t) = XLB_CONNS6.get_ptr_mut(&key)
    {
        // SAFETY: a template of XLB_CONNS6 from a successful lookup: valid until the program
        // returns (RCU).
        let t = unsafe { &mut (*t).c };
        let quiesced_expires = crate::conn::with_config(|c| c.expire_quiescent_template != 0).unwrap_or(false);
        let usable = usable_dest(t.dest_id, svc.id, |d| !(quiesced_expires && d.weight == 0)).unwrap_or(false);
        if !expired(t, now) && usable {
            t.last_seen = now;
            t.timeout = svc.timeout;
            return Some(t.dest_id);
        }
        let dest_id = t.dest_id;
        if XLB_CONNS6.remove(&key).is_ok() {
            template_end(dest_id);
        }
    }
    let dest_id = run_scheduler::<GROUP>(svc, p, now)?;
    if persistent {
        let t = Conn { dest_id, svc_id: svc.id, last_seen: now, timeout: svc.timeout, ..Conn::default() };
        if XLB_CONNS6.insert(&key, &Conn6 { c: t, vip: Addr::ZERO }, 0).is_ok() {
            template_start(dest_id);
        }
    }
    Some(dest_id)
}
