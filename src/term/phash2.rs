//! `erlang:phash2/1,2`, bit-exact with ERTS.
//!
//! ERTS computes both BIFs with `make_hash2` (erts/emulator/beam/utils.c in
//! OTP 25, erl_term_hashing.c from OTP 26): Bob Jenkins' 96-bit `MIX` over
//! a running 32-bit hash, with a per-type constant `HCONST_n` (multiples of
//! the golden ratio). `phash2(T)` is the hash's low 27 bits, `phash2(T, R)`
//! is `hash rem R` (`R = 2^32` gives the hash itself).
//!
//! Why a term-level facility and not a Horde one: the value is a function
//! of the term alone, defined by the runtime, and every BEAM library that
//! places or shards by term uses it (Horde's Registry and
//! DynamicSupervisor, DeltaCrdt's Merkle map, libring, Elixir's
//! `Registry` partitions, `:pg`-style sharding). It reads fun encodings
//! with the codec's own reader, which is private to this module's parent.
//!
//! # What is hashed, per type (from the C source)
//!
//! - atom: `hashpjw` of the UTF-8 text, where a two-byte sequence for a
//!   code point below 256 counts as that one byte (the "latin1 clutch"); a
//!   first atom (running hash still 0) sets the hash, later ones are mixed
//!   with `HCONST_3`.
//! - integer in `[-2^27, 2^27)`: its 32-bit value with `HCONST`, negatives
//!   mixed twice; any other integer: the magnitude as 64-bit words, low
//!   word first, each as (low 32, high 32) with `HCONST_10` (negative) or
//!   `HCONST_11`.
//! - float: its IEEE bits (high word, low word) with `HCONST_12`; `-0.0`
//!   hashes as `0.0` (on OTP 27, where they are different terms, too).
//! - binary: Jenkins' block hash of the bytes seeded with
//!   `HCONST_13 + hash`; a bitstring adds its tail bits with `HCONST_15`.
//! - list: runs of bytes (integers 0..=255) are packed four to a word and
//!   mixed with `HCONST_4`; other elements are hashed in order; `[]` is
//!   `3468870702` when first, else mixed with `HCONST_2`. An improper tail
//!   is hashed like an element.
//! - tuple: the arity with `HCONST_9`, then the elements in order.
//! - map: the size with `HCONST_16`, then the XOR over all pairs of the
//!   hash of `(key, value)` computed from 0, with `HCONST_19`. So the map
//!   hash does not depend on key order, nor on ERTS's flatmap/HAMT layout.
//! - pid: its ID field (`HCONST_5`); port: its 64-bit id (`HCONST_6`);
//!   reference: its first id word (`HCONST_7`). Node names and creations
//!   are not hashed.
//! - local fun: free-variable count and module with `HCONST`, then
//!   `Index` and `OldUniq` with `HCONST`, then the free variables;
//!   export fun: arity and module with `HCONST`, function with `HCONST_14`.
//!
//! # Releases
//!
//! The algorithm is the same in OTP 25.2.3 and 27.3.4.1 (the diff of the
//! two `make_hash2_helper`s: OTP 27 walks HAMT collision nodes and reads
//! bitstrings through new macros; neither changes a value). Pid, port and
//! reference hashes read the fields of the external format, which both
//! releases fill from the same in-memory numbers. The interop test
//! `phash2` checks 100,000 random terms against each release.
//!
//! The hash walk is iterative (an explicit stack), so a term's depth is
//! bounded only by memory. Funs are the one recursion: a fun's free
//! variables are decoded from its bytes and hashed by a nested walk, so
//! depth grows with funs nested in funs, which the decoder bounds.

use super::decode::{decode_with_cache, DecodeLimits};
use super::reader::{self, Reader};
use super::tags::{EXPORT, INTEGER, NEW_FUN, SMALL_INTEGER};
use super::{Atom, OpaqueFun, Term};

/// `phash2(T, 4294967296)`: the full 32-bit hash.
pub const RANGE_2_32: u64 = 1 << 32;

/// ERTS `make_hash2(T)`: the full 32-bit hash (`phash2(T, 1 bsl 32)`).
pub fn make_hash2(t: &Term) -> u32 {
    Walk::default().run(0, t)
}

/// `erlang:phash2(T)`: the hash's low 27 bits, in `0..2^27`.
pub fn phash2(t: &Term) -> u32 {
    make_hash2(t) & ((1 << 27) - 1)
}

