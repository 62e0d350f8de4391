//! ETF encoder.
//!
//! Iterative, like the decoder, so that any term the decoder accepted can
//! be re-encoded whatever its depth. The output is what OTP's
//! `term_to_binary` produces: with `{minor_version, 2}` for [`encode`], and
//! with OTP 25's default (latin-1 atoms as ATOM_EXT) for
//! [`encode_latin1_atoms`]. Map entries are written in the order held,
//! which for decoded maps is the order the BEAM sent.
//!
//! Values the format cannot express (atoms over 65535 bytes, containers
//! over 2^32 elements) are not checked: the encoder is infallible and such
//! terms cannot come from a BEAM.

use super::tags::*;
use super::{Atom, Pid, Port, Reference, Term};
use num_bigint::{BigInt, Sign};
use smallvec::SmallVec;

/// Encodes with the version byte 131 first, as `term_to_binary` does.
pub fn encode(term: &Term) -> Vec<u8> {
    let mut out = Vec::with_capacity(initial_capacity(term));
    out.push(VERSION);
    encode_into(term, &mut out);
    out
}

/// Appends the encoding of `term` (no version byte) to `out`.
pub fn encode_into(term: &Term, out: &mut Vec<u8>) {
    run::<DIST, _>(term, out, &mut NoCache)
}

/// Encodes exactly as OTP 25's `term_to_binary/1` does, atoms whose
/// characters are all latin-1 going out as ATOM_EXT, so that hashes of the
/// output match hashes computed on the BEAM.
pub fn encode_latin1_atoms(term: &Term) -> Vec<u8> {
    let mut out = Vec::with_capacity(initial_capacity(term));
    out.push(VERSION);
    encode_latin1_atoms_into(term, &mut out);
    out
}

/// [`encode_latin1_atoms`] without the version byte.
pub fn encode_latin1_atoms_into(term: &Term, out: &mut Vec<u8>) {
    run::<OTP25, _>(term, out, &mut NoCache)
}

/// Encodes exactly as `term_to_binary/1` does on OTP 26 and later: atoms
/// as UTF-8 (as [`encode`]) and every port as V4_PORT_EXT (OTP 25 wrote
/// NEW_PORT_EXT below 28-bit port numbers). For hashes that must match
/// the BEAM's on those releases (placement rings).
pub fn encode_otp26(term: &Term) -> Vec<u8> {
    let mut out = Vec::with_capacity(initial_capacity(term));
    out.push(VERSION);
    run::<OTP26, _>(term, &mut out, &mut NoCache);
    out
}

/// Where atoms may go as references to the distribution atom cache
/// (ATOM_CACHE_REF): the link's sender side implements it
/// (src/connection/send_cache.rs); everything else encodes atoms as text.
pub trait AtomRefs {
    /// The index of `a` among this message's atom cache references, or
    /// `None` to write it as text.
    fn reference(&mut self, a: &Atom) -> Option<u8>;

    /// Called at each native record (RECORD_EXT): `false` when the
    /// receiver cannot decode one. The encoder then skips the record and
    /// the caller, which remembers the refusal, discards the output.
    #[inline(always)]
    fn record(&mut self) -> bool {
        true
    }

    /// Called at each binary of at least [`LARGE_BINARY`] bytes, once its
    /// tag and length are in `out` (`at` is `out`'s length then): `true`
    /// when the caller takes the bytes to send them from `b` itself, at
    /// `at` in the output, so the encoder does not copy them (a link's
    /// outbox does: issue 16, large messages).
    #[inline(always)]
    fn large_binary(&mut self, _b: &bytes::Bytes, _at: usize) -> bool {
        false
    }
}

/// Binaries from this size on are offered to [`AtomRefs::large_binary`].
pub const LARGE_BINARY: usize = 64 * 1024;

/// Atoms as text, always.
pub struct NoCache;

impl AtomRefs for NoCache {
    #[inline(always)]
    fn reference(&mut self, _: &Atom) -> Option<u8> {
        None
    }
}

