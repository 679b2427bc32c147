//! The man pages (`man/*.1`) and shell completions (`completions/`) are
//! generated from the binaries' clap definitions (`treeward::args`) and
//! committed, so that `cargo deb` packages them with nothing to run first.
//! This test is their generator: it renders them again and fails when a
//! committed file differs, is missing, or is left over. To rewrite them:
//!
//! ```sh
//! TREEWARD_REGENERATE=1 cargo test --test suite generated::
//! ```
//!
//! `man/treeward.toml.5` is written by hand; the last test holds it to
//! `config/treeward.toml`, which documents every key.

use clap_complete::Shell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const REGENERATE: &str = "TREEWARD_REGENERATE";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What a man page adds to what clap knows: roff for its DESCRIPTION,
/// EXIT STATUS and SEE ALSO.
struct Extra {
    description: &'static str,
    exit_status: &'static str,
    see_also: &'static [&'static str],
}

fn extra(bin: &str) -> Extra {
    match bin {
        "treeward-check" => Extra {
            description: r#"A read\-only preflight: for each PATH (default: the current directory; a
path inside a worktree is checked as that worktree), or with \fB\-\-all\fR
for every ledger record and every entry under the configured roots, it
reports what removing the worktree would lose: uncommitted changes (staged,
modified, deleted, untracked and not ignored, conflicted, and edits hidden
by skip\-worktree or assume\-unchanged), branch commits neither integrated
into the default branch nor pushed, commits of a detached HEAD that no ref
reaches, per\-worktree refs, operations in progress, submodules and
embedded repositories with work of their own. The host's \fBgit\fR is the
judge, run as the repository's owner. It changes nothing: not the index,
not refs, not objects, not the ledger. Run as root, it verifies each
worktree and has its owner assess it.
"#,
            exit_status: r#".TP
.B 0
nothing is at risk
.TP
.B 1
something is at risk
.TP
.B 2
an error, such as a PATH that does not exist
.TP
.B 78
bad configuration
"#,
            see_also: &["treeward(1)", "treeward-sweep(1)", "treeward.toml(5)"],
        },
        "treeward-sweep" => Extra {
            description: r#"Clears the residue that crashed agents left under every root with
\fBsweep = true\fR: worktrees, their branches and their admin entries.
It runs as root, before the agent service starts (\fBExecStartPre=+\fR)
and from \fBtreeward\-sweep.service\fR at boot. Each entry is first moved
into the root's trash, then assessed: work at risk is preserved under
\fBrefs/treeward/preserved/\fR (or kept, or discarded, as the root's
\fBpolicy\fR says) before anything is removed. Git runs only as each
repository's owner. Locked entries, entries in use and entries that fail
their claim are left alone and reported.
"#,
            exit_status: r#".TP
.B 0
done; per\-entry failures are in the report and are retried next pass
.TP
.B 2
an error, or a root the sweep refused (not sticky and writable by others,
owned by a stranger, a symlink, cannot be listed; also under
\fB\-\-dry\-run\fR), once every other root is swept and the report printed,
so that \fBExecStartPre=\fR keeps the service down
.TP
.B 78
bad configuration; nothing is touched
"#,
            see_also: &[
                "treeward(1)",
                "treeward-check(1)",
                "treeward-reap(1)",
                "treeward.toml(5)",
                "systemd.service(5)",
            ],
        },
        "treeward-reap" => Extra {
            description: r#"Runs unprivileged, as the agent service's user, from
\fBtreeward\-reap.timer\fR while the service runs, over every root with
\fBreap = true\fR. It takes worktrees that are released, and orphans older
than the root's \fBgrace\fR, never one that is locked or in use, with the
same preservation of work at risk as \fBtreeward\-sweep\fR. One pass runs
at a time.
"#,
            exit_status: r#".TP
.B 0
done; per\-entry failures are in the report and are retried next pass;
also when another pass was running and this one did nothing
.TP
.B 2
an error: the pass lock or the ledger could not be used; nothing is touched
.TP
.B 78
bad configuration; nothing is touched
"#,
            see_also: &[
                "treeward(1)",
                "treeward-sweep(1)",
                "treeward.toml(5)",
                "systemd.timer(5)",
            ],
        },
        "treeward-hook" => Extra {
            description: r#"Git's \fBpost\-checkout\fR hook, run through the shim that
\fBtreeward install\-hook\fR puts in a repository's hooks directory: it
records each new linked worktree in the ledger, so that the reaper and the
sweep know its repository, branch and creator. As a hook it never fails git.
"#,
            exit_status: r#".TP
.B 0
always, as git calls it, whatever went wrong (the failure is logged),
since git makes it the status of \fBgit worktree add\fR
.PP
With \fB\-\-dry\-run\fR:
.TP
.B 0
done
.TP
.B 2
an error, such as wrong arguments
.TP
.B 78
bad configuration
"#,
            see_also: &["treeward(1)", "treeward.toml(5)", "githooks(5)"],
        },
        "treeward" => Extra {
            description: r#"The admin command: lists the ledger joined with what is on disk, releases a
worktree to the reaper, restores preserved work, installs or removes the
\fBpost\-checkout\fR shim, and checks the set\-up.
"#,
            exit_status: r#".TP
.B 0
done
.TP
.B 1
\fBdoctor\fR found problems
.TP
.B 2
an error or bad input (an unknown id, a path outside every root, a ref that
is not a treeward ref, a repository that is gone, a live worktree in the
way, wrong arguments); nothing was changed
.TP
.B 78
bad configuration; nothing is touched
"#,
            see_also: &[
                "treeward-check(1)",
                "treeward-sweep(1)",
                "treeward-reap(1)",
                "treeward-hook(1)",
                "treeward.toml(5)",
                "git-worktree(1)",
            ],
        },
        other => panic!("no man page text for {other}: add it here"),
    }
}

