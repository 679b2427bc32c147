//! `treeward-reap`: see `treeward::programs::reap` (src/programs/reap.rs).

fn main() -> std::process::ExitCode {
    treeward::programs::reap()
}