/// Appends the encoding of `term` (no version byte) to `out`, atoms
/// going through `refs` (the distribution atom cache).
pub fn encode_with_atom_refs(term: &Term, out: &mut Vec<u8>, refs: &mut impl AtomRefs) {
    run::<DIST, _>(term, out, refs)
}

/// Encoder modes (a const parameter, so the hot path has no branch on
/// them): what goes on the wire (OTP 25's `{minor_version, 2}` bytes,
/// which every release decodes), and the exact `term_to_binary/1` of OTP
/// 25 and of OTP 26 and later.
const DIST: u8 = 0;
const OTP25: u8 = 1;
const OTP26: u8 = 2;

fn initial_capacity(term: &Term) -> usize {
    match term {
        Term::Binary(b) => b.len() + 6,
        _ => 64,
    }
}

/// A container whose elements are still being written.
enum Frame<'a> {
    Seq { items: std::slice::Iter<'a, Term>, then: Then<'a> },
    Map { entries: std::slice::Iter<'a, (Term, Term)>, value: Option<&'a Term> },
    /// A native record's values (its names are in the header).
    Record { fields: std::slice::Iter<'a, (Atom, Term)> },
}

/// What follows the last element of a sequence.
enum Then<'a> {
    Nothing,
    Nil,
    Tail(&'a Term),
}

fn run<const M: u8, C: AtomRefs>(root: &Term, out: &mut Vec<u8>, c: &mut C) {
    let mut stack: SmallVec<[Frame<'_>; 16]> = SmallVec::new();
    let mut next = root;
    loop {
        if let Some(frame) = one::<M, C>(next, out, c) {
            stack.push(frame);
        }
        next = loop {
            let Some(top) = stack.last_mut() else { return };
            match top {
                Frame::Seq { items, then } => {
                    if let Some(t) = items.next() {
                        break t;
                    }
                    let then = std::mem::replace(then, Then::Nothing);
                    stack.pop();
                    match then {
                        Then::Nothing => {}
                        Then::Nil => out.push(NIL),
                        Then::Tail(t) => break t,
                    }
                }
                Frame::Map { entries, value } => {
                    if let Some(v) = value.take() {
                        break v;
                    }
                    if let Some((k, v)) = entries.next() {
                        *value = Some(v);
                        break k;
                    }
                    stack.pop();
                }
                Frame::Record { fields } => {
                    if let Some((_, v)) = fields.next() {
                        break v;
                    }
                    stack.pop();
                }
            }
        };
    }
}

/// Writes `t`, or the header of a container and returns the frame that
/// writes its elements.
#[inline]
fn one<'a, const M: u8, C: AtomRefs>(t: &'a Term, out: &mut Vec<u8>, c: &mut C) -> Option<Frame<'a>> {
    match t {
        Term::Int(i) => put_int(out, *i),
        Term::Atom(a) => put_atom::<M, C>(out, a, c),
        Term::Tuple(items) => {
            if items.len() <= 255 {
                out.extend_from_slice(&[SMALL_TUPLE, items.len() as u8]);
            } else {
                put_tag_u32(out, LARGE_TUPLE, items.len());
            }
            if !items.is_empty() {
                return Some(Frame::Seq { items: items.iter(), then: Then::Nothing });
            }
        }
        Term::List(items) => {
            if items.is_empty() {
                out.push(NIL);
            } else if let Some(n) = string_len(items) {
                out.reserve(3 + n);
                out.push(STRING);
                out.extend_from_slice(&(n as u16).to_be_bytes());
                out.extend(items.iter().map(|t| match t {
                    Term::Int(b) => *b as u8,
                    _ => 0,
                }));
            } else {
                put_tag_u32(out, LIST, items.len());
                return Some(Frame::Seq { items: items.iter(), then: Then::Nil });
            }
        }
        Term::ImproperList(items, tail) => {
            // [ | T] is just T; only a non-empty prefix needs a LIST_EXT.
            if !items.is_empty() {
                put_tag_u32(out, LIST, items.len());
            }
            return Some(Frame::Seq { items: items.iter(), then: Then::Tail(tail) });
        }
        Term::Map(entries) => {
            put_tag_u32(out, MAP, entries.len());
            if !entries.is_empty() {
                return Some(Frame::Map { entries: entries.iter(), value: None });
            }
        }
        Term::Binary(b) => {
            put_tag_u32(out, BINARY, b.len());
            if !(M == DIST && b.len() >= LARGE_BINARY && c.large_binary(b, out.len())) {
                out.extend_from_slice(b);
            }
        }
        Term::BitBinary { bytes, bits } => put_bit_binary(out, bytes, *bits),
        Term::Float(f) => {
            out.push(NEW_FLOAT);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Term::Big(b) => put_big(out, b),
        Term::Pid(p) => put_pid::<M, C>(out, p, c),
        Term::Port(p) => put_port::<M, C>(out, p, c),
        Term::Ref(r) => put_ref::<M, C>(out, r, c),
        Term::Fun(f) => out.extend_from_slice(&f.0),
        Term::Record(_) if !c.record() => {}
        Term::Record(r) => {
            // As OTP 29 writes it: every atom (module, name, field names)
            // in the mode's atom encoding, e.g. ATOM_EXT for
            // `{minor_version, 1}`, checked against the BEAM.
            put_tag_u32(out, RECORD, r.fields().len());
            out.push(r.flags());
            put_atom::<M, C>(out, r.module(), c);
            put_atom::<M, C>(out, r.name(), c);
            for name in r.field_names() {
                put_atom::<M, C>(out, name, c);
            }
            if !r.fields().is_empty() {
                return Some(Frame::Record { fields: r.fields().iter() });
            }
        }
    }
    None
}

