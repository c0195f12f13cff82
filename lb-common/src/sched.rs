//! IPVS's schedulers: names, and the rules both the data plane and its userspace tests use.
//!
//! The data plane does not walk dest lists per packet. Userspace precomputes, per service, a
//! table of dest ids in `XLB_SCHED_SLOTS` from which a new connection's pick costs O(1); the
//! functions here build those tables and define the pick, and [`RrReference`] is the literal
//! IPVS algorithm the tables are tested against.

pub const SCHED_NONE: u8 = 0;
pub const SCHED_RR: u8 = 1;
pub const SCHED_WRR: u8 = 2;
pub const SCHED_LC: u8 = 3;
pub const SCHED_WLC: u8 = 4;
pub const SCHED_LBLC: u8 = 5;
pub const SCHED_LBLCR: u8 = 6;
pub const SCHED_DH: u8 = 7;
pub const SCHED_SH: u8 = 8;
pub const SCHED_SED: u8 = 9;
pub const SCHED_NQ: u8 = 10;
pub const SCHED_FO: u8 = 11;
pub const SCHED_OVF: u8 = 12;
pub const SCHED_MH: u8 = 13;
pub const SCHED_TWOS: u8 = 14;

/// Every IPVS scheduler name and its code.
pub const SCHED_NAMES: [(&str, u8); 14] = [
    ("rr", SCHED_RR),
    ("wrr", SCHED_WRR),
    ("lc", SCHED_LC),
    ("wlc", SCHED_WLC),
    ("lblc", SCHED_LBLC),
    ("lblcr", SCHED_LBLCR),
    ("dh", SCHED_DH),
    ("sh", SCHED_SH),
    ("sed", SCHED_SED),
    ("nq", SCHED_NQ),
    ("fo", SCHED_FO),
    ("ovf", SCHED_OVF),
    ("mh", SCHED_MH),
    ("twos", SCHED_TWOS),
];

/// Schedulers the data plane implements so far. Asking for another one fails the way IPVS fails
/// for a scheduler module it does not have ("Scheduler or persistence engine not found").
pub const IMPLEMENTED: &[u8] = &[SCHED_RR];

pub fn sched_from_name(name: &str) -> Option<u8> {
    SCHED_NAMES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

pub fn sched_name(code: u8) -> &'static str {
    SCHED_NAMES.iter().find(|(_, c)| *c == code).map(|(n, _)| *n).unwrap_or("none")
}

/// What a scheduler needs to know of one dest, in the service's list order (newest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestView {
    pub id: u32,
    pub weight: i32,
    pub overloaded: bool,
}

impl DestView {
    /// IPVS never picks a quiesced (weight 0) or overloaded dest for a new connection.
    #[inline(always)]
    pub const fn eligible(&self) -> bool {
        self.weight > 0 && !self.overloaded
    }
}

/// rr table: the eligible dests in list order. Returns how many slots were written.
/// The pick for the n-th new connection is `slots[n % len]` (see [`rr_slot`]).
pub fn build_rr_table(dests: &[DestView], out: &mut [u32]) -> usize {
    let mut n = 0;
    for d in dests.iter().filter(|d| d.eligible()) {
        if n == out.len() {
            break;
        }
        out[n] = d.id;
        n += 1;
    }
    n
}

/// Index into an rr table of `len` slots for cursor value `counter`.
#[inline(always)]
pub const fn rr_slot(counter: u64, len: u32) -> u32 {
    (counter % len as u64) as u32
}

/// Where the rr counter must stand after the table is rebuilt so the next pick is the one IPVS
/// makes: the first eligible dest after `last` (the dest picked last) in the new list, or the
/// list head when nothing was picked yet or `last` is gone and had no surviving predecessor.
/// `last_pred` is the dest that preceded `last` in the old list, used when `last` was deleted
/// (IPVS moves its cursor to the predecessor).
pub fn rr_resume(new_list: &[DestView], last: Option<u32>, last_pred: Option<u32>) -> u64 {
    let eligible_before = |pos: usize| new_list[..pos].iter().filter(|d| d.eligible()).count() as u64;
    let anchor = match last {
        Some(id) if new_list.iter().any(|d| d.id == id) => Some(id),
        Some(_) => last_pred.filter(|p| new_list.iter().any(|d| d.id == *p)),
        None => None,
    };
    match anchor.and_then(|id| new_list.iter().position(|d| d.id == id)) {
        // Everything eligible up to and including the anchor comes before the next pick.
        Some(pos) => eligible_before(pos + 1),
        None => 0,
    }
}

