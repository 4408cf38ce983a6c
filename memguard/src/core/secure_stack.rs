//! Running a keyed operation on a stack that lives in locked, no-dump, no-fork pages.
//!
//! The AEAD and hash implementations keep their state (the key, its schedule, the keystream) in local
//! variables, which live on the calling thread's stack: ordinary memory that lands in core dumps and is
//! inherited by forked children. [`run`] switches the calling thread to a private stack for the duration of one
//! closure, so every local of the keyed operation is in pages that are
//!
//! - locked into RAM (unless the memlock limit is reached: then the stack is used unlocked, with a warning
//!   logged once, rather than failing the operation) and excluded from core dumps and from forked children
//!   ([`memcall::Region`] hardening),
//! - preceded by a no-access guard page, so an overflow faults instead of writing into a neighbour,
//! - wiped (the part that was used) as soon as the closure returns, before the stack is reused.
//!
//! Before switching back, the trampoline zeroes the vector registers and the caller-saved general registers,
//! so no key-derived value survives in a register once the operation is over (callee-saved registers are
//! restored to the caller's own values by the closure's epilogues).
//!
//! Stacks are cached (a few, process-wide) and owned by the process that made them: after `fork()` the child
//! forgets the parent's (they are not mapped there) and makes its own.
//!
//! Supported on Unix for x86_64 and aarch64. Elsewhere [`run`] calls the closure on the ordinary stack: the
//! keyed state then lives there while the operation runs and is not wiped by this module (see the crate docs).

use crate::error::Result;

/// Runs `f` on a locked, no-dump, no-fork stack, then wipes what it used and clears the registers. A panic
/// in `f` is caught on the private stack and resumed on the caller's.
///
/// Whatever `f` returns is copied back to the caller's stack: it must not be key material.
///
/// # Errors
/// [`Error::Memory`](crate::Error::Memory) when no stack can be mapped or locked.
pub(crate) fn run<R>(f: impl FnOnce() -> R) -> Result<R> {
    imp::run(f)
}

/// Zeroes the vector registers (and, where this module switches stacks, the caller-saved general registers
/// this crate's code may have left plaintext in). Call after the crate copies plaintext through ordinary code.
pub(crate) fn clear_vector_registers() {
    imp::clear_registers();
}

