//! Atoms as cheaply clonable shared strings.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// An Erlang atom. Cloning is a reference-count bump; comparison is by text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Atom(Arc<str>);

impl Atom {
    pub fn new(s: &str) -> Atom {
        Atom(Arc::from(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ":{}", &*self.0)
    }
}
impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl From<&str> for Atom {
    fn from(s: &str) -> Atom {
        Atom::new(s)
    }
}
impl From<String> for Atom {
    fn from(s: String) -> Atom {
        Atom(Arc::from(s))
    }
}
impl Borrow<str> for Atom {
    fn borrow(&self) -> &str {
        &self.0
    }
}
impl PartialEq<str> for Atom {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}
impl PartialEq<&str> for Atom {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}
