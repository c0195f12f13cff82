//! IPVS's rate estimator over the table's counters (lbd ticks it).
use std::collections::HashSet;

use lb_common as c;

use super::Store;
use crate::model::{Counters, Rates};

impl Store {
    pub(super) fn rate_of(&self, key: u32) -> Rates {
        self.rates.get(&key, 0).map(|e| crate::estimator::read(&e)).unwrap_or_default()
    }

    /// A new or zeroed service or real server: its estimator starts from zero counters, as
    /// IPVS's (`ip_vs_zero_estimator`), so what it counts before lbd's next tick is in that
    /// tick's rate. Without an estimator (lbd never ticked this table), the next tick starts one
    /// from the counters as they are.
    pub(super) fn reset_rate(&mut self, key: u32) {
        let _ = self.rates.insert(key, c::RateEst::default(), 0);
    }

    /// One tick of IPVS's rate estimator over every service, dest and the totals (lbd runs it
    /// every `estimator::TICK_SECS`); estimators of ids no longer in the table are dropped.
    pub fn tick_rates(&mut self) -> anyhow::Result<()> {
        let t = self.load()?;
        let mut live = HashSet::new();
        let mut entries: Vec<(u32, Counters)> = vec![(c::RATE_KEY_TOTAL, t.totals)];
        for s in &t.services {
            entries.push((c::rate_key_service(s.id), s.stats));
            for d in &s.dests {
                entries.push((c::rate_key_dest(d.id), d.stats));
            }
        }
        for (key, now) in entries {
            live.insert(key);
            let e = match self.rates.get(&key, 0) {
                Ok(mut e) => {
                    crate::estimator::tick(&mut e, &now);
                    e
                }
                Err(_) => crate::estimator::start(&now),
            };
            self.rates.insert(key, e, 0)?;
        }
        let stale: Vec<u32> = self.rates.keys().filter_map(|k| k.ok()).filter(|k| !live.contains(k)).collect();
        for k in stale {
            let _ = self.rates.remove(&k);
        }
        Ok(())
    }
}
