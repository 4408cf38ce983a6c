use crate::access::ProtectedPages;
use crate::shared::SecretCore;

/// A secret in whole pages of its own (data at offset 0), no-access except while a closure runs on it.
///
/// Made by [`ProtectedMemorySecretFactory`](super::ProtectedMemorySecretFactory). Dropping it closes it.
pub struct ProtectedMemorySecret {
    core: SecretCore<ProtectedPages>,
}

crate::shared::impl_secret!(ProtectedMemorySecret, SecretCore<ProtectedPages>);
