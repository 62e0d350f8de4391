//! Transparent huge pages for the buffers large messages are received
//! into.
//!
//! A large message is read into a fresh buffer of its size (see
//! [`super::fragments`]). The allocator maps a block that large straight
//! from the kernel, so every 4 KiB page of it faults on first write: a
//! 64 MiB message took 16,384 faults, each zeroing, accounting and
//! mapping one page, and that was the receiving side's largest cost after
//! the kernel's copy (issue 16: 64 MB Rust -> Rust at 0.36-0.40x raw
//! loopback TCP without this, 0.65-0.71x with it, docs/benchmarks.md).
//! Asking for huge pages on the 2 MiB-aligned part of the buffer makes
//! that 32 faults. The BEAM has no such step (its large binaries come
//! from its own allocators' carriers), which is why erlnode's large
//! messages outrun the BEAM pair's.
//!
//! Most distributions set `/sys/kernel/mm/transparent_hugepage/enabled`
//! to `madvise`: huge pages only where a program asks, as here. Under
//! `never` the advice is ignored; under `always` it changes nothing. The
//! cost is the kernel's: a huge page fault may compact memory first when
//! no 2 MiB block is free (`.../defrag`), so a node on a host where that
//! stalls can turn it off ([`crate::NodeBuilder::huge_pages`]).

/// Buffers smaller than this are left alone: they hold at most one
/// aligned 2 MiB block, and the faults they save are few.
pub const MIN_LEN: usize = 4 << 20;

const HUGE_PAGE: usize = 2 << 20;

/// Advises the kernel to back the 2 MiB-aligned part of `buf`'s
/// allocated capacity with huge pages. A hint: it never fails, and the
/// bytes and the allocation are unchanged.
pub fn advise(buf: &mut Vec<u8>) {
    if buf.capacity() < MIN_LEN {
        return;
    }
    let start = buf.as_mut_ptr() as usize;
    let first = (start + HUGE_PAGE - 1) & !(HUGE_PAGE - 1);
    let end = (start + buf.capacity()) & !(HUGE_PAGE - 1);
    if end > first {
        madvise_huge(first, end - first);
    }
}

#[cfg(target_os = "linux")]
fn madvise_huge(addr: usize, len: usize) {
    // SAFETY: [addr, addr + len) lies inside `buf`'s live allocation
    // (rounded inwards to 2 MiB boundaries, so page-aligned as madvise
    // requires). MADV_HUGEPAGE changes only how the kernel backs those
    // pages, never their contents or whether they are mapped, so no
    // reference into the buffer is affected; an error (EINVAL when THP
    // is compiled out) just leaves small pages.
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
    if r != 0 {
        tracing::trace!(error = %std::io::Error::last_os_error(), "madvise(MADV_HUGEPAGE) refused");
    }
}

#[cfg(not(target_os = "linux"))]
fn madvise_huge(_addr: usize, _len: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_buffers_are_left_alone_and_large_ones_stay_intact() {
        let mut small = Vec::with_capacity(MIN_LEN - 1);
        small.extend_from_slice(b"abc");
        advise(&mut small);
        assert_eq!(small, b"abc");
        let mut large: Vec<u8> = Vec::with_capacity(8 << 20);
        large.extend_from_slice(b"head");
        advise(&mut large);
        large.resize(8 << 20, 7);
        assert_eq!(&large[..4], b"head");
        assert!(large[4..].iter().all(|&b| b == 7));
    }

    /// On Linux with THP available, the advice takes: the buffer's pages
    /// show up as AnonHugePages of this process once written. Reported,
    /// not asserted, when the host disables THP (`never`).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_large_buffer_is_backed_by_huge_pages_when_the_host_allows() {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        let huge_kb = || -> u64 {
            let s = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
            s.lines()
                .find(|l| l.starts_with("AnonHugePages:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0)
        };
        let before = huge_kb();
        let mut buf: Vec<u8> = Vec::with_capacity(32 << 20);
        advise(&mut buf);
        buf.resize(32 << 20, 1);
        let after = huge_kb();
        if mode.contains("[never]") || mode.is_empty() {
            eprintln!("transparent huge pages are off on this host ({mode:?}): advice not checked");
            return;
        }
        // At least 12 of the buffer's 15 or 16 aligned 2 MiB blocks (the
        // kernel may fall back to small pages for a few when memory is
        // fragmented).
        assert!(after >= before + 12 * 2048, "AnonHugePages {before} kB -> {after} kB for a 32 MiB advised buffer (THP {mode:?})");
        drop(buf);
    }
}
