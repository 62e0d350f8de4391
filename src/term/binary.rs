//! [`Binary`]: an Erlang binary as a typed field, carried without copies.
//!
//! A `Vec<u8>` field (with `serde_bytes`) is copied by serde each time the
//! value crosses the term bridge: into a fresh term when a process's
//! state is captured for a handoff, and out of the received message into
//! a fresh vector at the target, each copy touching fresh memory. A
//! `Binary` field holds the bytes as shared, reference-counted
//! [`Bytes`]: [`crate::term::serde::to_term`] puts them into the term as
//! they are, and [`crate::term::serde::from_term`] takes the received
//! binary as it is, a slice of the message it arrived in. On the wire it
//! is the same `BINARY_EXT` a `Vec<u8>` field gives, so an Elixir or
//! Erlang peer sees no difference.
//!
//! What it costs: a `Binary` taken from a received message keeps that
//! whole message's buffer alive while it is held; copy it
//! ([`Binary::detached`]) to keep a small piece of a large message.
//! Other serde formats see plain bytes.

use bytes::Bytes;
use std::fmt;
use std::ops::Deref;

/// An Erlang binary as a field of a serde-typed state or message, shared
/// instead of copied when it crosses the term bridge: [`to_term`]
/// puts its bytes into the term as they are, and [`from_term`] takes a
/// received binary as it arrived, a slice of its message (which stays
/// alive while the `Binary` is held; [`Binary::detached`] copies). On the
/// wire it is the `BINARY_EXT` a `serde_bytes` `Vec<u8>` field gives;
/// other serde formats see plain bytes.
///
/// [`to_term`]: crate::term::serde::to_term
/// [`from_term`]: crate::term::serde::from_term
///
/// ```
/// use erlnode::term::Binary;
/// use erlnode::term::serde::{from_term, to_term};
/// use erlnode::Term;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Blob {
///     data: Binary,
///     version: u32,
/// }
///
/// let blob = Blob { data: Binary::from(vec![7u8; 4096]), version: 1 };
/// let term = to_term(&blob).unwrap();
/// let back: Blob = from_term(term).unwrap();
/// // The same bytes, not a copy of them.
/// assert_eq!(back.data.as_ptr(), blob.data.as_ptr());
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Binary(Bytes);

impl Binary {
    /// An empty binary.
    pub fn new() -> Binary {
        Binary(Bytes::new())
    }

    /// The bytes, shared (no copy).
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The bytes, shared (no copy).
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// A copy in a buffer of its own, which no longer keeps the message
    /// it came from alive.
    pub fn detached(&self) -> Binary {
        Binary(Bytes::copy_from_slice(&self.0))
    }
}

impl Deref for Binary {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Binary {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Bytes> for Binary {
    fn from(b: Bytes) -> Binary {
        Binary(b)
    }
}

impl From<Vec<u8>> for Binary {
    /// Takes the vector's buffer as it is (no copy).
    fn from(v: Vec<u8>) -> Binary {
        Binary(Bytes::from(v))
    }
}

impl From<&[u8]> for Binary {
    fn from(v: &[u8]) -> Binary {
        Binary(Bytes::copy_from_slice(v))
    }
}

impl From<Binary> for Bytes {
    fn from(b: Binary) -> Bytes {
        b.0
    }
}

impl From<Binary> for super::Term {
    fn from(b: Binary) -> super::Term {
        super::Term::Binary(b.0)
    }
}

impl fmt::Debug for Binary {
    /// The length and at most the first 16 bytes: a state's Debug output
    /// stays readable with a megabyte in it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = &self.0[..self.0.len().min(16)];
        write!(f, "Binary({} bytes: {:02x?}{})", self.0.len(), head, if self.0.len() > 16 { " .." } else { "" })
    }
}
