//! `treeward-hook`: see `treeward::programs::hook` (src/programs/hook.rs).

fn main() -> std::process::ExitCode {
    treeward::programs::hook()
}
