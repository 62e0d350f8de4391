//! `Term` -> Rust value.
//!
//! One deserializer serves both borrowed and owned input: borrowed input
//! lets targets borrow (`&str`, `&[u8]` from binaries) and clones
//! pass-through terms; owned input moves pass-through terms and binaries
//! out instead of copying them.

use super::access::{EnumDe, MapDe, SeqDe, StructDe};
use super::deepclone;
use super::error::{Error, ErrorKind};
use super::passthrough::{self, Kind};
use super::render;
use crate::term::{Atom, Pid, Port, Reference, Term};
use bytes::Bytes;
use num_traits::ToPrimitive;
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::Deserialize;

/// How deeply nested a term may be before deserialization gives up, so that
/// a hostile term cannot overflow the stack through a recursive Rust type.
pub const DEFAULT_DEPTH_LIMIT: usize = 256;

/// Converts an owned term into a Rust value, following the mapping in the
/// [module documentation](super). Pass-through fields (`Term`, `Pid`, ...)
/// take their subterms without copying.
pub fn from_term<T: DeserializeOwned>(term: Term) -> Result<T, Error> {
    T::deserialize(Deserializer::from_owned(term))
}

/// Converts a borrowed term into a Rust value that may borrow from it
/// (`&str`, `&[u8]`, `Cow<str>`). Pass-through fields clone their subterms.
pub fn from_term_ref<'de, T: Deserialize<'de>>(term: &'de Term) -> Result<T, Error> {
    T::deserialize(Deserializer::from_ref(term))
}

/// A term, borrowed or owned.
pub(crate) enum Src<'de> {
    Ref(&'de Term),
    Own(Term),
}

impl<'de> Src<'de> {
    pub(crate) fn term(&self) -> &Term {
        match self {
            Src::Ref(t) => t,
            Src::Own(t) => t,
        }
    }

    fn into_term(self) -> Term {
        match self {
            Src::Ref(t) => deepclone::clone_term(t),
            Src::Own(t) => t,
        }
    }

    /// The elements of a list or tuple; empty for anything else (callers
    /// check the shape first).
    pub(crate) fn into_items(self) -> Items<'de> {
        match self {
            Src::Ref(Term::List(v) | Term::Tuple(v)) => Items::Ref(v.iter()),
            Src::Own(Term::List(v) | Term::Tuple(v)) => Items::Own(v.into_iter()),
            _ => Items::Own(Vec::new().into_iter()),
        }
    }

    /// The entries of a map, or the fields of a native record (names as
    /// atom keys); empty for anything else.
    pub(crate) fn into_pairs(self) -> Pairs<'de> {
        match self {
            Src::Ref(Term::Map(v)) => Pairs::Ref(v.iter()),
            Src::Own(Term::Map(v)) => Pairs::Own(v.into_iter()),
            Src::Ref(Term::Record(r)) => Pairs::FieldsRef(r.fields().iter()),
            Src::Own(Term::Record(r)) => Pairs::FieldsOwn(r.into_parts().3.into_iter()),
            _ => Pairs::Own(Vec::new().into_iter()),
        }
    }

    /// Atom text or UTF-8 binary text, the two ways a name (struct key, enum
    /// tag) can arrive.
    pub(crate) fn name(&self) -> Option<&str> {
        match self.term() {
            Term::Atom(a) => Some(a.as_str()),
            Term::Binary(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Visits a name (see [`Src::name`]), borrowed when the input is.
    pub(crate) fn visit_name<V: Visitor<'de>>(&self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Src::Ref(Term::Atom(a)) => visitor.visit_borrowed_str(a.as_str()),
            Src::Ref(Term::Binary(b)) => match std::str::from_utf8(b) {
                Ok(s) => visitor.visit_borrowed_str(s),
                Err(_) => Err(Error::mismatch("an atom or a UTF-8 binary", render::describe(self.term()))),
            },
            _ => match self.name() {
                Some(s) => visitor.visit_str(s),
                None => Err(Error::mismatch("an atom or a UTF-8 binary", render::describe(self.term()))),
            },
        }
    }

    /// A copy to hand to a deserializer while keeping the original for an
    /// error path; cheap for the usual keys (atoms, binaries, integers).
    pub(crate) fn duplicate(&self) -> Src<'de> {
        match self {
            Src::Ref(t) => Src::Ref(t),
            Src::Own(t) => Src::Own(deepclone::clone_term(t)),
        }
    }
}

