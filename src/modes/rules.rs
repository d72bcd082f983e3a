//! Group mode rules: a default mode and ordered glob patterns on the group id; the first pattern
//! that matches the whole group id decides, otherwise the default. Pure data, no I/O.
//!
//! Patterns: `*` matches any run of characters (also none), `?` exactly one character, `\` makes
//! the next character literal; everything else matches itself. Matching is bounded by
//! `pattern length × group id length` steps.

use crate::config::GroupMode;

/// Longest pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// Most rules in one file.
pub const MAX_RULES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Char(char),
    AnyChar,
    AnyRun,
}

/// One compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    tokens: Vec<Token>,
}

impl Glob {
    /// Compiles `pattern`; the error says what is wrong with it.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("the pattern is empty".into());
        }
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "the pattern is {} bytes long (at most {MAX_PATTERN_BYTES})",
                pattern.len()
            ));
        }
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => Token::AnyRun,
                '?' => Token::AnyChar,
                '\\' => match chars.next() {
                    Some(escaped) => Token::Char(escaped),
                    None => return Err("the pattern ends with a lone `\\`".into()),
                },
                c => Token::Char(c),
            };
            // `**` is the same as `*`: keep one, which also keeps matching linear in practice.
            if !(token == Token::AnyRun && tokens.last() == Some(&Token::AnyRun)) {
                tokens.push(token);
            }
        }
        Ok(Glob {
            source: pattern.to_string(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern matches all of `text`.
    pub fn matches(&self, text: &str) -> bool {
        let t = &self.tokens;
        let (mut ti, mut si) = (0usize, 0usize);
        // The last `*` seen: the token after it and where in `text` its run would end next.
        let mut star: Option<(usize, usize)> = None;
        while si < text.len() {
            let c = text[si..].chars().next().unwrap_or_default();
            match t.get(ti) {
                Some(Token::AnyRun) => {
                    star = Some((ti + 1, si));
                    ti += 1;
                    continue;
                }
                Some(Token::AnyChar) => {
                    ti += 1;
                    si += c.len_utf8();
                    continue;
                }
                Some(Token::Char(p)) if *p == c => {
                    ti += 1;
                    si += c.len_utf8();
                    continue;
                }
                _ => {}
            }
            // Mismatch: let the last `*` swallow one more character, or fail.
            let Some((after, from)) = star else {
                return false;
            };
            let skipped = text[from..].chars().next().unwrap_or_default();
            let next = from + skipped.len_utf8();
            star = Some((after, next));
            ti = after;
            si = next;
        }
        t[ti.min(t.len())..].iter().all(|tok| *tok == Token::AnyRun)
    }
}

/// One rule: groups matching `pattern` are served in `mode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub pattern: Glob,
    pub mode: GroupMode,
}

/// The default mode and the ordered rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub default_mode: GroupMode,
    pub rules: Vec<Rule>,
}

impl Rules {
    /// Every group in one mode (`--group-mode` without a config file).
    pub fn single(mode: GroupMode) -> Rules {
        Rules {
            default_mode: mode,
            rules: Vec::new(),
        }
    }

    /// The mode of `group`: the first matching rule's, else the default.
    pub fn mode_of(&self, group: &str) -> GroupMode {
        self.rules
            .iter()
            .find(|r| r.pattern.matches(group))
            .map_or(self.default_mode, |r| r.mode)
    }

    /// Whether some group may be served in `mode` (the default or any rule names it).
    pub fn may_be(&self, mode: GroupMode) -> bool {
        self.default_mode == mode || self.rules.iter().any(|r| r.mode == mode)
    }

    /// Rules that can never decide because an earlier `*` rule matches everything.
    pub fn unreachable(&self) -> Vec<usize> {
        match self.rules.iter().position(|r| r.pattern.as_str() == "*") {
            Some(all) => ((all + 1)..self.rules.len()).collect(),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GroupMode::{Local, Passthrough};

    fn glob(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn literal_star_and_question_mark() {
        assert!(glob("orders").matches("orders"));
        assert!(!glob("orders").matches("orders-1"));
        assert!(glob("orders-*").matches("orders-"));
        assert!(glob("orders-*").matches("orders-audit"));
        assert!(!glob("orders-*").matches("order"));
        assert!(glob("*-audit").matches("orders-audit"));
        assert!(glob("*").matches(""));
        assert!(glob("a*b*c").matches("aXXbYYbZc"));
        assert!(!glob("a*b*c").matches("aXXbYYbZ"));
        assert!(glob("g?").matches("g1"));
        assert!(!glob("g?").matches("g"));
        assert!(!glob("g?").matches("g12"));
        assert!(glob("**x").matches("abx"));
    }

    #[test]
    fn escapes_and_unicode() {
        assert!(glob(r"a\*").matches("a*"));
        assert!(!glob(r"a\*").matches("ab"));
        assert!(glob(r"\?\\").matches(r"?\"));
        assert!(glob("gr?upe-é*").matches("grøupe-été"));
        assert!(glob("*é").matches("café"));
        assert!(!glob("?").matches("éé"));
    }

    #[test]
    fn bad_patterns_say_why() {
        assert!(Glob::new("").unwrap_err().contains("empty"));
        assert!(Glob::new("abc\\").unwrap_err().contains("lone"));
        let long = "x".repeat(MAX_PATTERN_BYTES + 1);
        assert!(Glob::new(&long).unwrap_err().contains("bytes long"));
    }

    #[test]
    fn many_stars_stay_bounded() {
        let p = glob(&"*a".repeat(40));
        let text = "a".repeat(39) + "b";
        assert!(!p.matches(&text));
        assert!(p.matches(&"a".repeat(40)));
    }

    #[test]
    fn first_matching_rule_wins_else_default() {
        let rules = Rules {
            default_mode: Passthrough,
            rules: vec![
                Rule {
                    pattern: glob("orders-legacy*"),
                    mode: Passthrough,
                },
                Rule {
                    pattern: glob("orders-*"),
                    mode: Local,
                },
            ],
        };
        assert_eq!(rules.mode_of("orders-audit"), Local);
        assert_eq!(rules.mode_of("orders-legacy-2"), Passthrough);
        assert_eq!(rules.mode_of("billing"), Passthrough);
        assert!(rules.may_be(Local) && rules.may_be(Passthrough));
        assert!(!Rules::single(Local).may_be(Passthrough));
        assert!(rules.unreachable().is_empty());
    }

    #[test]
    fn rules_after_a_catch_all_are_unreachable() {
        let rule = |p: &str, mode| Rule {
            pattern: glob(p),
            mode,
        };
        let rules = Rules {
            default_mode: Passthrough,
            rules: vec![rule("a*", Local), rule("*", Local), rule("b*", Passthrough)],
        };
        assert_eq!(rules.unreachable(), vec![2]);
    }
}
