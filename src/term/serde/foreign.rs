//! Portable forms of the pass-through types, for formats other than erlnode's
//! (logging a message as JSON, storing a pid in a config file).
//!
//! They are chosen to be readable and to round-trip where the format allows:
//!
//! | type        | portable form                                             |
//! |-------------|-----------------------------------------------------------|
//! | `Atom`      | string                                                    |
//! | `Pid`       | struct `{node, id, serial, creation}`                     |
//! | `Port`      | struct `{node, id, creation}`                             |
//! | `Reference` | struct `{node, creation, ids}`                            |
//! | `Term`      | the natural shape, lossy: see [`Natural`]                 |
//! | `Binary`    | bytes (a sequence of integers where the format has none)  |
//!
//! The same forms are what the erlnode deserializer itself sees when serde
//! buffers a value (untagged enums, `#[serde(flatten)]`), because serde then
//! replays the value through its own internal deserializer.

use super::mapbuild::MapBuilder;
use crate::term::{Atom, OpaqueFun, Pid, Port, Reference, Term};
use bytes::Bytes;
use num_bigint::BigInt;
use num_traits::ToPrimitive;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, SerializeStruct, Serializer};
use std::fmt;
use std::marker::PhantomData;

pub(crate) trait Foreign: Sized {
    /// Reads the portable form from whatever a foreign deserializer visits.
    type Visitor: for<'de> Visitor<'de, Value = Self>;
    fn visitor() -> Self::Visitor;
    fn serialize_foreign<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
    fn deserialize_foreign<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

pub(crate) struct AtomVisitor;

impl Visitor<'_> for AtomVisitor {
    type Value = Atom;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an atom")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Atom, E> {
        Ok(Atom::new(v))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Atom, E> {
        Ok(Atom::from(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Atom, E> {
        std::str::from_utf8(v).map(Atom::new).map_err(|_| E::invalid_value(Unexpected::Bytes(v), &self))
    }
}

impl Foreign for Atom {
    type Visitor = AtomVisitor;
    fn visitor() -> AtomVisitor {
        AtomVisitor
    }

    fn serialize_foreign<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }

    fn deserialize_foreign<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(AtomVisitor)
    }
}

/// A visitor for a portable struct form: maps and sequences are handed to
/// the derived `Deserialize` of the `*In` struct.
pub(crate) struct StructFormVisitor<T>(PhantomData<T>, &'static str);

impl<'de, T: Foreign + FromForm> Visitor<'de> for StructFormVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_form(MapAccessDeserializer::new(map))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::from_form(SeqAccessDeserializer::new(seq))
    }
}

/// Builds a value from its derived portable struct.
pub(crate) trait FromForm: Sized {
    fn from_form<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

macro_rules! struct_form {
    ($ty:ty, $name:literal, $fields:expr, $expecting:literal) => {
        impl Foreign for $ty {
            type Visitor = StructFormVisitor<$ty>;
            fn visitor() -> Self::Visitor {
                StructFormVisitor(PhantomData, $expecting)
            }
            fn serialize_foreign<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.to_form().serialize(s)
            }
            fn deserialize_foreign<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_struct($name, $fields, Self::visitor())
            }
        }
    };
}

#[derive(serde::Serialize)]
#[serde(rename = "Pid")]
struct PidOut<'a> {
    node: &'a str,
    id: u32,
    serial: u32,
    creation: u32,
}

#[derive(serde::Deserialize)]
#[serde(rename = "Pid")]
struct PidIn {
    node: String,
    id: u32,
    serial: u32,
    creation: u32,
}

impl Pid {
    fn to_form(&self) -> PidOut<'_> {
        PidOut { node: self.node.as_str(), id: self.id, serial: self.serial, creation: self.creation }
    }
}

impl FromForm for Pid {
    fn from_form<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = PidIn::deserialize(d)?;
        Ok(Pid { node: Atom::from(p.node), id: p.id, serial: p.serial, creation: p.creation })
    }
}