#[cfg(all(unix, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod imp {
    use std::any::Any;
    use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
    use std::ptr;
    use std::sync::atomic::Ordering;
    use std::sync::{Mutex, MutexGuard, Once, PoisonError};

    use memcall::{Protection, Region};

    use crate::error::Result;
    use memcall::PerProcess;

    /// Usable stack per operation: room for the deepest keyed operation (a 16 KiB stream chunk sealed, or
    /// the key assembled with BLAKE2b) plus a signal frame (up to ~4 KiB with AVX-512 state) and a handler.
    /// Unoptimised builds keep every temporary of the hash and cipher rounds in its own stack slot and need
    /// several times more (see the high-water test below).
    pub(super) const STACK_LEN: usize = if cfg!(debug_assertions) {
        256 * 1024
    } else {
        32 * 1024
    };
    /// Zeroed bytes kept above the initial stack pointer. An unwinder walking past the trampoline (a backtrace
    /// taken inside the closure) reads the switching function's frame from here and finds a zero return
    /// address, which ends the walk instead of reading past the mapping.
    const TOP_PAD: usize = 512;
    /// Stacks kept for reuse; more concurrent operations map their own and unmap them after.
    const MAX_CACHED: usize = 8;

    struct Stack {
        region: Region,
        page: usize,
    }

    impl Stack {
        fn new() -> Result<Stack> {
            let page = memcall::page_size();
            let stack_len = memcall::round_to_pages(STACK_LEN + TOP_PAD)?;
            let region = Region::alloc(page + stack_len)?;
            let locked = match region.lock_range(page, stack_len) {
                Err(e) if e.is_lock_limit() && memcall::pool::trim_all() > 0 => {
                    region.lock_range(page, stack_len)
                }
                other => other,
            };
            match locked {
                Ok(()) => {}
                // At the memlock limit the stack stays unlocked rather than failing the operation: it is still
                // left out of core dumps and forked children and wiped after use, but could be swapped out
                // while an operation runs. The key's own pages (the coffer) are always locked.
                Err(e) if e.is_lock_limit() => {
                    static WARNED: Once = Once::new();
                    WARNED.call_once(|| {
                        log::warn!("secure stack left unlocked at the memlock limit: {e}");
                    });
                }
                // A region dropped on error is wiped and unmapped; nothing was written to it yet.
                Err(e) => return Err(e.into()),
            }
            region.protect_range(0, page, Protection::NoAccess)?;
            Ok(Stack { region, page })
        }

        /// Lowest usable address (just above the guard page).
        fn bottom(&self) -> *mut u8 {
            // SAFETY: the mapping is one guard page plus the stack pages, so `page` is inside it.
            unsafe { self.region.as_ptr().add(self.page) }
        }

        fn usable_len(&self) -> usize {
            self.region.len() - self.page - TOP_PAD
        }

        /// Initial stack pointer: 16-byte aligned, `TOP_PAD` below the end of the mapping.
        fn top(&self) -> *mut u8 {
            // SAFETY: `usable_len` bytes above `bottom` are inside the mapping.
            unsafe { self.bottom().add(self.usable_len()) }
        }

        /// Wipes what the last operation wrote: everything from the lowest non-zero word up to the top (the
        /// stack grows down from a wiped state, so below that word it is all zeros). Returns the bytes wiped.
        fn wipe_used(&mut self) -> usize {
            let words = self.usable_len() / 8;
            let base = self.bottom().cast::<u64>();
            // SAFETY:
            // - `base .. base + words` is the stack area (page aligned, read-write, locked), owned by this
            //   `Stack`, which no thread runs on now (`run` has switched back);
            // - `&mut self` excludes any other reference to it.
            let area = unsafe { std::slice::from_raw_parts_mut(base, words) };
            // Blocks of 64 bytes OR-reduced: the compiler vectorises this, so finding the used part costs a
            // fraction of a microsecond even for an operation that used little of the stack.
            let first = area
                .chunks_exact(8)
                .position(|block| block.iter().fold(0, |acc, &w| acc | w) != 0)
                .map_or(words - words % 8, |block| block * 8);
            let used = &mut area[first..];
            for w in used.iter_mut() {
                // SAFETY: `w` is a valid, aligned, exclusive `u64` of the slice above.
                unsafe { ptr::write_volatile(w, 0) };
            }
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
            used.len() * 8
        }
    }

    /// The process's cache of stacks; a forked child starts with an empty one and never touches the parent's
    /// (its stacks are not mapped in the child, and a parent thread may have held the mutex at fork time).
    static CACHE: PerProcess<Mutex<Vec<Stack>>> = PerProcess::new(new_cache);

    fn new_cache() -> Mutex<Vec<Stack>> {
        static REGISTER: Once = Once::new();
        REGISTER.call_once(|| {
            memcall::pool::register_trim_hook(trim);
        });
        Mutex::new(Vec::new())
    }

    fn lock(cache: &Mutex<Vec<Stack>>) -> MutexGuard<'_, Vec<Stack>> {
        cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take() -> Result<Stack> {
        // The cache lock is released before mapping: a lock-limit failure trims caches, this one included.
        let cached = lock(CACHE.get()).pop();
        match cached {
            Some(stack) => Ok(stack),
            None => Stack::new(),
        }
    }

    fn give(mut stack: Stack) {
        stack.wipe_used();
        let mut stacks = lock(CACHE.get());
        if stacks.len() < MAX_CACHED {
            stacks.push(stack);
        } else {
            drop(stacks);
            if let Err(err) = stack.region.free() {
                log::error!("releasing a secure stack failed: {}", err.error);
            }
        }
    }

    /// Unmaps the cached stacks of this process (a purge, or a memlock limit reached elsewhere). Returns the
    /// locked bytes given back.
    fn trim() -> usize {
        let Some(cache) = CACHE.get_if_built() else {
            return 0;
        };
        let stacks = std::mem::take(&mut *lock(cache));
        let mut freed = 0;
        for stack in stacks {
            let len = stack.region.len() - stack.page;
            match stack.region.free() {
                Ok(()) => freed += len,
                Err(err) => log::error!("releasing a secure stack failed: {}", err.error),
            }
        }
        freed
    }

    /// Handed to the trampoline: the closure going in, its result coming out.
    struct Call<F, R> {
        f: Option<F>,
        out: Option<std::thread::Result<R>>,
    }

    pub(super) fn run<R, F: FnOnce() -> R>(f: F) -> Result<R> {
        let stack = take()?;
        let mut call: Call<F, R> = Call {
            f: Some(f),
            out: None,
        };
        // SAFETY:
        // - `stack.top()` is 16-byte aligned and has `usable_len` writable, locked bytes below it, with a
        //   no-access guard page under them, and `TOP_PAD` zeroed bytes above it inside the mapping;
        // - `trampoline::<F, R>` takes a pointer to exactly this `Call<F, R>`, which outlives the call;
        // - the trampoline catches every panic, so nothing unwinds across the switch.
        unsafe {
            switch(
                stack.top(),
                trampoline::<F, R>,
                (&mut call as *mut Call<F, R>).cast(),
            )
        };
        give(stack);
        match call.out {
            Some(Ok(out)) => Ok(out),
            Some(Err(payload)) => resume_unwind(payload),
            // The trampoline always stores a result; reaching here would mean it did not run.
            None => resume_unwind(
                Box::new("secure stack: the operation did not run") as Box<dyn Any + Send>
            ),
        }
    }

    /// Runs on the private stack: calls the closure, stores its result, then clears the registers.
    ///
    /// # Safety
    /// `data` must point to a live `Call<F, R>` whose closure has not been taken, with no other reference to
    /// it for the duration of the call.
    unsafe extern "C" fn trampoline<F: FnOnce() -> R, R>(data: *mut u8) {
        // SAFETY: guaranteed by the caller (see above).
        let call = unsafe { &mut *data.cast::<Call<F, R>>() };
        let f = call.f.take();
        call.out = Some(catch_unwind(AssertUnwindSafe(move || match f {
            Some(f) => f(),
            None => panic!("secure stack: the operation ran twice"),
        })));
        clear_registers();
    }

    /// Switches to `top`, calls `tramp(data)` there, and switches back.
    ///
    /// # Safety
    /// `top` must be the 16-byte aligned top of a writable stack large enough for `tramp`, with readable
    /// zeroed memory just above it; `tramp` must not unwind and must accept `data`.
    #[inline(never)]
    unsafe fn switch(top: *mut u8, tramp: unsafe extern "C" fn(*mut u8), data: *mut u8) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY:
        // - the old stack pointer is kept in r12, which the callee preserves (System V), and restored after;
        // - `top` is 16-byte aligned, so the callee sees the ABI's alignment after `call` pushes the return
        //   address;
        // - `clobber_abi("C")` tells the compiler every caller-saved register may change, as in a call;
        // - nothing unwinds through this frame (the trampoline catches panics).
        unsafe {
            std::arch::asm!(
                "mov r12, rsp",
                "mov rsp, {top}",
                "call {tramp}",
                "mov rsp, r12",
                top = in(reg) top,
                tramp = in(reg) tramp,
                in("rdi") data,
                out("r12") _,
                clobber_abi("C"),
            );
        }
        #[cfg(target_arch = "aarch64")]
        // SAFETY:
        // - the old stack pointer is kept in x20, which the callee preserves (AAPCS64), and restored after;
        // - `top` is 16-byte aligned as AAPCS64 requires of sp;
        // - `clobber_abi("C")` covers the caller-saved registers and the link register `blr` overwrites;
        // - nothing unwinds through this frame (the trampoline catches panics).
        unsafe {
            std::arch::asm!(
                "mov x20, sp",
                "mov sp, {top}",
                "blr {tramp}",
                "mov sp, x20",
                top = in(reg) top,
                tramp = in(reg) tramp,
                in("x0") data,
                out("x20") _,
                clobber_abi("C"),
            );
        }
    }

    /// Zeroes the vector registers and the caller-saved general registers.
    #[inline(never)]
    pub(super) fn clear_registers() {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx") {
                // SAFETY: AVX is available (checked above); `vzeroall` zeroes ymm0-15, which
                // `clobber_abi("C")` declares clobbered (they are all caller-saved on System V).
                unsafe { std::arch::asm!("vzeroall", clobber_abi("C")) };
            } else {
                // SAFETY: SSE2 is part of x86_64; the xmm registers are caller-saved and declared clobbered.
                unsafe {
                    std::arch::asm!(
                        "xorps xmm0, xmm0",
                        "xorps xmm1, xmm1",
                        "xorps xmm2, xmm2",
                        "xorps xmm3, xmm3",
                        "xorps xmm4, xmm4",
                        "xorps xmm5, xmm5",
                        "xorps xmm6, xmm6",
                        "xorps xmm7, xmm7",
                        "xorps xmm8, xmm8",
                        "xorps xmm9, xmm9",
                        "xorps xmm10, xmm10",
                        "xorps xmm11, xmm11",
                        "xorps xmm12, xmm12",
                        "xorps xmm13, xmm13",
                        "xorps xmm14, xmm14",
                        "xorps xmm15, xmm15",
                        clobber_abi("C"),
                    )
                };
            }
            // SAFETY: only caller-saved general registers are written, and all are declared clobbered.
            unsafe {
                std::arch::asm!(
                    "xor eax, eax",
                    "xor ecx, ecx",
                    "xor edx, edx",
                    "xor esi, esi",
                    "xor edi, edi",
                    "xor r8d, r8d",
                    "xor r9d, r9d",
                    "xor r10d, r10d",
                    "xor r11d, r11d",
                    clobber_abi("C"),
                )
            };
        }
        #[cfg(target_arch = "aarch64")]
        // SAFETY: only v0-v31 and the caller-saved x0-x17 are written, all declared clobbered by
        // `clobber_abi("C")` (the compiler saves the callee-saved low halves of v8-v15 around this block).
        unsafe {
            std::arch::asm!(
                "movi v0.16b, #0",
                "movi v1.16b, #0",
                "movi v2.16b, #0",
                "movi v3.16b, #0",
                "movi v4.16b, #0",
                "movi v5.16b, #0",
                "movi v6.16b, #0",
                "movi v7.16b, #0",
                "movi v8.16b, #0",
                "movi v9.16b, #0",
                "movi v10.16b, #0",
                "movi v11.16b, #0",
                "movi v12.16b, #0",
                "movi v13.16b, #0",
                "movi v14.16b, #0",
                "movi v15.16b, #0",
                "movi v16.16b, #0",
                "movi v17.16b, #0",
                "movi v18.16b, #0",
                "movi v19.16b, #0",
                "movi v20.16b, #0",
                "movi v21.16b, #0",
                "movi v22.16b, #0",
                "movi v23.16b, #0",
                "movi v24.16b, #0",
                "movi v25.16b, #0",
                "movi v26.16b, #0",
                "movi v27.16b, #0",
                "movi v28.16b, #0",
                "movi v29.16b, #0",
                "movi v30.16b, #0",
                "movi v31.16b, #0",
                "mov x0, xzr",
                "mov x1, xzr",
                "mov x2, xzr",
                "mov x3, xzr",
                "mov x4, xzr",
                "mov x5, xzr",
                "mov x6, xzr",
                "mov x7, xzr",
                "mov x8, xzr",
                "mov x9, xzr",
                "mov x10, xzr",
                "mov x11, xzr",
                "mov x12, xzr",
                "mov x13, xzr",
                "mov x14, xzr",
                "mov x15, xzr",
                "mov x16, xzr",
                "mov x17, xzr",
                clobber_abi("C"),
            )
        };
    }

    #[cfg(test)]
    pub(super) fn high_water_after<F: FnOnce()>(f: F) -> usize {
        let stack = take().expect("a stack");
        let mut call: Call<F, ()> = Call {
            f: Some(f),
            out: None,
        };
        // SAFETY: as in `run`.
        unsafe {
            switch(
                stack.top(),
                trampoline::<F, ()>,
                (&mut call as *mut Call<F, ()>).cast(),
            )
        };
        let mut stack = stack;
        let used = stack.wipe_used();
        give(stack);
        used
    }
}

