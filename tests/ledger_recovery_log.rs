//! What the ledger reports when it recovers: a corrupt ledger met by
//! `update` at error level with both the ledger's path and the aside path; a
//! torn journal line at warning level. Its own test binary, so that the
//! capturing logger installed here is the process's only logger.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use treeward::testing::ledger::{Change, Ledger, Record};

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

/// Installs the capturing logger once for every test here.
fn capture() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        log::set_logger(&CAPTURE).expect("the only logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// Logged messages at `level` that mention `needle`.
fn logged(level: log::Level, needle: &str) -> Vec<String> {
    LOGGED
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, m)| *l == level && m.contains(needle))
        .map(|(_, m)| m.clone())
        .collect()
}

#[test]
fn corrupt_ledger_is_logged_at_error_level_with_both_paths() {
    capture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.json");
    std::fs::write(&path, "{\"schema\": 1, \"records\": [{\"id\"").unwrap();

    let aside = Ledger::new(&path)
        .update(|doc| doc.recovered_from.clone())
        .unwrap()
        .expect("recovered");

    let errors = logged(log::Level::Error, &path.display().to_string());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let msg = &errors[0];
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains(&aside.display().to_string()), "{msg}");
    assert!(msg.contains("corrupt"), "{msg}");
    assert!(aside.exists());
}

#[test]
fn torn_journal_line_is_dropped_with_a_warning_naming_the_journal() {
    capture();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new(&dir.path().join("ledger.json"));
    let record = Record::new(Path::new("/tmp/adf-worktrees/a"), Path::new("/r/.git"), 0);
    ledger
        .append(&Change::Add {
            record: Box::new(record),
        })
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(ledger.journal_path())
        .unwrap();
    f.write_all(b"{\"id\":\"torn\",\"op\":\"ad").unwrap();

    assert_eq!(ledger.read().unwrap().records.len(), 1);
    let journal = ledger.journal_path().display().to_string();
    assert!(
        logged(log::Level::Warn, &journal).is_empty(),
        "a reader may be looking at an append in progress: no warning"
    );
    let count = ledger.update(|doc| doc.records.len()).unwrap();

    assert_eq!(count, 1);
    let warnings = logged(log::Level::Warn, &journal);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("incomplete line"), "{}", warnings[0]);
    assert!(
        warnings[0].contains("torn"),
        "the dropped text: {}",
        warnings[0]
    );
}