pub(crate) enum Items<'de> {
    Ref(std::slice::Iter<'de, Term>),
    Own(std::vec::IntoIter<Term>),
}

impl<'de> Iterator for Items<'de> {
    type Item = Src<'de>;
    fn next(&mut self) -> Option<Src<'de>> {
        match self {
            Items::Ref(it) => it.next().map(Src::Ref),
            Items::Own(it) => it.next().map(Src::Own),
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining();
        (n, Some(n))
    }
}

impl Items<'_> {
    pub(crate) fn remaining(&self) -> usize {
        match self {
            Items::Ref(it) => it.len(),
            Items::Own(it) => it.len(),
        }
    }
}

pub(crate) enum Pairs<'de> {
    Ref(std::slice::Iter<'de, (Term, Term)>),
    Own(std::vec::IntoIter<(Term, Term)>),
    /// A native record's fields.
    FieldsRef(std::slice::Iter<'de, (Atom, Term)>),
    FieldsOwn(std::vec::IntoIter<(Atom, Term)>),
}

impl<'de> Iterator for Pairs<'de> {
    type Item = (Src<'de>, Src<'de>);
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Pairs::Ref(it) => it.next().map(|(k, v)| (Src::Ref(k), Src::Ref(v))),
            Pairs::Own(it) => it.next().map(|(k, v)| (Src::Own(k), Src::Own(v))),
            Pairs::FieldsRef(it) => it.next().map(|(k, v)| (Src::Own(Term::Atom(k.clone())), Src::Ref(v))),
            Pairs::FieldsOwn(it) => it.next().map(|(k, v)| (Src::Own(Term::Atom(k)), Src::Own(v))),
        }
    }
}

impl Pairs<'_> {
    pub(crate) fn remaining(&self) -> usize {
        match self {
            Pairs::Ref(it) => it.len(),
            Pairs::Own(it) => it.len(),
            Pairs::FieldsRef(it) => it.len(),
            Pairs::FieldsOwn(it) => it.len(),
        }
    }
}

/// Remaining nesting allowance, and the limit it started from (for the
/// message).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Depth {
    left: usize,
    limit: usize,
}

/// The serde `Deserializer` reading a [`Term`]; most code wants
/// [`from_term`] or [`from_term_ref`].
pub struct Deserializer<'de> {
    src: Src<'de>,
    depth: Depth,
    /// Set for map keys: there an atom is accepted as a string, so that
    /// `%{name: 1}` reads into a `HashMap<String, _>`.
    atom_is_string: bool,
}

impl<'de> Deserializer<'de> {
    /// Borrowing input lets the target borrow `&'de str` and `&'de [u8]`.
    pub fn from_ref(term: &'de Term) -> Self {
        Deserializer::new(Src::Ref(term))
    }

    /// Owned input lets pass-through fields take their subterms, and
    /// `String`/`Vec<u8>` take a binary's buffer when it is not shared.
    pub fn from_owned(term: Term) -> Self {
        Deserializer::new(Src::Own(term))
    }

    /// Changes how many levels of lists, tuples, maps and tagged tuples may
    /// be entered ([`DEFAULT_DEPTH_LIMIT`] by default).
    pub fn with_depth_limit(mut self, limit: usize) -> Self {
        self.depth = Depth { left: limit, limit };
        self
    }

    fn new(src: Src<'de>) -> Self {
        let depth = Depth { left: DEFAULT_DEPTH_LIMIT, limit: DEFAULT_DEPTH_LIMIT };
        Deserializer { src, depth, atom_is_string: false }
    }

    pub(crate) fn child(src: Src<'de>, depth: Depth) -> Self {
        Deserializer { src, depth, atom_is_string: false }
    }

    pub(crate) fn map_key(src: Src<'de>, depth: Depth) -> Self {
        Deserializer { src, depth, atom_is_string: true }
    }

    fn term(&self) -> &Term {
        self.src.term()
    }

    fn mismatch(&self, expected: impl Into<String>) -> Error {
        Error::mismatch(expected, render::describe(self.term()))
    }