/// The literal IPVS rr algorithm (`ip_vs_rr.c`): a cursor into the list, walking forward from
/// it to the first eligible dest, wrapping once. Used by tests as the oracle for the tables.
#[derive(Clone, Debug, Default)]
pub struct RrReference {
    /// Id of the dest last picked; `None` = the list head sentinel.
    pub cursor: Option<u32>,
}

impl RrReference {
    pub fn pick(&mut self, list: &[DestView]) -> Option<u32> {
        let n = list.len();
        if n == 0 {
            return None;
        }
        let start = match self.cursor.and_then(|c| list.iter().position(|d| d.id == c)) {
            Some(p) => p + 1,
            None => 0,
        };
        // Walk from the cursor's successor to the end, then from the head up to the cursor.
        for i in 0..n {
            let d = &list[(start + i) % n];
            if d.eligible() {
                self.cursor = Some(d.id);
                return Some(d.id);
            }
        }
        None
    }

    /// IPVS `ip_vs_rr_del_dest`: deleting the cursor's dest moves the cursor to its predecessor.
    pub fn on_delete(&mut self, old_list: &[DestView], deleted: u32) {
        if self.cursor == Some(deleted) {
            let pos = old_list.iter().position(|d| d.id == deleted);
            self.cursor = match pos {
                Some(p) if p > 0 => Some(old_list[p - 1].id),
                _ => None,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: u32, weight: i32) -> DestView {
        DestView { id, weight, overloaded: false }
    }

    fn table_picks(list: &[DestView], counter: &mut u64, n: usize) -> [u32; 16] {
        let mut slots = [0u32; 16];
        let len = build_rr_table(list, &mut slots) as u32;
        let mut out = [u32::MAX; 16];
        for o in out.iter_mut().take(n) {
            *o = slots[rr_slot(*counter, len) as usize];
            *counter += 1;
        }
        out
    }

    #[test]
    fn spec_example_add_a_b_c() {
        // add A, B, C -> list C, B, A -> picks C, B, A, C, B, A
        let list = [d(3, 1), d(2, 1), d(1, 1)];
        let mut c = 0;
        assert_eq!(table_picks(&list, &mut c, 6)[..6], [3, 2, 1, 3, 2, 1]);
        let mut r = RrReference::default();
        let picks: [u32; 6] = core::array::from_fn(|_| r.pick(&list).unwrap_or(0));
        assert_eq!(picks, [3, 2, 1, 3, 2, 1]);
    }

    #[test]
    fn weight_zero_skipped() {
        let list = [d(3, 1), d(2, 0), d(1, 5)];
        let mut c = 0;
        assert_eq!(table_picks(&list, &mut c, 4)[..4], [3, 1, 3, 1]);
    }

    #[test]
    fn resume_after_add_matches_reference() {
        // Pick twice from [B, A], then add C (prepended): IPVS continues after the cursor.
        let before = [d(2, 1), d(1, 1)];
        let after = [d(3, 1), d(2, 1), d(1, 1)];
        let mut r = RrReference::default();
        r.pick(&before);
        r.pick(&before);
        let mut c = rr_resume(&after, r.cursor, None);
        let got = table_picks(&after, &mut c, 5);
        let want: [u32; 5] = core::array::from_fn(|_| r.pick(&after).unwrap_or(0));
        assert_eq!(got[..5], want);
    }

    #[test]
    fn resume_after_deleting_cursor_matches_reference() {
        let before = [d(3, 1), d(2, 1), d(1, 1)];
        let mut r = RrReference::default();
        r.pick(&before); // 3
        r.pick(&before); // 2
        let pred = Some(3);
        let last = r.cursor;
        r.on_delete(&before, 2);
        let after = [d(3, 1), d(1, 1)];
        let mut c = rr_resume(&after, last, pred);
        let got = table_picks(&after, &mut c, 4);
        let want: [u32; 4] = core::array::from_fn(|_| r.pick(&after).unwrap_or(0));
        assert_eq!(got[..4], want);
    }
}
