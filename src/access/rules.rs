//! Access rules and how they answer, the way Kafka's `AclAuthorizer`/`StandardAuthorizer` do: a
//! rule is principal pattern × resource type × resource name pattern (literal, prefixed, glob) ×
//! operations, allow or deny. A matching deny wins over any allow; an operation nothing allows is
//! denied. Allowing Read, Write, Delete or Alter also allows Describe, and AlterConfigs allows
//! DescribeConfigs (Kafka's implied operations); a deny denies only the operations it names.
//! Pure data, no I/O, no clock.

use crate::modes::Glob;

/// Most rules in one `[access]` section.
pub const MAX_RULES: usize = 10_000;

/// Kafka's resource types kelp checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    Topic,
    Group,
    /// The one cluster (`kafka-cluster`): ListGroups of every group, DescribeCluster, creating
    /// topics by cluster-wide permission, and the APIs kelp checks as a whole.
    Cluster,
}

impl ResourceType {
    /// The metric label and the name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Topic => "topic",
            ResourceType::Group => "group",
            ResourceType::Cluster => "cluster",
        }
    }
}

/// Kafka's ACL operations (those that apply to topics, groups and the cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    All,
}

impl Operation {
    /// The operation of a Kafka AclOperation code (3 READ … 12 IDEMPOTENT_WRITE), as the
    /// authorized-operations bitfields of Metadata and DescribeGroups number them.
    pub fn from_acl_code(code: u8) -> Option<Operation> {
        // `NAMES` lists the operations in AclOperation order from READ (3); `All` is not a code.
        let i = usize::from(code).checked_sub(3)?;
        Self::NAMES[..10].get(i).map(|(_, op)| *op)
    }

    pub const NAMES: [(&'static str, Operation); 11] = [
        ("read", Operation::Read),
        ("write", Operation::Write),
        ("create", Operation::Create),
        ("delete", Operation::Delete),
        ("alter", Operation::Alter),
        ("describe", Operation::Describe),
        ("cluster_action", Operation::ClusterAction),
        ("describe_configs", Operation::DescribeConfigs),
        ("alter_configs", Operation::AlterConfigs),
        ("idempotent_write", Operation::IdempotentWrite),
        ("all", Operation::All),
    ];

    pub fn parse(name: &str) -> Option<Operation> {
        let name = name.to_ascii_lowercase().replace('-', "_");
        Operation::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, op)| *op)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// The operations an allow of `self` also allows (itself included).
    fn implied(self) -> u16 {
        use Operation::*;
        match self {
            All => u16::MAX,
            Read | Write | Delete | Alter => self.bit() | Describe.bit(),
            AlterConfigs => self.bit() | DescribeConfigs.bit(),
            _ => self.bit(),
        }
    }
}

/// A set of operations, as a rule lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Operations(u16);

impl Operations {
    pub fn of(ops: &[Operation]) -> Operations {
        Operations(ops.iter().fold(0, |acc, op| acc | op.bit()))
    }

    /// Whether an allow rule naming these operations allows `op`.
    fn allows(self, op: Operation) -> bool {
        Operation::NAMES
            .iter()
            .any(|(_, o)| self.0 & o.bit() != 0 && o.implied() & op.bit() != 0)
    }

    /// Whether a deny rule naming these operations denies `op` (it names it, or All).
    fn denies(self, op: Operation) -> bool {
        self.0 & (op.bit() | Operation::All.bit()) != 0
    }
}

/// How a rule's resource name matches (Kafka's pattern types, plus glob).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    /// The whole name; `*` alone matches every resource of the type (Kafka's wildcard).
    Literal(String),
    /// Names starting with this.
    Prefixed(String),
    /// `*`, `?` and `\` as in the group mode rules.
    Glob(Glob),
}

impl NamePattern {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Literal(l) => l == "*" || l == name,
            NamePattern::Prefixed(p) => name.starts_with(p.as_str()),
            NamePattern::Glob(g) => g.matches(name),
        }
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Allow,
    Deny,
}

/// One access rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Matched against each of the client's principal names (`User:…`).
    pub principal: Glob,
    pub resource: ResourceType,
    pub name: NamePattern,
    pub operations: Operations,
    pub permission: Permission,
}