    /// The allowance for this value's children.
    fn enter(&self) -> Result<Depth, Error> {
        if self.depth.left == 0 {
            return Err(Error::new(ErrorKind::TooDeep { limit: self.depth.limit }));
        }
        Ok(Depth { left: self.depth.left - 1, limit: self.depth.limit })
    }

    fn is_atom(&self, name: &str) -> bool {
        self.term().is_atom(name)
    }

    fn float(&self) -> Result<f64, Error> {
        match self.term() {
            Term::Float(x) => Ok(*x),
            Term::Int(i) => Ok(*i as f64),
            Term::Big(b) => match b.to_f64() {
                Some(x) if x.is_finite() => Ok(x),
                _ => Err(self.mismatch("a float in f64 range")),
            },
            _ => Err(self.mismatch("a float")),
        }
    }

    fn seq<V: Visitor<'de>>(self, visitor: V, expected: &str) -> Result<V::Value, Error> {
        let depth = self.enter()?;
        let total = match self.term() {
            Term::List(v) | Term::Tuple(v) => v.len(),
            _ => return Err(self.mismatch(expected)),
        };
        let mut access = SeqDe::new(self.src.into_items(), depth);
        let value = visitor.visit_seq(&mut access)?;
        if access.remaining() > 0 {
            return Err(de::Error::invalid_length(total, &"fewer elements"));
        }
        Ok(value)
    }

    /// A pid, port or reference seen by a visitor that is not the
    /// pass-through one (serde buffering, `serde_json::Value`): shown in the
    /// portable struct form of [`super::foreign`].
    fn portable_map(&self) -> Option<Term> {
        let bin = |s: &str| Term::Binary(Bytes::copy_from_slice(s.as_bytes()));
        let field = |k: &str, v: Term| (bin(k), v);
        let node = |n: &crate::term::Atom| bin(n.as_str());
        let entries = match self.term() {
            Term::Pid(Pid { node: n, id, serial, creation }) => vec![
                field("node", node(n)),
                field("id", Term::Int((*id).into())),
                field("serial", Term::Int((*serial).into())),
                field("creation", Term::Int((*creation).into())),
            ],
            Term::Port(Port { node: n, id, creation }) => vec![
                field("node", node(n)),
                field("id", super::ser::to_term(id).ok()?),
                field("creation", Term::Int((*creation).into())),
            ],
            Term::Ref(Reference { node: n, creation, ids }) => vec![
                field("node", node(n)),
                field("creation", Term::Int((*creation).into())),
                field("ids", Term::List(ids.iter().map(|i| Term::Int((*i).into())).collect())),
            ],
            Term::BitBinary { bytes, bits } => vec![
                field("bytes", Term::Binary(bytes.clone())),
                field("bits", Term::Int((*bits).into())),
            ],
            Term::ImproperList(items, tail) => vec![
                field("items", Term::List(items.iter().map(deepclone::clone_term).collect())),
                field("tail", deepclone::clone_term(tail)),
            ],
            _ => return None,
        };
        Some(Term::Map(entries))
    }
}

macro_rules! integer {
    ($method:ident, $visit:ident, $ty:ty, $from_big:ident) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let n: Option<$ty> = match self.term() {
                Term::Int(i) => <$ty>::try_from(*i).ok(),
                Term::Big(b) => b.$from_big(),
                _ => return Err(self.mismatch("an integer")),
            };
            match n {
                Some(n) => visitor.$visit(n),
                None => Err(self.mismatch(format!(
                    "an integer in {} range ({}..={})",
                    stringify!($ty),
                    <$ty>::MIN,
                    <$ty>::MAX
                ))),
            }
        }
    };
}

