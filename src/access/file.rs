//! The `[access]` section of the `--config` file: parsed and validated into a `Policy`; every
//! error names the rule and its line. Reloaded with the rest of the file (a bad section changes
//! nothing). Parsing only.
//!
//! ```toml
//! [access]                          # present: checking on, what no rule allows is denied
//! [[access.rules]]
//! principal = "User:ANONYMOUS"      # glob on the client's principal names
//! resource = "topic"                # topic | group | cluster
//! name = "orders-"                  # `*` with pattern_type literal: every resource of the type
//! pattern_type = "prefixed"         # literal (default) | prefixed | glob
//! operations = ["read", "write"]    # read write create delete alter describe describe_configs
//!                                   # alter_configs cluster_action idempotent_write all
//! permission = "allow"              # allow (default) | deny
//! ```

use serde::Deserialize;
use toml::Spanned;

use super::rules::{
    NamePattern, Operation, Operations, Permission, Policy, ResourceType, Rule, MAX_RULES,
};
use crate::modes::Glob;

/// The section as written.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct AccessToml {
    #[serde(default)]
    rules: Vec<Spanned<RuleToml>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    principal: String,
    resource: ResourceToml,
    name: String,
    #[serde(default)]
    pattern_type: PatternToml,
    operations: Vec<String>,
    #[serde(default)]
    permission: PermissionToml,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ResourceToml {
    Topic,
    Group,
    Cluster,
}

#[derive(Deserialize, Debug, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum PatternToml {
    #[default]
    Literal,
    Prefixed,
    Glob,
}

#[derive(Deserialize, Debug, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum PermissionToml {
    #[default]
    Allow,
    Deny,
}

/// Compiles the section; `line_of` turns a byte offset of the file into its line number.
pub fn compile(section: AccessToml, line_of: impl Fn(usize) -> usize) -> Result<Policy, String> {
    if section.rules.len() > MAX_RULES {
        return Err(format!(
            "access.rules has {} rules (at most {MAX_RULES})",
            section.rules.len()
        ));
    }
    let mut rules = Vec::with_capacity(section.rules.len());
    for (i, spanned) in section.rules.into_iter().enumerate() {
        let line = line_of(spanned.span().start);
        let rule = spanned.into_inner();
        let at = |why: String| format!("line {line}: access.rules[{i}]: {why}");
        let principal = Glob::new(&rule.principal)
            .map_err(|why| at(format!("principal {:?}: {why}", rule.principal)))?;
        if rule.name.is_empty() {
            return Err(at("name is empty".into()));
        }
        let name = match rule.pattern_type {
            PatternToml::Literal => NamePattern::Literal(rule.name),
            PatternToml::Prefixed => NamePattern::Prefixed(rule.name),
            PatternToml::Glob => NamePattern::Glob(
                Glob::new(&rule.name).map_err(|why| at(format!("name {:?}: {why}", rule.name)))?,
            ),
        };
        if rule.operations.is_empty() {
            return Err(at("operations is empty".into()));
        }
        let mut ops = Vec::with_capacity(rule.operations.len());
        for op in &rule.operations {
            ops.push(Operation::parse(op).ok_or_else(|| {
                let known: Vec<&str> = Operation::NAMES.iter().map(|(n, _)| *n).collect();
                at(format!(
                    "unknown operation {op:?} (one of {})",
                    known.join(", ")
                ))
            })?);
        }
        rules.push(Rule {
            principal,
            resource: match rule.resource {
                ResourceToml::Topic => ResourceType::Topic,
                ResourceToml::Group => ResourceType::Group,
                ResourceToml::Cluster => ResourceType::Cluster,
            },
            name,
            operations: Operations::of(&ops),
            permission: match rule.permission {
                PermissionToml::Allow => Permission::Allow,
                PermissionToml::Deny => Permission::Deny,
            },
        });
    }
    Ok(Policy { rules })
}
