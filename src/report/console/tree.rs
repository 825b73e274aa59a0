//! Links the spans of one trace into display rows: parents before children, siblings by start
//! time, orphans grouped under the parent they are missing.

use std::collections::HashMap;

use crate::context::SpanId;
use crate::span::SpanRecord;

/// What a row shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    /// The span at this index of the trace's spans.
    Span(usize),
    /// A parent that is not among the spans; its orphans follow one level deeper.
    Missing(SpanId),
}

/// One line of the tree (events are written under their span's row).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Row {
    pub(crate) node: Node,
    /// 0 for the tops of the trace and the missing parents.
    pub(crate) depth: usize,
    /// The last of its siblings (draws `└─` rather than `├─`).
    pub(crate) last: bool,
    pub(crate) has_children: bool,
}

/// The rows of one trace, in print order.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    pub(crate) rows: Vec<Row>,
    /// Spans whose parent is not among the spans and not remote.
    pub(crate) orphans: usize,
    /// The span the header names: the true root, else the earliest local root (a span with
    /// a remote parent), else the earliest orphan.
    pub(crate) top: Option<usize>,
    /// A true root or a local root is among the spans.
    pub(crate) rooted: bool,
}

/// Builds the rows.
///
/// The tops of the tree are the true roots (no parent) and the local roots (a remote
/// parent that is not among the spans), by start time. Spans whose local parent is missing
/// come next, grouped under a [`Node::Missing`] row per missing parent. Children follow
/// their parent by start time (arrival order breaks ties). A parent cycle, which only broken
/// input can produce, is cut and shown as orphans. The walk is iterative: depth costs no
/// stack.
pub(crate) fn build(spans: &[SpanRecord]) -> Tree {
    let n = spans.len();
    let mut index: HashMap<SpanId, usize> = HashMap::with_capacity(n);
    for (i, span) in spans.iter().enumerate() {
        index.entry(span.span_id()).or_insert(i);
    }
    let parent: Vec<Option<usize>> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.is_root() {
                None
            } else {
                index.get(&s.parent_span_id).copied().filter(|&p| p != i)
            }
        })
        .collect();

    // Children as one flat array, `offsets[p]..offsets[p + 1]` per parent.
    let mut offsets = vec![0usize; n + 1];
    for p in parent.iter().flatten() {
        offsets[p + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut cursor = offsets.clone();
    let mut children = vec![0usize; offsets[n]];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = *p {
            children[cursor[p]] = i;
            cursor[p] += 1;
        }
    }
    for p in 0..n {
        let kids = &mut children[offsets[p]..offsets[p + 1]];
        if kids.len() > 1 {
            // Stable: equal start times keep arrival order.
            kids.sort_by_key(|&c| spans[c].start_time);
        }
    }

    let mut tops = Vec::new();
    let mut groups: Vec<(SpanId, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<SpanId, usize> = HashMap::new();
    for (i, span) in spans.iter().enumerate() {
        if parent[i].is_some() {
            continue;
        }
        if span.is_root() || span.parent_is_remote {
            tops.push(i);
        } else {
            let g = *group_of.entry(span.parent_span_id).or_insert_with(|| {
                groups.push((span.parent_span_id, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i);
        }
    }
    tops.sort_by_key(|&i| spans[i].start_time);
    for (_, members) in &mut groups {
        members.sort_by_key(|&i| spans[i].start_time);
    }
    // Members are sorted, so the first starts earliest.
    groups.sort_by_key(|(_, members)| members.first().map(|&i| spans[i].start_time));

    let mut tree = Tree {
        rows: Vec::with_capacity(n + groups.len()),
        orphans: groups.iter().map(|(_, m)| m.len()).sum(),
        top: tops
            .iter()
            .copied()
            .find(|&i| spans[i].is_root())
            .or_else(|| tops.first().copied())
            .or_else(|| groups.first().and_then(|(_, m)| m.first().copied())),
        rooted: !tops.is_empty(),
    };
    let mut visited = vec![false; n];
    let mut stack = Vec::new();
    let mut walk = |tree: &mut Tree, visited: &mut [bool], top: usize, depth: usize, last: bool| {
        stack.push((top, depth, last));
        while let Some((i, depth, last)) = stack.pop() {
            if std::mem::replace(&mut visited[i], true) {
                continue;
            }
            let kids = &children[offsets[i]..offsets[i + 1]];
            tree.rows.push(Row {
                node: Node::Span(i),
                depth,
                last,
                has_children: !kids.is_empty(),
            });
            for (k, &c) in kids.iter().enumerate().rev() {
                stack.push((c, depth + 1, k + 1 == kids.len()));
            }
        }
    };
    for &top in &tops {
        walk(&mut tree, &mut visited, top, 0, true);
    }
    for (missing, members) in &groups {
        tree.rows.push(Row {
            node: Node::Missing(*missing),
            depth: 0,
            last: true,
            has_children: true,
        });
        for (k, &m) in members.iter().enumerate() {
            walk(&mut tree, &mut visited, m, 1, k + 1 == members.len());
        }
    }
    // Whatever is left sits on a parent cycle: cut it where it was first seen.
    for i in 0..n {
        if !visited[i] {
            tree.orphans += 1;
            tree.top = tree.top.or(Some(i));
            tree.rows.push(Row {
                node: Node::Missing(spans[i].parent_span_id),
                depth: 0,
                last: true,
                has_children: true,
            });
            walk(&mut tree, &mut visited, i, 1, true);
        }
    }
    tree
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn span(id: u64, parent: u64, start_ms: u64) -> SpanRecord {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        SpanRecord {
            start_time: t0 + Duration::from_millis(start_ms),
            end_time: t0 + Duration::from_millis(start_ms + 1),
            ..SpanRecord::for_test(1, id, parent)
        }
    }

    fn shape(spans: &[SpanRecord]) -> Vec<String> {
        build(spans)
            .rows
            .iter()
            .map(|r| {
                let what = match r.node {
                    Node::Span(i) => spans[i].name.to_string(),
                    Node::Missing(id) => format!("?{id}"),
                };
                format!(
                    "{}{what}{}",
                    "  ".repeat(r.depth),
                    if r.last { "." } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn children_follow_parents_by_start_time_whatever_the_arrival_order() {
        let spans = [span(3, 1, 5), span(2, 1, 2), span(4, 2, 3), span(1, 0, 0)];
        assert_eq!(shape(&spans), ["s1.", "  s2", "    s4.", "  s3."]);
        let tree = build(&spans);
        assert_eq!(tree.top, Some(3));
        assert!(tree.rooted);
        assert_eq!(tree.orphans, 0);
    }

    #[test]
    fn orphans_group_under_their_missing_parent() {
        let spans = [span(1, 0, 0), span(5, 9, 4), span(6, 9, 2), span(7, 8, 1)];
        assert_eq!(
            shape(&spans),
            [
                "s1.",
                "?0000000000000008.",
                "  s7.",
                "?0000000000000009.",
                "  s6",
                "  s5."
            ]
        );
        assert_eq!(build(&spans).orphans, 3);
    }

    #[test]
    fn a_remote_parent_makes_a_local_root() {
        let mut local = span(2, 7, 1);
        local.parent_is_remote = true;
        let spans = [span(3, 2, 2), local];
        assert_eq!(shape(&spans), ["s2.", "  s3."]);
        let tree = build(&spans);
        assert_eq!(tree.top, Some(1));
        assert!(tree.rooted);
    }

    #[test]
    fn parent_cycles_are_cut_and_shown_as_orphans() {
        let spans = [span(1, 2, 0), span(2, 1, 1), span(3, 3, 2)];
        let rows = shape(&spans);
        assert_eq!(rows.len(), 5, "{rows:?}");
        let tree = build(&spans);
        assert_eq!(tree.orphans, 2);
        assert!(!tree.rooted);
        assert!(tree.top.is_some());
    }

    #[test]
    fn deep_chains_do_not_recurse() {
        let spans: Vec<_> = (1..=100_000u64).map(|i| span(i, i - 1, i)).collect();
        let tree = build(&spans);
        assert_eq!(tree.rows.len(), 100_000);
        assert_eq!(tree.rows[99_999].depth, 99_999);
    }
}
