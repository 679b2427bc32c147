//! `treeward`, the admin command: see src/programs/admin.rs.

fn main() -> std::process::ExitCode {
    treeward::programs::admin()
}
