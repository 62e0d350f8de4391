//! Erlang terms: the in-memory model, the External Term Format codec and
//! the serde bridge.
//!
//! The model keeps everything a BEAM node can send so that a term can
//! travel BEAM -> Rust -> BEAM and compare `==` to the original. Where the
//! BEAM has several encodings for one value (SMALL_INTEGER vs INTEGER vs
//! SMALL_BIG, STRING_EXT vs LIST_EXT) we normalise on decode, because `==`
//! on the BEAM side is semantic. Funs are the exception: they cannot be
//! reconstructed, so they are kept as the exact bytes received. Native
//! records (OTP 29's RECORD_EXT) are decoded into their parts,
//! [`NativeRecord`], and re-encoded byte-identical to `term_to_binary`.

mod atom;
mod binary;
mod compressed;
pub mod decode;
pub mod encode;
mod fun;
pub(crate) mod map_keys;
pub mod phash2;
mod reader;
mod record;
pub mod serde;
mod tags;
#[cfg(test)]
mod record_tests;
#[cfg(test)]
mod tests;

pub use atom::Atom;
pub use binary::Binary;
pub use record::{records_as_tuples, DuplicateField, NativeRecord};
pub use decode::{
    decode, decode_bytes, decode_bytes_with_cache, decode_with_cache, DecodeError, DecodeLimits,
};
pub use encode::{encode, encode_into, encode_latin1_atoms, encode_latin1_atoms_into, encode_otp26, encode_with_atom_refs, AtomRefs, NoCache, LARGE_BINARY};

use bytes::Bytes;
use num_bigint::BigInt;
use std::fmt;

/// An Erlang term.
#[derive(Clone, Debug, PartialEq)]
pub enum Term {
    Atom(Atom),
    /// Any integer that fits in an `i64`, whatever tag carried it.
    Int(i64),
    /// Integers outside `i64` range.
    Big(BigInt),
    Float(f64),
    /// A byte-aligned binary.
    Binary(Bytes),
    /// A bitstring whose last byte holds only `bits` (1..=7) significant
    /// high-order bits. `bytes` is never empty.
    BitBinary { bytes: Bytes, bits: u8 },
    /// A proper list (STRING_EXT decodes to a list of `Int`).
    List(Vec<Term>),
    /// A non-empty list whose tail is not `[]`.
    ImproperList(Vec<Term>, Box<Term>),
    Tuple(Vec<Term>),
    /// Map entries in the order received. Keys are unique.
    Map(Vec<(Term, Term)>),
    Pid(Pid),
    Port(Port),
    Ref(Reference),
    /// A fun (NEW_FUN_EXT or EXPORT_EXT), kept as its exact encoding
    /// including the tag byte, so that it is re-sent byte-identical.
    Fun(OpaqueFun),
    /// A native record (OTP 29, RECORD_EXT). Boxed: records are rare and
    /// every other variant would otherwise pay for its size.
    Record(Box<NativeRecord>),
}

/// A process identifier, local or remote.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid {
    pub node: Atom,
    pub id: u32,
    pub serial: u32,
    pub creation: u32,
}

/// A port identifier (V4 ports carry a 64-bit id).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port {
    pub node: Atom,
    pub id: u64,
    pub creation: u32,
}

/// A reference. Ordinary refs have 3 ids, V4_NC refs up to 5.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    pub node: Atom,
    pub creation: u32,
    pub ids: smallvec::SmallVec<[u32; 5]>,
}

/// A fun as received: the full encoding starting at its tag byte
/// (112 NEW_FUN_EXT or 113 EXPORT_EXT).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpaqueFun(pub Bytes);

impl Term {
    /// Whether this term's external encoding takes at most about `budget`
    /// bytes, taking what it uses from `budget`. An estimate, never below
    /// the encoding with atoms as text and cheap for large terms: binaries
    /// by their length, atoms by their text, numbers 9 bytes, containers
    /// their header; it stops at the first part that does not fit,
    /// so a 1 GB state costs one look at its first large binary.
    pub fn fits_within(&self, budget: &mut usize) -> bool {
        self.fits_within_sharing(budget, &mut 0, usize::MAX)
    }

