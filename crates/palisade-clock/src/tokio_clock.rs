use crate::origin::origin;
use crate::{Clock, Timestamp};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The default clock: tokio's time.
///
/// `now()` reads `tokio::time::Instant::now()`, which follows `tokio::time::pause`,
/// `advance` and `#[tokio::test(start_paused = true)]`; sleeps are tokio timers and
/// need a tokio runtime with the time driver enabled.
///
/// [`recent`](Clock::recent) is the ticker's reading (see the crate docs),
/// except with this crate's `test-util` feature, where it is exact so that it also
/// follows paused time.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Sleep = TokioSleep;

    #[inline]
    fn now(&self) -> Timestamp {
        origin().since(tokio::time::Instant::now().into_std())
    }

    #[inline]
    fn recent(&self) -> Timestamp {
        if cfg!(feature = "test-util") {
            self.now()
        } else {
            crate::ticker::recent()
        }
    }

    #[inline]
    fn sleep_until(&self, deadline: Timestamp) -> TokioSleep {
        TokioSleep::until(deadline)
    }
}

/// The operating system's monotonic clock, which tokio's paused time does not
/// affect. Sleeps are tokio timers.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    type Sleep = TokioSleep;

    #[inline]
    fn now(&self) -> Timestamp {
        origin().precise()
    }

    #[inline]
    fn recent(&self) -> Timestamp {
        crate::ticker::recent()
    }

    #[inline]
    fn sleep_until(&self, deadline: Timestamp) -> TokioSleep {
        TokioSleep::until(deadline)
    }
}

pin_project_lite::pin_project! {
    /// A sleep on tokio's timer, returned by [`TokioClock`] and [`MonotonicClock`].
    ///
    /// It is a tokio timer registered on first poll; dropping it releases the timer.
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct TokioSleep {
        #[pin]
        inner: tokio::time::Sleep,
    }
}

impl TokioSleep {
    fn until(deadline: Timestamp) -> Self {
        let at = tokio::time::Instant::from_std(origin().to_instant(deadline));
        TokioSleep {
            inner: tokio::time::sleep_until(at),
        }
    }

    /// The time this sleep completes at.
    pub fn deadline(&self) -> Timestamp {
        origin().since(self.inner.deadline().into_std())
    }

    /// Moves the deadline of a sleep that may already be pinned.
    pub fn reset(self: Pin<&mut Self>, deadline: Timestamp) {
        let at = tokio::time::Instant::from_std(origin().to_instant(deadline));
        self.project().inner.reset(at);
    }
}

impl Future for TokioSleep {
    type Output = ();

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock;
        let t0 = clock.now();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(clock.now() - t0, Duration::from_secs(5));
        clock.sleep(Duration::from_millis(1500)).await;
        assert_eq!(clock.now() - t0, Duration::from_millis(6500));
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_until_past_deadline_is_ready() {
        let clock = TokioClock;
        let before = clock.now();
        tokio::time::advance(Duration::from_secs(1)).await;
        clock.sleep_until(before).await;
        assert_eq!(clock.now() - before, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_deadline_and_reset() {
        let clock = TokioClock;
        let t0 = clock.now();
        let sleep = clock.sleep(Duration::from_secs(10));
        assert_eq!(sleep.deadline(), t0 + Duration::from_secs(10));
        tokio::pin!(sleep);
        sleep.as_mut().reset(t0 + Duration::from_secs(2));
        sleep.await;
        assert_eq!(clock.now() - t0, Duration::from_secs(2));
    }

    #[test]
    fn the_direct_reading_is_on_the_instant_axis() {
        use std::time::Instant;
        for _ in 0..1000 {
            let before = origin().since(Instant::now());
            let direct = origin().precise();
            let after = origin().since(Instant::now());
            assert!(direct >= before, "{direct:?} is before {before:?}");
            assert!(
                direct - after < Duration::from_millis(50),
                "{direct:?} is far after {after:?}"
            );
        }
    }

    #[test]
    fn recent_is_never_ahead_and_catches_up() {
        let clock = MonotonicClock;
        for _ in 0..1000 {
            let recent = clock.recent();
            let now = clock.now();
            assert!(recent <= now, "recent {recent:?} is ahead of now {now:?}");
            // Same axis as now(): a wrong origin would be off by hours or a day.
            assert!(
                now - recent < Duration::from_secs(10),
                "lag {:?}",
                now - recent
            );
        }
        // The ticker moves: recent() passes an earlier now() after about a tick. The
        // bound only guards against a ticker that never runs.
        let target = clock.now();
        let mut waited = Duration::ZERO;
        while clock.recent() < target {
            assert!(waited < Duration::from_secs(30), "recent() never caught up");
            std::thread::sleep(Duration::from_millis(1));
            waited += Duration::from_millis(1);
        }
        let a = clock.recent();
        assert!(clock.recent() >= a, "recent() went backwards");
    }

    #[test]
    fn monotonic_and_tokio_clocks_share_an_origin() {
        let a = MonotonicClock.now();
        let b = TokioClock.now();
        let c = MonotonicClock.now();
        assert!(a <= b && b <= c);
        // The origin lies a day before the first reading.
        assert!(a.as_duration() >= Duration::from_secs(86_000));
    }

    #[test]
    fn far_deadlines_do_not_panic() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let sleep = TokioClock.sleep_until(Timestamp::MAX);
            tokio::select! {
                _ = sleep => panic!("a sleep until MAX completed"),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        });
    }
}
