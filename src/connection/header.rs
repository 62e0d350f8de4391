//! Parsing of one received frame into "which message bytes, with which
//! atoms": the distribution header (68), fragment headers (69/70) and
//! pass-through frames (112).

use super::atom_cache::AtomCache;
use super::FrameError;
use crate::term::Atom;
use bytes::Bytes;

pub const VERSION_MAGIC: u8 = 131;
pub const DIST_HEADER: u8 = 68;
pub const DIST_FRAG_HEADER: u8 = 69;
pub const DIST_FRAG_CONT: u8 = 70;
pub const PASS_THROUGH: u8 = 112;

/// The header of a continuation fragment: 131, 70, sequence id and
/// fragment id (8 bytes each); its body follows.
pub const CONT_HEAD: usize = 18;

/// The sequence and fragment id of a continuation fragment's header
/// (`head`, its first [`CONT_HEAD`] bytes); `None` for any other frame.
pub fn continuation(head: &[u8]) -> Option<(u64, u64)> {
    fragment_ids(head, DIST_FRAG_CONT)
}

/// The sequence and fragment id that follow `131, tag` in `head` (a
/// frame's first [`CONT_HEAD`] bytes): first fragments and continuations
/// put them in the same places.
fn fragment_ids(head: &[u8], tag: u8) -> Option<(u64, u64)> {
    match head {
        [VERSION_MAGIC, t, rest @ ..] if *t == tag && rest.len() == 16 => {
            Some((u64::from_be_bytes(rest[..8].try_into().unwrap()), u64::from_be_bytes(rest[8..].try_into().unwrap())))
        }
        _ => None,
    }
}

