//! ETF encoder. (stub: being written)
use super::Term;

/// Encodes with the version byte 131 first, as `term_to_binary` does.
pub fn encode(term: &Term) -> Vec<u8> {
    let mut out = vec![131];
    encode_into(term, &mut out);
    out
}

/// Appends the encoding of `term` (no version byte) to `out`.
pub fn encode_into(_term: &Term, _out: &mut Vec<u8>) {}

pub fn encode_with_version(term: &Term) -> Vec<u8> {
    encode(term)
}
