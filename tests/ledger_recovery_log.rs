//! A corrupt ledger met by `update` is reported at error level with both the
//! ledger's path and the aside path. Its own test binary, so that the
//! capturing logger installed here is the process's only logger.

use std::sync::Mutex;
use treeward::ledger::Ledger;

static LOGGED: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        if let Ok(mut v) = LOGGED.lock() {
            v.push((record.level(), record.args().to_string()));
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

#[test]
fn corrupt_ledger_is_logged_at_error_level_with_both_paths() {
    log::set_logger(&CAPTURE).expect("the only logger in this test binary");
    log::set_max_level(log::LevelFilter::Trace);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.json");
    std::fs::write(&path, "{\"schema\": 1, \"records\": [{\"id\"").unwrap();

    let aside = Ledger::new(&path)
        .update(|doc| doc.recovered_from.clone())
        .unwrap()
        .expect("recovered");

    let logged = LOGGED.lock().unwrap();
    let errors: Vec<&String> = logged
        .iter()
        .filter(|(level, _)| *level == log::Level::Error)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(errors.len(), 1, "{logged:?}");
    let msg = errors[0];
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains(&aside.display().to_string()), "{msg}");
    assert!(msg.contains("corrupt"), "{msg}");
    assert!(aside.exists());
}
