//! Bounds-checked cursor over untrusted input, plus the leaf parsers that
//! the term decoder and the fun walker must agree on.

use super::decode::DecodeError;
use super::tags::*;
use super::{Atom, Term};
use bytes::Bytes;
use num_bigint::{BigInt, Sign};

pub(crate) struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    #[inline]
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    #[inline]
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    #[inline]
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Declared lengths are checked against what is actually left, so a
    /// forged length can never cause a large allocation or a panic.
    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[inline]
    pub fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.take(n).map(|_| ())
    }
}

/// Binaries at least this long are shared with the input by `decode_bytes`.
const SHARE_MIN: usize = 256;

/// `s` must lie within `src`. Short slices are copied even when sharing is
/// possible: copying costs about what the shared count does, and a slice
/// would keep the whole input buffer alive for a few bytes.
#[inline]
pub(crate) fn share_or_copy(src: Option<&Bytes>, s: &[u8]) -> Bytes {
    match src {
        Some(b) if s.len() >= SHARE_MIN => b.slice_ref(s),
        _ => Bytes::copy_from_slice(s),
    }
}

pub(crate) fn invalid(msg: &str) -> DecodeError {
    DecodeError::Invalid(msg.to_string())
}

/// True for the tags that may stand where the BEAM expects an atom.
#[inline]
pub(crate) fn is_atom_tag(tag: u8) -> bool {
    matches!(tag, ATOM | SMALL_ATOM | ATOM_UTF8 | SMALL_ATOM_UTF8 | ATOM_CACHE_REF)
}

/// Reads an atom whose tag byte comes next.
#[inline]
pub(crate) fn read_atom(r: &mut Reader<'_>, cache: &[Atom]) -> Result<Atom, DecodeError> {
    let tag = r.u8()?;
    read_atom_body(r, tag, cache)
}

/// Reads the body of an atom whose tag has already been consumed.
pub(crate) fn read_atom_body(
    r: &mut Reader<'_>,
    tag: u8,
    cache: &[Atom],
) -> Result<Atom, DecodeError> {
    match tag {
        SMALL_ATOM_UTF8 => {
            let n = r.u8()? as usize;
            atom_from_utf8(r.take(n)?)
        }
        ATOM_UTF8 => {
            let n = r.u16()? as usize;
            atom_from_utf8(r.take(n)?)
        }
        ATOM => {
            let n = r.u16()? as usize;
            atom_from_latin1(r.take(n)?)
        }
        SMALL_ATOM => {
            let n = r.u8()? as usize;
            atom_from_latin1(r.take(n)?)
        }
        ATOM_CACHE_REF => {
            let i = r.u8()?;
            cache.get(i as usize).cloned().ok_or(DecodeError::BadAtomCacheRef(i))
        }
        _ => Err(DecodeError::Invalid(format!("expected an atom, found tag {tag}"))),
    }
}

pub(crate) fn atom_from_utf8(b: &[u8]) -> Result<Atom, DecodeError> {
    let s = std::str::from_utf8(b).map_err(|_| invalid("atom is not valid UTF-8"))?;
    // Every char takes at least one byte, so short atoms need no count.
    if b.len() > MAX_ATOM_CHARS && s.chars().count() > MAX_ATOM_CHARS {
        return Err(invalid("atom longer than 255 characters"));
    }
    Ok(atom_cache::intern(s))
}

pub(crate) fn atom_from_latin1(b: &[u8]) -> Result<Atom, DecodeError> {
    if b.len() > MAX_ATOM_CHARS {
        return Err(invalid("atom longer than 255 characters"));
    }
    match std::str::from_utf8(b) {
        Ok(s) if b.is_ascii() => Ok(atom_cache::intern(s)),
        _ => Ok(Atom::from(b.iter().map(|&c| c as char).collect::<String>())),
    }
}

/// The same few atoms (node names, record tags, map keys) arrive over and
/// over; a small per-thread cache turns most atom decodes into a reference
/// count bump instead of an allocation. Lock-free because it is per
/// thread, and bounded: a hostile stream of distinct atoms only evicts.
mod atom_cache {
    use super::Atom;
    use std::cell::RefCell;

    const SLOTS: usize = 256;

    thread_local! {
        static SLOT: RefCell<[Option<Atom>; SLOTS]> =
            const { RefCell::new([const { None }; SLOTS]) };
    }

    #[inline]
    fn slot(s: &str) -> usize {
        // FNV-1a; atoms are short.
        let mut h: u32 = 0x811c_9dc5;
        for &b in s.as_bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        (h ^ (h >> 16)) as usize % SLOTS
    }

    pub(crate) fn intern(s: &str) -> Atom {
        let i = slot(s);
        SLOT.try_with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            let entry = cache.get_mut(i)?;
            match entry {
                Some(a) if a.as_str() == s => Some(a.clone()),
                _ => {
                    let a = Atom::new(s);
                    *entry = Some(a.clone());
                    Some(a)
                }
            }
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Atom::new(s))
    }
}

/// Bignum digits are little-endian; the BEAM treats any non-zero sign byte
/// as negative and accepts non-minimal encodings, so we normalise to `Int`
/// whenever the value fits.
pub(crate) fn big_to_term(sign: u8, digits: &[u8]) -> Term {
    let significant = digits.iter().rposition(|&d| d != 0).map_or(0, |i| i + 1);
    if significant <= 8 {
        let mut le = [0u8; 8];
        le[..significant].copy_from_slice(&digits[..significant]);
        let mag = u64::from_le_bytes(le);
        if sign == 0 {
            if let Ok(v) = i64::try_from(mag) {
                return Term::Int(v);
            }
        } else if mag <= 1u64 << 63 {
            return Term::Int((mag as i64).wrapping_neg());
        }
    }
    let s = if sign == 0 { Sign::Plus } else { Sign::Minus };
    Term::Big(BigInt::from_bytes_le(s, &digits[..significant]))
}

/// FLOAT_EXT is a NUL-padded `%.20e` string; the BEAM accepts no padding
/// other than NULs and no text that is not a finite number.
pub(crate) fn parse_old_float(b: &[u8]) -> Result<f64, DecodeError> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    if b[end..].iter().any(|&c| c != 0) {
        return Err(invalid("FLOAT_EXT has bytes after its NUL terminator"));
    }
    let text = std::str::from_utf8(&b[..end]).map_err(|_| invalid("FLOAT_EXT is not text"))?;
    if !text.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Err(invalid("FLOAT_EXT is not a number"));
    }
    let f: f64 = text.parse().map_err(|_| invalid("FLOAT_EXT is not a number"))?;
    finite(f)
}

/// The BEAM has no NaN or infinities and refuses them on input.
#[inline]
pub(crate) fn finite(f: f64) -> Result<f64, DecodeError> {
    if f.is_finite() {
        Ok(f)
    } else {
        Err(invalid("float is not finite"))
    }
}

/// BIT_BINARY_EXT with an empty body or a bit count outside 1..=8 is
/// refused by the BEAM.
#[inline]
pub(crate) fn check_bit_binary(len: usize, bits: u8) -> Result<(), DecodeError> {
    if len == 0 || bits == 0 || bits > 8 {
        return Err(invalid("bad BIT_BINARY_EXT"));
    }
    Ok(())
}
