//! Quarantined pages: wiped, no-access, out of circulation until nothing can point at them any more.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// Keeps a secret's pages out of circulation while something outside the access window may still hold a pointer
/// into them (for example a Python object that kept a view of the bytes past its callback).
///
/// Once [`Secret::quarantine`](crate::Secret::quarantine) has been called, closing the secret (by `close`,
/// `Drop` or a purge) wipes its pages and leaves them no-access, mapped and locked, instead of handing them to
/// a pool where another secret would reuse them. They are unmapped once the secret is gone and every
/// `Quarantine` handle has been dropped. A stale pointer into them may fault; it never reads another secret.
#[derive(Clone)]
pub struct Quarantine {
    hold: Arc<Hold>,
}

#[derive(Default)]
pub(crate) struct Hold {
    /// The retired pages (and a sealed secret's retired scratch regions), dropped (wiped again and unmapped)
    /// with the last handle.
    pages: Mutex<Vec<Box<dyn Any + Send>>>,
}

impl Hold {
    pub(crate) fn keep(&self, pages: Box<dyn Any + Send>) {
        self.pages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(pages);
    }
}

impl Quarantine {
    pub(crate) fn new(hold: Arc<Hold>) -> Quarantine {
        Quarantine { hold }
    }

    /// A handle that holds nothing: the secret was closed before it was quarantined.
    pub(crate) fn empty() -> Quarantine {
        Quarantine::new(Arc::default())
    }

    /// True when retired pages are held here: the secret has closed, or (sealed secrets) a window that was open
    /// when the quarantine began has closed.
    pub fn holds_pages(&self) -> bool {
        !self
            .hold
            .pages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

impl fmt::Debug for Quarantine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quarantine")
            .field("holds_pages", &self.holds_pages())
            .finish()
    }
}
