//! `x % n` for a divisor fixed at construction, without a division instruction.

/// Computes `x % n` with two multiplications: `q` estimates `x / n` from below by at
/// most 2 (the reciprocal is rounded down), and the remainder is corrected.
#[derive(Copy, Clone, Debug)]
pub(crate) struct FastMod {
    n: u64,
    reciprocal: u64,
}

impl FastMod {
    /// For `n >= 1`.
    pub(crate) fn new(n: u64) -> Self {
        let n = n.max(1);
        FastMod {
            n,
            reciprocal: u64::MAX / n,
        }
    }

    #[inline]
    pub(crate) fn rem(&self, x: u64) -> u64 {
        let q = ((x as u128 * self.reciprocal as u128) >> 64) as u64;
        let mut r = x - q * self.n;
        while r >= self.n {
            r -= self.n;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn edges() {
        for n in [1u64, 2, 3, 7, 10, 100, 1000, 999_983, 1_000_000] {
            let m = FastMod::new(n);
            for x in [
                0,
                1,
                n - 1,
                n,
                n + 1,
                u64::MAX,
                u64::MAX - 1,
                u64::MAX / 2,
                1 << 63,
            ] {
                assert_eq!(m.rem(x), x % n, "{x} % {n}");
            }
        }
    }

    proptest! {
        #[test]
        fn matches_the_remainder(n in 1u64..=2_000_000, x: u64) {
            prop_assert_eq!(FastMod::new(n).rem(x), x % n);
        }
    }
}
