//! The `metrics` setting: each pass writes `<binary>.prom` for
//! node_exporter's textfile collector, in the Prometheus text format
//! (parsed here by `prometheus-parse`), atomically, with the time of the
//! last successful pass carried over a failed one.

use crate::common;

use std::collections::HashMap;
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

/// Every sample of a `.prom` file by name, after checking the format: each
/// name has one HELP and one TYPE line, every sample is labelled with its
/// binary, and the parser agrees on every value.
fn samples(path: &Path, binary: &str) -> HashMap<String, f64> {
    let text = std::fs::read_to_string(path).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.as_bytes().lines()).unwrap();
    let mut out = HashMap::new();
    for s in &scrape.samples {
        assert_eq!(s.labels.get("binary"), Some(binary), "{text}");
        let value = match s.value {
            prometheus_parse::Value::Gauge(v) => v,
            ref other => panic!("{}: not a gauge: {other:?}", s.metric),
        };
        assert!(
            scrape.docs.contains_key(&s.metric),
            "no HELP for {}",
            s.metric
        );
        let help = format!("# HELP {} ", s.metric);
        let kind = format!("# TYPE {} gauge\n", s.metric);
        assert_eq!(text.matches(&help).count(), 1, "{text}");
        assert_eq!(text.matches(&kind).count(), 1, "{text}");
        assert!(out.insert(s.metric.clone(), value).is_none(), "{text}");
    }
    let sample_lines = text.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(sample_lines, out.len(), "every sample line parsed: {text}");
    out
}

fn sweep(cfg: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap()
}

#[test]
fn a_sweep_writes_its_counts_and_keeps_the_last_success_over_a_failure() {
    if !common::prerequisite(common::is_root(), "the sweep runs as root") {
        return;
    }
    let dir = common::strict_tempdir();
    let root = dir.path().join("wt");
    let prom = dir.path().join("prom");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&prom).unwrap();
    std::fs::write(root.join("stale.txt"), "x").unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    let cfg = dir.path().join("treeward.toml");
    let config = |roots: &str| {
        std::fs::write(
            &cfg,
            format!(
                "ledger = \"{}\"\nmetrics = \"{}\"\n{roots}",
                dir.path().join("ledger.json").display(),
                prom.display()
            ),
        )
        .unwrap();
    };
    let root_table =
        |p: &Path| format!("[[root]]\npath = \"{}\"\npatterns = [\"*\"]\n", p.display());
    config(&root_table(&root));

    let out = sweep(&cfg);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = prom.join("treeward-sweep.prom");
    let first = samples(&file, "treeward-sweep");
    assert_eq!(first["treeward_swept_entries"], 2.0, "{first:?}");
    assert_eq!(first["treeward_backlog_entries"], 2.0);
    assert_eq!(first["treeward_failed_entries"], 0.0);
    let success = first["treeward_last_success_timestamp_seconds"];
    assert_eq!(success, first["treeward_last_pass_timestamp_seconds"]);
    // Atomic: nothing but the file is left in the directory.
    let names: Vec<_> = std::fs::read_dir(&prom)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("treeward-sweep.prom")]);

    // A pass that refuses a root (world-writable, not sticky) is no success:
    // the previous success time stays.
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    config(&format!("{}{}", root_table(&root), root_table(&open)));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = sweep(&cfg);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = samples(&file, "treeward-sweep");
    assert_eq!(second["treeward_refused_entries"], 1.0, "{second:?}");
    assert_eq!(second["treeward_last_success_timestamp_seconds"], success);
    assert!(second["treeward_last_pass_timestamp_seconds"] > success);
}

#[test]
fn a_dry_run_writes_no_metrics_and_a_real_pass_does() {
    let dir = common::strict_tempdir();
    let prom = dir.path().join("prom");
    std::fs::create_dir(&prom).unwrap();
    let cfg = dir.path().join("treeward.toml");
    std::fs::write(
        &cfg,
        format!(
            "ledger = \"{}\"\nmetrics = \"{}\"\n[[root]]\npath = \"{}\"\npatterns = [\"*\"]\n",
            dir.path().join("ledger.json").display(),
            prom.display(),
            dir.path().join("no-root").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_treeward-sweep"))
        .args(["--dry-run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(&prom).unwrap().count(),
        0,
        "a dry run writes no metrics"
    );
    // Control: the same pass for real writes the file.
    assert_eq!(sweep(&cfg).status.code(), Some(0));
    assert!(prom.join("treeward-sweep.prom").is_file());
}