/// ENVIRONMENT and FILES, the same for every binary.
const ENVIRONMENT_AND_FILES: &str = r#".SH ENVIRONMENT
.TP
.B TREEWARD_CONFIG
The configuration file when \fB\-\-config\fR is not given (empty counts as
unset).
.TP
.BR TREEWARD_LOG ", " RUST_LOG
The log filter, in \fBenv_logger\fR syntax (default: \fBinfo\fR).
Logs go to stderr, or to the journal when stderr is the journal.
.SH FILES
.TP
.I /etc/treeward/config.toml
The configuration, when neither \fB\-\-config\fR nor \fBTREEWARD_CONFIG\fR
names one; without it, embedded defaults apply. See \fBtreeward.toml\fR(5).
.TP
.I /var/lib/treeward/ledger.json
The ledger (default): one record per known worktree.
"#;

/// One binary's page.
fn man_page(bin: &str, cmd: clap::Command, date: &str) -> Vec<u8> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let extra = extra(bin);
    let man = Man::new(cmd.clone())
        .title(bin.to_uppercase())
        .date(date)
        .manual("treeward manual");
    let mut roff = Roff::default();
    roff.part(&man, Man::render_title);
    roff.part(&man, Man::render_name_section);
    roff.part(&man, Man::render_synopsis_section);
    // clap's description repeats the NAME line unless there is a long about.
    if cmd.get_long_about().is_some() {
        roff.part(&man, Man::render_description_section);
        roff.text(".PP\n");
    } else {
        roff.text(".SH DESCRIPTION\n");
    }
    roff.text(extra.description);
    roff.part(&man, Man::render_options_section);
    let subcommands: Vec<&clap::Command> = cmd.get_subcommands().collect();
    if !subcommands.is_empty() {
        roff.text(".SH COMMANDS\n");
    }
    for sub in subcommands {
        // Under a command's `.SS`, its parts open with a paragraph break
        // instead of their own `.SH`.
        let name = sub.get_bin_name().expect("built: treeward <subcommand>");
        roff.text(&format!(".SS \"{}\"\n", name.replace('-', "\\-")));
        let sub_man = Man::new(sub.clone());
        roff.sub_part(&sub_man, Man::render_description_section);
        roff.sub_part(&sub_man, Man::render_synopsis_section);
        roff.sub_part(&sub_man, Man::render_options_section);
    }
    roff.text(".SH \"EXIT STATUS\"\n");
    roff.text(extra.exit_status);
    roff.text(ENVIRONMENT_AND_FILES);
    roff.text(".SH \"SEE ALSO\"\n");
    let refs: Vec<String> = extra
        .see_also
        .iter()
        .map(|r| {
            let (name, section) = r.split_once('(').unwrap();
            format!(".BR {} ({}", name.replace('-', "\\-"), section)
        })
        .collect();
    roff.text(&(refs.join(" ,\n") + "\n"));
    roff.0.into_bytes()
}

type Part = fn(&Man, &mut dyn std::io::Write) -> std::io::Result<()>;

/// A page being put together from clap_mangen's sections and our text.
#[derive(Default)]
struct Roff(String);

impl Roff {
    fn text(&mut self, text: &str) {
        self.0.push_str(text);
    }

    /// One section as clap_mangen renders it, less the string definition
    /// it repeats before each section (kept once, at the top).
    fn part(&mut self, man: &Man, part: Part) {
        let first = self.0.is_empty();
        for line in Self::render(man, part).lines() {
            if first || !is_preamble(line) {
                self.0.push_str(line);
                self.0.push('\n');
            }
        }
    }

    /// As [`Roff::part`], with its `.SH` heading turned into `.PP`.
    fn sub_part(&mut self, man: &Man, part: Part) {
        for line in Self::render(man, part).lines() {
            if !is_preamble(line) {
                self.0.push_str(if line.starts_with(".SH ") {
                    ".PP"
                } else {
                    line
                });
                self.0.push('\n');
            }
        }
    }

