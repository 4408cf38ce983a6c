//! Running a keyed operation on a stack that lives in locked, no-dump, no-fork pages.
//!
//! The AEAD and hash implementations keep their state (the key, its schedule, the keystream) in local
//! variables, which live on the calling thread's stack: ordinary memory that lands in core dumps and is
//! inherited by forked children. [`run_at`] switches the calling thread to a private stack for the duration of one
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
//! Supported on Unix for x86_64 and aarch64. Elsewhere [`run_at`] calls the closure on the ordinary stack: the
//! keyed state then lives there while the operation runs and is not wiped by this module (see the crate docs).

use crate::error::Result;

/// How much private stack an operation gets. The used part is found by reading the stack up from its bottom
/// until the first non-zero block, so an operation pays for the stack it did *not* use: the crate's own
/// operations, whose depth is known and tested, run on a smaller stack than closures from outside the crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Depth {
    /// 16 KiB (and the rest of its last page) in optimised builds: the crate's own keyed operations (the key
    /// assembled with BLAKE2b, one seal or open, a re-split), which use about 5 KiB and which the high-water
    /// test below keeps under half of it. That leaves more than 11 KiB for a signal frame (about 3.5 KiB with
    /// AVX-512 state, up to 12 KiB for a thread using AMX) and a small handler.
    Shallow,
    /// 32 KiB in optimised builds: closures from outside the crate ([`Coffer::with_key`]), whose depth the
    /// crate does not know.
    ///
    /// [`Coffer::with_key`]: crate::Coffer::with_key
    Deep,
}