/// `erlang:phash2(T, Range)`, in `0..Range`.
///
/// # Panics
/// When `range` is 0 or above 2^32 (the BIF raises `badarg`).
pub fn phash2_range(t: &Term, range: u64) -> u32 {
    reduce(make_hash2(t), range)
}

/// Reduces a [`make_hash2`] value to `phash2/2`'s `0..range`.
///
/// # Panics
/// When `range` is 0 or above 2^32.
pub fn reduce(hash: u32, range: u64) -> u32 {
    assert!(range >= 1 && range <= RANGE_2_32, "phash2 range {range} is not in 1..=2^32");
    if range == RANGE_2_32 {
        hash
    } else {
        // range < 2^32 here.
        hash % range as u32
    }
}

/// The hash ERTS keeps with every atom (`atom_hash` in atom.c): hashpjw
/// over the UTF-8 text, except that a two-byte sequence `C2/C3 xx` counts
/// as the one latin-1 byte it encodes.
pub fn atom_hash(a: &Atom) -> u32 {
    atom_text_hash(a.as_str().as_bytes())
}

fn atom_text_hash(text: &[u8]) -> u32 {
    let mut h: u32 = 0;
    let mut i = 0;
    while i < text.len() {
        let mut v = text[i];
        i += 1;
        if i < text.len() && (v & 0xFE) == 0xC2 && (text[i] & 0xC0) == 0x80 {
            v = (v << 6) | (text[i] & 0x3F);
            i += 1;
        }
        h = pjw_step(h, v);
    }
    h
}

/// One byte of `hashpjw`. The top nibble folds into bits 4-7 and is
/// cleared; when it is 0 both XORs are no-ops, so no branch is needed.
#[inline(always)]
fn pjw_step(h: u32, v: u8) -> u32 {
    let h = (h << 4).wrapping_add(u32::from(v));
    let g = h & 0xf000_0000;
    h ^ (g >> 24) ^ g
}

const HCONST: u32 = 0x9e37_79b9;
const HCONST_2: u32 = 0x3c6e_f372;
const HCONST_3: u32 = 0xdaa6_6d2b;
const HCONST_4: u32 = 0x78dd_e6e4;
const HCONST_5: u32 = 0x1715_609d;
const HCONST_6: u32 = 0xb54c_da56;
const HCONST_7: u32 = 0x5384_540f;
const HCONST_9: u32 = 0x8ff3_4781;
const HCONST_10: u32 = 0x2e2a_c13a;
const HCONST_11: u32 = 0xcc62_3af3;
const HCONST_12: u32 = 0x6a99_b4ac;
const HCONST_13: u32 = 0x08d1_2e65;
const HCONST_14: u32 = 0xa708_a81e;
const HCONST_15: u32 = 0x4540_21d7;
const HCONST_16: u32 = 0xe377_9b90;
const HCONST_19: u32 = 0xbe1e_08bb;

/// `make_hash2` of `[]` when nothing was hashed before it.
const NIL_FIRST: u32 = 3_468_870_702;
/// ERTS's `NIL_DEF`, mixed when `[]` is not first.
const NIL_DEF: u32 = 0x2;

#[inline(always)]
fn mix(mut a: u32, mut b: u32, mut c: u32) -> u32 {
    a = a.wrapping_sub(b).wrapping_sub(c) ^ (c >> 13);
    b = b.wrapping_sub(c).wrapping_sub(a) ^ (a << 8);
    c = c.wrapping_sub(a).wrapping_sub(b) ^ (b >> 13);
    a = a.wrapping_sub(b).wrapping_sub(c) ^ (c >> 12);
    b = b.wrapping_sub(c).wrapping_sub(a) ^ (a << 16);
    c = c.wrapping_sub(a).wrapping_sub(b) ^ (b >> 5);
    a = a.wrapping_sub(b).wrapping_sub(c) ^ (c >> 3);
    b = b.wrapping_sub(c).wrapping_sub(a) ^ (a << 10);
    c.wrapping_sub(a).wrapping_sub(b) ^ (b >> 15)
}

