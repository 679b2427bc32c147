//! Logging: env_logger on a terminal, journald fields under systemd. STUB.

/// Installs the logger once per process.
pub fn init() {}
