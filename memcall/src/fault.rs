//! Fault injection for tests: make a chosen page operation fail on the current thread.
//!
//! Available with the `fault-injection` feature. Rules are thread-local, so tests running in parallel do not
//! disturb each other; a rule is removed when its [`FaultGuard`] is dropped.
//!
//! ```
//! # #[cfg(feature = "fault-injection")] {
//! use memcall::{fault, Op, Region};
//! let _guard = fault::fail(Op::Map).errno(12).arm();
//! assert!(Region::alloc(1).is_err());
//! # }
//! ```

use std::cell::RefCell;
use std::io;

use crate::error::Op;

#[derive(Clone, Debug)]
struct Rule {
    id: u64,
    op: Op,
    skip: u32,
    remaining: u32,
    errno: i32,
}

// The initializer is `const`; clippy still flags it on targets with emulated TLS (OpenBSD, illumos).
#[allow(clippy::missing_const_for_thread_local)]
mod rules {
    use super::*;
    thread_local! {
        pub(super) static RULES: RefCell<(u64, Vec<Rule>)> = const { RefCell::new((0, Vec::new())) };
    }
}
use rules::RULES;

/// Builder for a failure of one operation on the current thread.
#[derive(Clone, Debug)]
#[must_use = "call .arm() to install the rule"]
pub struct Fault {
    op: Op,
    skip: u32,
    times: u32,
    errno: i32,
}

/// Starts a rule that makes the next call of `op` on this thread fail (with `EPERM`-like error 1 unless
/// [`Fault::errno`] says otherwise).
pub fn fail(op: Op) -> Fault {
    Fault {
        op,
        skip: 0,
        times: 1,
        errno: 1,
    }
}

impl Fault {
    /// Let this many calls of the operation succeed first.
    pub fn after(mut self, calls: u32) -> Self {
        self.skip = calls;
        self
    }

    /// Fail this many calls (default 1); `u32::MAX` means every call until the guard is dropped.
    pub fn times(mut self, times: u32) -> Self {
        self.times = times;
        self
    }

    /// The raw OS error code the failing call reports.
    pub fn errno(mut self, errno: i32) -> Self {
        self.errno = errno;
        self
    }

    /// Installs the rule; it stays active until the returned guard is dropped or it has fired `times` times.
    pub fn arm(self) -> FaultGuard {
        let id = RULES.with(|rules| {
            let mut rules = rules.borrow_mut();
            rules.0 += 1;
            let id = rules.0;
            rules.1.push(Rule {
                id,
                op: self.op,
                skip: self.skip,
                remaining: self.times,
                errno: self.errno,
            });
            id
        });
        FaultGuard { id }
    }
}

/// Removes its rule when dropped.
#[derive(Debug)]
#[must_use = "the rule is removed when the guard is dropped"]
pub struct FaultGuard {
    id: u64,
}

impl FaultGuard {
    /// True when the rule has fired as many times as it was set to.
    pub fn exhausted(&self) -> bool {
        RULES.with(|rules| !rules.borrow().1.iter().any(|r| r.id == self.id))
    }
}

impl Drop for FaultGuard {
    fn drop(&mut self) {
        // try_with: the thread-local may already be gone during thread teardown.
        let _ = RULES.try_with(|rules| rules.borrow_mut().1.retain(|r| r.id != self.id));
    }
}

/// Called by every backend operation: returns the injected error when a rule fires.
pub(crate) fn check(op: Op) -> Option<io::Error> {
    RULES
        .try_with(|rules| {
            let mut rules = rules.borrow_mut();
            let pos = rules.1.iter().position(|r| r.op == op)?;
            let rule = &mut rules.1[pos];
            if rule.skip > 0 {
                rule.skip -= 1;
                return None;
            }
            let errno = rule.errno;
            if rule.remaining != u32::MAX {
                rule.remaining -= 1;
                if rule.remaining == 0 {
                    rules.1.remove(pos);
                }
            }
            Some(io::Error::from_raw_os_error(errno))
        })
        .ok()
        .flatten()
}

/// True when a rule for `op` is armed on this thread (without consuming it). The pool uses it to skip its
/// cache, so an injected map or lock failure is reached instead of being served from cached regions.
pub(crate) fn armed(op: Op) -> bool {
    RULES
        .try_with(|rules| rules.borrow().1.iter().any(|r| r.op == op))
        .unwrap_or(false)
}
