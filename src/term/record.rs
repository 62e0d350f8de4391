//! Native records (OTP 29, RECORD_EXT = 67):
//! `67, NumFields:u32, Flags:u8, Module:atom, Name:atom,
//! FieldName:atom × NumFields, Value:term × NumFields`.
//!
//! Unlike funs, a native record is fully described by its parts, so it is
//! decoded into them (with atom-cache refs resolved like any other atom)
//! and re-encoded from them; the encoding is then byte-identical to OTP
//! 29's `term_to_binary` (see `encode.rs`). What OTP 29.1's decoder
//! refuses is refused here too: a Flags byte above 1 (bit 0 is
//! "exported", the rest are reserved) and repeated field names.
//!
//! Semantics, measured on OTP 29.1.2 (the reference manual's term order
//! does not list records yet):
//! * `=:=` compares module, name, the exported flag and the fields *in
//!   order*: `#m:r{x=1,y=2}` built with fields `[y, x]` is a different term
//!   from one built with `[x, y]`. Field order is kept as received, so the
//!   derived `PartialEq` agrees.
//! * In the term order records sit between tuples and maps
//!   (`tuple < record < map`); among records module, then name, then the
//!   field count decide first. erlnode has no term-order helper, so
//!   nothing here depends on it.
//! * A native record is not a tuple (`tuple_size/1` raises `badarg`).

use super::decode::DecodeError;
use super::reader::{invalid, Reader};
use super::{Atom, Term};
use std::fmt;

/// Flags bit 0: the record was created exported.
pub(crate) const EXPORTED: u8 = 1;

/// A native record: its defining module, its name, whether it is exported,
/// and its fields in the order the BEAM holds them (definition order).
///
/// Field names are unique; [`NativeRecord::new`] checks that, because the
/// BEAM refuses a RECORD_EXT that repeats one.
#[derive(Clone, Debug, PartialEq)]
pub struct NativeRecord {
    module: Atom,
    name: Atom,
    exported: bool,
    fields: Vec<(Atom, Term)>,
}

/// [`NativeRecord::new`] was given the same field name twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {0} given twice in a native record")]
pub struct DuplicateField(pub Atom);

impl NativeRecord {
    /// The record `#module:name{field = value, ...}`, fields in the order
    /// given (which is part of the record's identity: see the module
    /// docs). Only build records a peer knows: a BEAM accepts any, but
    /// `records:get/2` and matching in Erlang code follow the definition
    /// in `module`.
    pub fn new(
        module: Atom,
        name: Atom,
        exported: bool,
        fields: Vec<(Atom, Term)>,
    ) -> Result<NativeRecord, DuplicateField> {
        if let Some(dup) = duplicate(fields.iter().map(|(k, _)| k)) {
            return Err(DuplicateField(dup.clone()));
        }
        Ok(NativeRecord { module, name, exported, fields })
    }

    /// Parts already checked by the decoder.
    pub(crate) fn from_parts(
        module: Atom,
        name: Atom,
        exported: bool,
        fields: Vec<(Atom, Term)>,
    ) -> NativeRecord {
        NativeRecord { module, name, exported, fields }
    }

    /// The module the record is defined in (`records:get_module/1`).
    pub fn module(&self) -> &Atom {
        &self.module
    }
    /// The record's name (`records:get_name/1`).
    pub fn name(&self) -> &Atom {
        &self.name
    }
    /// `records:is_exported/1`.
    pub fn is_exported(&self) -> bool {
        self.exported
    }
    /// Field names and values, in order.
    pub fn fields(&self) -> &[(Atom, Term)] {
        &self.fields
    }
    /// Field names, in order (`records:get_field_names/1`).
    pub fn field_names(&self) -> impl Iterator<Item = &Atom> {
        self.fields.iter().map(|(k, _)| k)
    }
    /// The value of a field (`records:get/2`), `None` if there is no such
    /// field.
    pub fn get(&self, field: &str) -> Option<&Term> {
        self.fields.iter().find(|(k, _)| k.as_str() == field).map(|(_, v)| v)
    }
    /// The value of a field, to change it in place (`records:update/4`
    /// for one field). Names and their order cannot be changed.
    pub fn get_mut(&mut self, field: &str) -> Option<&mut Term> {
        self.fields.iter_mut().find(|(k, _)| k.as_str() == field).map(|(_, v)| v)
    }
    /// Module, name, exported flag and fields.
    pub fn into_parts(self) -> (Atom, Atom, bool, Vec<(Atom, Term)>) {
        (self.module, self.name, self.exported, self.fields)
    }
    /// The Flags byte of RECORD_EXT.
    pub(crate) fn flags(&self) -> u8 {
        if self.exported {
            EXPORTED
        } else {
            0
        }
    }
}