/// The full `MIX`, for the block hash, which keeps all three words.
#[inline(always)]
fn mix3(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*b).wrapping_sub(*c) ^ (*c >> 13);
    *b = b.wrapping_sub(*c).wrapping_sub(*a) ^ (*a << 8);
    *c = c.wrapping_sub(*a).wrapping_sub(*b) ^ (*b >> 13);
    *a = a.wrapping_sub(*b).wrapping_sub(*c) ^ (*c >> 12);
    *b = b.wrapping_sub(*c).wrapping_sub(*a) ^ (*a << 16);
    *c = c.wrapping_sub(*a).wrapping_sub(*b) ^ (*b >> 5);
    *a = a.wrapping_sub(*b).wrapping_sub(*c) ^ (*c >> 3);
    *b = b.wrapping_sub(*c).wrapping_sub(*a) ^ (*a << 10);
    *c = c.wrapping_sub(*a).wrapping_sub(*b) ^ (*b >> 15);
}

/// `UINT32_HASH_2(e1, e2, k)`.
#[inline(always)]
fn hash2(hash: u32, e1: u32, e2: u32, k: u32) -> u32 {
    mix(k.wrapping_add(e1), k.wrapping_add(e2), hash)
}

/// `UINT32_HASH(e, k)`.
#[inline(always)]
fn hash1(hash: u32, e: u32, k: u32) -> u32 {
    hash2(hash, e, 0, k)
}

/// Jenkins' lookup2 block hash (`block_hash`): 12-byte little-endian
/// blocks, then the length and the tail. ERTS truncates the length to 32
/// bits (binaries of 4 GiB and more are not hashed whole).
fn block_hash(bytes: &[u8], initval: u32) -> u32 {
    let (mut a, mut b, mut c) = (HCONST, HCONST, initval);
    let mut chunks = bytes.chunks_exact(12);
    for k in &mut chunks {
        a = a.wrapping_add(u32::from_le_bytes([k[0], k[1], k[2], k[3]]));
        b = b.wrapping_add(u32::from_le_bytes([k[4], k[5], k[6], k[7]]));
        c = c.wrapping_add(u32::from_le_bytes([k[8], k[9], k[10], k[11]]));
        mix3(&mut a, &mut b, &mut c);
    }
    let k = chunks.remainder();
    c = c.wrapping_add(bytes.len() as u32);
    // The first byte of c is the length's: tail bytes 8..11 go above it.
    let byte = |i: usize, shift: u32| u32::from(k[i]) << shift;
    let n = k.len();
    for i in (8..n).rev() {
        c = c.wrapping_add(byte(i, 8 * (i as u32 - 7)));
    }
    for i in (4..n.min(8)).rev() {
        b = b.wrapping_add(byte(i, 8 * (i as u32 - 4)));
    }
    for i in (0..n.min(4)).rev() {
        a = a.wrapping_add(byte(i, 8 * i as u32));
    }
    mix3(&mut a, &mut b, &mut c);
    c
}

/// An integer's hash as `make_hash2` computes it from its value.
fn int_hash(hash: u32, i: i64) -> u32 {
    if (-(1 << 27)..(1 << 27)).contains(&i) {
        // SINT32_HASH: negatives are mixed as -y first, then as y.
        let y = i as i32;
        let hash = if y < 0 { hash1(hash, y.wrapping_neg() as u32, HCONST) } else { hash };
        hash1(hash, y as u32, HCONST)
    } else {
        let con = if i < 0 { HCONST_10 } else { HCONST_11 };
        let t = i.unsigned_abs();
        hash2(hash, t as u32, (t >> 32) as u32, con)
    }
}

fn big_hash(hash: u32, b: &num_bigint::BigInt) -> u32 {
    if let Ok(i) = i64::try_from(b) {
        return int_hash(hash, i);
    }
    let con = if b.sign() == num_bigint::Sign::Minus { HCONST_10 } else { HCONST_11 };
    b.magnitude()
        .iter_u64_digits()
        .fold(hash, |h, d| hash2(h, d as u32, (d >> 32) as u32, con))
}

fn bits_hash(hash: u32, bytes: &[u8], tail_bits: u8) -> u32 {
    let con = HCONST_13.wrapping_add(hash);
    // ERTS: `sz = 0xFFFFFFFF & byte_size`, and the tail byte is read at sz.
    let whole = if tail_bits == 0 { bytes.len() } else { bytes.len() - 1 };
    let sz = (whole as u64 & 0xFFFF_FFFF) as usize;
    if sz == 0 && tail_bits == 0 {
        return con;
    }
    let mut h = block_hash(&bytes[..sz], con);
    if tail_bits > 0 {
        let last = bytes[sz] >> (8 - tail_bits);
        h = hash2(h, u32::from(tail_bits), u32::from(last), HCONST_15);
    }
    h
}

