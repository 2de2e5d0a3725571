//! Finds the line and column of a dotted key path (`fastpath.allow[2]`) in TOML text, so errors
//! found after parsing can still point at the line.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// 1-based (line, column) of `key` in `text`, or of its nearest ancestor that exists.
pub(super) fn locate(text: &str, key: &str) -> Option<(usize, usize)> {
    let doc = ImDocument::parse(text).ok()?;
    let segments: Vec<Segment<'_>> = segments(key).collect();
    let mut node = Node::Item(doc.as_item());
    let mut best: Option<Range<usize>> = None;
    for segment in &segments {
        let next = match *segment {
            Segment::Key(name) => node.child(name),
            Segment::Index(index) => node.element(index).map(|n| (None, n)),
        };
        let Some((key_span, child)) = next else {
            break;
        };
        best = child.span().or(key_span).or(best);
        node = child;
    }
    best.map(|span| line_column(text, span.start))
}

/// Line and column (1-based) of a byte offset.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[derive(Clone, Copy)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(key: &str) -> impl Iterator<Item = Segment<'_>> {
    key.split('.').flat_map(|part| {
        let (name, rest) = part.split_once('[').unwrap_or((part, ""));
        let name = (!name.is_empty()).then_some(Segment::Key(name));
        let indices = rest
            .split('[')
            .filter_map(|index| index.trim_end_matches(']').parse().ok())
            .map(Segment::Index);
        name.into_iter().chain(indices).collect::<Vec<_>>()
    })
}

/// A place in the document: `toml_edit` gives items, values and tables as different types.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a Table),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(item) => item.span(),
            Node::Value(value) => value.span(),
            Node::Table(table) => table.span(),
        }
    }

    fn child(self, name: &str) -> Option<(Option<Range<usize>>, Node<'a>)> {
        match self {
            Node::Item(Item::Table(table)) | Node::Table(table) => table
                .get_key_value(name)
                .map(|(key, item)| (key.span(), Node::Item(item))),
            Node::Item(Item::Value(Value::InlineTable(table)))
            | Node::Value(Value::InlineTable(table)) => table
                .get_key_value(name)
                .map(|(key, item)| (key.span(), Node::Item(item))),
            _ => None,
        }
    }

    fn element(self, index: usize) -> Option<Node<'a>> {
        match self {
            Node::Item(Item::Value(Value::Array(array))) | Node::Value(Value::Array(array)) => {
                array.get(index).map(Node::Value)
            }
            Node::Item(Item::ArrayOfTables(tables)) => tables.get(index).map(Node::Table),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[fastpath]\ninterfaces = [\"lo\"]\nallow = [\"10.0.0.0/8\",\n  \"bad\"]\n\n[fastpath.limiter]\nrate = 0\n";

    #[test]
    fn finds_nested_keys_and_array_elements() {
        assert_eq!(locate(TEXT, "fastpath.limiter.rate").map(|p| p.0), Some(7));
        assert_eq!(locate(TEXT, "fastpath.allow[1]"), Some((4, 3)));
        assert_eq!(locate(TEXT, "fastpath.interfaces").map(|p| p.0), Some(2));
    }

    #[test]
    fn falls_back_to_the_nearest_ancestor() {
        assert_eq!(locate(TEXT, "fastpath.limiter.burst").map(|p| p.0), Some(6));
    }
}
