//! What one phase of the mixed workload saw, per request kind: successes
//! with their latencies, other statuses, reads that found nothing yet, and
//! transport errors. Pure aggregation; the tasks fill one each and
//! [`PhaseStats::merge`] adds them up.

use std::collections::BTreeMap;
use std::time::Duration;

use super::plan::Kind;
use crate::load::{note_error, percentile};

/// One request kind over the measured window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KindStats {
    /// Responses with the success status (201 for creates, else 200).
    pub ok: u64,
    /// Latencies of the successes, microseconds (sorted once merged).
    pub latencies_us: Vec<u64>,
    /// Reads by id answered 404: the order is not there yet (eventual
    /// consistency), which is not a failure.
    pub not_found: u64,
    /// Any other status, counted per status.
    pub statuses: BTreeMap<u16, u64>,
    /// Connect/send/receive failures and timeouts.
    pub transport_errors: u64,
}

impl KindStats {
    /// Requests that got any answer or failed in transport.
    pub fn requests(&self) -> u64 {
        self.ok + self.not_found + self.failed_statuses() + self.transport_errors
    }

    /// Responses with a status that is neither success nor a tolerated 404.
    pub fn failed_statuses(&self) -> u64 {
        self.statuses.values().sum()
    }

    pub fn latency_us(&self, q: f64) -> Option<u64> {
        percentile(&self.latencies_us, q)
    }

    fn add(&mut self, other: &KindStats) {
        self.ok += other.ok;
        self.latencies_us.extend_from_slice(&other.latencies_us);
        self.not_found += other.not_found;
        for (s, n) in &other.statuses {
            *self.statuses.entry(*s).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
    }
}

/// Every kind of one phase, and the phase's length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseStats {
    kinds: [KindStats; 8],
    /// A few distinct error messages, for diagnosis.
    pub error_samples: Vec<String>,
    /// TCP connections opened.
    pub connects: u64,
    /// Tasks that ran out of orders to act on before the end.
    pub exhausted_tasks: u64,
    /// From the end of the warm-up until the last task finished.
    pub measured: Duration,
}

impl PhaseStats {
    pub fn kind(&self, k: Kind) -> &KindStats {
        &self.kinds[k.index()]
    }

    pub fn kind_mut(&mut self, k: Kind) -> &mut KindStats {
        &mut self.kinds[k.index()]
    }

    pub(crate) fn note_error(&mut self, e: String) {
        note_error(&mut self.error_samples, e);
    }

    /// Adds a task's record (the latencies stay unsorted until [`PhaseStats::finish`]).
    pub fn merge(&mut self, other: &PhaseStats) {
        for k in Kind::ALL {
            self.kinds[k.index()].add(other.kind(k));
        }
        for e in &other.error_samples {
            note_error(&mut self.error_samples, e.clone());
        }
        self.connects += other.connects;
        self.exhausted_tasks += other.exhausted_tasks;
    }

    /// Sorts the latencies for the percentiles.
    pub fn finish(&mut self, measured: Duration) {
        self.measured = measured;
        for k in &mut self.kinds {
            k.latencies_us.sort_unstable();
        }
    }

    /// The kinds in `kinds` as one (latencies sorted).
    pub fn combined(&self, kinds: &[Kind]) -> KindStats {
        let mut all = KindStats::default();
        for k in kinds {
            all.add(self.kind(*k));
        }
        all.latencies_us.sort_unstable();
        all
    }

    /// Per second of the measured window.
    pub fn per_sec(&self, n: u64) -> f64 {
        let secs = self.measured.as_secs_f64();
        if secs > 0.0 {
            n as f64 / secs
        } else {
            0.0
        }
    }

    /// Successful creates and transitions.
    pub fn commands(&self) -> u64 {
        Kind::ALL
            .iter()
            .filter(|k| k.is_command())
            .map(|k| self.kind(*k).ok)
            .sum()
    }

    /// Successful requests of every kind (reads that found nothing included:
    /// they were answered).
    pub fn answered(&self) -> u64 {
        self.kinds.iter().map(|k| k.ok + k.not_found).sum()
    }

    /// Requests of every kind, failures included.
    pub fn requests(&self) -> u64 {
        self.kinds.iter().map(KindStats::requests).sum()
    }

