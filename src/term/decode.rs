//! ETF decoder for untrusted input.
//!
//! The decoder is iterative (an explicit stack of open containers) so that
//! the nesting depth is a configurable limit rather than a property of the
//! thread's stack size.

use super::reader::{self, invalid, Reader};
use super::tags::*;
use super::{compressed, fun, map_keys, record, Atom, NativeRecord, Pid, Port, Reference, Term};
use bytes::Bytes;
use smallvec::SmallVec;

/// Why a byte sequence is not a valid term.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DecodeError {
    #[error("unexpected end of input")]
    Truncated,
    #[error("unknown term tag {0}")]
    UnknownTag(u8),
    #[error("invalid term: {0}")]
    Invalid(String),
    #[error("missing version byte 131")]
    MissingVersion,
    #[error("{0} bytes after the term")]
    TrailingBytes(usize),
    #[error("term nested deeper than {0}")]
    TooDeep(usize),
    #[error("atom cache reference {0} is not in the cache")]
    BadAtomCacheRef(u8),
    #[error("compressed term declares {declared} bytes, limit is {limit}")]
    TooLarge { declared: usize, limit: usize },
}

/// Limits applied while decoding untrusted input.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Deepest nesting of lists/tuples/maps accepted.
    ///
    /// The decoder itself handles any depth, but `Term`'s derived `Drop`,
    /// `Clone`, `PartialEq` and `Debug` recurse. Measured on a 2 MiB thread
    /// (tokio's default): `Clone` overflows at ~1,600 levels in debug
    /// builds and ~7,000 in release, `Debug` at ~5,000 in release. The
    /// default leaves headroom for callers that clone or log what arrives.
    pub max_depth: usize,
    /// Largest uncompressed size accepted for a compressed term.
    pub max_uncompressed: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_depth: 1_000, max_uncompressed: 256 * 1024 * 1024 }
    }
}

/// Decodes a whole `term_to_binary` buffer (version byte 131 first).
pub fn decode(buf: &[u8]) -> Result<Term, DecodeError> {
    whole(buf, None)
}

/// Like [`decode`], but binaries and funs share `buf`'s storage instead of
/// being copied, which pays off for messages carrying large binaries.
pub fn decode_bytes(buf: &Bytes) -> Result<Term, DecodeError> {
    whole(buf, Some(buf))
}

/// Decodes one term from the start of `input`, resolving ATOM_CACHE_REF
/// against `cache`; a leading version byte 131 is skipped. Returns the term
/// and the number of bytes consumed.
pub fn decode_with_cache(
    input: &[u8],
    cache: &[Atom],
    limits: &DecodeLimits,
) -> Result<(Term, usize), DecodeError> {
    prefix(input, None, cache, limits)
}

/// Zero-copy variant of [`decode_with_cache`]; see [`decode_bytes`].
pub fn decode_bytes_with_cache(
    input: &Bytes,
    cache: &[Atom],
    limits: &DecodeLimits,
) -> Result<(Term, usize), DecodeError> {
    prefix(input, Some(input), cache, limits)
}

fn whole(buf: &[u8], src: Option<&Bytes>) -> Result<Term, DecodeError> {
    if buf.first() != Some(&VERSION) {
        return Err(DecodeError::MissingVersion);
    }
    let (term, used) = prefix(buf, src, &[], &DecodeLimits::default())?;
    match buf.len() - used {
        0 => Ok(term),
        n => Err(DecodeError::TrailingBytes(n)),
    }
}

/// `src`, when given, holds the same bytes as `input`.
fn prefix(
    input: &[u8],
    src: Option<&Bytes>,
    cache: &[Atom],
    limits: &DecodeLimits,
) -> Result<(Term, usize), DecodeError> {
    let start = usize::from(input.first() == Some(&VERSION));
    if input.get(start) == Some(&COMPRESSED) {
        let (inflated, used) = compressed::inflate(&input[start + 1..], limits)?;
        let inflated = Bytes::from(inflated);
        let mut d = Decoder::new(&inflated, Some(&inflated), cache, limits);
        let term = d.term()?;
        if d.r.pos != inflated.len() {
            return Err(invalid("compressed term does not fill its declared size"));
        }
        return Ok((term, start + 1 + used));
    }
    let mut d = Decoder::new(input, src, cache, limits);
    d.r.pos = start;
    let term = d.term()?;
    Ok((term, d.r.pos))
}

