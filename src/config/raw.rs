//! Step one of loading: the TOML exactly as the operator typed it.
//!
//! These types only describe shape (which keys exist, which types they
//! have); serde rejects unknown keys, missing required keys and wrong types.
//! Every value keeps its byte span so that step two (`validate`) can name the
//! line of anything it refuses.

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub ledger: Option<Spanned<String>>,
    /// Signed so that a negative number gets our message, not serde's.
    pub backlog_warn: Option<Spanned<i64>>,
    pub hook_record_anywhere: Option<bool>,
    pub metrics: Option<Spanned<String>>,
    /// `[[root]]` tables; absent and empty are refused by validation.
    pub root: Option<Spanned<Vec<Spanned<RawRoot>>>>,
}

/// One `[[root]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoot {
    pub path: Spanned<String>,
    pub patterns: Spanned<Vec<Spanned<String>>>,
    pub sweep: Option<bool>,
    pub reap: Option<bool>,
    pub grace: Option<Spanned<String>>,
    pub policy: Option<Spanned<String>>,
    pub owner: Option<Spanned<String>>,
}