    fn render(man: &Man, part: Part) -> String {
        let mut out = Vec::new();
        part(man, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }
}

/// clap_mangen's definition of the `Aq` string, before each section.
fn is_preamble(line: &str) -> bool {
    line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq")
}

/// The date of the newest `debian/changelog` entry, as `YYYY-MM-DD`: the
/// pages' date changes with a release, not with the day they are built.
fn release_date() -> String {
    let changelog = std::fs::read_to_string(repo().join("debian/changelog")).unwrap();
    let trailer = changelog
        .lines()
        .find(|l| l.starts_with(" -- "))
        .expect("debian/changelog has an entry");
    // " -- Name <email>  Fri, 20 Nov 2026 00:00:00 +0000"
    let date = trailer.rsplit_once(">  ").expect("trailer date").1;
    let fields: Vec<&str> = date.split_whitespace().collect();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = 1 + months.iter().position(|m| *m == fields[2]).expect("month");
    let day: u32 = fields[1].parse().unwrap();
    format!("{}-{month:02}-{day:02}", fields[3])
}

use clap_mangen::Man;

/// Every generated file: path relative to the repository → contents.
fn generated() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let date = release_date();
    for (bin, cmd) in treeward::testing::args::commands() {
        files.insert(
            PathBuf::from(format!("man/{bin}.1")),
            man_page(bin, cmd.clone(), &date),
        );
        for (shell, dir, file) in [
            (Shell::Bash, "bash", bin.to_owned()),
            (Shell::Zsh, "zsh", format!("_{bin}")),
            (Shell::Fish, "fish", format!("{bin}.fish")),
        ] {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), bin, &mut text);
            files.insert(PathBuf::from(format!("completions/{dir}/{file}")), text);
        }
    }
    files
}

/// The files under `man/` and `completions/` that the generator owns: every
/// `man/*.1` and everything under `completions/`.
fn committed() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in [
        "man",
        "completions/bash",
        "completions/zsh",
        "completions/fish",
    ] {
        let Ok(entries) = std::fs::read_dir(repo().join(dir)) else {
            continue;
        };
        for e in entries {
            let path = Path::new(dir).join(e.unwrap().file_name());
            if dir != "man" || path.extension().is_some_and(|x| x == "1") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn the_committed_man_pages_and_completions_are_current() {
    let files = generated();
    let regenerate = std::env::var_os(REGENERATE).is_some_and(|v| !v.is_empty());
    let mut stale = Vec::new();
    for (path, text) in &files {
        let full = repo().join(path);
        if std::fs::read(&full).ok().as_deref() == Some(text.as_slice()) {
            continue;
        }
        if regenerate {
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, text).unwrap();
        } else {
            stale.push(format!("{} differs or is missing", path.display()));
        }
    }
    for path in committed() {
        if files.contains_key(&path) {
            continue;
        }
        if regenerate {
            std::fs::remove_file(repo().join(&path)).unwrap();
        } else {
            stale.push(format!("{} is generated by nothing", path.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "generated files are stale:\n  {}\nrun `{REGENERATE}=1 cargo test --test suite generated::` and commit the result",
        stale.join("\n  ")
    );
}

/// One generated page per binary of the crate (the stems of `src/bin/*.rs`).
#[test]
fn every_binary_has_its_page_and_completions() {
    let mut bins: Vec<String> = std::fs::read_dir(repo().join("src/bin"))
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            (path.extension()? == "rs").then(|| path.file_stem().unwrap().to_string_lossy().into())
        })
        .collect();
    bins.sort();
    let mut commands: Vec<String> = treeward::testing::args::commands()
        .into_iter()
        .map(|(bin, _)| bin.to_owned())
        .collect();
    commands.sort();
    assert_eq!(commands, bins);
}

/// `man/treeward.toml.5` documents every key that `config/treeward.toml`
/// sets, each default, the validation and exit status 78.
#[test]
fn the_configuration_page_documents_every_key() {
    let page = std::fs::read_to_string(repo().join("man/treeward.toml.5")).unwrap();
    let example: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo().join("config/treeward.toml")).unwrap())
            .unwrap();
    let mut keys: Vec<String> = Vec::new();
    for (key, value) in &example {
        keys.push(key.clone());
        if let Some(tables) = value.as_array() {
            for table in tables.iter().filter_map(|t| t.as_table()) {
                keys.extend(table.keys().cloned());
            }
        }
    }
    keys.sort();
    keys.dedup();
    assert!(keys.len() >= 11, "{keys:?}");
    for key in &keys {
        let entry = format!("\n.TP\n.B {key}\n");
        let table = format!("\n.TP\n.B [[{key}]]\n");
        assert!(
            page.contains(&entry) || page.contains(&table),
            "man/treeward.toml.5 does not document {key} (as .TP / .B {key})"
        );
    }
    for default in [
        treeward::testing::config::DEFAULT_LEDGER.to_owned(),
        treeward::testing::config::DEFAULT_BACKLOG_WARN.to_string(),
        treeward::testing::config::DEFAULT_PATH.to_owned(),
        "1h".to_owned(),
        "78".to_owned(),
    ] {
        assert!(page.contains(&default), "{default} missing from the page");
    }
    let title = format!(
        ".TH TREEWARD.TOML 5 \"{}\" \"treeward {}\" \"treeward manual\"\n",
        release_date(),
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        page.lines().any(|l| format!("{l}\n") == title),
        "man/treeward.toml.5: its .TH must be {title:?} (the version, and the date of the newest debian/changelog entry)"
    );
}
