//! The fixed bins of the latency histogram.
//!
//! Bin 0 holds durations under 1024 ns; then every power of two from 2^10 ns
//! (about 1 µs) to 2^36 ns (about 68.7 s) is split into four equal bins; the last
//! bin holds everything from 2^36 ns up. A bin's upper edge is at most 25 % above
//! its lower edge, so a percentile read from the bins is at most 25 % too high.

use std::time::Duration;

/// The number of bins.
pub(crate) const BINS: usize = 1 + OCTAVES * SUB + 1;
const FIRST_OCTAVE: u32 = 10;
// Under loom the histogram shrinks to a few bins, so that the models stay small.
const OCTAVES: usize = if cfg!(loom) { 1 } else { 26 };
const SUB: usize = 4;
const SUB_BITS: u32 = 2;
const OVERFLOW_FROM: u64 = 1 << (FIRST_OCTAVE as usize + OCTAVES);

/// The bin of a duration of `nanos` nanoseconds.
#[inline(always)]
pub(crate) fn bin_of(nanos: u64) -> usize {
    // A duration under the first octave counts as 2^10 - 1 ns, whose octave (9) and
    // top sub-bits (3) give bin 0 in the formula below; one past the last octave is
    // the overflow bin, and so is everything after it.
    let x = if nanos < 1 << FIRST_OCTAVE {
        (1 << FIRST_OCTAVE) - 1
    } else {
        nanos
    };
    let octave = 63 - x.leading_zeros();
    let sub = (x >> (octave - SUB_BITS)) as usize & (SUB - 1);
    let bin = (octave as usize * SUB + sub + 1).wrapping_sub(FIRST_OCTAVE as usize * SUB);
    bin.min(BINS - 1)
}

/// The smallest duration of bin `bin`.
pub(crate) fn lower_edge(bin: usize) -> u64 {
    match bin {
        0 => 0,
        b if b >= BINS - 1 => OVERFLOW_FROM,
        b => {
            let octave = FIRST_OCTAVE + ((b - 1) / SUB) as u32;
            let sub = ((b - 1) % SUB) as u64;
            (1u64 << octave) + sub * (1u64 << (octave - SUB_BITS))
        }
    }
}

/// The duration reported for bin `bin`: its upper edge, so that percentiles err on
/// the long side; the last bin, which has none, reports its lower edge.
pub(crate) fn reported(bin: usize) -> Duration {
    if bin >= BINS - 1 {
        Duration::from_nanos(OVERFLOW_FROM)
    } else {
        Duration::from_nanos(lower_edge(bin + 1))
    }
}

/// Saturating nanoseconds of a duration, below `u64::MAX`, which stands for "no
/// slow-call threshold". A duration of 2^34 s (544 years) or more counts as
/// `u64::MAX - 1`: longer than any threshold, and in the last bin.
#[inline(always)]
pub(crate) fn nanos(d: Duration) -> u64 {
    let secs = d.as_secs();
    if secs < 1 << 34 {
        // At most 2^34 × 10^9 + 10^9 - 1 < 2^64 - 1.
        secs * 1_000_000_000 + u64::from(d.subsec_nanos())
    } else {
        u64::MAX - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_contiguous_and_ordered() {
        #[cfg(not(loom))]
        assert_eq!(BINS, 106);
        assert_eq!(bin_of(0), 0);
        assert_eq!(bin_of(1023), 0);
        assert_eq!(bin_of(1024), 1);
        assert_eq!(bin_of(u64::MAX), BINS - 1);
        assert_eq!(bin_of(OVERFLOW_FROM - 1), BINS - 2);
        for b in 0..BINS {
            let lo = lower_edge(b);
            assert_eq!(bin_of(lo), b, "lower edge of {b}");
            if b + 1 < BINS {
                let next = lower_edge(b + 1);
                assert!(next > lo);
                assert_eq!(bin_of(next - 1), b, "upper edge of {b}");
                if b > 0 {
                    // At most 25 % wide.
                    assert!((next - lo) * 4 <= lo, "bin {b} too wide");
                }
            }
        }
    }

    #[test]
    fn nanos_saturate_below_the_no_threshold_value() {
        assert_eq!(nanos(Duration::ZERO), 0);
        assert_eq!(nanos(Duration::new(3, 7)), 3_000_000_007);
        let last = Duration::new((1 << 34) - 1, 999_999_999);
        assert_eq!(nanos(last), last.as_nanos() as u64);
        assert_eq!(nanos(Duration::from_secs(1 << 34)), u64::MAX - 1);
        assert_eq!(nanos(Duration::MAX), u64::MAX - 1);
    }

    #[test]
    fn every_duration_falls_in_the_bin_whose_edges_hold_it() {
        for octave in 0..64 {
            for nanos in [1u64 << octave, (1u64 << octave) - 1, (1u64 << octave) + 1] {
                let b = bin_of(nanos);
                assert!(b < BINS);
                assert!(lower_edge(b) <= nanos, "{nanos} in bin {b}");
                if b + 1 < BINS {
                    assert!(nanos < lower_edge(b + 1), "{nanos} in bin {b}");
                }
            }
        }
    }

    #[test]
    fn reported_value_is_never_below_the_duration() {
        for nanos in [
            0u64,
            1,
            999,
            1024,
            1500,
            10_000,
            123_456_789,
            OVERFLOW_FROM - 1,
        ] {
            let r = reported(bin_of(nanos));
            assert!(r >= Duration::from_nanos(nanos), "{nanos}");
            assert!(
                r.as_nanos() as f64 <= (nanos as f64 * 1.25).max(1024.0),
                "{nanos}"
            );
        }
    }
}
