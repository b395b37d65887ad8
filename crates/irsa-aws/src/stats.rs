//! Counters of AWS calls by service, operation and outcome, for the operator's metrics.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::classify::Outcome;

/// One counter: how many calls of an operation ended one way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallCount {
    /// `iam`, `sts`, `eks`.
    pub service: &'static str,
    /// e.g. `GetRole`.
    pub operation: &'static str,
    /// How they ended.
    pub outcome: Outcome,
    /// How many.
    pub count: u64,
}

/// Thread-safe call counters.
#[derive(Debug, Default)]
pub struct CallStats {
    counts: Mutex<BTreeMap<(&'static str, &'static str, Outcome), u64>>,
}

impl CallStats {
    /// Counts one call.
    pub fn record(&self, service: &'static str, operation: &'static str, outcome: Outcome) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry((service, operation, outcome)).or_default() += 1;
    }

    /// Every counter, sorted.
    pub fn snapshot(&self) -> Vec<CallCount> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .iter()
            .map(|(&(service, operation, outcome), &count)| CallCount {
                service,
                operation,
                outcome,
                count,
            })
            .collect()
    }

    /// Calls of one operation, whatever their outcome.
    pub fn calls(&self, operation: &str) -> u64 {
        self.snapshot()
            .iter()
            .filter(|c| c.operation == operation)
            .map(|c| c.count)
            .sum()
    }
}