impl<'de> de::Deserializer<'de> for Deserializer<'de> {
    type Error = Error;

    /// Used by self-describing targets (`serde_json::Value`, untagged enums,
    /// `#[serde(flatten)]`): atoms `true`/`false`/`nil` become bool/unit,
    /// other atoms and UTF-8 binaries strings, lists and tuples sequences.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.term() {
            Term::Atom(a) => match a.as_str() {
                "true" => visitor.visit_bool(true),
                "false" => visitor.visit_bool(false),
                "nil" => visitor.visit_unit(),
                _ => self.src.visit_name(visitor),
            },
            Term::Int(i) => visitor.visit_i64(*i),
            Term::Big(b) => {
                if let Some(i) = b.to_i128() {
                    visitor.visit_i128(i)
                } else if let Some(u) = b.to_u128() {
                    visitor.visit_u128(u)
                } else {
                    visitor.visit_string(b.to_string())
                }
            }
            Term::Float(x) => visitor.visit_f64(*x),
            Term::Binary(_) => match self.src {
                Src::Ref(Term::Binary(b)) => match std::str::from_utf8(b) {
                    Ok(text) => visitor.visit_borrowed_str(text),
                    Err(_) => visitor.visit_borrowed_bytes(b),
                },
                Src::Own(Term::Binary(b)) => match String::from_utf8(Vec::from(b)) {
                    Ok(text) => visitor.visit_string(text),
                    Err(e) => visitor.visit_byte_buf(e.into_bytes()),
                },
                _ => Err(self.mismatch("a binary")),
            },
            Term::List(_) | Term::Tuple(_) => self.seq(visitor, "a list"),
            Term::Map(_) | Term::Record(_) => {
                let depth = self.enter()?;
                visitor.visit_map(MapDe::new(self.src.into_pairs(), depth))
            }
            Term::Fun(f) => visitor.visit_bytes(&f.0),
            Term::Pid(_) | Term::Port(_) | Term::Ref(_) | Term::BitBinary { .. } | Term::ImproperList(..) => {
                let depth = self.enter()?;
                match self.portable_map() {
                    Some(map) => visitor.visit_map(MapDe::new(Src::Own(map).into_pairs(), depth)),
                    None => Err(self.mismatch("a value")),
                }
            }
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_atom("true") {
            visitor.visit_bool(true)
        } else if self.is_atom("false") {
            visitor.visit_bool(false)
        } else {
            Err(self.mismatch("a boolean (true or false)"))
        }
    }

    integer!(deserialize_i8, visit_i8, i8, to_i8);
    integer!(deserialize_i16, visit_i16, i16, to_i16);
    integer!(deserialize_i32, visit_i32, i32, to_i32);
    integer!(deserialize_i64, visit_i64, i64, to_i64);
    integer!(deserialize_i128, visit_i128, i128, to_i128);
    integer!(deserialize_u8, visit_u8, u8, to_u8);
    integer!(deserialize_u16, visit_u16, u16, to_u16);
    integer!(deserialize_u32, visit_u32, u32, to_u32);
    integer!(deserialize_u64, visit_u64, u64, to_u64);
    integer!(deserialize_u128, visit_u128, u128, to_u128);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let x = self.float()?;
        let y = x as f32;
        if y.is_infinite() {
            return Err(self.mismatch("a float in f32 range"));
        }
        visitor.visit_f32(y)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let x = self.float()?;
        visitor.visit_f64(x)
    }

    /// A one-character binary, or an integer code point (Elixir's `?a`).
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let c = match self.term() {
            Term::Binary(b) => std::str::from_utf8(b).ok().and_then(|s| {
                let mut it = s.chars();
                match (it.next(), it.next()) {
                    (Some(c), None) => Some(c),
                    _ => None,
                }
            }),
            Term::Int(i) => u32::try_from(*i).ok().and_then(char::from_u32),
            _ => None,
        };
        match c {
            Some(c) => visitor.visit_char(c),
            None => Err(self.mismatch("a one-character binary")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    /// A UTF-8 binary; a charlist (Erlang's `"abc"`, Elixir's `'abc'`) is
    /// accepted too, since Erlang code sends those for text.
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        const EXPECTED: &str = "a UTF-8 binary (string)";
        match self.src {
            Src::Ref(Term::Binary(b)) => match std::str::from_utf8(b) {
                Ok(s) => visitor.visit_borrowed_str(s),
                Err(_) => Err(self.mismatch(EXPECTED)),
            },
            Src::Own(Term::Binary(b)) => match String::from_utf8(Vec::from(b)) {
                Ok(s) => visitor.visit_string(s),
                Err(e) => {
                    let term = Term::Binary(Bytes::from(e.into_bytes()));
                    Err(Error::mismatch(EXPECTED, render::describe(&term)))
                }
            },
            Src::Ref(Term::Atom(a)) if self.atom_is_string => visitor.visit_borrowed_str(a.as_str()),
            Src::Own(Term::Atom(ref a)) if self.atom_is_string => visitor.visit_str(a.as_str()),
            _ => match charlist(self.term()) {
                Some(s) => visitor.visit_string(s),
                None => Err(self.mismatch(EXPECTED)),
            },
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_byte_buf(visitor)
    }

    /// A binary; a list goes to the visitor as a sequence, which
    /// `serde_bytes` accepts for lists of bytes.
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.src {
            Src::Ref(Term::Binary(b)) => visitor.visit_borrowed_bytes(b),
            Src::Own(Term::Binary(b)) => visitor.visit_byte_buf(Vec::from(b)),
            Src::Ref(Term::List(_)) | Src::Own(Term::List(_)) => self.seq(visitor, "a binary"),
            _ => Err(self.mismatch("a binary")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_atom("nil") {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_atom("nil") {
            visitor.visit_unit()
        } else {
            Err(self.mismatch("nil"))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        match Kind::from_name(name) {
            Some(kind) => {
                if !kind.accepts(self.term()) {
                    return Err(self.mismatch(kind.expected()));
                }
                passthrough::offer(self.src.into_term(), || visitor.visit_unit())
            }
            None => visitor.visit_newtype_struct(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.term() {
            Term::List(_) => self.seq(visitor, "a list"),
            _ => Err(self.mismatch("a list")),
        }
    }

    /// Tuples and fixed-size arrays: a tuple of exactly `len` elements.
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        match self.term() {
            Term::Tuple(items) if items.len() == len => self.seq(visitor, "a tuple"),
            _ => Err(self.mismatch(tuple_of(len))),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.term() {
            Term::Map(_) | Term::Record(_) => {
                let depth = self.enter()?;
                visitor.visit_map(MapDe::new(self.src.into_pairs(), depth))
            }
            _ => Err(self.mismatch("a map")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.term() {
            // A native record reads like a map of its fields; its module
            // and name are not checked (as `__struct__` is not).
            Term::Map(_) | Term::Record(_) => {
                let depth = self.enter()?;
                // Elixir structs carry their module under `__struct__`;
                // drop it unless the Rust struct asks for it.
                let skip_struct_key = !fields.contains(&"__struct__");
                visitor.visit_map(StructDe::new(self.src.into_pairs(), depth, skip_struct_key))
            }
            _ => Err(self.mismatch(format!("a map (struct {name})"))),
        }
    }

    /// An atom (or binary) for unit variants, a tuple tagged with one for
    /// the others.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let expected = || format!("an atom or a tagged tuple (enum {name})");
        match self.term() {
            Term::Atom(_) => visitor.visit_enum(EnumDe::bare(self.src, self.depth)),
            Term::Binary(_) if self.src.name().is_some() => {
                visitor.visit_enum(EnumDe::bare(self.src, self.depth))
            }
            Term::Tuple(items) if items.first().is_some_and(|t| Src::Ref(t).name().is_some()) => {
                let depth = self.enter()?;
                visitor.visit_enum(EnumDe::tagged(self.src.into_items(), depth))
            }
            _ => Err(self.mismatch(expected())),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.term() {
            _ if self.src.name().is_some() => self.src.visit_name(visitor),
            Term::Int(i) if *i >= 0 => visitor.visit_u64(*i as u64),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn is_human_readable(&self) -> bool {
        true
    }
}

/// The text of a charlist, if `term` is a list of Unicode code points.
fn charlist(term: &Term) -> Option<String> {
    let Term::List(items) = term else { return None };
    items
        .iter()
        .map(|t| match t {
            Term::Int(i) => u32::try_from(*i).ok().and_then(char::from_u32),
            _ => None,
        })
        .collect()
}

fn tuple_of(len: usize) -> String {
    match len {
        1 => "a tuple of 1 element".to_owned(),
        n => format!("a tuple of {n} elements"),
    }
}

impl<'de> IntoDeserializer<'de, Error> for &'de Term {
    type Deserializer = Deserializer<'de>;
    fn into_deserializer(self) -> Deserializer<'de> {
        Deserializer::from_ref(self)
    }
}

impl<'de> IntoDeserializer<'de, Error> for Term {
    type Deserializer = Deserializer<'de>;
    fn into_deserializer(self) -> Deserializer<'de> {
        Deserializer::from_owned(self)
    }
}
