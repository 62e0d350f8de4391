//! ETF decoder. (stub: being written)
use super::{Atom, Term};

/// Why a byte sequence is not a valid term.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DecodeError {
    #[error("unexpected end of input")]
    Truncated,
    #[error("unknown term tag {0}")]
    UnknownTag(u8),
    #[error("invalid term: {0}")]
    Invalid(String),
}

/// Limits applied while decoding untrusted input.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Deepest nesting of lists/tuples/maps accepted.
    pub max_depth: usize,
    /// Largest uncompressed size accepted for a compressed term.
    pub max_uncompressed: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_depth: 10_000, max_uncompressed: 256 * 1024 * 1024 }
    }
}

/// Decodes a whole `term_to_binary` buffer (version byte 131 first).
pub fn decode(_buf: &[u8]) -> Result<Term, DecodeError> {
    Err(DecodeError::Invalid("unimplemented".into()))
}

/// Decodes one term from the start of `input`, resolving ATOM_CACHE_REF
/// against `cache`; a leading version byte 131 is skipped. Returns the term
/// and the number of bytes consumed.
pub fn decode_with_cache(
    _input: &[u8],
    _cache: &[Atom],
    _limits: &DecodeLimits,
) -> Result<(Term, usize), DecodeError> {
    Err(DecodeError::Invalid("unimplemented".into()))
}