/// Runs `f` on a locked, no-dump, no-fork stack of class `depth`, then wipes what it used and clears the
/// registers. A panic in `f` is caught on the private stack and resumed on the caller's. Going deeper than
/// the class allows faults on the stack's guard page (the process ends; nothing is overwritten).
///
/// Whatever `f` returns is copied back to the caller's stack: it must not be key material.
///
/// # Errors
/// [`Error::Memory`](crate::Error::Memory) when no stack can be mapped or locked.
pub(crate) fn run_at<R>(depth: Depth, f: impl FnOnce() -> R) -> Result<R> {
    imp::run(depth, f)
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
    use std::sync::{Mutex, MutexGuard, Once, PoisonError};

    use memcall::{Protection, Region};

    use super::Depth;
    use crate::error::Result;
    use memcall::PerProcess;

    /// Usable stack per operation of the [`Deep`](Depth::Deep) class: room for a caller's closure, the
    /// deepest keyed operation (a 16 KiB stream chunk sealed, or the key assembled with BLAKE2b) plus a
    /// signal frame and a handler. Unoptimised builds keep every temporary of the hash and cipher rounds in
    /// its own stack slot and need several times more (see the high-water test below).
    pub(super) const STACK_LEN: usize = if cfg!(debug_assertions) {
        256 * 1024
    } else {
        32 * 1024
    };
    /// Usable stack per operation of the [`Shallow`](Depth::Shallow) class (the crate's own operations);
    /// unoptimised builds need as much as the deep class.
    pub(super) const SHALLOW_STACK_LEN: usize = if cfg!(debug_assertions) {
        256 * 1024
    } else {
        16 * 1024
    };

    impl Depth {
        fn stack_len(self) -> usize {
            match self {
                Depth::Shallow => SHALLOW_STACK_LEN,
                Depth::Deep => STACK_LEN,
            }
        }

        fn index(self) -> usize {
            match self {
                Depth::Shallow => 0,
                Depth::Deep => 1,
            }
        }
    }
    /// Zeroed bytes kept above the initial stack pointer. An unwinder walking past the trampoline (a backtrace
    /// taken inside the closure) reads the switching function's frame from here and finds a zero return
    /// address, which ends the walk instead of reading past the mapping.
    const TOP_PAD: usize = 512;
    /// Stacks kept for reuse; more concurrent operations map their own and unmap them after.
    const MAX_CACHED: usize = 8;
    // The scan reads whole blocks: the stack area (pages less `TOP_PAD`) must be made of them.
    const _: () = assert!(TOP_PAD % scan::BLOCK == 0);

    struct Stack {
        region: Region,
        page: usize,
        depth: Depth,
    }

    impl Stack {
        fn new(depth: Depth) -> Result<Stack> {
            let page = memcall::page_size();
            let stack_len = memcall::round_to_pages(depth.stack_len() + TOP_PAD)?;
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
            Ok(Stack {
                region,
                page,
                depth,
            })
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

        /// Wipes what the last operation wrote: everything from the lowest non-zero block up to the top (the
        /// stack grows down from a wiped state, so below that block it is all zeros). Returns the bytes wiped.
        fn wipe_used(&mut self) -> usize {
            let len = self.usable_len();
            let base = self.bottom();
            // SAFETY:
            // - `base .. base + len` is the stack area (page aligned, read-write), owned by this `Stack`, which
            //   no thread runs on now (`run` has switched back), and `&mut self` excludes any other reference;
            // - `len` is a multiple of `scan::BLOCK` (pages and `TOP_PAD` are).
            unsafe {
                let first = scan::first_used(base, len);
                scan::zero(base.add(first), len - first);
                len - first
            }
        }
    }

    /// Finding and wiping the used part of a stack, a block of [`BLOCK`](scan::BLOCK) bytes at a time, with
    /// the widest vector registers the CPU has (AVX2 when detected at run time, else SSE2 on x86_64; NEON on
    /// aarch64). Every byte below the reported block is read and found zero: nothing is skipped or sampled.
    mod scan {
        /// Bytes OR-reduced between two tests for non-zero: large enough that the loop runs at the load
        /// ports' speed, small enough that little is wiped beyond what was used.
        pub(super) const BLOCK: usize = 256;
        const WORDS: usize = BLOCK / 8;

        /// Offset of the first block of `base .. base + len` that holds a non-zero byte (`len` when none
        /// does).
        ///
        /// # Safety
        /// `base` must be 32-byte aligned and `base .. base + len` readable and not written concurrently;
        /// `len` must be a multiple of [`BLOCK`].
        pub(super) unsafe fn first_used(base: *const u8, len: usize) -> usize {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is available (checked above); the caller's obligations are passed on.
                return unsafe { first_used_avx2(base, len) };
            }
            // SAFETY: the caller's obligations are passed on.
            unsafe { first_used_portable(base, len) }
        }

        /// The portable scan as a plain function, for the tests.
        ///
        /// # Safety
        /// As [`first_used`].
        #[cfg(test)]
        pub(super) unsafe fn first_used_portable_fn(base: *const u8, len: usize) -> usize {
            // SAFETY: the caller's obligations are passed on.
            unsafe { first_used_portable(base, len) }
        }

        /// The portable wipe as a plain function, for the tests.
        ///
        /// # Safety
        /// As [`zero`].
        #[cfg(test)]
        pub(super) unsafe fn zero_portable_fn(ptr: *mut u8, len: usize) {
            // SAFETY: the caller's obligations are passed on.
            unsafe { zero_portable(ptr, len) }
        }

        /// # Safety
        /// As [`first_used`], and the CPU must support AVX2.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        pub(super) unsafe fn first_used_avx2(base: *const u8, len: usize) -> usize {
            // SAFETY: the caller's obligations are passed on; inlined here, the loop is compiled for AVX2.
            unsafe { first_used_portable(base, len) }
        }

        /// # Safety
        /// As [`first_used`].
        #[inline(always)]
        unsafe fn first_used_portable(base: *const u8, len: usize) -> usize {
            let mut at = 0;
            while at < len {
                // SAFETY: `at + BLOCK <= len` (`len` is a multiple of `BLOCK`), so the block is inside the
                // caller's readable range, and 8-byte aligned since `base` is.
                let block = unsafe { &*base.add(at).cast::<[u64; WORDS]>() };
                if block.iter().fold(0, |acc, &w| acc | w) != 0 {
                    return at;
                }
                at += BLOCK;
            }
            len
        }

        /// Zeroes `ptr .. ptr + len` with volatile vector stores (the compiler may not drop them although
        /// nothing reads the bytes afterwards).
        ///
        /// # Safety
        /// `ptr` must be 32-byte aligned and `ptr .. ptr + len` writable and not accessed concurrently; `len`
        /// must be a multiple of [`BLOCK`].
        pub(super) unsafe fn zero(ptr: *mut u8, len: usize) {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is available (checked above); the caller's obligations are passed on.
                unsafe { zero_avx2(ptr, len) };
                return;
            }
            // SAFETY: the caller's obligations are passed on.
            unsafe { zero_portable(ptr, len) };
        }

        /// # Safety
        /// As [`zero`], and the CPU must support AVX2.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        pub(super) unsafe fn zero_avx2(ptr: *mut u8, len: usize) {
            use std::arch::x86_64::{__m256i, _mm256_setzero_si256};
            let mut at = 0;
            while at < len {
                // SAFETY: `at + 32 <= len` (`len` is a multiple of 32) and `ptr + at` is 32-byte aligned, so
                // this is an aligned store inside the caller's writable range.
                unsafe {
                    ptr.add(at)
                        .cast::<__m256i>()
                        .write_volatile(_mm256_setzero_si256())
                };
                at += 32;
            }
            std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        }

        /// # Safety
        /// As [`zero`].
        #[inline(always)]
        unsafe fn zero_portable(ptr: *mut u8, len: usize) {
            #[cfg(target_arch = "x86_64")]
            type Vector = std::arch::x86_64::__m128i;
            #[cfg(target_arch = "aarch64")]
            type Vector = std::arch::aarch64::uint8x16_t;
            // SAFETY: an all-zero bit pattern is a valid value of a plain SIMD vector type.
            let zero: Vector = unsafe { std::mem::zeroed() };
            let mut at = 0;
            while at < len {
                // SAFETY: `at + 16 <= len` (`len` is a multiple of 16) and `ptr + at` is 16-byte aligned, so
                // this is an aligned store inside the caller's writable range.
                unsafe { ptr.add(at).cast::<Vector>().write_volatile(zero) };
                at += 16;
            }
            std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The process's cache of stacks; a forked child starts with an empty one and never touches the parent's
    /// (its stacks are not mapped in the child, and a parent thread may have held the mutex at fork time).
    /// One list of stacks per [`Depth`].
    type Stacks = [Vec<Stack>; 2];

    static CACHE: PerProcess<Mutex<Stacks>> = PerProcess::new(new_cache);

    fn new_cache() -> Mutex<Stacks> {
        static REGISTER: Once = Once::new();
        REGISTER.call_once(|| {
            memcall::pool::register_trim_hook(trim);
        });
        Mutex::new([Vec::new(), Vec::new()])
    }

    fn lock(cache: &Mutex<Stacks>) -> MutexGuard<'_, Stacks> {
        cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(depth: Depth) -> Result<Stack> {
        // The cache lock is released before mapping: a lock-limit failure trims caches, this one included.
        let cached = lock(CACHE.get())[depth.index()].pop();
        match cached {
            Some(stack) => Ok(stack),
            None => Stack::new(depth),
        }
    }

    fn give(mut stack: Stack) {
        stack.wipe_used();
        let mut cache = lock(CACHE.get());
        let stacks = &mut cache[stack.depth.index()];
        if stacks.len() < MAX_CACHED {
            stacks.push(stack);
        } else {
            drop(cache);
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
        for stack in stacks.into_iter().flatten() {
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

    pub(super) fn run<R, F: FnOnce() -> R>(depth: Depth, f: F) -> Result<R> {
        let stack = take(depth)?;
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
    pub(super) fn high_water_after<F: FnOnce()>(depth: Depth, f: F) -> usize {
        let stack = take(depth).expect("a stack");
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
        assert!(
            stack.is_all_zero(),
            "the whole stack is zero after the wipe"
        );
        give(stack);
        used
    }

    #[cfg(test)]
    impl Stack {
        fn is_all_zero(&self) -> bool {
            // SAFETY: the stack area is readable and no thread runs on it (see `wipe_used`).
            let area = unsafe { std::slice::from_raw_parts(self.bottom(), self.usable_len()) };
            area.iter().all(|&b| b == 0)
        }
    }

    #[cfg(test)]
    mod scan_tests {
        use super::{scan, Depth, Stack};

        /// Offsets to plant a byte at: each edge of a block and of a page, and spots in between.
        fn offsets(len: usize) -> Vec<usize> {
            let mut at = vec![
                0,
                1,
                7,
                8,
                31,
                32,
                255,
                256,
                257,
                4095,
                4096,
                4097,
                len - 1,
                len - 8,
            ];
            at.extend((0..len).step_by(997));
            at.retain(|&o| o < len);
            at
        }

        /// Plants a non-zero byte at every offset in turn (with all-zero bytes around it, as a deep frame
        /// under a zeroed local leaves) and checks that `find`/`zero` report the block holding it and leave
        /// the whole area zero.
        fn check(find: unsafe fn(*const u8, usize) -> usize, zero: unsafe fn(*mut u8, usize)) {
            for depth in [Depth::Shallow, Depth::Deep] {
                let mut stack = Stack::new(depth).expect("a stack");
                let len = stack.usable_len();
                assert_eq!(len % scan::BLOCK, 0);
                for offset in offsets(len) {
                    let base = stack.bottom();
                    // SAFETY: `offset < len`, inside the stack area, which nothing else uses.
                    unsafe { base.add(offset).write(0x5A) };
                    // SAFETY: the area is page aligned, readable and writable, and a whole number of blocks.
                    let first = unsafe { find(base, len) };
                    assert_eq!(first, offset - offset % scan::BLOCK, "byte at {offset}");
                    // SAFETY: as above; `first` is a block boundary inside the area.
                    unsafe { zero(base.add(first), len - first) };
                    assert!(stack.is_all_zero(), "byte at {offset} wiped");
                    // SAFETY: as above.
                    assert_eq!(unsafe { find(base, len) }, len, "nothing left");
                }
                // The dispatching entry points agree, and `wipe_used` reports what it wiped.
                // SAFETY: as above.
                unsafe { stack.bottom().add(len - 1).write(1) };
                assert_eq!(stack.wipe_used(), scan::BLOCK);
                assert!(stack.is_all_zero());
                stack.region.free().expect("unmapped");
            }
        }

        #[test]
        fn the_portable_scan_finds_any_written_byte_and_wipes_it() {
            check(scan::first_used_portable_fn, scan::zero_portable_fn);
        }

        #[cfg(target_arch = "x86_64")]
        #[test]
        fn the_avx2_scan_finds_any_written_byte_and_wipes_it() {
            if !std::arch::is_x86_feature_detected!("avx2") {
                eprintln!("no AVX2 here: only the portable scan is checked");
                return;
            }
            check(scan::first_used_avx2, scan::zero_avx2);
        }
    }
}

#[cfg(not(all(unix, any(target_arch = "x86_64", target_arch = "aarch64"))))]
mod imp {
    use super::Depth;
    use crate::error::Result;

    /// No stack switch on this target: the closure runs on the caller's stack.
    pub(super) fn run<R>(_depth: Depth, f: impl FnOnce() -> R) -> Result<R> {
        Ok(f())
    }

    pub(super) fn clear_registers() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<R>(f: impl FnOnce() -> R) -> Result<R> {
        run_at(Depth::Deep, f)
    }

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
        for depth in [Depth::Shallow, Depth::Deep] {
            let used = imp::high_water_after(depth, || {
                let mut big = [0x5Au8; 4096];
                std::hint::black_box(&mut big);
            });
            assert!(
                used >= 4096,
                "the 4 KiB local was on the private stack ({used} B wiped)"
            );
            // Wiped: the next operation finds nothing below its own frame.
            let again = imp::high_water_after(depth, || {});
            assert!(again < used);
            assert_eq!(run_at(depth, || 7).unwrap(), 7);
        }
    }

    /// A zeroed local between the frames does not hide what was written below it: the scan starts at the
    /// bottom of the stack, so everything from the deepest write up is wiped.
    #[cfg(all(unix, any(target_arch = "x86_64", target_arch = "aarch64")))]
    #[test]
    fn a_write_below_a_zeroed_gap_is_wiped() {
        #[inline(never)]
        fn deeper() {
            let mut below = [0u8; 64];
            below[0] = 0xA5;
            std::hint::black_box(&mut below);
        }
        for depth in [Depth::Shallow, Depth::Deep] {
            let used = imp::high_water_after(depth, || {
                // An all-zero local, and a frame under it that writes.
                let mut zeros = [0u8; 8 * 1024];
                std::hint::black_box(&mut zeros);
                deeper();
            });
            assert!(used > 8 * 1024, "{used} bytes wiped");
        }
    }

    /// The shallow stack is large enough for a keyed operation with room to spare (for a signal frame and
    /// a handler).
    #[cfg(all(unix, any(target_arch = "x86_64", target_arch = "aarch64")))]
    #[test]
    fn a_seal_and_an_open_use_well_under_half_the_stack() {
        use crate::core::crypto::{Cipher, NONCE_LEN};
        let mut chunk = vec![7u8; 16 * 1024];
        let used = imp::high_water_after(Depth::Shallow, || {
            let mut hash = [0u8; 32];
            crate::core::crypto::blake2b_256(&[3u8; 32], &mut hash);
            let cipher = Cipher::new(&[1u8; 32]);
            let ct = cipher
                .seal_in_place(&[2u8; NONCE_LEN], b"ad", &mut chunk, Vec::new())
                .unwrap();
            let mut out = vec![0u8; ct.len() - crate::core::crypto::OVERHEAD];
            cipher.open_into(b"ad", &ct, &mut out).unwrap();
        });
        eprintln!("secure stack high-water mark: {used} bytes");
        assert!(used < imp::SHALLOW_STACK_LEN / 2, "{used} bytes used");
    }

    #[test]
    fn threads_run_concurrently() {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                std::thread::spawn(move || {
                    (0..200)
                        .map(|j| {
                            let depth = if j % 2 == 0 {
                                Depth::Shallow
                            } else {
                                Depth::Deep
                            };
                            run_at(depth, || i * j).unwrap()
                        })
                        .sum::<usize>()
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().unwrap(), i * (0..200).sum::<usize>());
        }
    }
}