/// `term_to_binary` uses STRING_EXT for proper lists of bytes shorter than
/// 65536 elements.
#[inline]
fn string_len(items: &[Term]) -> Option<usize> {
    let ok = items.len() <= u16::MAX as usize
        && items.iter().all(|t| matches!(t, Term::Int(0..=255)));
    ok.then_some(items.len())
}

#[inline]
fn put_tag_u32(out: &mut Vec<u8>, tag: u8, n: usize) {
    let [a, b, c, d] = (n as u32).to_be_bytes();
    out.extend_from_slice(&[tag, a, b, c, d]);
}

#[inline]
fn put_int(out: &mut Vec<u8>, i: i64) {
    if (0..=255).contains(&i) {
        out.extend_from_slice(&[SMALL_INTEGER, i as u8]);
    } else if let Ok(v) = i32::try_from(i) {
        let [a, b, c, d] = v.to_be_bytes();
        out.extend_from_slice(&[INTEGER, a, b, c, d]);
    } else {
        let mag = i.unsigned_abs();
        let n = 8 - (mag.leading_zeros() / 8) as usize;
        out.extend_from_slice(&[SMALL_BIG, n as u8, u8::from(i < 0)]);
        out.extend_from_slice(&mag.to_le_bytes()[..n]);
    }
}

fn put_big(out: &mut Vec<u8>, b: &BigInt) {
    if let Ok(i) = i64::try_from(b) {
        return put_int(out, i);
    }
    let n = b.magnitude().bits().div_ceil(8) as usize;
    let sign = u8::from(b.sign() == Sign::Minus);
    if n <= 255 {
        out.extend_from_slice(&[SMALL_BIG, n as u8, sign]);
    } else {
        put_tag_u32(out, LARGE_BIG, n);
        out.push(sign);
    }
    out.reserve(n);
    let mut left = n;
    for digit in b.magnitude().iter_u64_digits() {
        let take = left.min(8);
        out.extend_from_slice(&digit.to_le_bytes()[..take]);
        left -= take;
    }
}

