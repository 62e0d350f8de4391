//! A cache of the buffers large messages were received into, so the next
//! large message lands in memory that is already mapped.
//!
//! A message of 256 KiB or more is read into one buffer of its size
//! ([`super::fragments`]). Fresh from the allocator, every 4 KiB page of
//! that buffer faults on its first write, and on this project's test VM
//! that cost 0.3-0.6 ms per MiB, more than the kernel's copy of the bytes
//! (issue 16: the reader took 410-760 us to read a 1 MiB handover already
//! sitting in the socket, 107 us into mapped memory). The BEAM has the
//! same need and the same answer: its segment allocator keeps recently
//! freed carriers for reuse.
//!
//! When the last reference to a received message's bytes goes (the
//! message was handled, or a [`crate::term::Binary`] taken from it was
//! dropped), its buffer comes back here, up to the cache's size; the next
//! large message takes the smallest cached buffer that fits it, if that
//! is at most twice its size (a small message must not pin a huge
//! buffer). Bounded: at most [`MAX_BUFFERS`] buffers and the configured
//! bytes ([`crate::NodeBuilder::receive_buffer_cache`], default
//! [`DEFAULT_BYTES`]); 0 turns it off.

use bytes::Bytes;
use std::sync::{Arc, Mutex};

/// Buffers smaller than this are the allocator's business (it reuses
/// them from its own free lists).
pub const MIN_LEN: usize = 256 * 1024;

/// At most this many buffers are kept.
pub const MAX_BUFFERS: usize = 8;

/// The default bound on the bytes kept: one buffer of the largest
/// message the default `max_message` allows plus change.
pub const DEFAULT_BYTES: usize = 160 * 1024 * 1024;

/// The buffers kept (empty, with their capacity), per node.
pub struct BufferCache {
    max_bytes: usize,
    free: Mutex<Free>,
}

#[derive(Default)]
struct Free {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
}

impl std::fmt::Debug for BufferCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let free = self.free.lock().unwrap();
        write!(f, "BufferCache {{ max_bytes: {}, kept: {} buffers, {} bytes }}", self.max_bytes, free.bufs.len(), free.bytes)
    }
}

impl BufferCache {
    pub fn new(max_bytes: usize) -> Arc<BufferCache> {
        Arc::new(BufferCache { max_bytes, free: Mutex::new(Free::default()) })
    }

    /// An empty buffer with room for at least `len` bytes and at most
    /// twice that, if one is kept.
    pub fn take(&self, len: usize) -> Option<Vec<u8>> {
        if len < MIN_LEN || self.max_bytes == 0 {
            return None;
        }
        let mut free = self.free.lock().unwrap();
        let fit = free
            .bufs
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len && b.capacity() / 2 <= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i)?;
        let b = free.bufs.swap_remove(fit);
        free.bytes -= b.capacity();
        Some(b)
    }

    /// A buffer to read a message of `len` bytes into: a kept one that
    /// fits, else a fresh one, whose 2 MiB-aligned part asks for huge
    /// pages when `huge_pages` ([`super::huge_pages`]). `None` when the
    /// system refuses the memory.
    pub fn receive_buffer(&self, len: usize, huge_pages: bool) -> Option<Vec<u8>> {
        if let Some(b) = self.take(len) {
            return Some(b);
        }
        let mut b = Vec::new();
        b.try_reserve_exact(len).ok()?;
        if huge_pages {
            super::huge_pages::advise(&mut b);
        }
        Some(b)
    }

    /// The bytes of `buf` as a message's `Bytes`; a buffer of
    /// [`MIN_LEN`] or more comes back to the cache when the last
    /// reference to them goes.
    pub fn bytes(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        if buf.capacity() < MIN_LEN || self.max_bytes == 0 {
            return Bytes::from(buf);
        }
        Bytes::from_owner(Returning { buf, cache: Arc::downgrade(self) })
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap > self.max_bytes {
            return;
        }
        let mut free = self.free.lock().unwrap();
        // Full: smaller buffers make room for a larger one (they cost the
        // least to map again); otherwise this one is freed.
        let smaller: Vec<usize> = free.bufs.iter().map(|b| b.capacity()).filter(|c| *c < cap).collect();
        if free.bytes - smaller.iter().sum::<usize>() + cap > self.max_bytes || free.bufs.len() - smaller.len() >= MAX_BUFFERS {
            return;
        }
        while free.bufs.len() >= MAX_BUFFERS || free.bytes + cap > self.max_bytes {
            let smallest = free.bufs.iter().enumerate().min_by_key(|(_, b)| b.capacity()).map(|(i, b)| (i, b.capacity()));
            match smallest {
                Some((i, small)) if small < cap => {
                    free.bufs.swap_remove(i);
                    free.bytes -= small;
                }
                _ => return,
            }
        }
        buf.clear();
        free.bytes += cap;
        free.bufs.push(buf);
    }

    /// Buffers and bytes kept now.
    pub fn kept(&self) -> (usize, usize) {
        let free = self.free.lock().unwrap();
        (free.bufs.len(), free.bytes)
    }
}

/// A received message's buffer, returned to its cache when dropped.
struct Returning {
    buf: Vec<u8>,
    cache: std::sync::Weak<BufferCache>,
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.upgrade() {
            cache.give_back(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        v.resize(len, 1);
        v
    }

    #[test]
    fn a_dropped_message_buffer_is_reused_by_the_next_that_fits() {
        let cache = BufferCache::new(8 << 20);
        let buf = filled(1 << 20);
        let ptr = buf.as_ptr();
        let msg = cache.bytes(buf);
        let part = msg.slice(10..20);
        drop(msg);
        assert_eq!(cache.kept(), (0, 0), "a slice still holds it");
        drop(part);
        assert_eq!(cache.kept(), (1, 1 << 20));
        // Too small a message (it would pin twice its size) and too large
        // a one get nothing; one that fits gets the same memory, empty.
        assert!(cache.take(400 * 1024).is_none());
        assert!(cache.take((1 << 20) + 1).is_none());
        let again = cache.take(600 * 1024).expect("the cached buffer");
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.is_empty() && again.capacity() >= 1 << 20);
        assert_eq!(cache.kept(), (0, 0));
    }

    #[test]
    fn the_cache_is_bounded_and_small_buffers_bypass_it() {
        let cache = BufferCache::new(3 << 20);
        drop(cache.bytes(filled(100 * 1024)));
        assert_eq!(cache.kept(), (0, 0), "below MIN_LEN");
        for _ in 0..3 {
            drop(cache.bytes(filled(1 << 20)));
        }
        assert_eq!(cache.kept(), (3, 3 << 20));
        drop(cache.bytes(filled(1 << 20)));
        assert_eq!(cache.kept(), (3, 3 << 20), "full: not kept");
        drop(cache.bytes(filled(2 << 20)));
        assert_eq!(cache.kept(), (2, 3 << 20), "a larger one replaces a smaller one");
        let off = BufferCache::new(0);
        drop(off.bytes(filled(1 << 20)));
        assert_eq!(off.kept(), (0, 0));
        assert!(off.take(1 << 20).is_none());
        // Buffers outliving their cache are freed, not returned.
        let cache = BufferCache::new(8 << 20);
        let msg = cache.bytes(filled(1 << 20));
        drop(cache);
        drop(msg);
    }

    #[test]
    fn at_most_max_buffers_are_kept() {
        let cache = BufferCache::new(1 << 30);
        for _ in 0..MAX_BUFFERS + 3 {
            drop(cache.bytes(filled(MIN_LEN)));
        }
        assert_eq!(cache.kept().0, MAX_BUFFERS);
    }
}
