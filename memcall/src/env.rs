//! Taking a value out of the process environment without copying it (Unix).
//!
//! [`take_env_var`] reads a variable where the C library keeps it (`getenv`), lets the caller copy it into
//! protected memory, then overwrites those bytes with zeros in place and removes the variable (`unsetenv`).

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;

/// Passes the value of the environment variable `name`, as the C library holds it, to `consume`. When
/// `consume` returns `Ok`, the value's bytes are overwritten with zeros where they are and the variable is
/// removed (`unsetenv`); when it returns `Err`, the environment is left exactly as it was.
///
/// `consume` sees the value without a trailing NUL; it may be empty (`NAME=`). Nothing here copies it.
///
/// # Limits
/// - **Other threads.** `getenv`, the in-place wipe and `unsetenv` are not synchronised with anything. Another
///   thread that calls `setenv`, `putenv`, `unsetenv` or `std::env::set_var`/`remove_var` at the same time is a
///   data race: std's environment lock covers only std's own calls, not libc's `getenv` made here (and C
///   libraries, musl among them, may free an old value while it is being read). Take secrets out of the
///   environment early, before starting threads that change it. (This function changes the environment as
///   `std::env::remove_var` does, which Rust's 2024 edition marks `unsafe` for exactly this reason; like
///   `remove_var` in the 2021 edition this workspace uses, it is a safe function whose caller keeps to that rule.)
/// - **Copies made earlier.** Only the bytes the C library points at are wiped. Whatever copied the value
///   before (the shell that exported it, a parent process, a language runtime's own environment table such as
///   Python's `os.environ` or a `std::env::vars()` result, a logger) is out of reach. `/proc/self/environ`
///   shows the block the process started with: when the value came from there (the usual case) it is that
///   block which is wiped, so `/proc/self/environ` shows `NAME=` followed by zero bytes afterwards.
/// - **Writable values.** The value must live in writable memory. It does when the process inherited it or
///   set it with `setenv` (std, Python and most runtimes do); a C `putenv` of a string literal is the
///   exception, and wiping it would fault.
///
/// # Errors
/// `consume`'s own error; an [`io::Error`] (converted into `E`) of kind
/// - [`io::ErrorKind::InvalidInput`] when `name` is empty or contains `=` or a NUL byte (no such variable can
///   exist);
/// - [`io::ErrorKind::NotFound`] when the variable is not set;
/// - the OS error of `unsetenv` if removing the variable fails (the value is already wiped then).
pub fn take_env_var<T, E>(
    name: impl AsRef<OsStr>,
    consume: impl FnOnce(&[u8]) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<io::Error>,
{
    let name = env_name(name.as_ref())?;
    // SAFETY:
    // - `name` is a valid NUL-terminated C string that lives across the call.
    // - `getenv` reads the environment; concurrent modification by another thread is the data race documented
    //   under "Limits", the same precondition every `getenv` caller has.
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "the environment variable {} is not set",
                name.to_string_lossy()
            ),
        )
        .into());
    }
    // SAFETY: `getenv` returned a non-null pointer to the NUL-terminated value, which stays valid and unchanged
    // until the environment is modified (by us, below, after the last use of this borrow).
    let len = unsafe { CStr::from_ptr(value) }.to_bytes().len();
    let value = value.cast::<u8>();
    let taken = {
        // SAFETY:
        // - `value..value + len` are the value's bytes, just measured, all initialised (a C string).
        // - Nothing writes them while the slice lives: this thread only writes after `consume` returns, and
        //   other threads changing the environment meanwhile is the documented data race.
        let bytes = unsafe { std::slice::from_raw_parts(value, len) };
        consume(bytes)?
    };
    // SAFETY:
    // - `value..value + len` is the value in the environment: the initial block on the stack or memory
    //   `setenv`/`putenv` installed, writable in both cases (the read-only `putenv` literal is the documented
    //   exception), and not borrowed any more.
    unsafe { crate::wipe::wipe_raw(value, len) };
    // SAFETY: `name` is a valid C string naming a variable (checked: non-empty, no `=`); same data-race
    // precondition as `getenv` above.
    if unsafe { libc::unsetenv(name.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error().into());
    }
    Ok(taken)
}

/// `name` as a C string, or `InvalidInput` when no variable can have that name.
fn env_name(name: &OsStr) -> io::Result<CString> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&b'=') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an environment variable name must be non-empty and contain no '='",
        ));
    }
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "an environment variable name must not contain a NUL byte",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::take_env_var;
    use std::io;

    // One test function: the environment is process-wide and the test harness runs tests on several threads.
    #[test]
    fn takes_wipes_removes_and_refuses() {
        let name = "MEMCALL_TAKE_ENV_VAR_TEST";
        // No other test in this binary touches the environment.
        std::env::set_var(name, "value-1");
        let mut seen = Vec::new();
        let got: io::Result<usize> = take_env_var(name, |v| {
            seen.extend_from_slice(v);
            Ok(v.len())
        });
        assert_eq!(got.unwrap(), 7);
        assert_eq!(seen, b"value-1");
        assert!(std::env::var_os(name).is_none());

        let missing: io::Result<()> = take_env_var(name, |_| Ok(()));
        assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);

        std::env::set_var(name, "kept");
        let refused: io::Result<()> =
            take_env_var(name, |_| Err(io::Error::other("consumer failed")));
        assert_eq!(refused.unwrap_err().to_string(), "consumer failed");
        assert_eq!(std::env::var_os(name).as_deref(), Some("kept".as_ref()));

        std::env::set_var(name, "");
        let empty: io::Result<usize> = take_env_var(name, |v| Ok(v.len()));
        assert_eq!(empty.unwrap(), 0);
        assert!(std::env::var_os(name).is_none());

        for bad in ["", "A=B", "A\0B"] {
            let invalid: io::Result<()> = take_env_var(bad, |_| Ok(()));
            assert_eq!(invalid.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        }
    }
}
