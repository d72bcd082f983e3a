//! How a topic's id is derived: a version-8 UUID (RFC 9562) from SHA-256 of the topic's name and
//! its incarnation, so every kelp that sees the same topic computes the same id without writing
//! anything, and a topic deleted and created again (a new incarnation) gets a new one. Pure: no
//! I/O, no clock. The layout of the hashed bytes is part of kelp's contract with itself (kelps of
//! two releases must agree): never change it.

use ring::digest::{digest, SHA256};
use uuid::Uuid;

/// Which life of a topic an id is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Incarnation {
    /// From the filer: the SeaweedFS creation time (Unix ns) of the topic's partitions, read from
    /// `/topics/kafka/<topic>/topic.conf`; a recreated topic has new partitions, so a new time.
    Created(i64),
    /// In the filer without a readable `topic.conf` (or no filer entry at all): the name alone.
    Unknown,
    /// Without `--filer`: the n-th time this kelp saw the topic appear (0 for the first).
    Local(u64),
}

/// Hashed before the name so kelp's ids cannot collide with another scheme hashing names.
const DOMAIN: &[u8] = b"kelp topic id v1\0";

/// The topic id of `name` in `incarnation`: never nil, never Kafka's reserved ids (`Uuid.ZERO`,
/// `Uuid.ONE_UUID`, which is `METADATA_TOPIC_ID`), and never one whose Kafka base64 form starts
/// with `-` (Kafka's own `Uuid.randomUuid` skips those, as command lines read them as flags).
pub fn topic_id(name: &str, incarnation: &Incarnation) -> Uuid {
    let tail = match incarnation {
        Incarnation::Created(ns) => format!("created {ns}"),
        Incarnation::Unknown => "unknown".to_string(),
        Incarnation::Local(n) => format!("local {n}"),
    };
    // Length-prefixed, so no name and tail can run into each other.
    let mut input = Vec::with_capacity(DOMAIN.len() + 8 + name.len() + tail.len());
    input.extend_from_slice(DOMAIN);
    input.extend_from_slice(&(name.len() as u64).to_be_bytes());
    input.extend_from_slice(name.as_bytes());
    input.extend_from_slice(tail.as_bytes());
    for salt in 0u8..=255 {
        if salt > 0 {
            input.push(salt);
        }
        let hash = digest(&SHA256, &input);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&hash.as_ref()[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // variant 10xx (RFC 9562)
                                             // Base64 of the first byte's top six bits is `-` (62) for 0xf8..=0xfb.
        if !(0xf8..=0xfb).contains(&bytes[0]) {
            return Uuid::from_bytes(bytes);
        }
    }
    // Unreachable in practice (each try has a 1/64 chance); still a valid, non-reserved id.
    Uuid::from_u128(0x8000_0000_0000_8000_8000_0000_0000_0001)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_UUID: Uuid = Uuid::from_u128(1);

    #[test]
    fn the_same_topic_and_incarnation_give_the_same_id() {
        let a = topic_id("orders", &Incarnation::Created(1_796_314_116_226_572_037));
        let b = topic_id("orders", &Incarnation::Created(1_796_314_116_226_572_037));
        assert_eq!(a, b);
        // Pinned: kelps of every release must compute this exact id (also computed outside
        // Rust: SHA-256 of the documented layout, version and variant bits set).
        assert_eq!(a.to_string(), "6b0d41e4-47e1-886e-b60d-5536e6e9e779");
    }

    #[test]
    fn another_name_or_incarnation_gives_another_id() {
        let base = topic_id("orders", &Incarnation::Created(1));
        assert_ne!(base, topic_id("orders", &Incarnation::Created(2)));
        assert_ne!(base, topic_id("order", &Incarnation::Created(1)));
        assert_ne!(base, topic_id("orders", &Incarnation::Unknown));
        assert_ne!(base, topic_id("orders", &Incarnation::Local(1)));
        assert_ne!(
            topic_id("orders", &Incarnation::Local(0)),
            topic_id("orders", &Incarnation::Local(1))
        );
        // The length prefix keeps name and incarnation apart.
        assert_ne!(
            topic_id("a", &Incarnation::Unknown),
            topic_id("aunknown", &Incarnation::Unknown)
        );
    }

    #[test]
    fn ids_are_valid_version_8_uuids_and_never_reserved() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..5000 {
            let id = topic_id(&format!("t{i}"), &Incarnation::Created(i));
            assert_eq!(id.get_version_num(), 8, "{id}");
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert!(!id.is_nil());
            assert_ne!(id, ONE_UUID);
            assert!(!(0xf8..=0xfb).contains(&id.as_bytes()[0]), "{id}");
            assert!(seen.insert(id), "distinct: {id}");
        }
        let empty = topic_id("", &Incarnation::Unknown);
        assert_eq!(empty.get_version_num(), 8);
    }
}
