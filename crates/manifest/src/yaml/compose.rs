//! Events from `saphyr-parser` to a node graph, like PyYAML's `Composer`: one document only,
//! anchors shared (aliases point at the same node, cycles allowed), duplicate anchors refused,
//! and every tag resolved with the YAML 1.1 rules of `resolve`.

use std::collections::HashSet;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::resolve::{resolve_scalar, MAP_TAG, SEQ_TAG, STR_TAG};
use super::LoadError;

pub type NodeId = usize;

#[derive(Debug, Clone)]
pub enum NodeKind {
    Scalar(String),
    Seq(Vec<NodeId>),
    Map(Vec<(NodeId, NodeId)>),
}

#[derive(Debug, Clone)]
pub struct Node {
    /// The resolved tag, e.g. `tag:yaml.org,2002:int` or a local `!foo`.
    pub tag: String,
    pub kind: NodeKind,
}

impl Node {
    /// PyYAML's `node.id`, used in its error messages.
    pub fn id_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Scalar(_) => "scalar",
            NodeKind::Seq(_) => "sequence",
            NodeKind::Map(_) => "mapping",
        }
    }
}

/// The composed document: `root` is `None` for an empty stream.
pub struct Composed {
    pub nodes: Vec<Node>,
    pub root: Option<NodeId>,
}

/// How deep PyYAML's recursive composer gets before Python's recursion limit stops it, when
/// called from the reference CLI.
const MAX_DEPTH: usize = 490;

struct Frame {
    node: NodeId,
    pending_key: Option<NodeId>,
}

pub fn compose(src: &str) -> Result<Composed, LoadError> {
    let chars: Vec<char> = src.chars().collect();
    let mut nodes: Vec<Node> = Vec::new();
    // Anchor names of the current document, by saphyr's anchor id and by name.
    let mut by_id: Vec<Option<NodeId>> = Vec::new();
    let mut by_name: HashSet<String> = HashSet::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<NodeId> = None;
    let mut documents = 0;
    // Where scalars are in the source, and whether they are plain, for the tab check.
    let mut scalar_spans: Vec<(usize, usize, bool)> = Vec::new();

    for item in Parser::new_from_str(src) {
        let (event, span) = item.map_err(|e| LoadError::Syntax(e.to_string()))?;
        let new_node = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => continue,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(LoadError::Syntax(
                        "expected a single document in the stream but found another document"
                            .into(),
                    ));
                }
                continue;
            }
            Event::Alias(id) => {
                check_alias_name(&chars, span)?;
                let target = by_id
                    .get(id)
                    .copied()
                    .flatten()
                    .ok_or_else(|| LoadError::Syntax("found undefined alias".into()))?;
                attach(&mut stack, &mut nodes, &mut root, target);
                continue;
            }
            Event::Scalar(value, style, anchor, tag) => {
                scalar_spans.push(scalar_span(&chars, span, style));
                let empty_at_colon = value.is_empty()
                    && style == ScalarStyle::Plain
                    && tag.is_none()
                    && anchor == 0
                    && chars.get(span.start.index()) == Some(&':');
                if empty_at_colon
                    && expects_key(&stack, &nodes)
                    && !explicit_key(&chars, span.start.index())
                {
                    return Err(LoadError::Syntax(
                        "while parsing a mapping: expected a key, but found ':'".into(),
                    ));
                }
                let tag = scalar_tag(&value, style, tag.as_deref());
                let id = push(
                    &mut nodes,
                    Node {
                        tag,
                        kind: NodeKind::Scalar(value.into_owned()),
                    },
                );
                register_anchor(&chars, span, anchor, id, &mut by_id, &mut by_name)?;
                attach(&mut stack, &mut nodes, &mut root, id);
                continue;
            }
            Event::SequenceStart(anchor, tag) => {
                let tag = collection_tag(tag.as_deref(), SEQ_TAG);
                let id = push(
                    &mut nodes,
                    Node {
                        tag,
                        kind: NodeKind::Seq(Vec::new()),
                    },
                );
                register_anchor(&chars, span, anchor, id, &mut by_id, &mut by_name)?;
                id
            }
            Event::MappingStart(anchor, tag) => {
                let tag = collection_tag(tag.as_deref(), MAP_TAG);
                let id = push(
                    &mut nodes,
                    Node {
                        tag,
                        kind: NodeKind::Map(Vec::new()),
                    },
                );
                register_anchor(&chars, span, anchor, id, &mut by_id, &mut by_name)?;
                id
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(frame) = stack.pop() {
                    attach(&mut stack, &mut nodes, &mut root, frame.node);
                }
                continue;
            }
        };
        // A collection opens: it is attached to its parent when it closes, like PyYAML, which
        // appends a child only after composing it.
        if stack.len() >= MAX_DEPTH {
            return Err(LoadError::recursion());
        }
        stack.push(Frame {
            node: new_node,
            pending_key: None,
        });
    }
    check_tabs(&chars, &scalar_spans)?;
    Ok(Composed { nodes, root })
}

