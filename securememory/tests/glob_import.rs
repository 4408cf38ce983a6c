//! `use securememory::*;` brings this crate's flavour module `securememory::memguard` into scope, which shadows
//! the `memguard` crate in the user's code. Paths into the crate must resolve all the same, to the same types.

use securememory::*;

#[test]
fn the_flavour_types_and_the_memguard_crate_items_both_resolve_after_a_glob_import(
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    // The flavour types, through the glob and through the module.
    let factory: MemguardSecretFactory = memguard::MemguardSecretFactory::new();
    let secret: MemguardSecret = factory.create_random(32)?;
    assert_eq!(secret.len(), 32);
    secret.close()?;

    // The guarded-buffer crate's items, by the path a user of the `memguard` crate writes.
    let mut raw = *b"an example 32-byte secret value!";
    let buffer: memguard::LockedBuffer = memguard::LockedBuffer::from_bytes(&mut raw)?;
    assert_eq!(raw, [0u8; 32]);
    let enclave: memguard::Enclave = buffer.seal()?;
    let opened = enclave.open()?;
    assert!(opened.equal_to(b"an example 32-byte secret value!"));
    let typed: std::result::Result<(), memguard::Error> = Err(memguard::Error::Destroyed);
    assert!(typed.is_err());
    Ok(())
}

#[test]
fn the_paths_name_the_same_types_as_the_crate_itself() {
    // `::memguard` is always the crate; `memguard` here is the flavour module, re-exporting it.
    fn same<T>(_: fn() -> T, _: fn() -> T) {}
    same::<::memguard::Stream>(memguard::Stream::new, ::memguard::Stream::new);
    assert_eq!(memguard::PURGE_GRACE, ::memguard::PURGE_GRACE);
}
