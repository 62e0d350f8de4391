//! Funs (NEW_FUN_EXT, EXPORT_EXT) kept as opaque, self-contained bytes.
//!
//! A fun cannot be rebuilt from its parts, so it is re-sent exactly as it
//! arrived. Inside a distribution message, though, its atoms (those of
//! native records in its environment included) may be ATOM_CACHE_REFs
//! that mean nothing outside that message; such funs are re-emitted with
//! the atoms written out, and every NEW_FUN_EXT Size field recomputed.
//! Everything else is copied byte for byte.

use super::decode::DecodeError;
use super::encode::put_atom_utf8;
use super::reader::{self, invalid, Reader};
use super::record;
use super::tags::*;
use super::{Atom, OpaqueFun};
use bytes::Bytes;

impl OpaqueFun {
    /// The fun `fun Module:Function/Arity`, as EXPORT_EXT.
    pub fn export(module: &Atom, function: &Atom, arity: u8) -> OpaqueFun {
        let mut v = Vec::with_capacity(8 + module.as_str().len() + function.as_str().len());
        v.push(EXPORT);
        put_atom_utf8(&mut v, module);
        put_atom_utf8(&mut v, function);
        v.extend_from_slice(&[SMALL_INTEGER, arity]);
        OpaqueFun(Bytes::from(v))
    }

    /// The encoding, starting at the tag byte.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// `(module, function, arity)` when this is an export fun.
    pub fn as_export(&self) -> Option<(Atom, Atom, u8)> {
        let mut r = Reader::new(&self.0, 0);
        if r.u8().ok()? != EXPORT {
            return None;
        }
        let m = reader::read_atom(&mut r, &[]).ok()?;
        let f = reader::read_atom(&mut r, &[]).ok()?;
        let arity = match r.u8().ok()? {
            SMALL_INTEGER => r.u8().ok()?,
            INTEGER => u8::try_from(r.u32().ok()?).ok()?,
            _ => return None,
        };
        Some((m, f, arity))
    }
}

/// What the BEAM requires at a position inside a fun.
#[derive(Clone, Copy)]
enum Expect {
    Any,
    Fun,
    Atom,
    /// OldIndex / OldUniq: any integer encoding.
    Int,
    /// EXPORT_EXT arity: a small integer, 0..=255.
    Arity,
    Pid,
    /// All of a NEW_FUN_EXT has been read; `size_at` is the output offset
    /// of its Size field.
    FunEnd { size_at: usize },
}

/// Reads the fun whose tag byte is at `buf[start]`; returns it and the
/// offset just past it. `src`, when given, holds the same bytes as `buf`.
pub(crate) fn read(
    buf: &[u8],
    start: usize,
    src: Option<&Bytes>,
    cache: &[Atom],
    max_depth: usize,
) -> Result<(OpaqueFun, usize), DecodeError> {
    let mut w = Walker { r: Reader::new(buf, start), cache, start, out: None, copied: start, grown: 0 };
    w.walk(max_depth)?;
    let end = w.r.pos;
    let bytes = match w.out {
        Some(mut out) => {
            out.extend_from_slice(&buf[w.copied..end]);
            Bytes::from(out)
        }
        None => reader::share_or_copy(src, &buf[start..end]),
    };
    Ok((OpaqueFun(bytes), end))
}

/// Walks the fun's bytes without building terms: a stack of expectations
/// with repeat counts, so depth is bounded and memory does not follow
/// declared lengths.
struct Walker<'a> {
    r: Reader<'a>,
    cache: &'a [Atom],
    start: usize,
    /// The rewritten fun, started at the first cache ref.
    out: Option<Vec<u8>>,
    /// Input before this offset is already in `out`.
    copied: usize,
    /// How much longer the output is than the input read so far.
    grown: usize,
}

