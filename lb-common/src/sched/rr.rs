//! rr (`ip_vs_rr.c`): a cursor walking the list.

use super::DestView;

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