/// A frame's meaning once its header is read.
#[derive(Debug)]
pub enum FramePart {
    /// A whole message: control term and optional payload in `body`.
    Whole { atoms: Vec<Atom>, body: Bytes },
    /// The first fragment of a message sent in `fragment_id` pieces.
    First { seq: u64, fragment_id: u64, atoms: Vec<Atom>, body: Bytes },
    /// A later fragment.
    Cont { seq: u64, fragment_id: u64, body: Bytes },
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Result<u8, FrameError> {
        let b = *self.buf.get(self.pos).ok_or(FrameError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self.pos.checked_add(n).ok_or(FrameError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(FrameError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
}

/// Reads the frame's header, updating the connection's atom cache with
/// any new entries it announces.
pub fn parse_frame(frame: Bytes, cache: &mut AtomCache) -> Result<FramePart, FrameError> {
    let mut c = Cursor { buf: &frame, pos: 0 };
    match c.u8()? {
        PASS_THROUGH => {
            let body = frame.slice(1..);
            Ok(FramePart::Whole { atoms: Vec::new(), body })
        }
        VERSION_MAGIC => match c.u8()? {
            DIST_HEADER => {
                let atoms = read_atom_refs(&mut c, cache)?;
                let pos = c.pos;
                Ok(FramePart::Whole { atoms, body: frame.slice(pos..) })
            }
            DIST_FRAG_HEADER => {
                let (seq, fragment_id, atoms) = first_fragment_fields(&mut c, cache)?;
                let pos = c.pos;
                Ok(FramePart::First { seq, fragment_id, atoms, body: frame.slice(pos..) })
            }
            DIST_FRAG_CONT => {
                let seq = c.u64()?;
                let fragment_id = c.u64()?;
                let pos = c.pos;
                Ok(FramePart::Cont { seq, fragment_id, body: frame.slice(pos..) })
            }
            other => Err(FrameError::Malformed(format!("unknown distribution header tag {other}"))),
        },
        other => Err(FrameError::Malformed(format!("unknown frame type {other}"))),
    }
}

/// The header of a first fragment held at the start of `frame` (its body
/// follows): sequence id, fragment id, atoms, and where the body starts.
/// For a first fragment read into the buffer its message is assembled in.
pub fn parse_first_fragment(frame: &[u8], cache: &mut AtomCache) -> Result<(u64, u64, Vec<Atom>, usize), FrameError> {
    let mut c = Cursor { buf: frame, pos: 0 };
    if (c.u8()?, c.u8()?) != (VERSION_MAGIC, DIST_FRAG_HEADER) {
        return Err(FrameError::Malformed("not a first fragment".into()));
    }
    let (seq, fragment_id, atoms) = first_fragment_fields(&mut c, cache)?;
    Ok((seq, fragment_id, atoms, c.pos))
}

/// The sequence id and fragment id a frame's first [`CONT_HEAD`] bytes
/// announce when they start a first fragment (the same places as a
/// continuation's).
pub fn first_fragment(head: &[u8]) -> Option<(u64, u64)> {
    fragment_ids(head, DIST_FRAG_HEADER)
}

/// A first fragment's sequence id, fragment id (never 0) and atom cache
/// references, after its two tag bytes.
fn first_fragment_fields(c: &mut Cursor<'_>, cache: &mut AtomCache) -> Result<(u64, u64, Vec<Atom>), FrameError> {
    let seq = c.u64()?;
    let fragment_id = c.u64()?;
    if fragment_id == 0 {
        return Err(FrameError::Malformed("fragment id 0".into()));
    }
    Ok((seq, fragment_id, read_atom_refs(c, cache)?))
}

/// NumberOfAtomCacheRefs, the flag nibbles, then each reference: new
/// entries carry their text and are stored; old ones are looked up.
fn read_atom_refs(c: &mut Cursor<'_>, cache: &mut AtomCache) -> Result<Vec<Atom>, FrameError> {
    let n = c.u8()? as usize;
    if n == 0 {
        return Ok(Vec::new());
    }
    let flags = c.take(n / 2 + 1)?;
    let nibble = |i: usize| -> u8 {
        let b = flags[i / 2];
        if i % 2 == 0 {
            b & 0x0f
        } else {
            b >> 4
        }
    };
    let long_atoms = nibble(n) & 0x01 != 0;
    let mut atoms = Vec::with_capacity(n);
    for i in 0..n {
        let f = nibble(i);
        let segment = (f & 0x07) as usize;
        let internal = c.u8()? as usize;
        let index = segment * 256 + internal;
        if f & 0x08 != 0 {
            let len = if long_atoms {
                u16::from_be_bytes(c.take(2)?.try_into().unwrap()) as usize
            } else {
                c.u8()? as usize
            };
            let text = c.take(len)?;
            let text = std::str::from_utf8(text)
                .map_err(|_| FrameError::Malformed("atom cache entry is not UTF-8".into()))?;
            if text.chars().count() > 255 {
                return Err(FrameError::Malformed("atom cache entry longer than 255 characters".into()));
            }
            let atom = Atom::new(text);
            cache.insert(index, atom.clone());
            atoms.push(atom);
        } else {
            let atom = cache
                .get(index)
                .cloned()
                .ok_or_else(|| FrameError::Malformed(format!("reference to empty atom cache slot {index}")))?;
            atoms.push(atom);
        }
    }
    Ok(atoms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_fragment_header_read_from_its_buffer() {
        let mut cache = AtomCache::default();
        let mut f = vec![131, 69];
        f.extend_from_slice(&7u64.to_be_bytes());
        f.extend_from_slice(&3u64.to_be_bytes());
        f.extend_from_slice(&[1, 0x08, 0x00, 2]);
        f.extend_from_slice(b"hi");
        f.extend_from_slice(b"BODY");
        assert_eq!(first_fragment(&f[..CONT_HEAD]), Some((7, 3)));
        assert_eq!(continuation(&f[..CONT_HEAD]), None);
        let (seq, id, atoms, start) = parse_first_fragment(&f, &mut cache).unwrap();
        assert_eq!((seq, id, atoms, &f[start..]), (7, 3, vec![Atom::new("hi")], &b"BODY"[..]));
        // The same frame through parse_frame: the same parts.
        let FramePart::First { seq, fragment_id, atoms, body } = parse_frame(Bytes::from(f.clone()), &mut cache).unwrap() else { panic!() };
        assert_eq!((seq, fragment_id, atoms, &body[..]), (7, 3, vec![Atom::new("hi")], &b"BODY"[..]));
        // Not a first fragment; fragment id 0; cut short.
        let mut cont = f.clone();
        cont[1] = DIST_FRAG_CONT;
        assert_eq!(first_fragment(&cont[..CONT_HEAD]), None);
        assert!(parse_first_fragment(&cont, &mut cache).is_err());
        let mut zero = f.clone();
        zero[10..18].copy_from_slice(&0u64.to_be_bytes());
        assert!(parse_first_fragment(&zero, &mut cache).is_err());
        assert!(parse_first_fragment(&f[..20], &mut cache).is_err());
    }

    #[test]
    fn new_then_cached_entries() {
        let mut cache = AtomCache::default();
        // two refs: #0 new in segment 1 index 5 "hello", #1 new seg 0 idx 9 "a"
        // flags: nibble0 = 0x8|1, nibble1 = 0x8|0, nibble2 (long atoms) = 0
        let mut f = vec![131, 68, 2, 0x89, 0x00, 5, 5];
        f.extend_from_slice(b"hello");
        f.extend_from_slice(&[9, 1, b'a', 0xAA]);
        let FramePart::Whole { atoms, body } = parse_frame(Bytes::from(f), &mut cache).unwrap() else { panic!() };
        assert_eq!(atoms, vec![Atom::new("hello"), Atom::new("a")]);
        assert_eq!(&body[..], &[0xAA]);
        // later frame refers to the cached entries (flags without new bit)
        let f2 = vec![131, 68, 2, 0x01, 0x00, 5, 9];
        let FramePart::Whole { atoms, .. } = parse_frame(Bytes::from(f2), &mut cache).unwrap() else { panic!() };
        assert_eq!(atoms, vec![Atom::new("hello"), Atom::new("a")]);
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut cache = AtomCache::default();
        for f in [vec![], vec![131], vec![131, 99], vec![7], vec![131, 68, 1, 0x00, 3], vec![131, 69, 0, 0]] {
            assert!(parse_frame(Bytes::from(f), &mut cache).is_err());
        }
    }
}
