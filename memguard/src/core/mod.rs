//! The private core: guarded pages, the canary, the purge registry, the enclave key and its crypto. All of the
//! crate's `unsafe` lives here.

pub(crate) mod access;
pub(crate) mod canary;
pub(crate) mod coffer;
pub(crate) mod crypto;
pub(crate) mod pool;
pub(crate) mod primitive;
pub(crate) mod region;
pub(crate) mod registry;
pub(crate) mod seal_key;
pub(crate) mod secure_stack;
pub(crate) mod views;
