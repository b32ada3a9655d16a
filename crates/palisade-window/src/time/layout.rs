//! The time window's words: what each bit of a counter and of a stripe's current
//! bucket means, and where each word of a stripe lies.
//!
//! # A bucket counter
//!
//! | bits | field | meaning |
//! | --- | --- | --- |
//! | 0–39 | count | the calls (or failures, or slow calls) of the bucket's epoch in this stripe; [`COUNT_MASK`] when it overflowed, and the count is then carried in the stripe's extras |
//! | 40–63 | tag | the low 24 bits of the epoch the count belongs to |
//!
//! A bucket's epoch and its count change together in one atomic step. A stale tag
//! means the bucket still holds an older epoch; the next call that lands in it resets
//! it (one compare-and-swap that also counts that call). Every 2^[`SWEEP_BITS`]
//! epochs the advancing cursor sweeps every bucket, and a jump of 2^22 epochs or more
//! clears them all, so no tag lags the cursor by 2^23 epochs and tags never alias
//! (they would after 2^24; [`is_newer`] compares within that half-range).
//!
//! # A stripe's current bucket (word [`CURRENT`])
//!
//! | bits | field | meaning |
//! | --- | --- | --- |
//! | 0–11 | position | the word, in the stripe, of the bucket's first counter ([`counter`]`(CALLED, i)`, below 4096 as `MAX_BUCKETS` is 1000) |
//! | 12–63 | epoch | the bucket's whole epoch: 52 bits last 142 years of 1 µs buckets |
//!
//! A record finds the word to add to in the word it has just read. [`UNUSED`] (0)
//! marks a stripe no call has been recorded into yet: a snapshot skips its buckets
//! and bins.
//!
//! # A stripe's words
//!
//! | word | what |
//! | --- | --- |
//! | [`CURRENT`] | the current bucket, above |
//! | [`CALLS`] + 3·i + kind | bucket `i`'s counters, `kind` being [`CALLED`], [`FAILED`] or [`SLOW`], side by side so a snapshot reads them in one sweep |
//! | then | the cumulative latency bins of the stripe |
//! | then [`EXTRAS`] words | the counts that left the buckets ([`RETIRED_CALLS`], [`RETIRED_FAILURES`], [`RETIRED_SLOW`]: the totals since creation) and the ignored outcomes ([`IGNORED`]) |
//!
//! Stripes lie at least [`GAP`] words (128 bytes, which covers the adjacent-line
//! prefetch of x86-64 too) from each other, so they never share a cache line.

use std::ops::Index;

use crate::histogram::BINS;
use crate::sync::AtomicU64;

// A bucket counter is one word: the low 24 bits of the bucket's epoch (its tag) and
// a 40-bit count, so that a bucket's epoch and its count change together in one
// atomic step. A stale tag means the bucket still holds an older epoch and is reset
// by the next call that lands in it.
pub(super) const COUNT_BITS: u32 = 40;
pub(super) const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
pub(super) const TAG_BITS: u32 = 24;
pub(super) const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
// Every 2^20 epochs the advancing cursor sweeps every bucket, and a jump of 2^22
// epochs or more clears them all, so no tag lags the cursor by 2^23 epochs and tags
// never alias (they would after 2^24).
pub(super) const SWEEP_BITS: u32 = 20;

// A stripe's current bucket, packed in one word: the epoch above, and in the low
// bits the position in the stripe of the bucket's first counter (`counter(CALLED,
// i)`, below 4096 as `MAX_BUCKETS` is 1000), so that a record finds the word to add
// to in the word it has just read. 52 bits of epoch last 142 years of 1 µs buckets.
pub(super) const POS_BITS: u32 = 12;
pub(super) const POS_MASK: u64 = (1 << POS_BITS) - 1;
const _: () = assert!(counter(SLOW, crate::config::MAX_BUCKETS - 1) < 1 << POS_BITS);

// The layout of a stripe's words. Stripes lie at least `GAP` words (128 bytes, which
// covers the adjacent-line prefetch of x86-64 too) from each other, so they never
// share a cache line.
pub(super) const GAP: usize = 16;
pub(super) const CURRENT: usize = 0;
// The current bucket of a stripe no call has been recorded into yet: a snapshot
// skips its buckets and bins.
pub(super) const UNUSED: u64 = 0;
// Then three counters per bucket, side by side (see `counter`), the cumulative
// latency bins, the counts that left the buckets (for the totals since creation)
// and the ignored outcomes.
pub(super) const CALLS: usize = 1;
// The kinds of counter: calls, failures and slow calls.
pub(super) const CALLED: usize = 0;
pub(super) const FAILED: usize = 1;
pub(super) const SLOW: usize = 2;
pub(super) const RETIRED_CALLS: usize = 0;
pub(super) const RETIRED_FAILURES: usize = 1;
pub(super) const RETIRED_SLOW: usize = 2;
pub(super) const IGNORED: usize = 3;
pub(super) const EXTRAS: usize = 4;

/// A stripe: the counters of the threads whose index falls on it, `stripe[i]` being
/// word `base + i` of the window's words.
#[derive(Copy, Clone)]
pub(super) struct Stripe<'a> {
    pub(super) words: &'a [AtomicU64],
    pub(super) base: usize,
}

impl Index<usize> for Stripe<'_> {
    type Output = AtomicU64;

    #[inline(always)]
    fn index(&self, i: usize) -> &AtomicU64 {
        &self.words[self.base + i]
    }
}

impl<'a> Stripe<'a> {
    pub(super) fn range(&self, first: usize, len: usize) -> &'a [AtomicU64] {
        &self.words[self.base + first..self.base + first + len]
    }
}

/// The word, in a stripe, of the counter of `kind` (`CALLED`, `FAILED` or `SLOW`)
/// of bucket `i`: a bucket's three counters are adjacent, so that a snapshot reads
/// the stripe's counters in one sweep.
#[inline(always)]
pub(super) const fn counter(kind: usize, i: usize) -> usize {
    CALLS + 3 * i + kind
}

/// The latency bins summed over the stripes at the start of an epoch: the window's
/// distribution is the bins now minus those at the start of its oldest epoch.
pub(super) struct Base {
    /// The epoch this base belongs to, or `WRITING` while it is rewritten.
    pub(super) epoch: AtomicU64,
    pub(super) bins: [AtomicU64; BINS],
}

pub(super) const WRITING: u64 = u64::MAX;

/// Sorts the counters of a bucket some of whose words do not hold the expected
/// tag: `counts` are the words with the expected tag flipped off, so a word that
/// held it is its count, and the low bits of any word are its count.
#[inline(always)]
pub(super) fn tally_stale(counts: [u64; 3], in_window: &mut [u64; 3], stale: &mut [u64; 3]) {
    for ((count, in_window), stale) in counts.into_iter().zip(in_window).zip(stale) {
        let fresh = count <= COUNT_MASK;
        *in_window += if fresh { count } else { 0 };
        *stale += if fresh { 0 } else { count & COUNT_MASK };
    }
}

/// The epoch bucket `i` holds in the window that ends at `cursor`.
#[inline]
pub(super) fn expected_epoch(cursor: u64, cursor_index: u64, buckets: u64, i: usize) -> u64 {
    let i = i as u64;
    if i <= cursor_index {
        cursor - cursor_index + i
    } else {
        cursor - cursor_index + i - buckets
    }
}

/// Whether tag `a` is a later epoch than tag `b` (tags within 2^23 epochs).
#[inline]
pub(super) fn is_newer(a: u64, b: u64) -> bool {
    a != b && (a.wrapping_sub(b) & TAG_MASK) < 1 << (TAG_BITS - 1)
}
