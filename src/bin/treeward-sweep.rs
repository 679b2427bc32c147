//! `treeward-sweep`: see `treeward::programs::sweep` (src/programs/sweep.rs).

fn main() -> std::process::ExitCode {
    treeward::programs::sweep()
}