/// The hash after a term that holds no other term (funs excepted,
/// they hold free variables); `None` for the others.
#[inline]
fn leaf(hash: u32, t: &Term) -> Option<u32> {
    Some(match t {
        Term::Atom(a) => {
            let h = atom_hash(a);
            if hash == 0 {
                h
            } else {
                hash1(hash, h, HCONST_3)
            }
        }
        Term::Int(i) => int_hash(hash, *i),
        Term::Big(b) => big_hash(hash, b),
        Term::Float(f) => {
            let f = if *f == 0.0 { 0.0f64 } else { *f };
            let bits = f.to_bits();
            hash2(hash, (bits >> 32) as u32, bits as u32, HCONST_12)
        }
        Term::Binary(b) => bits_hash(hash, b, 0),
        Term::BitBinary { bytes, bits } => {
            if *bits == 0 || bytes.is_empty() {
                bits_hash(hash, bytes, 0)
            } else {
                bits_hash(hash, bytes, (*bits).min(7))
            }
        }
        Term::Pid(p) => hash1(hash, p.id, HCONST_5),
        Term::Port(p) => hash2(hash, p.id as u32, (p.id >> 32) as u32, HCONST_6),
        Term::Ref(r) => hash1(hash, r.ids.first().copied().unwrap_or(0), HCONST_7),
        Term::List(_) | Term::ImproperList(..) | Term::Tuple(_) | Term::Map(_) | Term::Fun(_) | Term::Record(_) => return None,
    })
}

/// What is left to hash.
enum Op<'a> {
    Term(&'a Term),
    /// A non-empty run of cons cells: `items`, then `tail` (None: `[]`).
    Cells(&'a [Term], Option<&'a Term>),
    /// End of a map: restore the hash from before it and the outer XOR.
    MapTail { hash: u32, xor: u32 },
    /// End of a key/value pair.
    MapPair,
}

#[derive(Default)]
struct Walk<'a> {
    // Inline room for the small terms hashed most (registry entries,
    // child specs, Merkle leaves): no allocation per hash.
    stack: smallvec::SmallVec<[Op<'a>; 16]>,
}

