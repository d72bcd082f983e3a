//! Member id generation: `<clientId or groupInstanceId>-<uuid-like>`, unique without a random crate.
//! A counter goes through a bijective mix with a per-process seed, so ids never repeat within a
//! process and differ between processes (a restarted kelp does not re-issue an old member's id).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

pub(crate) struct IdGen {
    seed: u64,
    counter: u64,
}

impl IdGen {
    /// A generator whose ids depend only on `seed` (tests).
    pub(crate) fn with_seed(seed: u64) -> Self {
        IdGen { seed, counter: 0 }
    }

    /// A generator seeded from the OS-randomised keys of std's `RandomState` (no clock, no crate).
    pub(crate) fn from_process_entropy() -> Self {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0x6b65_6c70);
        Self::with_seed(hasher.finish())
    }

    /// The seed (consumer groups derive their own member ids from it).
    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    pub(crate) fn next(&mut self, prefix: &str) -> String {
        let bits = self.next_bits(32, 0x5851_f42d_4c95_7f2d);
        let (hi, lo) = ((bits >> 64) as u64, bits as u64);
        format!(
            "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xffff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        )
    }

    /// The next 128 bits: the high 64 are unique per call (a bijection of the counter), the low
    /// 64 are mixed from them with the seed rotated left by `rotation` and `salt` (different
    /// users pass different ones, so their ids differ for one seed).
    pub(crate) fn next_bits(&mut self, rotation: u32, salt: u64) -> u128 {
        self.counter = self.counter.wrapping_add(1);
        // Each step is a bijection of the counter, so `hi` alone is unique per counter value.
        let hi = mix(self
            .seed
            .wrapping_add(self.counter.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        let lo = mix(hi ^ self.seed.rotate_left(rotation) ^ salt);
        (u128::from(hi) << 64) | u128::from(lo)
    }
}

/// splitmix64's finaliser: a bijection on u64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_prefixed_and_uuid_shaped() {
        let mut ids = IdGen::with_seed(7);
        let all: HashSet<String> = (0..10_000).map(|_| ids.next("sarama")).collect();
        assert_eq!(all.len(), 10_000);
        let one = ids.next("c");
        let uuid = one.strip_prefix("c-").unwrap();
        let parts: Vec<usize> = uuid.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12]);
    }

    #[test]
    fn different_seeds_give_different_ids() {
        assert_ne!(IdGen::with_seed(1).next("c"), IdGen::with_seed(2).next("c"));
    }
}