/// A container whose elements are still being read.
enum Frame {
    Tuple { items: Vec<Term>, left: u32 },
    /// With `left == 0` the next term read is the list's tail.
    List { items: Vec<Term>, left: u32 },
    Map { entries: Vec<(Term, Term)>, key: Option<Term>, left: u32 },
    /// A native record whose values are being read: `fields` holds every
    /// name, with a placeholder value until its turn (the last `left`).
    Record { head: Box<(Atom, Atom, bool)>, fields: Vec<(Atom, Term)>, left: u32 },
}

/// What reading one tag produced.
enum Step {
    Value(Term),
    /// A container was opened; its elements follow.
    Opened,
}

struct Decoder<'a> {
    r: Reader<'a>,
    src: Option<&'a Bytes>,
    cache: &'a [Atom],
    limits: &'a DecodeLimits,
    stack: SmallVec<[Frame; 8]>,
    /// Terms still owed to the open containers. Each needs at least one
    /// more input byte, so this can never exceed what is left; checking
    /// that when a container opens stops nested lying lengths from each
    /// reserving memory against the same remaining bytes.
    owed: u64,
}

impl<'a> Decoder<'a> {
    fn new(
        buf: &'a [u8],
        src: Option<&'a Bytes>,
        cache: &'a [Atom],
        limits: &'a DecodeLimits,
    ) -> Self {
        Decoder { r: Reader::new(buf, 0), src, cache, limits, stack: SmallVec::new(), owed: 0 }
    }

    fn term(&mut self) -> Result<Term, DecodeError> {
        loop {
            let tag = self.r.u8()?;
            if self.leaf_fast_path(tag)? {
                continue;
            }
            let step = match self.stack.last_mut() {
                Some(Frame::List { items, left }) if *left == 0 => match tag {
                    // The tail of a list may itself be a list: [1 | [2]] is
                    // [1, 2], and the BEAM decodes it that way.
                    NIL => Step::Value(Term::List(std::mem::take(items))),
                    LIST => {
                        let n = self.r.u32()?;
                        self.owed += u64::from(n);
                        if self.owed > self.r.remaining() as u64 {
                            return Err(DecodeError::Truncated);
                        }
                        items.reserve(n as usize);
                        *left = n;
                        continue;
                    }
                    STRING => {
                        let n = self.r.u16()? as usize;
                        items.extend(self.r.take(n)?.iter().map(|&b| Term::Int(b.into())));
                        Step::Value(Term::List(std::mem::take(items)))
                    }
                    _ => self.item(tag)?,
                },
                _ => self.item(tag)?,
            };
            let mut value = match step {
                Step::Value(v) => v,
                Step::Opened => continue,
            };
            // Hand the finished value to its container, closing every
            // container that it completes. Only this value fills an owed
            // slot: a closing container's slot was settled when it opened.
            if !self.stack.is_empty() {
                self.owed = self.owed.saturating_sub(1);
            }
            loop {
                let Some(top) = self.stack.last_mut() else { return Ok(value) };
                match top {
                    Frame::Tuple { items, left } => {
                        items.push(value);
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        value = Term::Tuple(std::mem::take(items));
                    }
                    Frame::List { items, left } => {
                        if *left > 0 {
                            items.push(value);
                            *left -= 1;
                            break;
                        }
                        // A tail closed by NIL/STRING arrives here as a List
                        // that already holds the items.
                        value = match value {
                            Term::List(_) => value,
                            tail if items.is_empty() => tail,
                            tail => Term::ImproperList(std::mem::take(items), Box::new(tail)),
                        };
                    }
                    Frame::Map { entries, key, left } => {
                        let Some(k) = key.take() else {
                            *key = Some(value);
                            break;
                        };
                        entries.push((k, value));
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        if map_keys::has_duplicates(entries) {
                            return Err(invalid("map has duplicate keys"));
                        }
                        value = Term::Map(std::mem::take(entries));
                    }
                    Frame::Record { fields, left, .. } => {
                        let at = fields.len() - *left as usize;
                        fields[at].1 = value;
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        let Some(Frame::Record { head, fields, .. }) = self.stack.pop() else {
                            unreachable!("the top frame is a record")
                        };
                        let (module, name, exported) = *head;
                        value = Term::Record(Box::new(NativeRecord::from_parts(
                            module, name, exported, fields,
                        )));
                        continue;
                    }
                }
                self.stack.pop();
            }
        }
    }

