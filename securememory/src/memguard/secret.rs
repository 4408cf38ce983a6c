use crate::access::GuardedPages;
use crate::shared::SecretCore;

/// A secret in a guarded buffer (guard pages, canary, data right-aligned), no-access except while a closure
/// runs on it.
///
/// Made by [`MemguardSecretFactory`](super::MemguardSecretFactory). Dropping it closes it. Closing reports
/// [`Error::Memguard`](crate::Error::Memguard) with a canary error when something wrote in front of the data;
/// the memory is wiped and freed all the same.
pub struct MemguardSecret {
    core: SecretCore<GuardedPages>,
}

crate::shared::impl_secret!(MemguardSecret, SecretCore<GuardedPages>);
