//! The topic metadata the consumer coordinator assigns from (Kafka's `TopicsImage`): topic ids,
//! names and partition counts, supplied by the shell; and regex subscriptions (RE2 syntax, matched
//! against whole topic names like Kafka's RE2J `matches()`). It must not fetch metadata itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use regex_automata::meta::Regex;
use uuid::Uuid;

/// One topic as the cluster has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub id: Uuid,
    pub partitions: i32,
}

/// Every topic the coordinator may assign, by name and by id.
#[derive(Clone, Debug, Default)]
pub struct Topics {
    by_name: BTreeMap<String, TopicInfo>,
    names: HashMap<Uuid, String>,
}

impl Topics {
    /// `(name, id, partition count)` triples; a topic with a nil id or no partitions is left out
    /// (it cannot be assigned by id), and of two entries with one name the last wins.
    pub fn new(topics: impl IntoIterator<Item = (String, Uuid, i32)>) -> Self {
        let mut t = Topics::default();
        for (name, id, partitions) in topics {
            if id.is_nil() || partitions <= 0 {
                continue;
            }
            if let Some(old) = t.by_name.insert(name.clone(), TopicInfo { id, partitions }) {
                t.names.remove(&old.id);
            }
            t.names.insert(id, name);
        }
        t
    }

    pub fn get(&self, name: &str) -> Option<TopicInfo> {
        self.by_name.get(name).copied()
    }

    pub fn name(&self, id: Uuid) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    pub fn partitions(&self, id: Uuid) -> Option<i32> {
        self.names
            .get(&id)
            .and_then(|n| self.by_name.get(n))
            .map(|t| t.partitions)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, TopicInfo)> {
        self.by_name.iter().map(|(n, t)| (n.as_str(), *t))
    }
}

/// A compiled regex subscription.
#[derive(Clone, Debug)]
pub struct TopicRegex {
    full: Regex,
}

impl TopicRegex {
    /// Compiles `pattern` to match whole topic names; `Err` is Kafka's INVALID_REGULAR_EXPRESSION
    /// message. The pattern is checked alone first, so wrapping it cannot change its meaning.
    pub fn compile(pattern: &str) -> Result<TopicRegex, String> {
        Regex::new(pattern).map_err(|e| {
            format!("SubscribedTopicRegex `{pattern}` is not a valid regular expression: {e}.")
        })?;
        let full = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
            format!("SubscribedTopicRegex `{pattern}` is not a valid regular expression: {e}.")
        })?;
        Ok(TopicRegex { full })
    }

    pub fn matches(&self, topic: &str) -> bool {
        self.full.is_match(topic)
    }

    /// The topics of `topics` whose whole name matches.
    pub fn resolve(&self, topics: &Topics) -> BTreeSet<String> {
        topics
            .iter()
            .filter(|(n, _)| self.matches(n))
            .map(|(n, _)| n.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn regex_matches_whole_names_only() {
        let r = TopicRegex::compile("orders.*").unwrap();
        assert!(r.matches("orders"));
        assert!(r.matches("orders-eu"));
        assert!(!r.matches("old-orders"));
        let alt = TopicRegex::compile("a|ab").unwrap();
        assert!(
            alt.matches("ab"),
            "a full match exists even if leftmost-first finds `a`"
        );
    }

    #[test]
    fn invalid_regex_is_refused_and_cannot_escape_the_anchors() {
        assert!(TopicRegex::compile("(").is_err());
        assert!(TopicRegex::compile("a)|(b").is_err());
    }

    #[test]
    fn topics_skip_nil_ids_and_resolve_regexes() {
        let t = Topics::new([
            ("a".to_string(), id(1), 3),
            ("nil".to_string(), Uuid::nil(), 3),
            ("ab".to_string(), id(2), 1),
        ]);
        assert_eq!(t.get("nil"), None);
        assert_eq!(t.partitions(id(2)), Some(1));
        assert_eq!(t.name(id(1)), Some("a"));
        let r = TopicRegex::compile("a.*").unwrap();
        assert_eq!(
            r.resolve(&t).into_iter().collect::<Vec<_>>(),
            vec!["a".to_string(), "ab".to_string()]
        );
    }
}
