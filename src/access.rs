//! Who may connect: `--allow` and `--deny` CIDR rules, from the command line and from files,
//! replaceable while the server runs (SIGHUP) without touching connected clients.
//!
//! Precedence, one rule, no exceptions: a deny rule that matches wins; otherwise, when any
//! allow rule exists, the address must match one; with no allow rules, everyone not denied
//! may connect. (ncat's documentation says both things; its code denies.)

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use ipnet::IpNet;

/// The one-line statement of the precedence, for `--help` and the README.
pub const PRECEDENCE: &str = "deny wins over allow; with any allow rule, only allowed addresses may connect";

/// A set of allow and deny rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessRules {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

/// A rule that could not be read; the message says where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// A rule is not an address or CIDR block.
    #[error("{origin}: {text:?} is not an address or CIDR block (like 10.0.0.0/8 or ::1)")]
    Syntax {
        /// Where it came from: the option, or the file and line.
        origin: String,
        /// What was there.
        text: String,
    },
    /// A rules file could not be read.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
}

/// Parses one rule: a CIDR block, or a single address (a /32 or /128); `origin` names where it
/// came from, for the error.
pub fn parse_rule(text: &str, origin: impl FnOnce() -> String) -> Result<IpNet, RuleError> {
    let text = text.trim();
    let net = text
        .parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| RuleError::Syntax { origin: origin(), text: text.to_string() })?;
    // 10.1.2.3/8 means 10.0.0.0/8: the host bits are ignored, as everywhere else.
    Ok(net.trunc())
}

/// Reads a rules file: one address or CIDR block a line, `#` starts a comment.
fn read_rules(path: &Path) -> Result<Vec<IpNet>, RuleError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| RuleError::File { path: path.to_path_buf(), reason: crate::error::reason(&err) })?;
    let mut rules = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let rule = line.split('#').next().unwrap_or_default().trim();
        if !rule.is_empty() {
            rules.push(parse_rule(rule, || format!("{}:{}", path.display(), number + 1))?);
        }
    }
    Ok(rules)
}

impl AccessRules {
    /// Rules from the `--allow`/`--deny` values and the `--allow-file`/`--deny-file` files.
    pub fn load(
        allow: &[String],
        deny: &[String],
        allow_files: &[PathBuf],
        deny_files: &[PathBuf],
    ) -> Result<AccessRules, RuleError> {
        let mut rules = AccessRules::default();
        for text in allow {
            rules.allow.push(parse_rule(text, || "--allow".into())?);
        }
        for text in deny {
            rules.deny.push(parse_rule(text, || "--deny".into())?);
        }
        for path in allow_files {
            rules.allow.extend(read_rules(path)?);
        }
        for path in deny_files {
            rules.deny.extend(read_rules(path)?);
        }
        Ok(rules)
    }

    /// True when there are no rules (everyone may connect).
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether `address` may connect, by [`PRECEDENCE`]. An IPv4 client seen through a
    /// dual-stack socket (`::ffff:a.b.c.d`) is matched as the IPv4 address it is.
    pub fn permits(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        if self.deny.iter().any(|net| net.contains(&address)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&address))
    }
}

impl fmt::Display for AccessRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} allow and {} deny rules", self.allow.len(), self.deny.len())
    }
}

/// The rules a running server checks, shared with whoever may replace them (the binary, on
/// SIGHUP). Clones share the same rules.
#[derive(Clone, Debug, Default)]
pub struct Access {
    rules: Arc<RwLock<Arc<AccessRules>>>,
}

impl Access {
    /// A handle holding `rules`.
    pub fn new(rules: AccessRules) -> Access {
        Access { rules: Arc::new(RwLock::new(Arc::new(rules))) }
    }

    /// Replaces the rules; connections already open are not affected.
    pub fn replace(&self, rules: AccessRules) {
        *self.rules.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(rules);
    }

    /// Whether `address` may connect under the current rules.
    pub fn permits(&self, address: IpAddr) -> bool {
        self.rules.read().unwrap_or_else(PoisonError::into_inner).permits(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> AccessRules {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        AccessRules::load(&owned(allow), &owned(deny), &[], &[]).expect("valid rules")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn deny_wins_and_any_allow_rule_closes_the_rest() {
        let open = rules(&[], &[]);
        assert!(open.permits(ip("192.0.2.1")) && open.permits(ip("::1")));
        let deny = rules(&[], &["127.0.0.2/32", "2001:db8::/32"]);
        assert!(!deny.permits(ip("127.0.0.2")) && deny.permits(ip("127.0.0.1")));
        assert!(!deny.permits(ip("2001:db8::5")) && deny.permits(ip("::1")));
        let both = rules(&["127.0.0.0/8"], &["127.0.0.2"]);
        assert!(both.permits(ip("127.0.0.1")), "allowed");
        assert!(!both.permits(ip("127.0.0.2")), "deny wins over allow");
        assert!(!both.permits(ip("192.0.2.1")), "not allowed: refused");
        assert!(!both.permits(ip("::1")), "an allow list for IPv4 closes IPv6 too");
    }

    #[test]
    fn mapped_ipv4_matches_ipv4_rules_and_host_bits_are_ignored() {
        let deny = rules(&[], &["10.1.2.3/8"]);
        assert!(!deny.permits(ip("::ffff:10.9.9.9")));
        assert!(deny.permits(ip("::ffff:11.0.0.1")));
    }

    #[test]
    fn bad_rules_name_their_origin() {
        let err = AccessRules::load(&["10.0.0.0/33".into()], &[], &[], &[]).expect_err("refused");
        assert!(err.to_string().starts_with("--allow: \"10.0.0.0/33\" is not"), "{err}");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("deny.txt");
        std::fs::write(&path, "# scanners\n192.0.2.0/24   # a comment\n\nnot-an-address\n").expect("write");
        let err = AccessRules::load(&[], &[], &[], std::slice::from_ref(&path)).expect_err("refused");
        assert!(err.to_string().contains("deny.txt:4: \"not-an-address\""), "{err}");
        std::fs::write(&path, "# scanners\n192.0.2.0/24   # a comment\n\n::1\n").expect("write");
        let loaded = AccessRules::load(&[], &[], &[], &[path]).expect("valid file");
        assert!(!loaded.permits(ip("192.0.2.77")) && !loaded.permits(ip("::1")));
    }
}