impl<'a> Walk<'a> {
    /// Hashes `t` starting from `hash`, as `make_hash2` would with `hash`
    /// as the running value: what [`make_hash2`] does from 0, and what a
    /// fun's free variables continue from.
    fn run(&mut self, mut hash: u32, t: &'a Term) -> u32 {
        let base = self.stack.len();
        let mut xor: u32 = 0;
        let mut op = Op::Term(t);
        loop {
            match op {
                Op::Term(t) => match t {
                    Term::List(v) if v.is_empty() => {
                        hash = if hash == 0 { NIL_FIRST } else { hash1(hash, NIL_DEF, HCONST_2) };
                    }
                    Term::List(v) => {
                        op = Op::Cells(v, None);
                        continue;
                    }
                    Term::ImproperList(v, tail) if v.is_empty() => {
                        op = Op::Term(tail);
                        continue;
                    }
                    Term::ImproperList(v, tail) => {
                        op = Op::Cells(v, Some(tail));
                        continue;
                    }
                    Term::Tuple(v) => {
                        hash = hash1(hash, v.len() as u32, HCONST_9);
                        // Leading leaves inline; the rest through the stack.
                        let mut i = 0;
                        while let Some(h) = v.get(i).and_then(|e| leaf(hash, e)) {
                            hash = h;
                            i += 1;
                        }
                        if let Some((first, rest)) = v[i..].split_first() {
                            self.stack.extend(rest.iter().rev().map(Op::Term));
                            op = Op::Term(first);
                            continue;
                        }
                    }
                    // OTP 29's native records. NOT checked against ERTS: no
                    // OTP 29 C source is at hand and records are
                    // experimental there. Hashed like a tuple of the
                    // module, the name and the values, so equal records
                    // hash equally; a BEAM's value may differ (docs/horde.md).
                    Term::Record(r) => {
                        hash = hash1(hash, r.fields().len() as u32 + 2, HCONST_9);
                        hash = hash1(hash, atom_hash(r.module()), HCONST_3);
                        hash = hash1(hash, atom_hash(r.name()), HCONST_3);
                        if let Some(((_, first), rest)) = r.fields().split_first() {
                            self.stack.extend(rest.iter().rev().map(|(_, v)| Op::Term(v)));
                            op = Op::Term(first);
                            continue;
                        }
                    }
                    Term::Map(m) => {
                        hash = hash1(hash, m.len() as u32, HCONST_16);
                        if !m.is_empty() {
                            self.stack.push(Op::MapTail { hash, xor });
                            hash = 0;
                            xor = 0;
                            // Pair hashes are XORed, so their order is free:
                            // pairs of leaves are hashed at once.
                            for (k, v) in m.iter().rev() {
                                match leaf(0, k).and_then(|h| leaf(h, v)) {
                                    Some(pair) => xor ^= pair,
                                    None => {
                                        self.stack.push(Op::MapPair);
                                        self.stack.push(Op::Term(v));
                                        self.stack.push(Op::Term(k));
                                    }
                                }
                            }
                        }
                    }
                    Term::Fun(f) => hash = self.fun(hash, f),
                    t => hash = leaf(hash, t).expect("every other term is a leaf"),
                },
                Op::Cells(items, tail) => {
                    // The string fast path: bytes packed four to a word.
                    let (mut c, mut sh, mut i) = (0u32, 0u32, 0usize);
                    let (mut items, mut tail) = (items, tail);
                    loop {
                        let byte = match items.get(i) {
                            Some(Term::Int(b)) if (0..=255).contains(b) => *b as u32,
                            Some(_) => break,
                            None => {
                                // Cells continue into a list-valued tail.
                                match tail.map(cells_of) {
                                    Some(Some((more, t))) => {
                                        items = more;
                                        tail = t;
                                        i = 0;
                                        continue;
                                    }
                                    _ => break,
                                }
                            }
                        };
                        sh = (sh << 8).wrapping_add(byte);
                        if c == 3 {
                            hash = hash1(hash, sh, HCONST_4);
                            c = 0;
                            sh = 0;
                        } else {
                            c += 1;
                        }
                        i += 1;
                    }
                    if c > 0 {
                        hash = hash1(hash, sh, HCONST_4);
                    }
                    match items.get(i) {
                        Some(head) => {
                            // A non-byte head: hash it, then the rest.
                            if i + 1 < items.len() {
                                self.stack.push(Op::Cells(&items[i + 1..], tail));
                            } else {
                                self.stack.push(match tail {
                                    Some(t) => Op::Term(t),
                                    None => Op::Term(&NIL),
                                });
                            }
                            op = Op::Term(head);
                        }
                        None => op = Op::Term(tail.unwrap_or(&NIL)),
                    }
                    continue;
                }
                Op::MapTail { hash: h, xor: x } => {
                    let pairs = xor;
                    hash = hash1(h, pairs, HCONST_19);
                    xor = x;
                }
                Op::MapPair => {
                    xor ^= hash;
                    hash = 0;
                }
            }
            if self.stack.len() == base {
                return hash;
            }
            op = self.stack.pop().expect("stack above base");
        }
    }

    /// A fun: its header, then its free variables as one continued walk.
    fn fun(&mut self, hash: u32, f: &OpaqueFun) -> u32 {
        match parse_fun(f) {
            Some(Fun::Export { module, function, arity }) => {
                let h = hash2(hash, arity, atom_hash(&module), HCONST);
                hash1(h, atom_hash(&function), HCONST_14)
            }
            Some(Fun::Local { module, index, old_uniq, free }) => {
                let mut h = hash2(hash, free.len() as u32, atom_hash(&module), HCONST);
                h = hash2(h, index, old_uniq, HCONST);
                let mut inner = Walk::default();
                for v in &free {
                    h = inner.run(h, v);
                }
                h
            }
            // Not an encoding the decoder produces (a hand-built
            // OpaqueFun): hash its bytes as a binary, deterministically.
            None => bits_hash(hash, f.as_bytes(), 0),
        }
    }
}

static NIL: Term = Term::List(Vec::new());

/// The cons cells of a list-valued tail, if it is one (a hand-built
/// `[a | [b]]`; the decoder flattens those).
fn cells_of(t: &Term) -> Option<(&[Term], Option<&Term>)> {
    match t {
        Term::List(v) if !v.is_empty() => Some((v, None)),
        Term::ImproperList(v, tail) if !v.is_empty() => Some((v, Some(tail))),
        _ => None,
    }
}

