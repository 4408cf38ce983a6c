//! A secret dropped without `close` is closed anyway and reported at debug level (with its creation
//! backtrace under the `debug_backtrace` feature); a closed one is dropped silently. One test: the logger is
//! process-wide.

mod common;

use std::sync::Mutex;

use common::{Flavour, Mg, Pm, KEY};
use securememory::{Secret, SecretFactory};

struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("securememory")
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{} {}", record.level(), record.args()));
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

fn take() -> Vec<String> {
    std::mem::take(&mut *CAPTURE.0.lock().unwrap())
}

fn check<F: Flavour>() {
    let before = securememory::metrics::counts().in_use;
    let closed = F::factory().new(&mut KEY.to_vec()).unwrap();
    closed.close().unwrap();
    drop(closed);
    assert!(take().iter().all(|m| !m.contains("dropped before close")));

    let forgotten = F::factory().new(&mut b"hunter2".to_vec()).unwrap();
    drop(forgotten);
    let messages = take();
    let report = messages
        .iter()
        .find(|m| m.contains("dropped before close"))
        .unwrap_or_else(|| panic!("no report in {messages:?}"));
    assert!(report.starts_with("DEBUG"), "{report}");
    assert!(!report.contains("hunter2"));
    if cfg!(feature = "debug_backtrace") {
        assert!(report.contains("created at"), "{report}");
    }
    assert_eq!(
        securememory::metrics::counts().in_use,
        before,
        "the dropped secret was closed"
    );
}

#[test]
fn dropped_without_close_is_closed_and_reported() {
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    check::<Pm>();
    check::<Mg>();
}
