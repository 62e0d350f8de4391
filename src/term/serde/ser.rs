//! Rust value -> `Term`.

use super::error::{Error, ErrorKind, Segment};
use super::mapbuild::MapBuilder;
use super::passthrough;
use super::render;
use crate::term::Term;
use bytes::Bytes;
use num_bigint::BigInt;
use serde::ser::{self, Serialize};

/// Converts any `Serialize` value into a term, following the mapping in the
/// [module documentation](super).
pub fn to_term<T: Serialize + ?Sized>(value: &T) -> Result<Term, Error> {
    value.serialize(Serializer)
}

/// The serde `Serializer` whose output is a [`Term`]. Stateless; most code
/// wants [`to_term`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Serializer;

fn nil() -> Term {
    Term::atom("nil")
}

fn int<T>(v: T) -> Term
where
    T: TryInto<i64> + Into<BigInt> + Copy,
{
    match v.try_into() {
        Ok(i) => Term::Int(i),
        Err(_) => Term::Big(v.into()),
    }
}

fn float(v: f64) -> Result<Term, Error> {
    if v.is_finite() {
        Ok(Term::Float(v))
    } else {
        Err(Error::new(ErrorKind::Unsupported(format!(
            "cannot encode {v} as an Erlang float (the BEAM has no NaN or infinity)"
        ))))
    }
}

impl ser::Serializer for Serializer {
    type Ok = Term;
    type Error = Error;
    type SerializeSeq = Items;
    type SerializeTuple = Items;
    type SerializeTupleStruct = Items;
    type SerializeTupleVariant = Items;
    type SerializeMap = MapSer;
    type SerializeStruct = StructSer;
    type SerializeStructVariant = StructSer;

