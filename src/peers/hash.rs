//! Rendezvous (highest-random-weight) hashing: a group is owned by the live peer whose weight for
//! it is highest. Every kelp computes the same owner from the same live set, and when a peer comes
//! or goes only the groups it wins or held move. The hash is spelled out here (FNV-1a, then a
//! 64-bit finalizer) so that it never changes with the Rust version or the process.

/// The weight of `peer` for `group`.
pub fn weight(peer: &str, group: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in peer.bytes().chain([0xff]).chain(group.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV alone mixes the last bytes poorly; the splitmix64 finalizer spreads them.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The owner of `group` among `peers` (ties, which need equal weights, go to the smaller id).
pub fn owner<'a>(peers: &'a [String], group: &str) -> Option<&'a str> {
    peers
        .iter()
        .map(|p| (weight(p, group), std::cmp::Reverse(p.as_str())))
        .max()
        .map(|(_, std::cmp::Reverse(p))| p)
}

/// The lease bucket of `group` among `buckets` (at least 1): groups share an ownership lease per
/// bucket, so the lease traffic does not grow with the number of groups.
pub fn bucket(group: &str, buckets: u32) -> u32 {
    (weight("bucket", group) % u64::from(buckets.max(1))) as u32
}

/// The rendezvous key of a bucket: every group of the bucket has the same preferred owner.
pub fn bucket_key(bucket: u32) -> String {
    format!("bucket-{bucket}")
}

/// The preferred owner of `group` among `peers`: the owner of its bucket.
pub fn group_owner<'a>(peers: &'a [String], group: &str, buckets: u32) -> Option<&'a str> {
    owner(peers, &bucket_key(bucket(group, buckets)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:9094")).collect()
    }

    #[test]
    fn weights_are_fixed_values() {
        // Pinned (checked against an independent implementation): a change here would split
        // groups between kelps of different versions.
        assert_eq!(weight("127.0.0.1:9094", "g"), 0xa49e_1316_4d84_916b);
        assert_eq!(weight("10.0.0.1:9094", "orders"), 0x6ce1_9948_8a8f_e1d3);
    }

    #[test]
    fn the_owner_does_not_depend_on_list_order() {
        let mut p = peers(5);
        let before: Vec<_> = (0..200)
            .map(|i| owner(&p, &format!("g{i}")).map(str::to_string))
            .collect();
        p.reverse();
        let after: Vec<_> = (0..200)
            .map(|i| owner(&p, &format!("g{i}")).map(str::to_string))
            .collect();
        assert_eq!(before, after);
        assert_eq!(owner(&[], "g"), None);
    }

    #[test]
    fn groups_spread_over_peers() {
        let p = peers(4);
        let mut counts = std::collections::HashMap::new();
        for i in 0..4000 {
            *counts
                .entry(owner(&p, &format!("group-{i}")).unwrap())
                .or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 4);
        for (peer, n) in counts {
            assert!((800..1200).contains(&n), "{peer} owns {n} of 4000");
        }
    }

    #[test]
    fn only_the_groups_of_a_departed_or_added_peer_move() {
        let all = peers(4);
        let three: Vec<String> = all[..3].to_vec();
        for i in 0..2000 {
            let g = format!("g-{i}");
            let with4 = owner(&all, &g).unwrap();
            let with3 = owner(&three, &g).unwrap();
            if with4 != all[3] {
                assert_eq!(with4, with3, "{g} moved though its owner stayed");
            }
        }
    }
}

#[cfg(test)]
mod bucket_tests {
    use super::*;

    #[test]
    fn buckets_spread_groups_and_every_group_of_a_bucket_has_one_owner() {
        let mut counts = vec![0u32; 32];
        for i in 0..32_000 {
            counts[bucket(&format!("group-{i}"), 32) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (800..1200).contains(&n)),
            "{counts:?}"
        );
        let peers: Vec<String> = (0..3).map(|i| format!("10.0.0.{i}:9094")).collect();
        for i in 0..1000 {
            let g = format!("g-{i}");
            assert_eq!(
                group_owner(&peers, &g, 32),
                owner(&peers, &bucket_key(bucket(&g, 32)))
            );
        }
        assert_eq!(bucket("anything", 0), 0, "no buckets means one");
    }
}
