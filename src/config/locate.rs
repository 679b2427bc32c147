//! Turning byte offsets in the configuration text into what an operator can
//! act on: a line number and a key path such as `root[1].patterns[0]`.
//!
//! serde's errors carry a byte span but not the key; the key is recovered by
//! finding the deepest key or value of the parsed document that contains the
//! span. Pure functions over the text; nothing here can fail.

use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// The 1-based line on which byte `offset` of `text` lies.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    1 + text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// The key path (`root[1].path`) of the innermost key or value of `doc`
/// that contains `offset`, if any.
pub(super) fn key_at(doc: &DeTable<'_>, offset: usize) -> Option<String> {
    let mut best: Option<(usize, usize, String)> = None;
    visit_table(doc, "", 0, &mut |path, depth, span| {
        if !contains(&span, offset) {
            return;
        }
        let size = span.end - span.start;
        let better = match &best {
            None => true,
            Some((d, s, _)) => depth > *d || (depth == *d && size < *s),
        };
        if better {
            best = Some((depth, size, path.to_owned()));
        }
    });
    best.map(|(_, _, path)| path)
}

/// Whether `offset` falls in `span`; an empty span contains its start.
fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start == offset || span.contains(&offset)
}

/// Calls `seen(path, depth, span)` for every key and value under `table`.
/// Arrays of tables report only their headers' spans, so the walk never
/// prunes by containment: the document is small.
fn visit_table(
    table: &DeTable<'_>,
    prefix: &str,
    depth: usize,
    seen: &mut dyn FnMut(&str, usize, Range<usize>),
) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        seen(&path, depth + 1, key.span());
        seen(&path, depth + 1, value.span());
        visit_value(value.get_ref(), &path, depth + 1, seen);
    }
}

fn visit_value(
    value: &DeValue<'_>,
    path: &str,
    depth: usize,
    seen: &mut dyn FnMut(&str, usize, Range<usize>),
) {
    match value {
        DeValue::Table(table) => visit_table(table, path, depth, seen),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                seen(&item_path, depth + 1, item.span());
                visit_value(item.get_ref(), &item_path, depth + 1, seen);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(text: &str, needle: &str) -> Option<String> {
        let doc = DeTable::parse(text).expect("test TOML parses");
        let offset = text.find(needle).expect("needle in text");
        key_at(doc.get_ref(), offset)
    }

    #[test]
    fn line_of_counts_newlines_before_the_offset() {
        let text = "a = 1\nb = 2\n\nc = 3\n";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, text.find('b').unwrap_or(0)), 2);
        assert_eq!(line_of(text, text.find('c').unwrap_or(0)), 4);
        assert_eq!(line_of(text, 10_000), 5);
    }

    #[test]
    fn key_at_names_nested_keys_and_array_elements() {
        let text = "ledger = \"/x\"\n[[root]]\npath = \"/a\"\n\n[[root]]\npath = \"/b\"\npatterns = [\"*\", 3]\n";
        assert_eq!(key_of(text, "\"/x\"").as_deref(), Some("ledger"));
        assert_eq!(key_of(text, "\"/a\"").as_deref(), Some("root[0].path"));
        assert_eq!(key_of(text, "\"/b\"").as_deref(), Some("root[1].path"));
        assert_eq!(key_of(text, "3]").as_deref(), Some("root[1].patterns[1]"));
        assert_eq!(
            key_of(text, "patterns").as_deref(),
            Some("root[1].patterns")
        );
    }
}