struct_form!(Pid, "Pid", &["node", "id", "serial", "creation"], "a pid");

#[derive(serde::Serialize)]
#[serde(rename = "Port")]
struct PortOut<'a> {
    node: &'a str,
    id: u64,
    creation: u32,
}

#[derive(serde::Deserialize)]
#[serde(rename = "Port")]
struct PortIn {
    node: String,
    id: u64,
    creation: u32,
}

impl Port {
    fn to_form(&self) -> PortOut<'_> {
        PortOut { node: self.node.as_str(), id: self.id, creation: self.creation }
    }
}

impl FromForm for Port {
    fn from_form<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = PortIn::deserialize(d)?;
        Ok(Port { node: Atom::from(p.node), id: p.id, creation: p.creation })
    }
}

struct_form!(Port, "Port", &["node", "id", "creation"], "a port");

#[derive(serde::Serialize)]
#[serde(rename = "Reference")]
struct RefOut<'a> {
    node: &'a str,
    creation: u32,
    ids: &'a [u32],
}

#[derive(serde::Deserialize)]
#[serde(rename = "Reference")]
struct RefIn {
    node: String,
    creation: u32,
    ids: Vec<u32>,
}

impl Reference {
    fn to_form(&self) -> RefOut<'_> {
        RefOut { node: self.node.as_str(), creation: self.creation, ids: &self.ids }
    }
}

impl FromForm for Reference {
    fn from_form<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = RefIn::deserialize(d)?;
        if r.ids.is_empty() || r.ids.len() > 5 {
            return Err(de::Error::invalid_length(r.ids.len(), &"1 to 5 reference ids"));
        }
        Ok(Reference { node: Atom::from(r.node), creation: r.creation, ids: r.ids.into() })
    }
}

struct_form!(Reference, "Reference", &["node", "creation", "ids"], "a reference");

pub(crate) struct BinaryVisitor;

impl<'de> Visitor<'de> for BinaryVisitor {
    type Value = crate::term::Binary;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a binary")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(crate::term::Binary::from(v))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        Ok(crate::term::Binary::from(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(crate::term::Binary::from(v.as_bytes()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element::<u8>()? {
            v.push(b);
        }
        Ok(crate::term::Binary::from(v))
    }
}

impl Foreign for crate::term::Binary {
    type Visitor = BinaryVisitor;
    fn visitor() -> BinaryVisitor {
        BinaryVisitor
    }
    fn serialize_foreign<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self)
    }
    fn deserialize_foreign<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(BinaryVisitor)
    }
}

impl Foreign for Term {
    type Visitor = NaturalVisitor;
    fn visitor() -> NaturalVisitor {
        NaturalVisitor
    }

    fn serialize_foreign<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Natural(self).serialize(s)
    }

    fn deserialize_foreign<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NaturalVisitor)
    }
}

/// A term in the shape a JSON reader would expect. Lossy by design:
///
/// * `true`/`false` become booleans, `nil` becomes unit (JSON `null`), other
///   atoms become strings;
/// * integers outside `i128`/`u128` become decimal strings;
/// * binaries become strings when valid UTF-8, bytes otherwise;
/// * lists and tuples both become sequences;
/// * maps stay maps (the format decides whether non-string keys are allowed);
/// * pids, ports and references take their portable struct forms;
/// * bitstrings become `{bytes, bits}`, improper lists `{items, tail}`, funs
///   the bytes of their encoding;
/// * native records become maps of their fields (module and name dropped),
///   as they deserialize into Rust structs.
///
/// Reading back (`deserialize_any`): booleans become atoms, unit/none `nil`,
/// strings and bytes binaries, sequences lists, maps maps.
pub(crate) struct Natural<'a>(pub(crate) &'a Term);