    /// Integers and atoms that do not complete their container are stored
    /// in place. This skips the general path's moves of a whole `Term`
    /// through return values, which dominate decoding time otherwise.
    #[inline]
    fn leaf_fast_path(&mut self, tag: u8) -> Result<bool, DecodeError> {
        let leaf = match tag {
            SMALL_INTEGER | INTEGER | SMALL_ATOM_UTF8 | ATOM | ATOM_CACHE_REF => tag,
            _ => return Ok(false),
        };
        let Some(top) = self.stack.last_mut() else { return Ok(false) };
        let r = &mut self.r;
        let mut read = || -> Result<Term, DecodeError> {
            Ok(match leaf {
                SMALL_INTEGER => Term::Int(r.u8()?.into()),
                INTEGER => Term::Int(r.u32()? as i32 as i64),
                _ => Term::Atom(reader::read_atom_body(r, leaf, self.cache)?),
            })
        };
        match top {
            Frame::Tuple { items, left } | Frame::List { items, left } if *left > 1 => {
                items.push(read()?);
                *left -= 1;
            }
            Frame::Map { key: key @ None, .. } => *key = Some(read()?),
            Frame::Map { entries, key: key @ Some(_), left } if *left > 1 => {
                let v = read()?;
                if let Some(k) = key.take() {
                    entries.push((k, v));
                }
                *left -= 1;
            }
            _ => return Ok(false),
        }
        self.owed = self.owed.saturating_sub(1);
        Ok(true)
    }

    /// Opens a container that owes `terms` more terms, `n` of them stored
    /// in its `Vec`. Only after the owed check may `n` size an allocation.
    fn open(&mut self, kind: u8, n: u32, terms: u64) -> Result<Step, DecodeError> {
        self.owe(terms)?;
        let len = n as usize;
        self.stack.push(match kind {
            LIST => Frame::List { items: Vec::with_capacity(len), left: n },
            MAP => Frame::Map { entries: Vec::with_capacity(len), key: None, left: n },
            _ => Frame::Tuple { items: Vec::with_capacity(len), left: n },
        });
        Ok(Step::Opened)
    }

