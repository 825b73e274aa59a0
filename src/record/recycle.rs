//! Handing memory from the reporter worker back to the threads that record.
//!
//! The worker frees nothing a recording thread allocated (with most allocators that would
//! contend with their allocations): it gathers emptied record slots and attribute vectors
//! into chunks, and a recording thread takes a whole chunk into its own cache at once, so
//! the shared state is visited once per [`CHUNK`] spans rather than once per span.

use std::sync::Mutex;

/// Items per chunk.
pub(crate) const CHUNK: usize = 64;

/// Full chunks waiting for a recording thread, and emptied chunk buffers waiting for the
/// worker (kept so that steady state allocates no chunk buffers either).
pub(crate) struct ChunkPool<T> {
    chunks: Mutex<Chunks<T>>,
    max_full: usize,
}

struct Chunks<T> {
    full: Vec<Vec<T>>,
    empty: Vec<Vec<T>>,
}

impl<T> ChunkPool<T> {
    /// A pool keeping at most about `max_items` items.
    pub(crate) fn new(max_items: usize) -> Self {
        ChunkPool {
            chunks: Mutex::new(Chunks {
                full: Vec::new(),
                empty: Vec::new(),
            }),
            max_full: max_items.div_ceil(CHUNK).max(1),
        }
    }

    /// Swaps the empty `local` cache for a full chunk; `false` when there is none.
    pub(crate) fn take(&self, local: &mut Vec<T>) -> bool {
        let Ok(mut chunks) = self.chunks.try_lock() else {
            // Someone else is at it: allocate this once rather than wait.
            return false;
        };
        let Some(full) = chunks.full.pop() else {
            return false;
        };
        let empty = std::mem::replace(local, full);
        if empty.capacity() != 0 && chunks.empty.len() < self.max_full {
            chunks.empty.push(empty);
        }
        true
    }

    /// Hands over `chunk` (full, or the last of a batch) and leaves an empty buffer in its
    /// place. When the pool already holds enough, the items are dropped instead.
    pub(crate) fn give(&self, chunk: &mut Vec<T>) {
        if chunk.is_empty() {
            return;
        }
        let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        if chunks.full.len() >= self.max_full {
            drop(chunks);
            chunk.clear();
            return;
        }
        let empty = chunks
            .empty
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK));
        chunks.full.push(std::mem::replace(chunk, empty));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_go_round_without_new_buffers() {
        let pool = ChunkPool::new(2 * CHUNK);
        let mut worker: Vec<u32> = Vec::with_capacity(CHUNK);
        worker.extend(0..CHUNK as u32);
        pool.give(&mut worker);
        assert!(worker.is_empty());

        let mut local = Vec::new();
        assert!(pool.take(&mut local));
        assert_eq!(local.len(), CHUNK);
        assert!(
            !pool.take(&mut Vec::new()),
            "one chunk was given, one taken"
        );

        // The producer's emptied buffer goes back to the worker with the next exchange.
        local.clear();
        worker.extend(0..3);
        pool.give(&mut worker);
        assert!(pool.take(&mut local));
        assert_eq!(local, [0, 1, 2]);
    }

    #[test]
    fn a_full_pool_drops_what_it_is_given() {
        let pool = ChunkPool::new(CHUNK);
        for _ in 0..3 {
            let mut chunk = vec![1u8; CHUNK];
            pool.give(&mut chunk);
            assert!(chunk.is_empty());
        }
        let mut local = Vec::new();
        assert!(pool.take(&mut local));
        local.clear();
        assert!(!pool.take(&mut local), "only one chunk was kept");
    }
}
