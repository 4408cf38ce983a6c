//! The process-wide core-dump switch, flipped once by the first factory (as the Go library does on import).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static KEEP: AtomicBool = AtomicBool::new(false);
static DISABLE: Once = Once::new();

/// The environment variable that, set to `1`, keeps core dumps enabled.
pub const KEEP_CORE_DUMPS_ENV: &str = "SECUREMEMORY_KEEP_CORE_DUMPS";

/// Keeps core dumps enabled for this process: call before creating the first factory. Secrets stay excluded
/// from core dumps per region where the OS allows it (see [`ProtectionReport::no_dump`](crate::ProtectionReport)).
pub fn keep_core_dumps() {
    KEEP.store(true, Ordering::SeqCst);
}

pub(crate) fn disable_once() {
    DISABLE.call_once(|| {
        if KEEP.load(Ordering::SeqCst)
            || std::env::var_os(KEEP_CORE_DUMPS_ENV).is_some_and(|v| v == "1")
        {
            log::debug!("core dumps left enabled; secrets are still excluded per region");
            return;
        }
        if let Err(e) = memcall::disable_core_dumps() {
            log::warn!("could not disable core dumps: {e}");
        }
    });
}