    fn serialize_bool(self, v: bool) -> Result<Term, Error> {
        Ok(Term::atom(if v { "true" } else { "false" }))
    }
    fn serialize_i8(self, v: i8) -> Result<Term, Error> {
        Ok(Term::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Term, Error> {
        Ok(Term::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Term, Error> {
        Ok(Term::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Term, Error> {
        Ok(Term::Int(v))
    }
    fn serialize_i128(self, v: i128) -> Result<Term, Error> {
        Ok(int(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Term, Error> {
        Ok(Term::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Term, Error> {
        Ok(Term::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Term, Error> {
        Ok(Term::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Term, Error> {
        Ok(int(v))
    }
    fn serialize_u128(self, v: u128) -> Result<Term, Error> {
        Ok(int(v))
    }
    fn serialize_f32(self, v: f32) -> Result<Term, Error> {
        float(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<Term, Error> {
        float(v)
    }
    fn serialize_char(self, v: char) -> Result<Term, Error> {
        let mut buf = [0u8; 4];
        Ok(Term::Binary(Bytes::copy_from_slice(v.encode_utf8(&mut buf).as_bytes())))
    }
    fn serialize_str(self, v: &str) -> Result<Term, Error> {
        Ok(Term::Binary(Bytes::copy_from_slice(v.as_bytes())))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Term, Error> {
        Ok(Term::Binary(Bytes::copy_from_slice(v)))
    }
    fn serialize_none(self) -> Result<Term, Error> {
        Ok(nil())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Term, Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Term, Error> {
        Ok(nil())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Term, Error> {
        Ok(nil())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Term, Error> {
        Ok(Term::atom(variant))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<Term, Error> {
        if passthrough::Kind::from_name(name).is_some() {
            let (result, captured) = passthrough::capture(|| value.serialize(Serializer));
            return match captured {
                Some(term) => Ok(term),
                None => result,
            };
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Term, Error> {
        let inner = value.serialize(Serializer).map_err(|e| e.at_field(variant))?;
        Ok(Term::Tuple(vec![Term::atom(variant), inner]))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Items, Error> {
        Ok(Items::new(Shape::List, len.unwrap_or(0)))
    }
    fn serialize_tuple(self, len: usize) -> Result<Items, Error> {
        Ok(Items::new(Shape::Tuple, len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Items, Error> {
        Ok(Items::new(Shape::Tuple, len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Items, Error> {
        let mut items = Items::new(Shape::Tagged(variant), len + 1);
        items.items.push(Term::atom(variant));
        Ok(items)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapSer, Error> {
        Ok(MapSer { map: MapBuilder::with_capacity(len.unwrap_or(0)), key: None })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<StructSer, Error> {
        Ok(StructSer { map: MapBuilder::with_capacity(len), tag: None })
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<StructSer, Error> {
        Ok(StructSer { map: MapBuilder::with_capacity(len), tag: Some(variant) })
    }

    /// Human-readable so that types with two forms (IP addresses, UUIDs,
    /// timestamps) pick the string form, which is what Elixir code expects.
    fn is_human_readable(&self) -> bool {
        true
    }
}

enum Shape {
    List,
    Tuple,
    /// A tuple variant: the tag is already `items[0]`.
    Tagged(&'static str),
}

/// Sequences, tuples, tuple structs and tuple variants.
pub struct Items {
    shape: Shape,
    items: Vec<Term>,
}

impl Items {
    fn new(shape: Shape, len: usize) -> Items {
        Items { shape, items: Vec::with_capacity(len.min(4096)) }
    }

    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let index = match self.shape {
            Shape::Tagged(_) => self.items.len() - 1,
            _ => self.items.len(),
        };
        match value.serialize(Serializer) {
            Ok(term) => {
                self.items.push(term);
                Ok(())
            }
            Err(e) => Err(match self.shape {
                Shape::Tagged(variant) => e.at_index(index).at_field(variant),
                _ => e.at_index(index),
            }),
        }
    }

    fn finish(self) -> Term {
        match self.shape {
            Shape::List => Term::List(self.items),
            Shape::Tuple | Shape::Tagged(_) => Term::Tuple(self.items),
        }
    }
}

impl ser::SerializeSeq for Items {
    type Ok = Term;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Result<Term, Error> {
        Ok(self.finish())
    }
}

impl ser::SerializeTuple for Items {
    type Ok = Term;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Result<Term, Error> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleStruct for Items {
    type Ok = Term;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Result<Term, Error> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleVariant for Items {
    type Ok = Term;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Result<Term, Error> {
        Ok(self.finish())
    }
}

/// Maps: keys are serialized like any value, so `String` keys become
/// binaries and unit-variant keys become atoms.
pub struct MapSer {
    map: MapBuilder,
    key: Option<Term>,
}

impl ser::SerializeMap for MapSer {
    type Ok = Term;
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(key.serialize(Serializer)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| <Error as ser::Error>::custom("map value serialized before its key"))?;
        match value.serialize(Serializer) {
            Ok(v) => {
                self.map.insert(key, v);
                Ok(())
            }
            Err(e) => Err(e.at(Segment::Key(render::short(&key)))),
        }
    }

    fn end(self) -> Result<Term, Error> {
        Ok(self.map.finish())
    }
}

/// Structs and struct variants: fields become atom keys.
pub struct StructSer {
    map: MapBuilder,
    tag: Option<&'static str>,
}

impl StructSer {
    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        match value.serialize(Serializer) {
            Ok(v) => {
                self.map.insert(Term::atom(key), v);
                Ok(())
            }
            Err(e) => {
                let e = e.at_field(key);
                Err(match self.tag {
                    Some(variant) => e.at_field(variant),
                    None => e,
                })
            }
        }
    }

    fn finish(self) -> Term {
        let map = self.map.finish();
        match self.tag {
            Some(variant) => Term::Tuple(vec![Term::atom(variant), map]),
            None => map,
        }
    }
}

impl ser::SerializeStruct for StructSer {
    type Ok = Term;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<Term, Error> {
        Ok(self.finish())
    }
}

impl ser::SerializeStructVariant for StructSer {
    type Ok = Term;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<Term, Error> {
        Ok(self.finish())
    }
}