    /// Checks the depth limit and accounts for a container about to open
    /// that owes `terms` more terms.
    fn owe(&mut self, terms: u64) -> Result<(), DecodeError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(DecodeError::TooDeep(self.limits.max_depth));
        }
        // The slot this container fills in its parent is now covered by
        // the container's own terms.
        let slot = u64::from(!self.stack.is_empty());
        self.owed = self.owed.saturating_sub(slot) + terms;
        if self.owed > self.r.remaining() as u64 {
            return Err(DecodeError::Truncated);
        }
        Ok(())
    }

    /// RECORD_EXT after its tag: the header and names are read here, the
    /// values as the elements of a `Frame::Record`.
    fn record(&mut self) -> Result<Step, DecodeError> {
        let (n, exported) = record::read_header(&mut self.r)?;
        let module = reader::read_atom(&mut self.r, self.cache)?;
        let name = reader::read_atom(&mut self.r, self.cache)?;
        // `read_header` bounded `n` by the input left.
        let mut fields = Vec::with_capacity(n as usize);
        for _ in 0..n {
            fields.push((reader::read_atom(&mut self.r, self.cache)?, Term::Int(0)));
        }
        record::check_names(fields.iter().map(|(k, _)| k))?;
        if n == 0 {
            let r = NativeRecord::from_parts(module, name, exported, fields);
            return Ok(Step::Value(Term::Record(Box::new(r))));
        }
        self.owe(n.into())?;
        let head = Box::new((module, name, exported));
        self.stack.push(Frame::Record { head, fields, left: n });
        Ok(Step::Opened)
    }

    fn bytes(&self, s: &[u8]) -> Bytes {
        reader::share_or_copy(self.src, s)
    }

    fn item(&mut self, tag: u8) -> Result<Step, DecodeError> {
        let r = &mut self.r;
        let t = match tag {
            SMALL_INTEGER => Term::Int(r.u8()?.into()),
            INTEGER => Term::Int(r.u32()? as i32 as i64),
            NEW_FLOAT => Term::Float(reader::finite(f64::from_bits(r.u64()?))?),
            FLOAT => Term::Float(reader::parse_old_float(r.take(31)?)?),
            ATOM | SMALL_ATOM | ATOM_UTF8 | SMALL_ATOM_UTF8 | ATOM_CACHE_REF => {
                Term::Atom(reader::read_atom_body(r, tag, self.cache)?)
            }
            SMALL_TUPLE => return self.tuple(tag),
            LARGE_TUPLE => return self.tuple(tag),
            NIL => Term::List(Vec::new()),
            STRING => {
                let n = r.u16()? as usize;
                Term::List(r.take(n)?.iter().map(|&b| Term::Int(b.into())).collect())
            }
            LIST => {
                let n = r.u32()?;
                // The elements, then the tail.
                return self.open(LIST, n, u64::from(n) + 1);
            }
            MAP => {
                let n = r.u32()?;
                if n == 0 {
                    return Ok(Step::Value(Term::Map(Vec::new())));
                }
                return self.open(MAP, n, 2 * u64::from(n));
            }
            BINARY => {
                let n = r.u32()? as usize;
                let s = r.take(n)?;
                Term::Binary(self.bytes(s))
            }
            BIT_BINARY => {
                let n = r.u32()? as usize;
                let bits = r.u8()?;
                reader::check_bit_binary(n, bits)?;
                let s = r.take(n)?;
                self.bit_binary(s, bits)
            }
            SMALL_BIG => {
                let n = r.u8()? as usize;
                let sign = r.u8()?;
                reader::big_to_term(sign, r.take(n)?)
            }
            LARGE_BIG => {
                let n = r.u32()? as usize;
                let sign = r.u8()?;
                reader::big_to_term(sign, r.take(n)?)
            }
            PID | NEW_PID => {
                let node = reader::read_atom(r, self.cache)?;
                let id = r.u32()?;
                let serial = r.u32()?;
                let creation = if tag == PID { r.u8()?.into() } else { r.u32()? };
                Term::Pid(Pid { node, id, serial, creation })
            }
            PORT | NEW_PORT | V4_PORT => {
                let node = reader::read_atom(r, self.cache)?;
                let id = if tag == V4_PORT { r.u64()? } else { r.u32()?.into() };
                let creation = if tag == PORT { r.u8()?.into() } else { r.u32()? };
                Term::Port(Port { node, id, creation })
            }
            REFERENCE => {
                let node = reader::read_atom(r, self.cache)?;
                let id = r.u32()?;
                let creation = r.u8()?.into();
                Term::Ref(Reference { node, creation, ids: SmallVec::from_slice(&[id]) })
            }
            NEW_REFERENCE | NEWER_REFERENCE => {
                let n = r.u16()? as usize;
                if n > MAX_REF_IDS {
                    return Err(invalid("reference with more than 5 ids"));
                }
                let node = reader::read_atom(r, self.cache)?;
                let creation = if tag == NEW_REFERENCE { r.u8()?.into() } else { r.u32()? };
                let mut ids = SmallVec::new();
                for _ in 0..n {
                    ids.push(r.u32()?);
                }
                Term::Ref(Reference { node, creation, ids })
            }
            NEW_FUN | EXPORT => {
                let depth_left = self.limits.max_depth.saturating_sub(self.stack.len());
                let start = r.pos - 1;
                let (f, end) = fun::read(r.buf, start, self.src, self.cache, depth_left)?;
                r.pos = end;
                Term::Fun(f)
            }
            RECORD => return self.record(),
            COMPRESSED => return Err(invalid("compressed term inside a term")),
            _ => return Err(DecodeError::UnknownTag(tag)),
        };
        Ok(Step::Value(t))
    }

    fn tuple(&mut self, tag: u8) -> Result<Step, DecodeError> {
        let n = if tag == SMALL_TUPLE { self.r.u8()?.into() } else { self.r.u32()? };
        if n == 0 {
            return Ok(Step::Value(Term::Tuple(Vec::new())));
        }
        self.open(SMALL_TUPLE, n, n.into())
    }

    /// The BEAM ignores the unused low bits of the last byte, so they are
    /// cleared here to make equal bitstrings compare equal.
    fn bit_binary(&self, s: &[u8], bits: u8) -> Term {
        let mask = 0xffu8 << (8 - bits);
        let bytes = match s.last() {
            Some(&last) if last & !mask != 0 => {
                let mut v = s.to_vec();
                if let Some(l) = v.last_mut() {
                    *l &= mask;
                }
                Bytes::from(v)
            }
            _ => self.bytes(s),
        };
        if bits == 8 {
            Term::Binary(bytes)
        } else {
            Term::BitBinary { bytes, bits }
        }
    }
}
