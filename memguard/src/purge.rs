//! Process-wide wiping: [`purge`].

use crate::core::registry::{PurgeRequest, PURGE_GRACE};
use crate::core::{pool, registry};

/// Wipes and releases every registered item: every live [`LockedBuffer`](crate::LockedBuffer), and whatever
/// else registered itself (see [`register`](crate::register)). Existing [`Enclave`](crate::Enclave)s can no
/// longer be opened afterwards, because the enclave key is destroyed too; a new key is made on next use.
///
/// Never hangs, whatever other threads do:
/// - a buffer in use on another thread (a guard or an access closure) is waited for, for at most
///   [`PURGE_GRACE`](crate::PURGE_GRACE) in total for the whole purge; a buffer still in use after that is
///   wiped in place and made no-access under that use (reading through its guard then faults; the mapping is
///   kept, so it can never show other memory) and released when the use ends. A guard leaked on another
///   thread is such a use, and its pages stay mapped (no-access, wiped) for good;
/// - a buffer in use on the calling thread (purge called from inside an access closure, or while holding a
///   guard) is wiped when that access ends, since waiting for it here would never end. A guard leaked with
///   `std::mem::forget` on this thread counts as such an access (see
///   [`LockedBuffer`](crate::LockedBuffer#leaked-guards));
/// - new accesses to a buffer are refused ([`Error::Destroyed`](crate::Error::Destroyed)) from the moment the
///   purge reaches it.
///
/// Items are purged outside the registry lock, so an item's `purge` may deregister itself. What exists when
/// the purge starts is purged; an item registered while it runs (say, a buffer a constructor completes
/// meanwhile) may survive it. What a purge destroys is unmapped, not kept for reuse, and finally every cache
/// of ready-made locked pages (this crate's and memcall's) is emptied, so the process holds no locked memory
/// for buffers that no longer exist.
///
/// ```
/// let buf = memguard::LockedBuffer::random(32)?;
/// memguard::purge();
/// assert!(!buf.is_alive());
/// assert!(buf.bytes().is_err()); // Error::Destroyed
/// # Ok::<(), memguard::Error>(())
/// ```
pub fn purge() {
    purge_with(&PurgeRequest::new(PURGE_GRACE, false));
}

/// [`purge`] with an explicit request (the exit paths pass `exiting`).
pub(crate) fn purge_with(request: &PurgeRequest) {
    let _unmap_destroyed = pool::PurgeScope::enter();
    crate::enclave::destroy_key();
    crate::core::seal_key::destroy();
    for item in registry::live_items() {
        item.purge(request);
    }
    memcall::pool::trim_all();
}
