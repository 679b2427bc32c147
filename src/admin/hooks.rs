//! `treeward install-hook` / `uninstall-hook`, the admin side: verify each
//! repository named on the command line, ask its owner's worker to install
//! or remove the shim ([`crate::as_owner::hooks`], which holds the contract),
//! and say what was done.

use super::call_as_owner;
use crate::as_owner::hooks::{HookAction, HookOutcome};
use crate::as_owner::{Request, Response, Worker};
use crate::error::Error;
use std::path::PathBuf;

/// Installs (or with `remove`, uninstalls) the shim in each repository, as
/// its owner. Every path is verified as a repository of the one user who
/// owns it, on a strict path ([`super::repository`]), before any is changed;
/// the first failure after that stops the run.
pub fn install_all(
    repos: &[PathBuf],
    remove: bool,
    worker: &Worker,
    dry_run: bool,
) -> Result<Vec<HookOutcome>, Error> {
    let verified = repos
        .iter()
        .map(|r| super::repository(&super::absolute(r)?, None))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for repo in verified {
        let repository = repo.common().to_path_buf();
        let request = if remove {
            Request::UninstallHook {
                repository,
                dry_run,
            }
        } else {
            Request::InstallHook {
                repository,
                dry_run,
            }
        };
        match call_as_owner(worker, &repo, &request)? {
            Response::Hook { outcome } => out.push(outcome),
            other => return Err(Error::Failed(format!("unexpected reply {other:?}"))),
        }
    }
    Ok(out)
}

/// One line per repository.
pub fn render_human(outcomes: &[HookOutcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let what = o.action.words(o.before.installed());
        let would = if o.dry_run && o.action != HookAction::Nothing {
            "would be: "
        } else {
            ""
        };
        out.push_str(&format!(
            "{}: {would}{what}\n",
            o.before.hooks_dir.display()
        ));
    }
    out
}
