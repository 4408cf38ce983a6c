//! Process-wide wiping: [`purge`].

use crate::core::registry::{PurgeRequest, PURGE_GRACE};
use crate::core::{pool, registry};

/// Wipes and releases every registered item: every live [`LockedBuffer`](crate::LockedBuffer), and whatever
/// else registered itself (see [`register`](crate::register)). Existing [`Enclave`](crate::Enclave)s can no
/// longer be opened afterwards, because the enclave key is destroyed too; a new key is made on next use.
///
/// Items are purged outside the registry lock, so an item's `purge` may deregister itself. Buffers in use on
/// another thread are wiped as soon as that use ends; buffers in use on the calling thread (purge called from
/// inside an access closure) are wiped when the access ends.
/// What a purge destroys is unmapped, not kept for reuse, and finally every cache of ready-made locked pages
/// (this crate's and memcall's) is emptied, so the process holds no locked memory for buffers that no longer
/// exist.
pub fn purge() {
    purge_with(&PurgeRequest::new(PURGE_GRACE, false));
}

/// [`purge`] with an explicit request (the exit paths pass `exiting`).
pub(crate) fn purge_with(request: &PurgeRequest) {
    let _unmap_destroyed = pool::PurgeScope::enter();
    crate::enclave::destroy_key();
    for item in registry::live_items() {
        item.purge(request);
    }
    memcall::pool::trim_all();
}
