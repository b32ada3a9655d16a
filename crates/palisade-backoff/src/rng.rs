//! The random number generators jitter draws from.
//!
//! Jitter needs speed, not cryptographic strength: both generators here are
//! [wyrand](https://github.com/wangyi-fudan/wyhash), one 64-bit word of state and a
//! multiply per number, which passes the usual statistical test suites.

use std::cell::Cell;

use rand::{RngCore, SeedableRng};

const WY_INCREMENT: u64 = 0xa076_1d64_78bd_642f;
const WY_MIX: u64 = 0xe703_7ed1_a0b4_28db;

/// One wyrand step: advances `state` and returns the next number.
#[inline(always)]
fn wyrand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(WY_INCREMENT);
    let t = u128::from(*state).wrapping_mul(u128::from(*state ^ WY_MIX));
    ((t >> 64) as u64) ^ (t as u64)
}

#[inline]
fn fill_from_u64(mut next: impl FnMut() -> u64, dst: &mut [u8]) {
    let mut chunks = dst.chunks_exact_mut(8);
    for chunk in &mut chunks {
        chunk.copy_from_slice(&next().to_le_bytes());
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let bytes = next().to_le_bytes();
        rest.copy_from_slice(&bytes[..rest.len()]);
    }
}

/// A small, fast, seedable generator (wyrand): the same seed gives the same
/// sequence on every platform and every run.
///
/// Use it for reproducible jitter in tests and simulations, through
/// [`Backoff::iter_seeded`](crate::Backoff::iter_seeded) or
/// [`Backoff::iter_with_rng`](crate::Backoff::iter_with_rng).
///
/// ```
/// use palisade_backoff::SeededRng;
/// use rand::{RngCore, SeedableRng};
///
/// let mut a = SeededRng::new(7);
/// let mut b = SeededRng::from_seed(7u64.to_le_bytes());
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert_eq!(SeededRng::seed_from_u64(7), SeededRng::seed_from_u64(7));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A generator whose sequence is fixed by `seed`.
    ///
    /// Unlike [`SeedableRng::seed_from_u64`], which mixes the seed first, the seed is
    /// the state itself; both are reproducible.
    #[inline]
    pub const fn new(seed: u64) -> Self {
        SeededRng { state: seed }
    }
}

impl RngCore for SeededRng {
    #[inline]
    fn next_u32(&mut self) -> u32 {
        (wyrand(&mut self.state) >> 32) as u32
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        wyrand(&mut self.state)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        fill_from_u64(|| wyrand(&mut self.state), dst);
    }
}

impl SeedableRng for SeededRng {
    type Seed = [u8; 8];

    #[inline]
    fn from_seed(seed: [u8; 8]) -> Self {
        SeededRng::new(u64::from_le_bytes(seed))
    }
}

thread_local! {
    /// The per-thread state of [`ThreadLocalRng`]; zero until the thread's first draw.
    static STATE: Cell<u64> = const { Cell::new(0) };
}

/// The default generator: a fast per-thread wyrand, seeded once per thread from the
/// operating system's entropy (through `rand::rng()`).
///
/// It is a zero-sized handle: creating one, cloning one or creating a schedule that
/// holds one costs nothing and touches no state; only drawing a number does (one
/// thread-local read and write). It is `Send` and `Sync`, so a schedule that holds
/// it can cross an `.await` in a spawned task; each thread draws from its own
/// sequence.
///
/// This is the default because jitter exists to de-correlate clients, which needs
/// different sequences per process and thread but not cryptographic strength, and
/// because a per-call seed (what some retry crates do) costs more than the jitter.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadLocalRng;

impl ThreadLocalRng {
    #[cold]
    fn seed() -> u64 {
        // Never zero: zero marks an unseeded thread.
        rand::rng().next_u64() | 1
    }

    #[inline]
    fn draw() -> u64 {
        STATE.with(|cell| {
            let mut state = cell.get();
            if state == 0 {
                state = Self::seed();
            }
            let out = wyrand(&mut state);
            cell.set(state);
            out
        })
    }
}

impl RngCore for ThreadLocalRng {
    #[inline]
    fn next_u32(&mut self) -> u32 {
        (Self::draw() >> 32) as u32
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        Self::draw()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        fill_from_u64(Self::draw, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_reproducible_and_fill_matches() {
        let mut a = SeededRng::new(42);
        let mut b = a.clone();
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let mut bytes = [0u8; 29];
        b.fill_bytes(&mut bytes);
        assert_eq!(&bytes[..8], &xs[0].to_le_bytes());
        assert_eq!(&bytes[24..], &xs[3].to_le_bytes()[..5]);
        assert_ne!(xs[0], xs[1]);
        assert_eq!(
            SeededRng::from_seed(42u64.to_le_bytes()),
            SeededRng::new(42)
        );
    }

    #[test]
    fn thread_local_threads_differ() {
        let here: Vec<u64> = (0..4).map(|_| ThreadLocalRng.next_u64()).collect();
        let there: Vec<u64> =
            std::thread::spawn(|| (0..4).map(|_| ThreadLocalRng.next_u64()).collect())
                .join()
                .unwrap();
        assert_ne!(here, there);
        let mut buf = [0u8; 3];
        ThreadLocalRng.fill_bytes(&mut buf);
        let _ = ThreadLocalRng.next_u32();
    }

    #[test]
    fn seeded_bits_are_balanced() {
        // A coarse sanity check of the generator: every bit is set about half the time.
        let mut rng = SeededRng::new(1);
        let mut ones = [0u32; 64];
        let n = 20_000;
        for _ in 0..n {
            let x = rng.next_u64();
            for (bit, count) in ones.iter_mut().enumerate() {
                *count += ((x >> bit) & 1) as u32;
            }
        }
        for (bit, count) in ones.iter().enumerate() {
            let share = f64::from(*count) / f64::from(n);
            assert!((0.47..0.53).contains(&share), "bit {bit}: {share}");
        }
    }
}