/// `t` with every native record in it turned into the classic record
/// tuple `{Name, Value1, Value2, ...}` (fields in their order), which
/// every release decodes. For exit and monitor reasons bound for a peer
/// that cannot decode native records: the signal must arrive, and a
/// process on OTP 28 or older knows records only as such tuples. `None`
/// when `t` holds no record.
pub fn records_as_tuples(t: &Term) -> Option<Term> {
    fn walk(t: &Term) -> Option<Term> {
        let seq = |items: &[Term]| -> Option<Vec<Term>> {
            let changed: Vec<Option<Term>> = items.iter().map(walk).collect();
            changed.iter().any(Option::is_some).then(|| changed.into_iter().zip(items).map(|(c, o)| c.unwrap_or_else(|| o.clone())).collect())
        };
        match t {
            Term::Record(r) => {
                let mut items = vec![Term::Atom(r.name().clone())];
                items.extend(r.fields().iter().map(|(_, v)| walk(v).unwrap_or_else(|| v.clone())));
                Some(Term::Tuple(items))
            }
            Term::Tuple(items) => seq(items).map(Term::Tuple),
            Term::List(items) => seq(items).map(Term::List),
            Term::ImproperList(items, tail) => {
                let (i, tl) = (seq(items), walk(tail));
                (i.is_some() || tl.is_some()).then(|| Term::ImproperList(i.unwrap_or_else(|| items.clone()), Box::new(tl.unwrap_or_else(|| (**tail).clone()))))
            }
            Term::Map(kv) => {
                let changed: Vec<(Option<Term>, Option<Term>)> = kv.iter().map(|(k, v)| (walk(k), walk(v))).collect();
                changed.iter().any(|(k, v)| k.is_some() || v.is_some()).then(|| {
                    changed.into_iter().zip(kv).map(|((ck, cv), (k, v))| (ck.unwrap_or_else(|| k.clone()), cv.unwrap_or_else(|| v.clone()))).collect()
                }).map(Term::Map)
            }
            _ => None,
        }
    }
    walk(t)
}

/// Renders like the BEAM's `~p` (`#mymod:pt{x = 1,y = two}`) for the
/// record's own parts; the values use `Term`'s `Debug`.
impl fmt::Display for NativeRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}:{}{{", self.module, self.name)?;
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k} = {v:?}")?;
        }
        f.write_str("}")
    }
}

/// Reads NumFields and Flags (the tag byte already consumed). Flags above
/// 1 are refused, as OTP 29 does.
pub(crate) fn read_header(r: &mut Reader<'_>) -> Result<(u32, bool), DecodeError> {
    let n = r.u32()?;
    let flags = r.u8()?;
    if flags > EXPORTED {
        return Err(invalid("native record with reserved flag bits set"));
    }
    // Every field needs at least a 2-byte atom (a cache ref) and a 1-byte
    // value, so a count the input cannot hold is refused before anything
    // is sized by it.
    if u64::from(n) * 3 > r.remaining() as u64 {
        return Err(DecodeError::Truncated);
    }
    Ok((n, flags == EXPORTED))
}

/// Refuses repeated field names.
pub(crate) fn check_names<'a>(names: impl Iterator<Item = &'a Atom>) -> Result<(), DecodeError> {
    match duplicate(names) {
        Some(_) => Err(invalid("native record repeats a field name")),
        None => Ok(()),
    }
}

/// Below this many names pairwise comparison is cheaper than hashing.
const PAIRWISE_MAX: usize = 16;

/// The first name that occurs twice. The names come from a peer, so large
/// sets use std's randomly keyed hasher.
fn duplicate<'a>(names: impl Iterator<Item = &'a Atom>) -> Option<&'a Atom> {
    let names: Vec<&Atom> = names.collect();
    if names.len() <= PAIRWISE_MAX {
        return names.iter().enumerate().find(|(i, a)| names[..*i].contains(a)).map(|(_, a)| *a);
    }
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    names.into_iter().find(|a| !seen.insert(a.as_str()))
}
