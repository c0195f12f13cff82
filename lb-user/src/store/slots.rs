//! Room for scheduling tables in `XLB_SCHED_SLOTS`.
use anyhow::bail;
use lb_common as c;

/// Finds room in `XLB_SCHED_SLOTS` for new scheduling tables without touching any table a
/// packet may be reading (every region live at the start of the commit stays intact).
pub(super) struct SlotAllocator {
    used: Vec<(u32, u32)>,
    bump: u32,
    /// The words allocated from: `[start, cap)`.
    start: u32,
    cap: u32,
}

impl SlotAllocator {
    pub(super) fn new(live: &[(u32, u32)]) -> Self {
        Self::within(live, 0, c::MAX_SCHED_SLOTS)
    }

    /// An allocator of the words `[start, cap)` of an array (the scheduling trees' room in
    /// `XLB_SCHED_TREE`).
    pub(super) fn within(live: &[(u32, u32)], start: u32, cap: u32) -> Self {
        let mut used = live.to_vec();
        used.sort_unstable();
        let bump = used.iter().map(|(o, l)| o + l).max().unwrap_or(start).max(start);
        SlotAllocator { used, bump, start, cap }
    }

    pub(super) fn alloc(&mut self, n: u32) -> anyhow::Result<u32> {
        if n == 0 {
            return Ok(0);
        }
        if self.bump.checked_add(n).is_some_and(|e| e <= self.cap) {
            let off = self.bump;
            self.bump += n;
            self.used.push((off, n));
            return Ok(off);
        }
        // Past the end: first fit between the regions in use.
        self.used.sort_unstable();
        let mut start = self.start;
        for &(o, l) in &self.used {
            if o >= start && o - start >= n {
                break;
            }
            start = start.max(o + l);
        }
        if start.checked_add(n).is_none_or(|e| e > self.cap) {
            bail!("scheduling tables full ({} slots)", self.cap - self.start);
        }
        self.used.push((start, n));
        Ok(start)
    }
}