enum Fun {
    Export { module: Atom, function: Atom, arity: u32 },
    Local { module: Atom, index: u32, old_uniq: u32, free: Vec<Term> },
}

/// Reads what `make_hash2` uses from a NEW_FUN_EXT or EXPORT_EXT.
fn parse_fun(f: &OpaqueFun) -> Option<Fun> {
    let buf = f.as_bytes();
    let mut r = Reader::new(buf, 0);
    let limits = DecodeLimits::default();
    match r.u8().ok()? {
        EXPORT => {
            let module = reader::read_atom(&mut r, &[]).ok()?;
            let function = reader::read_atom(&mut r, &[]).ok()?;
            let arity = match r.u8().ok()? {
                SMALL_INTEGER => u32::from(r.u8().ok()?),
                INTEGER => r.u32().ok()?,
                _ => return None,
            };
            Some(Fun::Export { module, function, arity })
        }
        NEW_FUN => {
            // Size, Arity, Uniq, then Index and NumFree.
            r.skip(4 + 1 + 16).ok()?;
            let index = r.u32().ok()?;
            let num_free = r.u32().ok()?;
            let module = reader::read_atom(&mut r, &[]).ok()?;
            let next = |r: &mut Reader<'_>| -> Option<Term> {
                let (t, used) = decode_with_cache(&buf[r.pos..], &[], &limits).ok()?;
                r.pos += used;
                Some(t)
            };
            let _old_index = next(&mut r)?;
            // ERTS keeps OldUniq as a C int: the value's low 32 bits.
            let old_uniq = match next(&mut r)? {
                Term::Int(i) => i as u32,
                _ => return None,
            };
            let _creator = next(&mut r)?;
            let mut free = Vec::with_capacity(num_free.min(256) as usize);
            for _ in 0..num_free {
                free.push(next(&mut r)?);
            }
            Some(Fun::Local { module, index, old_uniq, free })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{Pid, Port, Reference};
    use bytes::Bytes;
    use num_bigint::BigInt;

    fn a(s: &str) -> Term {
        Term::atom(s)
    }

    #[test]
    fn known_values_from_otp25() {
        // Values printed by `erlang:phash2(T, 1 bsl 32)` on OTP 25.2.3.
        assert_eq!(make_hash2(&a("a")), 97);
        assert_eq!(make_hash2(&a("hello")), 7258927);
        assert_eq!(make_hash2(&a("é")), 233);
        assert_eq!(make_hash2(&Term::Int(0)), 3175731469);
        assert_eq!(make_hash2(&Term::Int(-1)), 1117813597);
        assert_eq!(make_hash2(&Term::Int(134217727)), 4273352567);
        assert_eq!(make_hash2(&Term::Int(134217728)), 2562491755);
        assert_eq!(make_hash2(&Term::Int(-134217728)), 874979335);
        assert_eq!(make_hash2(&Term::Int(-134217729)), 1418916782);
        assert_eq!(make_hash2(&Term::Int(4294967296)), 2108323275);
        assert_eq!(make_hash2(&Term::nil()), 3468870702);
        assert_eq!(make_hash2(&Term::list([Term::Int(1)])), 2768963718);
        assert_eq!(phash2(&Term::Int(0)), 88723725);
    }

    #[test]
    fn big_and_int_agree_on_values() {
        for v in [0i64, 1, -1, 1 << 27, -(1 << 27) - 1, i64::MAX, i64::MIN, 1 << 40] {
            assert_eq!(make_hash2(&Term::Big(BigInt::from(v))), make_hash2(&Term::Int(v)), "{v}");
        }
        let big: BigInt = BigInt::from(1u8) << 64;
        assert_eq!(make_hash2(&Term::Big(big)), 2519041713);
    }

    #[test]
    fn zero_floats_hash_alike() {
        assert_eq!(make_hash2(&Term::Float(-0.0)), make_hash2(&Term::Float(0.0)));
    }

    #[test]
    fn map_hash_ignores_order() {
        let m1 = Term::Map(vec![(a("x"), Term::Int(1)), (Term::Int(2), a("y")), (a("z"), Term::nil())]);
        let m2 = Term::Map(vec![(a("z"), Term::nil()), (a("x"), Term::Int(1)), (Term::Int(2), a("y"))]);
        assert_eq!(make_hash2(&m1), make_hash2(&m2));
    }

    #[test]
    fn list_tail_that_is_a_list_is_one_list() {
        // [1, 2 | [3, x]] is [1, 2, 3, x]: the byte run spans the join.
        let flat = Term::list([Term::Int(1), Term::Int(2), Term::Int(3), a("x")]);
        let split = Term::ImproperList(
            vec![Term::Int(1), Term::Int(2)],
            Box::new(Term::list([Term::Int(3), a("x")])),
        );
        assert_eq!(make_hash2(&flat), make_hash2(&split));
        let improper = Term::ImproperList(vec![Term::Int(1)], Box::new(Term::ImproperList(vec![Term::Int(2)], Box::new(a("t")))));
        let flat_improper = Term::ImproperList(vec![Term::Int(1), Term::Int(2)], Box::new(a("t")));
        assert_eq!(make_hash2(&improper), make_hash2(&flat_improper));
    }

    #[test]
    fn pid_port_ref_hash_their_numbers_only() {
        let pid = |node: &str, creation| Term::Pid(Pid { node: Atom::new(node), id: 77, serial: 3, creation });
        assert_eq!(make_hash2(&pid("a@h", 1)), make_hash2(&pid("b@h", 9)));
        let port = |id| Term::Port(Port { node: Atom::new("a@h"), id, creation: 1 });
        assert_ne!(make_hash2(&port(1)), make_hash2(&port(1 << 32)));
        let r = |ids: &[u32]| Term::Ref(Reference { node: Atom::new("a@h"), creation: 1, ids: ids.iter().copied().collect() });
        assert_eq!(make_hash2(&r(&[5, 6, 7])), make_hash2(&r(&[5, 9, 9])));
    }

    #[test]
    fn bitstrings_hash_their_tail_bits() {
        let b = |bytes: &[u8], bits| Term::BitBinary { bytes: Bytes::copy_from_slice(bytes), bits };
        assert_ne!(make_hash2(&b(&[0x80], 1)), make_hash2(&b(&[0x80], 2)));
        assert_ne!(make_hash2(&b(&[1, 0x80], 1)), make_hash2(&Term::binary(vec![1u8])));
    }

    #[test]
    fn range_reduction() {
        let t = a("hello");
        assert_eq!(phash2_range(&t, RANGE_2_32), make_hash2(&t));
        assert_eq!(phash2_range(&t, 1), 0);
        assert_eq!(phash2_range(&t, 1000), 7258927 % 1000);
        assert_eq!(reduce(u32::MAX, u32::MAX as u64), 0);
    }

    #[test]
    #[should_panic]
    fn range_zero_is_badarg() {
        phash2_range(&Term::Int(1), 0);
    }

    #[test]
    fn atom_latin1_clutch() {
        // 'é' is C3 A9 in UTF-8 but hashes as the one byte E9.
        assert_eq!(atom_hash(&Atom::new("é")), 0xE9);
        // A code point above 255 hashes its UTF-8 bytes.
        assert_eq!(atom_hash(&Atom::new("ā")), atom_text_hash(&[0xC4, 0x81]));
    }

    /// Takes a deep term apart iteratively (`Term`'s own drop recurses).
    fn dismantle(mut t: Term) {
        loop {
            t = match t {
                Term::Tuple(mut v) | Term::List(mut v) if !v.is_empty() => v.pop().unwrap(),
                Term::Map(mut m) if !m.is_empty() => m.pop().unwrap().1,
                _ => return,
            };
        }
    }

    #[test]
    fn deep_terms_hash_without_recursion() {
        let mut t = Term::nil();
        for i in 0..300_000 {
            t = match i % 3 {
                0 => Term::tuple([t]),
                1 => Term::list([Term::Int(7), t]),
                _ => Term::Map(vec![(a("k"), t)]),
            };
        }
        let h = make_hash2(&t);
        assert_eq!(h, make_hash2(&t));
        dismantle(t);
    }

    #[test]
    fn export_fun_hash() {
        let f = Term::Fun(OpaqueFun::export(&Atom::new("lists"), &Atom::new("map"), 2));
        let expected = hash1(hash2(0, 2, atom_hash(&Atom::new("lists")), HCONST), atom_hash(&Atom::new("map")), HCONST_14);
        assert_eq!(make_hash2(&f), expected);
    }
}
