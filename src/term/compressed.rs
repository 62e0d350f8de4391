//! COMPRESSED_EXT (tag 80): a zlib stream holding one term.

use super::decode::{DecodeError, DecodeLimits};
use super::reader::{invalid, Reader};
use flate2::{Decompress, FlushDecompress, Status};

/// zlib cannot expand data by more than about 1032:1, so this bounds the
/// first allocation by the input actually present rather than by the
/// peer's declared size.
const MAX_ZLIB_RATIO: usize = 1032;

/// Inflates the body that follows the tag byte. Returns the uncompressed
/// term bytes and how many input bytes (size field included) were used.
pub(crate) fn inflate(
    input: &[u8],
    limits: &DecodeLimits,
) -> Result<(Vec<u8>, usize), DecodeError> {
    let mut r = Reader::new(input, 0);
    let declared = r.u32()? as usize;
    if declared > limits.max_uncompressed {
        return Err(DecodeError::TooLarge { declared, limit: limits.max_uncompressed });
    }
    let data = &input[r.pos..];
    // One byte of headroom lets us notice a stream longer than declared.
    let limit = declared + 1;
    let first = limit.min(data.len().saturating_mul(MAX_ZLIB_RATIO).saturating_add(64));
    let mut out = Vec::with_capacity(first);
    let mut z = Decompress::new(true);
    loop {
        if out.len() == out.capacity() {
            if out.len() >= limit {
                return Err(invalid("compressed term is larger than declared"));
            }
            let grow = (limit - out.len()).min(out.len().max(4096));
            out.reserve_exact(grow);
        }
        let (in_before, out_before) = (z.total_in(), z.total_out());
        let rest = data.get(in_before as usize..).unwrap_or(&[]);
        let status = z
            .decompress_vec(rest, &mut out, FlushDecompress::Finish)
            .map_err(|_| invalid("corrupt zlib stream"))?;
        match status {
            Status::StreamEnd => break,
            // No progress with output space available: input ran out.
            _ if z.total_in() == in_before
                && z.total_out() == out_before
                && out.len() < out.capacity() =>
            {
                return Err(DecodeError::Truncated)
            }
            _ => {}
        }
    }
    if out.len() != declared {
        return Err(invalid("compressed term is smaller than declared"));
    }
    Ok((out, r.pos + z.total_in() as usize))
}
