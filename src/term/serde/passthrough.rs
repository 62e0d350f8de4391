//! `Serialize`/`Deserialize` for the term model itself, so that a struct can
//! hold a `Term`, `Pid`, `Reference`, `Port` or `Atom` field that crosses the
//! bridge untouched.
//!
//! serde has no way to hand a concrete value through a generic
//! `Serializer`/`Deserializer`, so the usual trick is used: the value
//! presents itself as a newtype struct with a private name. The erlnode
//! serializer and deserializer recognise the name and move the term through a
//! thread-local slot; any other format sees an ordinary newtype and gets the
//! portable form from [`super::foreign`]. The slot is filled and emptied
//! within a single call with no user code in between, so nesting and
//! re-entrancy cannot observe a stale value, and other formats never pay
//! for a clone.

use super::deepclone;
use super::foreign::Foreign;
use crate::term::{Atom, Binary, Pid, Port, Reference, Term};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

pub(crate) const TERM: &str = "$erlnode::Term";
pub(crate) const ATOM: &str = "$erlnode::Atom";
pub(crate) const PID: &str = "$erlnode::Pid";
pub(crate) const PORT: &str = "$erlnode::Port";
pub(crate) const REF: &str = "$erlnode::Reference";
pub(crate) const BINARY: &str = "$erlnode::Binary";

/// Which pass-through type a newtype name announces.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Kind {
    Term,
    Atom,
    Pid,
    Port,
    Ref,
    Binary,
}

impl Kind {
    pub(crate) fn from_name(name: &str) -> Option<Kind> {
        match name {
            TERM => Some(Kind::Term),
            ATOM => Some(Kind::Atom),
            PID => Some(Kind::Pid),
            PORT => Some(Kind::Port),
            REF => Some(Kind::Ref),
            BINARY => Some(Kind::Binary),
            _ => None,
        }
    }

    pub(crate) fn accepts(self, term: &Term) -> bool {
        match self {
            Kind::Term => true,
            Kind::Atom => matches!(term, Term::Atom(_)),
            Kind::Pid => matches!(term, Term::Pid(_)),
            Kind::Port => matches!(term, Term::Port(_)),
            Kind::Ref => matches!(term, Term::Ref(_)),
            Kind::Binary => matches!(term, Term::Binary(_)),
        }
    }

    pub(crate) fn expected(self) -> &'static str {
        match self {
            Kind::Term => "any term",
            Kind::Atom => "an atom",
            Kind::Pid => "a pid",
            Kind::Port => "a port",
            Kind::Ref => "a reference",
            Kind::Binary => "a binary",
        }
    }
}

thread_local! {
    /// Set by the erlnode serializer just before a pass-through value
    /// serializes itself: tells the value to deposit a clone in `SLOT`
    /// instead of writing its portable form.
    static CAPTURE: Cell<bool> = const { Cell::new(false) };
    /// The term in transit, in either direction.
    static SLOT: Cell<Option<Term>> = const { Cell::new(None) };
}

/// Serializer side: run `f`, which serializes the inner value of a
/// pass-through newtype, and collect the term it deposited.
pub(crate) fn capture<R>(f: impl FnOnce() -> R) -> (R, Option<Term>) {
    SLOT.with(|s| s.set(None));
    CAPTURE.with(|c| c.set(true));
    let r = f();
    CAPTURE.with(|c| c.set(false));
    (r, SLOT.with(|s| s.take()))
}

/// Deserializer side: make `term` available to the pass-through visitor
/// while `f` runs.
pub(crate) fn offer<R>(term: Term, f: impl FnOnce() -> R) -> R {
    SLOT.with(|s| s.set(Some(term)));
    let r = f();
    SLOT.with(|s| s.set(None));
    r
}

/// A type that crosses the bridge as itself.
pub(crate) trait PassThrough: Foreign + Sized {
    const NAME: &'static str;
    fn to_term(&self) -> Term;
    /// Only called with a term that `Kind::accepts`.
    fn from_term(term: Term) -> Option<Self>;
}

/// The inner value of the announcing newtype.
struct Carrier<'a, T>(&'a T);

impl<T: PassThrough> Serialize for Carrier<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if CAPTURE.with(|c| c.replace(false)) {
            SLOT.with(|slot| slot.set(Some(self.0.to_term())));
            return s.serialize_unit();
        }
        self.0.serialize_foreign(s)
    }
}

fn serialize_pt<T: PassThrough, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_newtype_struct(T::NAME, &Carrier(v))
}

/// Receives the slot signal from the erlnode deserializer, and forwards
/// everything else (a foreign format, or serde's own buffered replay) to the
/// portable-form visitor.
struct PtVisitor<T>(PhantomData<T>);

macro_rules! forward {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<T, E> {
            T::visitor().$method(v)
        }
    )*};
}

impl<'de, T: PassThrough> Visitor<'de> for PtVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        T::visitor().expecting(f)
    }

    /// The erlnode deserializer's signal that the term is in the slot.
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        match SLOT.with(|s| s.take()) {
            Some(term) => T::from_term(term).ok_or_else(|| E::custom("pass-through type mismatch")),
            None => T::visitor().visit_unit(),
        }
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        T::deserialize_foreign(d)
    }

    forward! {
        visit_bool(bool), visit_i64(i64), visit_u64(u64), visit_i128(i128), visit_u128(u128),
        visit_f64(f64), visit_str(&str), visit_borrowed_str(&'de str), visit_string(String),
        visit_bytes(&[u8]), visit_borrowed_bytes(&'de [u8]), visit_byte_buf(Vec<u8>),
    }

    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        T::visitor().visit_none()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        T::visitor().visit_some(d)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::visitor().visit_seq(seq)
    }
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::visitor().visit_map(map)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<T, A::Error> {
        T::visitor().visit_enum(data)
    }
}

fn deserialize_pt<'de, T: PassThrough, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_newtype_struct(T::NAME, PtVisitor(PhantomData))
}

macro_rules! pass_through {
    ($ty:ty, $name:expr, |$s:ident| $to:expr, |$t:ident| $from:expr) => {
        impl PassThrough for $ty {
            const NAME: &'static str = $name;
            fn to_term(&self) -> Term {
                let $s = self;
                $to
            }
            fn from_term($t: Term) -> Option<Self> {
                $from
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serialize_pt(self, s)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize_pt(d)
            }
        }
    };
}

pass_through!(Term, TERM, |t| deepclone::clone_term(t), |t| Some(t));
pass_through!(Atom, ATOM, |a| Term::Atom(a.clone()), |t| match t {
    Term::Atom(a) => Some(a),
    _ => None,
});
pass_through!(Pid, PID, |p| Term::Pid(p.clone()), |t| match t {
    Term::Pid(p) => Some(p),
    _ => None,
});
pass_through!(Port, PORT, |p| Term::Port(p.clone()), |t| match t {
    Term::Port(p) => Some(p),
    _ => None,
});
pass_through!(Reference, REF, |r| Term::Ref(r.clone()), |t| match t {
    Term::Ref(r) => Some(r),
    _ => None,
});
// Shared, not copied, in both directions (crate::term::binary).
pass_through!(Binary, BINARY, |b| Term::Binary(b.bytes().clone()), |t| match t {
    Term::Binary(b) => Some(Binary::from(b)),
    _ => None,
});
