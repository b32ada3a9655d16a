//! The closed state's sliding window: the one place that knows the window type.

use std::collections::VecDeque;
use std::time::Duration;

use palisade_classify::OutcomeKind;
use palisade_clock::Clock;

use crate::config::WindowConfig;
use crate::sync::Mutex;

/// What the trip rules read from the window.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow_calls: u64,
}

#[derive(Debug)]
pub(crate) struct ClosedWindow<C> {
    shape: WindowConfig,
    slow: Option<Duration>,
    clock: C,
    inner: Mutex<VecDeque<(u64, OutcomeKind, bool)>>,
}

impl<C: Clock> ClosedWindow<C> {
    pub(crate) fn new(shape: WindowConfig, slow: Option<Duration>, clock: C) -> Self {
        ClosedWindow {
            shape,
            slow,
            clock,
            inner: Mutex::new(VecDeque::new()),
        }
    }

    #[inline]
    pub(crate) fn record(&self, kind: OutcomeKind, elapsed: Option<Duration>) {
        let slow = matches!((self.slow, elapsed), (Some(t), Some(e)) if e >= t);
        let now = self.clock.recent().as_nanos();
        let mut q = self.inner.lock();
        q.push_back((now, kind, slow));
        self.trim(&mut q, now);
    }

    fn trim(&self, q: &mut VecDeque<(u64, OutcomeKind, bool)>, now: u64) {
        match self.shape {
            WindowConfig::Count { size } => {
                while q.len() > size as usize {
                    q.pop_front();
                }
            }
            WindowConfig::Time {
                buckets,
                bucket_width,
            } => {
                let span = bucket_width.as_nanos() as u64 * u64::from(buckets);
                while q
                    .front()
                    .is_some_and(|(t, _, _)| now.saturating_sub(*t) >= span)
                {
                    q.pop_front();
                }
            }
        }
    }

    pub(crate) fn counts(&self) -> Counts {
        let now = self.clock.recent().as_nanos();
        let mut q = self.inner.lock();
        self.trim(&mut q, now);
        let mut c = Counts::default();
        for (_, kind, slow) in q.iter() {
            c.calls += 1;
            c.failures += u64::from(*kind == OutcomeKind::Failure);
            c.slow_calls += u64::from(*slow);
        }
        c
    }

    pub(crate) fn reset(&self) {
        self.inner.lock().clear();
    }
}
