//! Guarded buffers (placeholder until the crate lands).
