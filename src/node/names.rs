//! Node names: `name@host` (long) or `name` (short, host appended), as
//! `erl -name` / `erl -sname` accept them.

/// A full node name split into its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeName {
    pub alive: String,
    pub host: String,
}

impl NodeName {
    pub fn full(&self) -> String {
        format!("{}@{}", self.alive, self.host)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid node name {0:?}: {1}")]
pub struct NameError(pub String, pub &'static str);

/// Parses a node name; a name without `@` gets this machine's short host
/// name, as `-sname` does.
pub fn parse(name: &str) -> Result<NodeName, NameError> {
    let (alive, host) = match name.split_once('@') {
        Some((a, h)) => (a.to_string(), h.to_string()),
        None => (name.to_string(), short_hostname()),
    };
    if alive.is_empty() || host.is_empty() {
        return Err(NameError(name.into(), "empty name or host part"));
    }
    if name.len() > 255 {
        return Err(NameError(name.into(), "longer than 255 bytes"));
    }
    if !alive.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(NameError(name.into(), "the part before @ may hold only letters, digits, _ and -"));
    }
    if host.contains('@') {
        return Err(NameError(name.into(), "more than one @"));
    }
    Ok(NodeName { alive, host })
}

/// This machine's host name up to the first dot.
pub fn short_hostname() -> String {
    let full = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_else(|_| "localhost".into());
    full.trim().split('.').next().unwrap_or("localhost").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_short() {
        assert_eq!(parse("a@127.0.0.1").unwrap(), NodeName { alive: "a".into(), host: "127.0.0.1".into() });
        let s = parse("b").unwrap();
        assert_eq!(s.alive, "b");
        assert!(!s.host.is_empty());
        assert!(parse("@x").is_err());
        assert!(parse("a b@x").is_err());
        assert!(parse("a@b@c").is_err());
    }
}
