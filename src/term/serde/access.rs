//! serde's access traits over lists, maps, struct maps and tagged tuples.
//! Each level adds its path segment to errors passing through it.

use super::de::{Deserializer, Depth, Items, Pairs, Src};
use super::error::{Error, Segment};
use super::render;
use crate::term::Term;
use serde::de::{self, DeserializeSeed, Visitor};

/// Elements of a list or tuple.
pub(crate) struct SeqDe<'de> {
    items: Items<'de>,
    index: usize,
    depth: Depth,
}

impl<'de> SeqDe<'de> {
    pub(crate) fn new(items: Items<'de>, depth: Depth) -> Self {
        SeqDe { items, index: 0, depth }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.items.remaining()
    }
}

impl<'de> de::SeqAccess<'de> for SeqDe<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(src) = self.items.next() else { return Ok(None) };
        let index = self.index;
        self.index += 1;
        seed.deserialize(Deserializer::child(src, self.depth))
            .map(Some)
            .map_err(|e| e.at_index(index))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.remaining())
    }
}

/// Entries of a map read as a map (`HashMap`, `BTreeMap`, flatten).
pub(crate) struct MapDe<'de> {
    pairs: Pairs<'de>,
    /// The pending value, with its key kept for the error path.
    pending: Option<(Src<'de>, Src<'de>)>,
    depth: Depth,
}

impl<'de> MapDe<'de> {
    pub(crate) fn new(pairs: Pairs<'de>, depth: Depth) -> Self {
        MapDe { pairs, pending: None, depth }
    }
}

fn key_segment(key: &Src<'_>) -> Segment {
    Segment::Key(render::short(key.term()))
}

impl<'de> de::MapAccess<'de> for MapDe<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.pairs.next() else { return Ok(None) };
        let result = seed
            .deserialize(Deserializer::map_key(key.duplicate(), self.depth))
            .map_err(|e| e.at(key_segment(&key)));
        self.pending = Some((key, value));
        result.map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (key, value) = self
            .pending
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("map value requested before its key"))?;
        seed.deserialize(Deserializer::child(value, self.depth))
            .map_err(|e| e.at(key_segment(&key)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.pairs.remaining())
    }
}

/// Entries of a map read as a struct: keys are field names given as atoms
/// or binaries.
pub(crate) struct StructDe<'de> {
    pairs: Pairs<'de>,
    pending: Option<(Src<'de>, Src<'de>)>,
    depth: Depth,
    skip_struct_key: bool,
}

impl<'de> StructDe<'de> {
    pub(crate) fn new(pairs: Pairs<'de>, depth: Depth, skip_struct_key: bool) -> Self {
        StructDe { pairs, pending: None, depth, skip_struct_key }
    }
}

impl<'de> de::MapAccess<'de> for StructDe<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        loop {
            let Some((key, value)) = self.pairs.next() else { return Ok(None) };
            if self.skip_struct_key && key.name() == Some("__struct__") {
                continue;
            }
            let result = seed.deserialize(NameDe { src: &key });
            self.pending = Some((key, value));
            return result.map(Some);
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (key, value) = self
            .pending
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("struct value requested before its key"))?;
        seed.deserialize(Deserializer::child(value, self.depth)).map_err(|e| match key.name() {
            Some(name) => e.at_field(name),
            None => e.at(key_segment(&key)),
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.pairs.remaining())
    }
}

/// A struct key or enum tag. Keys that cannot be names (integers, tuples)
/// are shown as their rendering, so they fall into serde's unknown-field
/// handling (ignored, or an error with `deny_unknown_fields`) instead of
/// matching a field by position.
struct NameDe<'a, 'de> {
    src: &'a Src<'de>,
}

impl<'de> de::Deserializer<'de> for NameDe<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.src.name() {
            Some(_) => self.src.visit_name(visitor),
            None => visitor.visit_string(render::short(self.src.term())),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// An enum given as a bare atom (unit variant) or a tagged tuple.
pub(crate) struct EnumDe<'de> {
    tag: Src<'de>,
    /// The tuple elements after the tag; `None` for a bare atom.
    payload: Option<Items<'de>>,
    depth: Depth,
}

impl<'de> EnumDe<'de> {
    pub(crate) fn bare(tag: Src<'de>, depth: Depth) -> Self {
        EnumDe { tag, payload: None, depth }
    }

    /// `items` is a tuple whose first element is a name.
    pub(crate) fn tagged(mut items: Items<'de>, depth: Depth) -> Self {
        let tag = items.next().unwrap_or(Src::Own(Term::atom("")));
        EnumDe { tag, payload: Some(items), depth }
    }
}

impl<'de> de::EnumAccess<'de> for EnumDe<'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let v = seed.deserialize(NameDe { src: &self.tag })?;
        Ok((v, self))
    }
}

impl EnumDe<'_> {
    fn tag_text(&self) -> String {
        render::short(self.tag.term())
    }

    fn field_name(&self) -> String {
        self.tag.name().unwrap_or_default().to_owned()
    }

    fn payload_len(&self) -> Option<usize> {
        self.payload.as_ref().map(Items::remaining)
    }

    fn found(&self) -> String {
        match self.payload_len() {
            None => render::describe(self.tag.term()),
            Some(n) => format!("tuple of {} elements tagged {}", n + 1, self.tag_text()),
        }
    }

    fn mismatch(&self, expected: String) -> Error {
        Error::mismatch(expected, self.found())
    }
}

impl<'de> de::VariantAccess<'de> for EnumDe<'de> {
    type Error = Error;

    /// A bare atom, or leniently a 1-tuple `{:tag}`.
    fn unit_variant(self) -> Result<(), Error> {
        match self.payload_len() {
            None | Some(0) => Ok(()),
            Some(_) => Err(self.mismatch(format!("atom {} (unit variant)", self.tag_text()))),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(mut self, seed: T) -> Result<T::Value, Error> {
        if self.payload_len() != Some(1) {
            return Err(self.mismatch(format!("a tuple {{{}, value}}", self.tag_text())));
        }
        let field = self.field_name();
        match self.payload.as_mut().and_then(Iterator::next) {
            Some(src) => seed
                .deserialize(Deserializer::child(src, self.depth))
                .map_err(|e| e.at_field(&field)),
            None => Err(self.mismatch(format!("a tuple {{{}, value}}", self.tag_text()))),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        if self.payload_len() != Some(len) {
            let blanks = ", _".repeat(len);
            return Err(self.mismatch(format!("a tuple {{{}{blanks}}}", self.tag_text())));
        }
        let field = self.field_name();
        let Some(items) = self.payload else {
            return Err(Error::mismatch("a tagged tuple", "an atom"));
        };
        visitor.visit_seq(SeqDe::new(items, self.depth)).map_err(|e| e.at_field(&field))
    }

    fn struct_variant<V: Visitor<'de>>(
        mut self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let expected = |tag: String| format!("a tuple {{{tag}, %{{...}}}}");
        if self.payload_len() != Some(1) {
            return Err(self.mismatch(expected(self.tag_text())));
        }
        let field = self.field_name();
        match self.payload.as_mut().and_then(Iterator::next) {
            Some(src) => de::Deserializer::deserialize_struct(
                Deserializer::child(src, self.depth),
                "variant",
                fields,
                visitor,
            )
            .map_err(|e| e.at_field(&field)),
            None => Err(self.mismatch(expected(self.tag_text()))),
        }
    }
}
