//! The connection-count schedulers' trees in `XLB_SCHED_TREE` (`lb_common::sched::tree`): built
//! when a service's table changes, recomputed after an edit no count change reports, and kept up
//! to date by lbd's expiry through the same rule the data plane runs.
use lb_common::{
    self as c, DestConns,
    sched::{
        CountRule, NO_DEST, Rank,
        tree::{self, NO_LEAF, TREE_FIRST_NODE, TreeMem},
    },
};

use super::{MmapArray, Store, slots::SlotAllocator};
use crate::model::Dest;

/// The trees through the mappings (lbd, lbadm).
pub(super) struct StoreTrees<'a> {
    pub(super) dests: &'a MmapArray<c::Dest>,
    pub(super) conns: &'a MmapArray<DestConns>,
    pub(super) tree: &'a MmapArray<u32>,
}

impl TreeMem for StoreTrees<'_> {
    fn node(&self, i: u32) -> u32 {
        self.tree.get(i).unwrap_or(NO_DEST)
    }

    fn set_node(&mut self, i: u32, v: u32) {
        if let Some(p) = self.tree.ptr_field(i) {
            // SAFETY: an aligned word inside the live mapping; the data plane writes these words
            // whole too (a racing write leaves a stale node, see lb_common::sched::tree).
            unsafe { std::ptr::write_volatile(p, v) };
        }
    }

    fn rank(&self, id: u32, svc_id: u32, coeffs: u32) -> Rank {
        match (self.dests.get(id), self.conns.get(id)) {
            (Some(d), Some(c)) => tree::rank_of(coeffs, &d, &c, svc_id),
            _ => Rank::NONE,
        }
    }
}

impl Store {
    pub(super) fn trees(&self) -> StoreTrees<'_> {
        StoreTrees { dests: &self.dests, conns: &self.dest_conns, tree: &self.tree }
    }

    /// The trees live at the start of a commit (the data plane may be reading and updating
    /// them): `(base, words)` of every tree a service of the services map points to.
    pub(super) fn live_tree_regions(&self) -> anyhow::Result<Vec<(u32, u32)>> {
        let mut v = Vec::new();
        for item in self.services.iter() {
            let (_, s) = item?;
            let base = self.tree.get(s.id).unwrap_or(0);
            if base < TREE_FIRST_NODE {
                continue;
            }
            if let Some((_, levels)) = self.tree.get(base).and_then(tree::parse_header) {
                v.push((base, 2 << levels));
            }
        }
        Ok(v)
    }

    /// A tree allocator that leaves the live trees alone.
    pub(super) fn tree_allocator(&self) -> anyhow::Result<SlotAllocator> {
        Ok(SlotAllocator::within(&self.live_tree_regions()?, TREE_FIRST_NODE, tree::MAX_SCHED_TREE))
    }

    /// Service `svc_id` (scheduler `sched_code`, dests `dests` in list order) was written; its
    /// scheduling table was rebuilt as `table` (`None`: unchanged). A rebuilt table of a
    /// connection-count scheduler gets a new tree in a fresh region, built from the live counts,
    /// with its dests' leaves placed, then published; any other scheduler's table none. Returns
    /// whether the tree is to be refreshed once the service's new value is in place
    /// ([`Store::refresh_tree`]): after a new tree (for the changes that went to the old one
    /// meanwhile), or after `edited` (weights, thresholds: OVERLOAD may have been lifted).
    pub(super) fn update_tree(
        &mut self,
        svc_id: u32,
        sched_code: u8,
        dests: &[Dest],
        table: Option<&[u32]>,
        edited: bool,
        alloc: &mut SlotAllocator,
    ) -> anyhow::Result<bool> {
        let rule = CountRule::of_sched(sched_code);
        let Some(table) = table else {
            return Ok(rule.is_some() && edited);
        };
        let base = match rule {
            Some(rule) if !table.is_empty() => {
                let base = alloc.alloc(tree::tree_words(table.len() as u32))?;
                let mut t = self.trees();
                tree::build(&mut t, base, rule, svc_id, table);
                base
            }
            _ => 0,
        };
        // Leaves first, then the base: an update between the two recomputes a path of the old
        // tree (harmless) and the refresh catches it.
        let leaf_of: std::collections::HashMap<u32, u32> =
            if base == 0 { Default::default() } else { table.iter().enumerate().map(|(i, id)| (*id, i as u32)).collect() };
        for d in dests {
            self.dests.set_tree_leaf(d.id, leaf_of.get(&d.id).copied().unwrap_or(NO_LEAF))?;
        }
        self.tree.set(svc_id, base)?;
        Ok(base != 0)
    }

    /// Recomputes service `svc_id`'s tree from the live state of its dests.
    pub(super) fn refresh_tree(&mut self, svc_id: u32) {
        let base = self.tree.get(svc_id).unwrap_or(0);
        if base >= TREE_FIRST_NODE {
            tree::refresh(&mut self.trees(), base, svc_id);
        }
    }

    /// Recomputes every service's tree from the live counts: in each of lbd's periodic passes
    /// (the expiry), so that a node left stale by racing updates (see lb_common::sched::tree) or
    /// a count changed behind the rules' back (a tool writing the maps) is healed within one lbd
    /// interval. O(dests of the trees). lbadm's commands only refresh the trees they edit.
    pub(super) fn refresh_trees(&mut self) -> anyhow::Result<()> {
        let mut ids = Vec::new();
        for item in self.services.iter() {
            ids.push(item?.1.id);
        }
        for id in ids {
            self.refresh_tree(id);
        }
        Ok(())
    }

    /// Service `svc_id` is gone: no tree.
    pub(super) fn drop_tree(&mut self, svc_id: u32) -> anyhow::Result<()> {
        if self.tree.get(svc_id).is_some_and(|b| b != 0) {
            self.tree.set(svc_id, 0)?;
        }
        Ok(())
    }
}

