//! `treeward-check`: see `treeward::programs::check` (src/programs/check.rs).

fn main() -> std::process::ExitCode {
    treeward::programs::check()
}
