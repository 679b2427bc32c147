//! Colour for the few words a person scanning a terminal must not miss
//! (`AT RISK`, `PROBLEM`), and aligned tables.
//!
//! Colour only when stdout is a terminal and `NO_COLOR` is unset or empty
//! (<https://no-color.org>), so that pipes, files, `--json` and the journal
//! never see escape codes.

use std::io::IsTerminal;

/// Whether stdout gets colour.
pub fn colour_enabled() -> bool {
    colour_wanted(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
    )
}

/// The rule: a terminal, and no `NO_COLOR`.
pub fn colour_wanted(terminal: bool, no_color: bool) -> bool {
    terminal && !no_color
}

/// `word` in bold red when `colour` is set: work may be lost, or something
/// is wrong.
pub fn alarm(word: &str, colour: bool) -> String {
    if !colour {
        return word.to_owned();
    }
    format!("\x1b[1;31m{word}\x1b[0m")
}

/// Rows laid out in columns two spaces apart, each as wide as its widest
/// cell (the last column is not padded). Widths count characters.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[c] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A path for a line of human output: as it is when it is UTF-8 without
/// control characters, else quoted with Rust's escapes (`"new\nline"`,
/// `"a\xFFb"`), so that an entry name can neither break a line nor pass
/// for another name.
pub fn path(p: &std::path::Path) -> String {
    match p.to_str() {
        Some(text) if !text.chars().any(char::is_control) => text.to_owned(),
        _ => format!("{:?}", p.as_os_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_paths_are_quoted_and_escaped() {
        use std::os::unix::ffi::OsStrExt;
        let p = |b: &[u8]| path(std::path::Path::new(std::ffi::OsStr::from_bytes(b)));
        assert_eq!(p(b"/r/-rf"), "/r/-rf");
        assert_eq!(p(b"/r/new\nline"), "\"/r/new\\nline\"");
        assert_eq!(p(b"/r/a\xffb"), "\"/r/a\\xFFb\"");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, false));
        assert!(!colour_wanted(true, true));
        assert!(!colour_wanted(false, false));
        assert_eq!(alarm("AT RISK", false), "AT RISK");
        assert!(alarm("AT RISK", true).starts_with("\x1b["));
    }

    #[test]
    fn columns_align_on_the_widest_cell() {
        let rows = vec![
            vec!["STATE".into(), "PATH".into()],
            vec!["released".into(), "/a".into()],
        ];
        assert_eq!(table(&rows), "STATE     PATH\nreleased  /a\n");
    }
}
