//! The Secret API (placeholder until the crate lands).