impl Walker<'_> {
    fn walk(&mut self, max_depth: usize) -> Result<(), DecodeError> {
        let mut stack: Vec<(Expect, u64)> = vec![(Expect::Fun, 1)];
        loop {
            let expect = loop {
                match stack.last_mut() {
                    None => return Ok(()),
                    Some(&mut (Expect::FunEnd { size_at }, _)) => {
                        stack.pop();
                        self.patch_size(size_at)?;
                    }
                    Some((_, 0)) => {
                        stack.pop();
                    }
                    Some((e, n)) => {
                        *n -= 1;
                        break *e;
                    }
                }
            };
            if stack.len() > max_depth {
                return Err(DecodeError::TooDeep(max_depth));
            }
            let at = self.r.pos;
            let tag = self.r.u8()?;
            let fits = match expect {
                Expect::Any => true,
                Expect::Fun => matches!(tag, NEW_FUN | EXPORT),
                Expect::Atom => reader::is_atom_tag(tag),
                Expect::Int => matches!(tag, SMALL_INTEGER | INTEGER | SMALL_BIG | LARGE_BIG),
                Expect::Arity => matches!(tag, SMALL_INTEGER | INTEGER),
                Expect::Pid => matches!(tag, PID | NEW_PID),
                Expect::FunEnd { .. } => false,
            };
            if !fits {
                return Err(DecodeError::Invalid(format!("unexpected tag {tag} inside a fun")));
            }
            let r = &mut self.r;
            match tag {
                SMALL_INTEGER => r.skip(1)?,
                INTEGER => {
                    let v = r.u32()?;
                    if matches!(expect, Expect::Arity) && v > 255 {
                        return Err(invalid("export fun arity above 255"));
                    }
                }
                NEW_FLOAT => {
                    reader::finite(f64::from_bits(r.u64()?))?;
                }
                FLOAT => {
                    reader::parse_old_float(r.take(31)?)?;
                }
                ATOM | SMALL_ATOM | ATOM_UTF8 | SMALL_ATOM_UTF8 | ATOM_CACHE_REF => {
                    self.atom(at, tag)?;
                }
                SMALL_TUPLE => {
                    let n = r.u8()?;
                    stack.push((Expect::Any, n.into()));
                }
                LARGE_TUPLE => {
                    let n = r.u32()?;
                    stack.push((Expect::Any, n.into()));
                }
                NIL => {}
                STRING => {
                    let n = r.u16()?;
                    r.skip(n.into())?;
                }
                LIST => {
                    // Elements, then the tail.
                    let n = r.u32()?;
                    stack.push((Expect::Any, u64::from(n) + 1));
                }
                MAP => {
                    let n = r.u32()?;
                    stack.push((Expect::Any, u64::from(n) * 2));
                }
                BINARY => {
                    let n = r.u32()?;
                    r.skip(n as usize)?;
                }
                BIT_BINARY => {
                    let n = r.u32()? as usize;
                    reader::check_bit_binary(n, r.u8()?)?;
                    r.skip(n)?;
                }
                SMALL_BIG => {
                    let n = r.u8()?;
                    r.skip(1 + n as usize)?;
                }
                LARGE_BIG => {
                    let n = r.u32()?;
                    r.skip(1 + n as usize)?;
                }
                PID | NEW_PID => {
                    self.node()?;
                    self.r.skip(if tag == PID { 9 } else { 12 })?;
                }
                PORT | NEW_PORT | V4_PORT => {
                    self.node()?;
                    self.r.skip(match tag {
                        PORT => 5,
                        NEW_PORT => 8,
                        _ => 12,
                    })?;
                }
                REFERENCE => {
                    self.node()?;
                    self.r.skip(5)?;
                }
                NEW_REFERENCE | NEWER_REFERENCE => {
                    let n = r.u16()? as usize;
                    if n > MAX_REF_IDS {
                        return Err(invalid("reference with more than 5 ids"));
                    }
                    self.node()?;
                    let creation = if tag == NEW_REFERENCE { 1 } else { 4 };
                    self.r.skip(creation + 4 * n)?;
                }
                NEW_FUN => {
                    // Size, Arity, Uniq, Index, then NumFree.
                    r.skip(4 + 1 + 16 + 4)?;
                    let free = r.u32()?;
                    let size_at = at + 1 - self.start + self.grown;
                    stack.push((Expect::FunEnd { size_at }, 1));
                    stack.push((Expect::Any, free.into()));
                    stack.push((Expect::Pid, 1));
                    stack.push((Expect::Int, 2));
                    stack.push((Expect::Atom, 1));
                }
                EXPORT => {
                    stack.push((Expect::Arity, 1));
                    stack.push((Expect::Atom, 2));
                }
                RECORD => {
                    // Header and names here (names must be told apart to
                    // refuse repeats), the values through the stack.
                    let (n, _) = record::read_header(r)?;
                    let mut names = Vec::with_capacity(n as usize);
                    for i in 0..u64::from(n) + 2 {
                        let at = self.r.pos;
                        let tag = self.r.u8()?;
                        if !reader::is_atom_tag(tag) {
                            return Err(invalid("native record part is not an atom"));
                        }
                        let atom = self.atom(at, tag)?;
                        if i >= 2 {
                            names.push(atom);
                        }
                    }
                    record::check_names(names.iter())?;
                    stack.push((Expect::Any, n.into()));
                }
                COMPRESSED => return Err(invalid("compressed term inside a fun")),
                _ => return Err(DecodeError::UnknownTag(tag)),
            }
        }
    }

    fn node(&mut self) -> Result<(), DecodeError> {
        let at = self.r.pos;
        let tag = self.r.u8()?;
        if !reader::is_atom_tag(tag) {
            return Err(invalid("node name is not an atom"));
        }
        self.atom(at, tag).map(drop)
    }

    /// Validates an atom and returns it; a cache ref is replaced by the
    /// atom's text.
    fn atom(&mut self, at: usize, tag: u8) -> Result<Atom, DecodeError> {
        let atom = reader::read_atom_body(&mut self.r, tag, self.cache)?;
        if tag != ATOM_CACHE_REF {
            return Ok(atom);
        }
        let buf = self.r.buf;
        let out = self.out.get_or_insert_with(|| Vec::with_capacity(at - self.start + 64));
        out.extend_from_slice(&buf[self.copied..at]);
        let before = out.len();
        put_atom_utf8(out, &atom);
        self.grown += (out.len() - before) - (self.r.pos - at);
        self.copied = self.r.pos;
        Ok(atom)
    }

    /// Size counts itself and everything after it up to the fun's end.
    fn patch_size(&mut self, size_at: usize) -> Result<(), DecodeError> {
        let Some(out) = self.out.as_mut() else { return Ok(()) };
        out.extend_from_slice(&self.r.buf[self.copied..self.r.pos]);
        self.copied = self.r.pos;
        let size = out.len().checked_sub(size_at).and_then(|n| u32::try_from(n).ok());
        let size = size.ok_or_else(|| invalid("fun too large"))?;
        match out.get_mut(size_at..size_at + 4) {
            Some(field) => field.copy_from_slice(&size.to_be_bytes()),
            None => return Err(invalid("fun size field")),
        }
        Ok(())
    }
}