/// PyYAML only skips spaces between tokens and ends plain scalars at a tab, so a tab is an
/// error anywhere except inside quoted or block scalars and comments. YAML 1.2 parsers accept
/// tabs as separators; this check restores PyYAML's refusal.
fn check_tabs(chars: &[char], scalars: &[(usize, usize, bool)]) -> Result<(), LoadError> {
    let mut spans = scalars.iter().peekable();
    let mut i = 0;
    while i < chars.len() {
        while spans.peek().is_some_and(|&&(_, end, _)| end <= i) {
            spans.next();
        }
        let inside = spans
            .peek()
            .filter(|&&&(start, end, _)| start <= i && i < end);
        match (inside, chars[i]) {
            (Some(&&(_, _, plain)), '\t') if plain => return Err(tab_error()),
            (Some(_), _) => {}
            (None, '#') if i == 0 || matches!(chars[i - 1], ' ' | '\t' | '\n' | '\r') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            (None, '\t') => return Err(tab_error()),
            (None, _) => {}
        }
        i += 1;
    }
    Ok(())
}

/// A scalar's extent in the source. saphyr's span of a quoted scalar runs on over trailing
/// blanks, which are not part of it: it ends at its closing quote.
fn scalar_span(chars: &[char], span: Span, style: ScalarStyle) -> (usize, usize, bool) {
    let (start, mut end) = (span.start.index(), span.end.index().min(chars.len()));
    if matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted) {
        while end > start && matches!(chars[end - 1], ' ' | '\t') {
            end -= 1;
        }
    }
    (start, end, style == ScalarStyle::Plain)
}

fn tab_error() -> LoadError {
    LoadError::Syntax("found character '\\t' that cannot start any token".into())
}

/// Whether the next node completes a mapping key (rather than a value or an item).
fn expects_key(stack: &[Frame], nodes: &[Node]) -> bool {
    stack
        .last()
        .is_some_and(|f| matches!(nodes[f.node].kind, NodeKind::Map(_)) && f.pending_key.is_none())
}

/// Whether an empty key at `colon` was introduced by a `?` indicator. YAML 1.2 allows an
/// implicit empty key (`: value`); PyYAML only accepts an empty key after `?`.
fn explicit_key(chars: &[char], colon: usize) -> bool {
    let before: String = chars[..colon].iter().collect();
    for line in before.rsplit('\n') {
        // Drop a trailing comment (a `#` after a blank) and blanks.
        let code = match line
            .char_indices()
            .find(|&(i, c)| c == '#' && (i == 0 || line[..i].ends_with([' ', '\t'])))
        {
            Some((i, _)) => &line[..i],
            None => line,
        };
        let code = code.trim_end_matches([' ', '\t', '\r']);
        if code.is_empty() {
            continue;
        }
        let Some(rest) = code.strip_suffix('?') else {
            return false;
        };
        return rest.is_empty() || rest.ends_with([' ', '\t', '[', '{', ',']);
    }
    false
}

