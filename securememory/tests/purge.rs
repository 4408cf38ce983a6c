//! `memguard::purge()` closes every live secret of both flavours, and skips (without deadlocking) a secret
//! whose closure is running on the purging thread. Its own binary: purge is process-wide.

mod common;

use common::{secret_of, Flavour, Mg, Pm, KEY};
use securememory::{Error, Secret, SecretExtensions};

fn purge_closes_secrets_and_skips_the_one_running_on_this_thread<F: Flavour>() {
    let a = secret_of::<F>(KEY);
    let b = secret_of::<F>(KEY);
    b.with_bytes(|_| {
        ::memguard::purge();
        Ok(())
    })
    .unwrap();
    assert!(a.is_closed(), "purge closed the idle secret");
    assert!(
        !b.is_closed(),
        "purge skipped the secret whose closure was running here"
    );
    assert!(matches!(a.with_bytes(|_| Ok(())), Err(Error::Closed)));
    b.close().unwrap();
}

#[test]
fn purge_closes_secrets_of_both_flavours() {
    purge_closes_secrets_and_skips_the_one_running_on_this_thread::<Pm>();
    purge_closes_secrets_and_skips_the_one_running_on_this_thread::<Mg>();
}
