//! Building a service's scheduling table for the data plane (the slots it picks from) and the
//! cursor that makes its next picks the ones kernel IPVS would make. The rules are
//! `lb_common::sched`'s; this is where a table change meets the state left by the old one.
use anyhow::bail;
use lb_common::{
    sched::{self, DestView, HASH_TAB_SIZE, NO_DEST},
    SvcState,
};

/// What survives of a service's old table: its dest list, its slots and its cursor state.
pub struct OldTable<'a> {
    pub views: &'a [DestView],
    pub slots: &'a [u32],
    pub state: SvcState,
}

pub struct Built {
    pub slots: Vec<u32>,
    pub state: SvcState,
}

/// The dest IPVS's cursor points at for `old` (`None`: the list head), and for wrr the
/// current weight: the stored anchor when nothing was picked since the table was built, else
/// the dest picked last.
fn cursor_of(sched_code: u8, old: &OldTable) -> (Option<u32>, i32) {
    let st = &old.state;
    if st.rr_next == st.base || old.slots.is_empty() {
        let anchor = if st.anchor == 0 { None } else { Some((st.anchor - 1) as u32) };
        return (anchor, st.anchor_cw as i32);
    }
    if sched_code == sched::SCHED_WRR {
        return match sched::wrr_slot_state(old.views, st.rr_next - 1) {
            Some((cl, cw)) => (Some(cl), cw),
            None => (None, st.anchor_cw as i32),
        };
    }
    let slot = sched::rr_slot(st.rr_next - 1, old.slots.len() as u32) as usize;
    (old.slots.get(slot).copied(), 0)
}

fn anchored(rr_next: u64, anchor: Option<u32>, cw: i32) -> SvcState {
    SvcState { rr_next, base: rr_next, anchor: anchor.map_or(0, |a| a as u64 + 1), anchor_cw: cw as u64 }
}

/// The table of scheduler `sched_code` over `views` (the service's dests, newest first; for mh
/// also their full `states`, in the same order: addresses, ports and last weights place them in
/// the Maglev table). `old` is the table being replaced (None for a new service, whose dests'
/// one-by-one additions decide wrr's starting weight).
pub fn build(sched_code: u8, views: &[DestView], states: &[sched::DestState], old: Option<&OldTable>) -> anyhow::Result<Built> {
    match sched_code {
        sched::SCHED_RR => {
            let mut slots = vec![0u32; views.len()];
            let n = sched::build_rr_table(views, &mut slots);
            slots.truncate(n);
            let (last, pred) = match old {
                Some(o) => {
                    let (last, _) = cursor_of(sched_code, o);
                    let pred = last.and_then(|l| {
                        let pos = o.views.iter().position(|d| d.id == l)?;
                        pos.checked_sub(1).map(|i| o.views[i].id)
                    });
                    (last, pred)
                }
                None => (None, None),
            };
            let rr_next = sched::rr_resume(views, last, pred);
            // Where IPVS's cursor now rests: the last dest if it survived, else its predecessor.
            let anchor = match last {
                Some(l) if views.iter().any(|d| d.id == l) => Some(l),
                Some(_) => pred.filter(|p| views.iter().any(|d| d.id == *p)),
                None => None,
            };
            Ok(Built { slots, state: anchored(rr_next, anchor, 0) })
        }
        sched::SCHED_WRR => {
            let len = sched::wrr_cycle_len(views) as usize;
            let mut slots = vec![0u32; len];
            let Some(n) = sched::build_wrr_table(views, &mut slots) else {
                bail!("the wrr cycle of this service would need {len} slots (limit {})", sched::WRR_MAX_SLOTS);
            };
            slots.truncate(n);
            // Every add/edit/delete: cl := head and cw by the kernel's update rule, from the
            // state the old table left (a new service: dests added one by one, oldest first).
            let cw = match old {
                Some(o) => sched::wrr_update_cw(cursor_of(sched_code, o).1, views),
                None => {
                    let mut by_age: Vec<DestView> = views.to_vec();
                    by_age.reverse();
                    let mut cw = 0;
                    for k in 1..=by_age.len() {
                        let mut list: Vec<DestView> = by_age[..k].to_vec();
                        list.reverse();
                        cw = sched::wrr_update_cw(cw, &list);
                    }
                    cw
                }
            };
            let rr_next = sched::wrr_cursor(views, None, cw);
            Ok(Built { slots, state: anchored(rr_next, None, cw) })
        }
        // Connection-count schedulers scan the eligible dests in list order.
        // lblc, lblcr: their caches live in XLB_LBLC, XLB_LBLCR; a miss is a wlc scan of this
        // list (lblcr's server sets hold dest ids). twos draws from this list.
        sched::SCHED_LC
        | sched::SCHED_WLC
        | sched::SCHED_SED
        | sched::SCHED_NQ
        | sched::SCHED_FO
        | sched::SCHED_OVF
        | sched::SCHED_LBLC
        | sched::SCHED_LBLCR
        | sched::SCHED_TWOS => {
            let slots = views.iter().filter(|d| d.eligible()).map(|d| d.id).collect();
            Ok(Built { slots, state: SvcState::default() })
        }
        sched::SCHED_SH | sched::SCHED_DH => {
            let mut t = [NO_DEST; HASH_TAB_SIZE];
            if sched_code == sched::SCHED_SH {
                sched::build_sh_table(views, &mut t);
            } else {
                sched::build_dh_table(views, &mut t);
            }
            let slots = if views.is_empty() { Vec::new() } else { t.to_vec() };
            Ok(Built { slots, state: SvcState::default() })
        }
        sched::SCHED_MH => {
            let mut t = Box::new([NO_DEST; sched::MH_TAB_SIZE]);
            let mut setup = vec![sched::MhSetup::default(); states.len()];
            if !sched::build_mh_table(states, &mut t, &mut setup) {
                bail!("mh table setup failed");
            }
            let slots = if views.is_empty() { Vec::new() } else { t.to_vec() };
            Ok(Built { slots, state: SvcState::default() })
        }
        // Accepted only with XLB_ALLOW_ANY_SCHEDULER (control-plane testing): no table, so the
        // data plane schedules no new connection for the service.
        _ => Ok(Built { slots: Vec::new(), state: SvcState::default() }),
    }
}