#[cfg(not(all(unix, any(target_arch = "x86_64", target_arch = "aarch64"))))]
mod imp {
    use crate::error::Result;

    /// No stack switch on this target: the closure runs on the caller's stack.
    pub(super) fn run<R>(f: impl FnOnce() -> R) -> Result<R> {
        Ok(f())
    }

    pub(super) fn clear_registers() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_result_and_resumes_panics() {
        assert_eq!(run(|| 40 + 2).unwrap(), 42);
        let big = run(|| vec![7u8; 100_000]).unwrap();
        assert_eq!(big.len(), 100_000);
        let caught = std::panic::catch_unwind(|| run(|| -> u8 { panic!("inside") }));
        let payload = caught.expect_err("the panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"inside"));
        // The stack is still usable after a panic.
        assert_eq!(run(|| 1).unwrap(), 1);
    }

    #[cfg(all(unix, any(target_arch = "x86_64", target_arch = "aarch64")))]
    #[test]
    fn runs_on_another_stack_and_leaves_it_wiped() {
        let outer = 0u8;
        let outer_addr = &outer as *const u8 as usize;
        let inner_addr = run(|| {
            let inner = 0u8;
            std::hint::black_box(&inner) as *const u8 as usize
        })
        .unwrap();
        assert!(outer_addr.abs_diff(inner_addr) > 1 << 20 || inner_addr > outer_addr + 4096);
        let used = imp::high_water_after(|| {
            let mut big = [0x5Au8; 4096];
            std::hint::black_box(&mut big);
        });
        assert!(
            used >= 4096,
            "the 4 KiB local was on the private stack ({used} B wiped)"
        );
        // Wiped: the next operation finds nothing below its own frame.
        let again = imp::high_water_after(|| {});
        assert!(again < used);
    }

    /// The stack is large enough for a keyed operation with room to spare (for a signal frame and handler).
    #[cfg(all(unix, any(target_arch = "x86_64", target_arch = "aarch64")))]
    #[test]
    fn a_seal_and_an_open_use_well_under_half_the_stack() {
        use crate::core::crypto::{Cipher, NONCE_LEN};
        let mut chunk = vec![7u8; 16 * 1024];
        let used = imp::high_water_after(|| {
            let mut hash = [0u8; 32];
            crate::core::crypto::blake2b_256(&[3u8; 32], &mut hash);
            let cipher = Cipher::new(&[1u8; 32]);
            let ct = cipher
                .seal_in_place(&[2u8; NONCE_LEN], b"ad", &mut chunk)
                .unwrap();
            let mut out = vec![0u8; ct.len() - crate::core::crypto::OVERHEAD];
            cipher.open_into(b"ad", &ct, &mut out).unwrap();
        });
        eprintln!("secure stack high-water mark: {used} bytes");
        assert!(used < imp::STACK_LEN / 2, "{used} bytes used");
    }

    #[test]
    fn threads_run_concurrently() {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                std::thread::spawn(move || (0..200).map(|j| run(|| i * j).unwrap()).sum::<usize>())
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), i * (0..200).sum::<usize>());
        }
    }
}