/// The rules of one `[access]` section. Its presence turns checking on: what no rule allows is
/// denied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

impl Policy {
    /// The rules that apply to a client with these principal names, in order.
    pub fn rules_for(&self, principal: &[String]) -> Vec<Rule> {
        self.rules
            .iter()
            .filter(|r| principal.iter().any(|p| r.principal.matches(p)))
            .cloned()
            .collect()
    }

    /// Whether a client with these principal names may do `op` on the resource.
    pub fn authorize(
        &self,
        principal: &[String],
        resource: ResourceType,
        name: &str,
        op: Operation,
    ) -> bool {
        decide(
            self.rules
                .iter()
                .filter(|r| principal.iter().any(|p| r.principal.matches(p))),
            resource,
            name,
            op,
        )
    }
}

/// Kafka's precedence over the rules already known to apply to the principal: any matching deny
/// denies; otherwise any matching allow allows; otherwise denied.
pub fn decide<'a>(
    rules: impl Iterator<Item = &'a Rule> + Clone,
    resource: ResourceType,
    name: &str,
    op: Operation,
) -> bool {
    let applies = |r: &&Rule| r.resource == resource && r.name.matches(name);
    let denied = rules
        .clone()
        .filter(applies)
        .any(|r| r.permission == Permission::Deny && r.operations.denies(op));
    !denied
        && rules
            .filter(applies)
            .any(|r| r.permission == Permission::Allow && r.operations.allows(op))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation::*;
    use ResourceType::*;

    #[test]
    fn acl_codes_are_kafkas() {
        assert_eq!(Operation::from_acl_code(2), None);
        assert_eq!(Operation::from_acl_code(3), Some(Read));
        assert_eq!(Operation::from_acl_code(8), Some(Describe));
        assert_eq!(Operation::from_acl_code(12), Some(IdempotentWrite));
        assert_eq!(Operation::from_acl_code(13), None);
    }

    fn rule(
        principal: &str,
        resource: ResourceType,
        name: NamePattern,
        ops: &[Operation],
        permission: Permission,
    ) -> Rule {
        Rule {
            principal: Glob::new(principal).unwrap(),
            resource,
            name,
            operations: Operations::of(ops),
            permission,
        }
    }

    fn lit(s: &str) -> NamePattern {
        NamePattern::Literal(s.into())
    }

    fn prefix(s: &str) -> NamePattern {
        NamePattern::Prefixed(s.into())
    }

    fn who(p: &str) -> Vec<String> {
        vec![p.to_string()]
    }

    #[test]
    fn an_empty_policy_denies_everything() {
        let p = Policy::default();
        assert!(!p.authorize(&who("User:ANONYMOUS"), Topic, "t", Read));
    }

    #[test]
    fn deny_beats_allow_whatever_the_order() {
        for deny_first in [false, true] {
            let allow = rule("User:*", Topic, prefix("orders"), &[All], Permission::Allow);
            let deny = rule(
                "User:CN=mallory",
                Topic,
                lit("orders-audit"),
                &[Write],
                Permission::Deny,
            );
            let rules = if deny_first {
                vec![deny, allow]
            } else {
                vec![allow, deny]
            };
            let p = Policy { rules };
            let mallory = who("User:CN=mallory");
            assert!(!p.authorize(&mallory, Topic, "orders-audit", Write));
            assert!(
                p.authorize(&mallory, Topic, "orders-audit", Read),
                "deny names Write only"
            );
            assert!(p.authorize(&mallory, Topic, "orders-1", Write));
            assert!(p.authorize(&who("User:CN=alice"), Topic, "orders-audit", Write));
        }
    }

    #[test]
    fn prefixed_and_literal_names() {
        let p = Policy {
            rules: vec![
                rule(
                    "User:ANONYMOUS",
                    Topic,
                    lit("orders"),
                    &[Read],
                    Permission::Allow,
                ),
                rule(
                    "User:ANONYMOUS",
                    Group,
                    prefix("team-a-"),
                    &[Read],
                    Permission::Allow,
                ),
            ],
        };
        let anon = who("User:ANONYMOUS");
        assert!(p.authorize(&anon, Topic, "orders", Read));
        assert!(
            !p.authorize(&anon, Topic, "orders-1", Read),
            "literal is the whole name"
        );
        assert!(p.authorize(&anon, Group, "team-a-billing", Read));
        assert!(!p.authorize(&anon, Group, "team-b-billing", Read));
        assert!(
            !p.authorize(&anon, Topic, "team-a-billing", Read),
            "resource types are separate"
        );
        // A literal deny inside an allowed prefix wins; a prefixed deny over a literal allow too.
        let p = Policy {
            rules: vec![
                rule("*", Group, prefix("team-a-"), &[All], Permission::Allow),
                rule("*", Group, lit("team-a-admin"), &[Delete], Permission::Deny),
                rule("*", Topic, lit("x-1"), &[Read], Permission::Allow),
                rule("*", Topic, prefix("x-"), &[Read], Permission::Deny),
            ],
        };
        assert!(!p.authorize(&anon, Group, "team-a-admin", Delete));
        assert!(p.authorize(&anon, Group, "team-a-admin", Read));
        assert!(p.authorize(&anon, Group, "team-a-other", Delete));
        assert!(!p.authorize(&anon, Topic, "x-1", Read));
    }

    #[test]
    fn the_literal_wildcard_and_globs() {
        let p = Policy {
            rules: vec![
                rule("User:*", Topic, lit("*"), &[Describe], Permission::Allow),
                rule(
                    "User:*",
                    Group,
                    NamePattern::Glob(Glob::new("*-audit").unwrap()),
                    &[Read],
                    Permission::Allow,
                ),
            ],
        };
        let bob = who("User:bob");
        assert!(p.authorize(&bob, Topic, "anything", Describe));
        assert!(!p.authorize(&bob, Topic, "anything", Read));
        assert!(p.authorize(&bob, Group, "orders-audit", Read));
        assert!(!p.authorize(&bob, Group, "orders-audit-2", Read));
    }

    #[test]
    fn implied_operations_follow_kafka() {
        let p = Policy {
            rules: vec![
                rule("*", Topic, lit("r"), &[Read], Permission::Allow),
                rule("*", Topic, lit("c"), &[AlterConfigs], Permission::Allow),
                rule("*", Topic, lit("d"), &[Read], Permission::Allow),
                rule("*", Topic, lit("d"), &[Describe], Permission::Deny),
                rule("*", Topic, lit("a"), &[All], Permission::Allow),
                rule("*", Topic, lit("a"), &[All], Permission::Deny),
            ],
        };
        let anon = who("User:ANONYMOUS");
        assert!(
            p.authorize(&anon, Topic, "r", Describe),
            "Read implies Describe"
        );
        assert!(!p.authorize(&anon, Topic, "r", Write));
        assert!(p.authorize(&anon, Topic, "c", DescribeConfigs));
        assert!(!p.authorize(&anon, Topic, "c", Describe));
        assert!(
            !p.authorize(&anon, Topic, "d", Describe),
            "an explicit deny of Describe wins over the implied allow"
        );
        assert!(p.authorize(&anon, Topic, "d", Read));
        assert!(!p.authorize(&anon, Topic, "a", Read), "deny All denies all");
    }

    #[test]
    fn any_principal_name_can_match() {
        let p = Policy {
            rules: vec![rule(
                "User:team-a.example.com",
                Topic,
                lit("t"),
                &[Read],
                Permission::Allow,
            )],
        };
        let names = vec![
            "User:CN=x,O=acme".to_string(),
            "User:team-a.example.com".to_string(),
        ];
        assert!(p.authorize(&names, Topic, "t", Read));
        assert_eq!(p.rules_for(&names).len(), 1);
        assert!(p.rules_for(&who("User:other")).is_empty());
    }

    #[test]
    fn operation_names_parse() {
        assert_eq!(Operation::parse("Read"), Some(Read));
        assert_eq!(Operation::parse("describe-configs"), Some(DescribeConfigs));
        assert_eq!(Operation::parse("ALL"), Some(All));
        assert_eq!(Operation::parse("wrote"), None);
    }
}