fn push(nodes: &mut Vec<Node>, node: Node) -> NodeId {
    nodes.push(node);
    nodes.len() - 1
}

/// Adds a finished node to the open collection, or makes it the document root.
fn attach(stack: &mut [Frame], nodes: &mut [Node], root: &mut Option<NodeId>, child: NodeId) {
    let Some(frame) = stack.last_mut() else {
        *root = Some(child);
        return;
    };
    match &mut nodes[frame.node].kind {
        NodeKind::Seq(items) => items.push(child),
        NodeKind::Map(pairs) => match frame.pending_key.take() {
            None => frame.pending_key = Some(child),
            Some(key) => pairs.push((key, child)),
        },
        NodeKind::Scalar(_) => {}
    }
}

fn full_tag(tag: &Tag) -> String {
    format!("{}{}", tag.handle, tag.suffix)
}

/// PyYAML resolves a plain untagged scalar, or any scalar tagged with the bare `!`, with the
/// implicit YAML 1.1 rules; other untagged scalars are strings.
fn scalar_tag(value: &str, style: ScalarStyle, tag: Option<&Tag>) -> String {
    match tag.map(full_tag) {
        Some(t) if t == "!" => resolve_scalar(value).to_string(),
        Some(t) => t,
        None if style == ScalarStyle::Plain => resolve_scalar(value).to_string(),
        None => STR_TAG.to_string(),
    }
}

fn collection_tag(tag: Option<&Tag>, default: &str) -> String {
    match tag.map(full_tag) {
        Some(t) if t != "!" => t,
        _ => default.to_string(),
    }
}

/// The anchor name at the start of a node's properties (`&name`, possibly after a tag).
fn anchor_name(chars: &[char], span: Span) -> Option<String> {
    let mut i = span.start.index();
    while let Some(&c) = chars.get(i) {
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '!' => {
                while chars.get(i).is_some_and(|c| !c.is_whitespace()) {
                    i += 1;
                }
            }
            '&' => {
                let name: String = chars[i + 1..]
                    .iter()
                    .take_while(|c| !c.is_whitespace() && !",[]{}".contains(**c))
                    .collect();
                return Some(name);
            }
            _ => return None,
        }
    }
    None
}

/// PyYAML only accepts ASCII letters, digits, `-` and `_` in anchor and alias names.
fn check_name(name: &str) -> Result<(), LoadError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(LoadError::Syntax(format!(
            "while scanning an anchor or alias: expected alphabetic or numeric character in {name:?}"
        )));
    }
    Ok(())
}

fn check_alias_name(chars: &[char], span: Span) -> Result<(), LoadError> {
    let start = span.start.index();
    if chars.get(start) == Some(&'*') {
        let name: String = chars[start + 1..]
            .iter()
            .take_while(|c| !c.is_whitespace() && !",[]{}".contains(**c))
            .collect();
        check_name(&name)?;
    }
    Ok(())
}

fn register_anchor(
    chars: &[char],
    span: Span,
    anchor: usize,
    node: NodeId,
    by_id: &mut Vec<Option<NodeId>>,
    by_name: &mut HashSet<String>,
) -> Result<(), LoadError> {
    if anchor == 0 {
        return Ok(());
    }
    if by_id.len() <= anchor {
        by_id.resize(anchor + 1, None);
    }
    by_id[anchor] = Some(node);
    if let Some(name) = anchor_name(chars, span) {
        check_name(&name)?;
        if by_name.contains(&name) {
            return Err(LoadError::Syntax(format!(
                "found duplicate anchor {name:?}"
            )));
        }
        by_name.insert(name);
    }
    Ok(())
}