impl Serialize for Natural<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Term::Atom(a) => match a.as_str() {
                "true" => s.serialize_bool(true),
                "false" => s.serialize_bool(false),
                "nil" => s.serialize_unit(),
                other => s.serialize_str(other),
            },
            Term::Int(i) => s.serialize_i64(*i),
            Term::Big(b) => {
                if let Some(i) = b.to_i128() {
                    s.serialize_i128(i)
                } else if let Some(u) = b.to_u128() {
                    s.serialize_u128(u)
                } else {
                    s.collect_str(b)
                }
            }
            Term::Float(x) => s.serialize_f64(*x),
            Term::Binary(b) => match std::str::from_utf8(b) {
                Ok(text) => s.serialize_str(text),
                Err(_) => s.serialize_bytes(b),
            },
            Term::BitBinary { bytes, bits } => {
                let mut st = s.serialize_struct("BitBinary", 2)?;
                st.serialize_field("bytes", &RawBytes(bytes))?;
                st.serialize_field("bits", bits)?;
                st.end()
            }
            Term::List(items) | Term::Tuple(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Natural(item))?;
                }
                seq.end()
            }
            Term::ImproperList(items, tail) => {
                let mut st = s.serialize_struct("ImproperList", 2)?;
                st.serialize_field("items", &NaturalSlice(items))?;
                st.serialize_field("tail", &Natural(tail))?;
                st.end()
            }
            Term::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(&Natural(k), &Natural(v))?;
                }
                map.end()
            }
            Term::Pid(p) => p.serialize_foreign(s),
            Term::Port(p) => p.serialize_foreign(s),
            Term::Ref(r) => r.serialize_foreign(s),
            Term::Fun(OpaqueFun(bytes)) => s.serialize_bytes(bytes),
            Term::Record(r) => {
                let mut map = s.serialize_map(Some(r.fields().len()))?;
                for (k, v) in r.fields() {
                    map.serialize_entry(k.as_str(), &Natural(v))?;
                }
                map.end()
            }
        }
    }
}

struct NaturalSlice<'a>(&'a [Term]);

impl Serialize for NaturalSlice<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&Natural(item))?;
        }
        seq.end()
    }
}

/// Bytes serialized with `serialize_bytes` rather than as a sequence.
struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

pub(crate) struct NaturalVisitor;

impl<'de> Visitor<'de> for NaturalVisitor {
    type Value = Term;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Term, E> {
        Ok(Term::atom(if v { "true" } else { "false" }))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Term, E> {
        Ok(Term::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Term, E> {
        Ok(i64::try_from(v).map(Term::Int).unwrap_or_else(|_| Term::Big(BigInt::from(v))))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Term, E> {
        Ok(i64::try_from(v).map(Term::Int).unwrap_or_else(|_| Term::Big(BigInt::from(v))))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Term, E> {
        Ok(i64::try_from(v).map(Term::Int).unwrap_or_else(|_| Term::Big(BigInt::from(v))))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Term, E> {
        Ok(Term::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Term, E> {
        Ok(Term::Binary(Bytes::copy_from_slice(v.as_bytes())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Term, E> {
        Ok(Term::Binary(Bytes::from(v)))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Term, E> {
        Ok(Term::Binary(Bytes::copy_from_slice(v)))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Term, E> {
        Ok(Term::Binary(Bytes::from(v)))
    }
    fn visit_none<E: de::Error>(self) -> Result<Term, E> {
        Ok(Term::atom("nil"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Term, E> {
        Ok(Term::atom("nil"))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Term, D::Error> {
        d.deserialize_any(NaturalVisitor)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Term, D::Error> {
        d.deserialize_any(NaturalVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Term, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element_seed(NaturalSeed)? {
            items.push(item);
        }
        Ok(Term::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Term, A::Error> {
        let mut out = MapBuilder::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((k, v)) = map.next_entry_seed(NaturalSeed, NaturalSeed)? {
            out.insert(k, v);
        }
        Ok(out.finish())
    }
}

struct NaturalSeed;

impl<'de> de::DeserializeSeed<'de> for NaturalSeed {
    type Value = Term;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Term, D::Error> {
        // Through `Term::deserialize`, so that an erlnode deserializer nested
        // in a foreign one still passes pids and references through.
        Term::deserialize(d)
    }
}