    /// [`Term::fits_within`], except that binaries of `large` bytes or
    /// more are taken from `shared` (their 6-byte header still from
    /// `budget`): clones of a term share such binaries and a link sends
    /// them from their own buffers, so `budget` bounds what is copied.
    /// Walked with a stack of its own, however deep the term nests.
    pub fn fits_within_sharing(&self, budget: &mut usize, shared: &mut usize, large: usize) -> bool {
        fn take(budget: &mut usize, n: usize) -> bool {
            match budget.checked_sub(n) {
                Some(left) => {
                    *budget = left;
                    true
                }
                None => false,
            }
        }
        /// The parts of a container still to look at.
        enum Rest<'a> {
            Items(std::slice::Iter<'a, Term>),
            /// A map's pairs, and the value of the pair whose key was taken.
            Pairs(std::slice::Iter<'a, (Term, Term)>, Option<&'a Term>),
            Fields(std::slice::Iter<'a, (Atom, Term)>),
        }
        let b = budget;
        let mut stack: Vec<Rest<'_>> = Vec::new();
        let mut next = Some(self);
        loop {
            if let Some(t) = next.take() {
                let fits = match t {
                    Term::Binary(x) if x.len() >= large => take(shared, x.len()) && take(b, 6),
                    Term::Binary(x) | Term::BitBinary { bytes: x, .. } | Term::Fun(OpaqueFun(x)) => take(b, x.len() + 6),
                    Term::Atom(a) => take(b, a.as_str().len() + 3),
                    Term::Big(n) => take(b, (n.bits() as usize).div_ceil(8) + 7),
                    Term::Pid(p) => take(b, p.node.as_str().len() + 15),
                    Term::Port(p) => take(b, p.node.as_str().len() + 19),
                    Term::Ref(r) => take(b, r.node.as_str().len() + 9 + 4 * r.ids.len()),
                    Term::Int(_) | Term::Float(_) => take(b, 9),
                    Term::List(items) | Term::Tuple(items) => {
                        stack.push(Rest::Items(items.iter()));
                        take(b, 6)
                    }
                    Term::ImproperList(items, tail) => {
                        stack.push(Rest::Items(std::slice::from_ref(&**tail).iter()));
                        stack.push(Rest::Items(items.iter()));
                        take(b, 5)
                    }
                    Term::Map(kv) => {
                        stack.push(Rest::Pairs(kv.iter(), None));
                        take(b, 5)
                    }
                    Term::Record(r) => {
                        stack.push(Rest::Fields(r.fields().iter()));
                        take(b, r.module().as_str().len() + r.name().as_str().len() + 9)
                    }
                };
                if !fits {
                    return false;
                }
            }
            match stack.last_mut() {
                None => return true,
                Some(Rest::Items(it)) => next = it.next(),
                Some(Rest::Pairs(it, value)) => {
                    next = value.take();
                    if next.is_none() {
                        if let Some((k, v)) = it.next() {
                            next = Some(k);
                            *value = Some(v);
                        }
                    }
                }
                Some(Rest::Fields(it)) => {
                    if let Some((k, v)) = it.next() {
                        if !take(b, k.as_str().len() + 3) {
                            return false;
                        }
                        next = Some(v);
                    }
                }
            }
            if next.is_none() {
                stack.pop();
            }
        }
    }

    pub fn atom(s: &str) -> Term {
        Term::Atom(Atom::new(s))
    }
    pub fn tuple(items: impl Into<Vec<Term>>) -> Term {
        Term::Tuple(items.into())
    }
    pub fn list(items: impl Into<Vec<Term>>) -> Term {
        Term::List(items.into())
    }
    pub fn binary(b: impl Into<Bytes>) -> Term {
        Term::Binary(b.into())
    }
    pub fn nil() -> Term {
        Term::List(Vec::new())
    }
    pub fn as_atom(&self) -> Option<&Atom> {
        match self {
            Term::Atom(a) => Some(a),
            _ => None,
        }
    }
    pub fn as_tuple(&self) -> Option<&[Term]> {
        match self {
            Term::Tuple(t) => Some(t),
            _ => None,
        }
    }
    pub fn as_pid(&self) -> Option<&Pid> {
        match self {
            Term::Pid(p) => Some(p),
            _ => None,
        }
    }
    pub fn as_reference(&self) -> Option<&Reference> {
        match self {
            Term::Ref(r) => Some(r),
            _ => None,
        }
    }
    pub fn as_record(&self) -> Option<&NativeRecord> {
        match self {
            Term::Record(r) => Some(r),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Term::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// True for the atom with the given text.
    pub fn is_atom(&self, s: &str) -> bool {
        matches!(self, Term::Atom(a) if a.as_str() == s)
    }
}

impl From<Atom> for Term {
    fn from(a: Atom) -> Term {
        Term::Atom(a)
    }
}
impl From<Pid> for Term {
    fn from(p: Pid) -> Term {
        Term::Pid(p)
    }
}
impl From<Reference> for Term {
    fn from(r: Reference) -> Term {
        Term::Ref(r)
    }
}
impl From<NativeRecord> for Term {
    fn from(r: NativeRecord) -> Term {
        Term::Record(Box::new(r))
    }
}
impl From<i64> for Term {
    fn from(i: i64) -> Term {
        Term::Int(i)
    }
}
impl From<&str> for Term {
    /// Strings become UTF-8 binaries, as Elixir expects.
    fn from(s: &str) -> Term {
        Term::Binary(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}.{}.{}>", self.node, self.id, self.serial)
    }
}
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#Ref<{}", self.node)?;
        for i in self.ids.iter().rev() {
            write!(f, ".{i}")?;
        }
        write!(f, ">")
    }
}