    /// Unexpected statuses of every kind, per status.
    pub fn failed_statuses(&self) -> BTreeMap<u16, u64> {
        let mut out = BTreeMap::new();
        for k in &self.kinds {
            for (s, n) in &k.statuses {
                *out.entry(*s).or_default() += n;
            }
        }
        out
    }

    pub fn transport_errors(&self) -> u64 {
        self.kinds.iter().map(|k| k.transport_errors).sum()
    }

    /// Median and p99 latency of all transitions over those of creates (None
    /// when either has no successes).
    pub fn transition_to_create_latency(&self) -> Option<(f64, f64)> {
        let t = self.combined(&Kind::TRANSITIONS);
        let c = self.kind(Kind::Create);
        let r = |q: f64| Some(t.latency_us(q)? as f64 / c.latency_us(q)?.max(1) as f64);
        Some((r(0.5)?, r(0.99)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(create_lat: &[u64], confirm_lat: &[u64]) -> PhaseStats {
        let mut s = PhaseStats::default();
        let c = s.kind_mut(Kind::Create);
        c.ok = create_lat.len() as u64;
        c.latencies_us = create_lat.to_vec();
        let t = s.kind_mut(Kind::Confirm);
        t.ok = confirm_lat.len() as u64;
        t.latencies_us = confirm_lat.to_vec();
        s
    }

    #[test]
    fn merged_tasks_add_up_per_kind_and_sort_their_latencies() {
        let mut total = PhaseStats::default();
        let mut a = task(&[30, 10], &[5]);
        a.kind_mut(Kind::Get).not_found = 2;
        a.kind_mut(Kind::Get).ok = 1;
        a.kind_mut(Kind::Cancel).statuses.insert(409, 1);
        a.note_error("boom".into());
        let mut b = task(&[20], &[]);
        b.kind_mut(Kind::Cancel).statuses.insert(409, 2);
        b.kind_mut(Kind::List).transport_errors = 1;
        b.note_error("boom".into());
        b.connects = 3;
        total.merge(&a);
        total.merge(&b);
        total.finish(Duration::from_secs(2));
        assert_eq!(total.kind(Kind::Create).ok, 3);
        assert_eq!(total.kind(Kind::Create).latencies_us, [10, 20, 30]);
        assert_eq!(
            total.kind(Kind::Cancel).statuses,
            BTreeMap::from([(409, 3)])
        );
        assert_eq!(total.failed_statuses(), BTreeMap::from([(409, 3)]));
        assert_eq!(total.commands(), 4);
        assert_eq!(total.answered(), 7);
        assert_eq!(total.requests(), 11);
        assert_eq!(total.transport_errors(), 1);
        assert_eq!(total.error_samples, ["boom"]);
        assert_eq!(total.connects, 3);
        assert_eq!(total.per_sec(total.commands()), 2.0);
    }

    #[test]
    fn percentiles_per_kind_are_nearest_rank_over_the_merged_latencies() {
        let mut total = PhaseStats::default();
        total.merge(&task(&(51..=100).collect::<Vec<_>>(), &[]));
        total.merge(&task(&(1..=50).collect::<Vec<_>>(), &[]));
        total.finish(Duration::from_secs(1));
        let c = total.kind(Kind::Create);
        assert_eq!(c.latency_us(0.5), Some(50));
        assert_eq!(c.latency_us(0.99), Some(99));
        assert_eq!(total.kind(Kind::Deliver).latency_us(0.5), None);
    }

    #[test]
    fn the_transition_ratio_compares_all_transitions_with_creates() {
        let mut s = task(&[100, 100, 100, 200], &[150, 150]);
        s.kind_mut(Kind::Deliver).ok = 2;
        s.kind_mut(Kind::Deliver).latencies_us = vec![150, 300];
        s.finish(Duration::from_secs(1));
        let transitions = s.combined(&Kind::TRANSITIONS);
        assert_eq!(transitions.ok, 4);
        assert_eq!(transitions.latencies_us, [150, 150, 150, 300]);
        assert_eq!(s.transition_to_create_latency(), Some((1.5, 1.5)));
        assert_eq!(PhaseStats::default().transition_to_create_latency(), None);
    }

    #[test]
    fn a_phase_without_time_has_no_rate() {
        assert_eq!(PhaseStats::default().per_sec(10), 0.0);
    }
}