/// The unused low bits of the last byte go out as zeros, as the BEAM
/// writes them.
fn put_bit_binary(out: &mut Vec<u8>, bytes: &[u8], bits: u8) {
    out.reserve(6 + bytes.len());
    put_tag_u32(out, BIT_BINARY, bytes.len());
    out.push(bits);
    if let Some((&last, init)) = bytes.split_last() {
        out.extend_from_slice(init);
        out.push(last & (0xffu8 << (8 - bits.clamp(1, 8))));
    }
}

#[inline]
fn put_atom<const M: u8, C: AtomRefs>(out: &mut Vec<u8>, a: &Atom, c: &mut C) {
    if let Some(index) = c.reference(a) {
        out.extend_from_slice(&[ATOM_CACHE_REF, index]);
    } else if M == OTP25 {
        put_atom_latin1(out, a)
    } else {
        put_atom_utf8(out, a)
    }
}

/// SMALL_ATOM_UTF8_EXT when the text fits in 255 bytes, else ATOM_UTF8_EXT.
#[inline]
pub(crate) fn put_atom_utf8(out: &mut Vec<u8>, a: &Atom) {
    let s = a.as_str().as_bytes();
    if s.len() <= 255 {
        out.reserve(2 + s.len());
        out.extend_from_slice(&[SMALL_ATOM_UTF8, s.len() as u8]);
        out.extend_from_slice(s);
    } else {
        let s = &s[..floor_char_boundary(a.as_str(), u16::MAX as usize)];
        out.reserve(3 + s.len());
        out.push(ATOM_UTF8);
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    }
}

/// OTP 25 writes every latin-1 atom as ATOM_EXT (2-byte length), never
/// SMALL_ATOM_EXT; other atoms as UTF-8.
fn put_atom_latin1(out: &mut Vec<u8>, a: &Atom) {
    let s = a.as_str();
    if s.is_ascii() {
        let s = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
        out.reserve(3 + s.len());
        out.push(ATOM);
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    } else if s.chars().all(|c| (c as u32) <= 0xff) {
        let n = s.chars().count().min(u16::MAX as usize);
        out.reserve(3 + n);
        out.push(ATOM);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend(s.chars().take(n).map(|c| c as u8));
    } else {
        put_atom_utf8(out, a)
    }
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut i = max.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn put_pid<const M: u8, C: AtomRefs>(out: &mut Vec<u8>, p: &Pid, c: &mut C) {
    out.push(NEW_PID);
    put_atom::<M, C>(out, &p.node, c);
    out.extend_from_slice(&p.id.to_be_bytes());
    out.extend_from_slice(&p.serial.to_be_bytes());
    out.extend_from_slice(&p.creation.to_be_bytes());
}

/// OTP 25 switches to V4_PORT_EXT above 28-bit port numbers (checked
/// against `term_to_binary`), not at 32 bits.
const MAX_V3_PORT_ID: u64 = 0x0fff_ffff;

fn put_port<const M: u8, C: AtomRefs>(out: &mut Vec<u8>, p: &Port, c: &mut C) {
    if p.id <= MAX_V3_PORT_ID && M != OTP26 {
        out.push(NEW_PORT);
        put_atom::<M, C>(out, &p.node, c);
        out.extend_from_slice(&(p.id as u32).to_be_bytes());
    } else {
        out.push(V4_PORT);
        put_atom::<M, C>(out, &p.node, c);
        out.extend_from_slice(&p.id.to_be_bytes());
    }
    out.extend_from_slice(&p.creation.to_be_bytes());
}

fn put_ref<const M: u8, C: AtomRefs>(out: &mut Vec<u8>, r: &Reference, c: &mut C) {
    out.push(NEWER_REFERENCE);
    out.extend_from_slice(&(r.ids.len() as u16).to_be_bytes());
    put_atom::<M, C>(out, &r.node, c);
    out.extend_from_slice(&r.creation.to_be_bytes());
    for id in &r.ids {
        out.extend_from_slice(&id.to_be_bytes());
    }
}
