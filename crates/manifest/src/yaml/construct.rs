//! Nodes to Python objects, like PyYAML's `SafeConstructor`: the same tags, merge keys (`<<`),
//! duplicate keys (the last value wins), and the same errors. Collections are filled in
//! breadth-first order, as PyYAML's deferred generators do, so the first failing value is the
//! one Python would hit first.

use std::collections::{HashMap, HashSet, VecDeque};

use num_bigint::BigInt;
use num_traits::ToPrimitive;

use super::compose::{Composed, Node, NodeId, NodeKind};
use super::resolve::{
    BOOL_TAG, FLOAT_TAG, INT_TAG, MAP_TAG, MERGE_TAG, NULL_TAG, SEQ_TAG, STR_TAG, TIMESTAMP_TAG,
    VALUE_TAG,
};
use super::timestamp;
use super::value::{is_hashable, key_repr, Doc, KeyRepr, ObjId, Value};
use super::LoadError;
use crate::py::num::{parse_float, parse_int};
use crate::py::text::repr_str;
use crate::py::{PyError, PyExc};

const BINARY_TAG: &str = "tag:yaml.org,2002:binary";
const OMAP_TAG: &str = "tag:yaml.org,2002:omap";
const PAIRS_TAG: &str = "tag:yaml.org,2002:pairs";
const SET_TAG: &str = "tag:yaml.org,2002:set";

/// Deeper merge chains than this overflow Python's recursion limit.
const MAX_MERGE_DEPTH: usize = 900;
/// Merge keys can copy pairs exponentially ("billion laughs"); Python would exhaust memory.
const MAX_MERGED_PAIRS: usize = 1_000_000;

pub fn construct(composed: Composed) -> Result<Doc, LoadError> {
    let Composed { nodes, root } = composed;
    let mut c = Constructor {
        built: vec![None; nodes.len()],
        nodes,
        objects: Vec::new(),
        queue: VecDeque::new(),
        merged_pairs: 0,
        shared_nan: None,
    };
    let root = match root {
        Some(node) => c.object(node)?,
        None => c.new_object(Value::None),
    };
    while let Some((node, obj)) = c.queue.pop_front() {
        c.fill(node, obj)?;
    }
    Ok(Doc {
        objects: c.objects,
        root,
    })
}

struct Constructor {
    nodes: Vec<Node>,
    objects: Vec<Value>,
    built: Vec<Option<ObjId>>,
    /// Collections created but not filled yet (PyYAML's `state_generators`).
    queue: VecDeque<(NodeId, ObjId)>,
    merged_pairs: usize,
    shared_nan: Option<ObjId>,
}

fn syntax(message: impl Into<String>) -> LoadError {
    LoadError::Syntax(message.into())
}

impl Constructor {
    fn new_object(&mut self, value: Value) -> ObjId {
        self.objects.push(value);
        self.objects.len() - 1
    }

    /// `construct_object`: one object per node, built once.
    fn object(&mut self, node: NodeId) -> Result<ObjId, LoadError> {
        if let Some(obj) = self.built[node] {
            return Ok(obj);
        }
        let tag = self.nodes[node].tag.clone();
        let value = match tag.as_str() {
            SEQ_TAG | OMAP_TAG | PAIRS_TAG => return Ok(self.defer(node, Value::List(Vec::new()))),
            MAP_TAG => return Ok(self.defer(node, Value::Dict(Vec::new()))),
            SET_TAG => return Ok(self.defer(node, Value::Set(Vec::new()))),
            NULL_TAG => {
                self.scalar(node, 0)?;
                Value::None
            }
            STR_TAG => Value::Str(self.scalar(node, 0)?),
            BOOL_TAG => construct_bool(&self.scalar(node, 0)?)?,
            INT_TAG => Value::Int(construct_int(&self.scalar(node, 0)?)?),
            FLOAT_TAG => match construct_float(&self.scalar(node, 0)?)? {
                // PyYAML returns one shared `nan_value` object for `.nan`: as dict keys, all
                // these NaNs are the same key.
                Float::SharedNan => {
                    let obj = *self.shared_nan.get_or_insert_with(|| {
                        self.objects.push(Value::Float(f64::NAN));
                        self.objects.len() - 1
                    });
                    self.built[node] = Some(obj);
                    return Ok(obj);
                }
                Float::Value(f) => Value::Float(f),
            },
            BINARY_TAG => Value::Bytes(construct_binary(&self.scalar(node, 0)?)?),
            TIMESTAMP_TAG => {
                let text = self.scalar(node, 0)?;
                if !matches!(self.nodes[node].kind, NodeKind::Scalar(_)) {
                    return Err(LoadError::Py(PyError::type_error(
                        "expected string or bytes-like object, got 'list'",
                    )));
                }
                Value::Timestamp(timestamp::construct(&text).map_err(LoadError::Py)?)
            }
            other => {
                return Err(syntax(format!(
                    "could not determine a constructor for the tag {}",
                    repr_str(other)
                )))
            }
        };
        let obj = self.new_object(value);
        self.built[node] = Some(obj);
        Ok(obj)
    }

    fn defer(&mut self, node: NodeId, empty: Value) -> ObjId {
        let obj = self.new_object(empty);
        self.built[node] = Some(obj);
        self.queue.push_back((node, obj));
        obj
    }

    /// `SafeConstructor.construct_scalar`: a scalar's text, or for a mapping the value of its
    /// `=` key.
    fn scalar(&self, node: NodeId, depth: usize) -> Result<String, LoadError> {
        if depth > MAX_MERGE_DEPTH {
            return Err(LoadError::recursion());
        }
        let n = &self.nodes[node];
        match &n.kind {
            NodeKind::Scalar(text) => Ok(text.clone()),
            NodeKind::Map(pairs) => {
                if let Some(&(_, v)) = pairs.iter().find(|(k, _)| self.nodes[*k].tag == VALUE_TAG) {
                    return self.scalar(v, depth + 1);
                }
                Err(syntax(format!(
                    "expected a scalar node, but found {}",
                    n.id_name()
                )))
            }
            NodeKind::Seq(_) => Err(syntax(format!(
                "expected a scalar node, but found {}",
                n.id_name()
            ))),
        }
    }

    /// Resumes a deferred collection: fills the object created for `node`.
    fn fill(&mut self, node: NodeId, obj: ObjId) -> Result<(), LoadError> {
        let tag = self.nodes[node].tag.clone();
        let value = match tag.as_str() {
            SEQ_TAG => {
                let NodeKind::Seq(items) = self.nodes[node].kind.clone() else {
                    return Err(self.expected("a sequence node", node));
                };
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(self.object(item)?);
                }
                Value::List(out)
            }
            MAP_TAG => Value::Dict(self.mapping(node)?),
            SET_TAG => Value::Set(self.mapping(node)?.into_iter().map(|(k, _)| k).collect()),
            _ => Value::List(self.pairs(node, &tag)?),
        };
        self.objects[obj] = value;
        Ok(())
    }

    fn expected(&self, what: &str, node: NodeId) -> LoadError {
        syntax(format!(
            "expected {what}, but found {}",
            self.nodes[node].id_name()
        ))
    }

    /// `construct_yaml_omap` / `construct_yaml_pairs`: a list of one-item mappings to tuples.
    fn pairs(&mut self, node: NodeId, tag: &str) -> Result<Vec<ObjId>, LoadError> {
        let what = if tag == OMAP_TAG {
            "an ordered map"
        } else {
            "pairs"
        };
        let NodeKind::Seq(items) = self.nodes[node].kind.clone() else {
            return Err(syntax(format!(
                "while constructing {what}: expected a sequence, but found {}",
                self.nodes[node].id_name()
            )));
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let NodeKind::Map(pairs) = self.nodes[item].kind.clone() else {
                return Err(syntax(format!(
                    "while constructing {what}: expected a mapping of length 1, but found {}",
                    self.nodes[item].id_name()
                )));
            };
            if pairs.len() != 1 {
                return Err(syntax(format!(
                    "while constructing {what}: expected a single mapping item, but found {} items",
                    pairs.len()
                )));
            }
            let (k, v) = pairs[0];
            let key = self.object(k)?;
            let value = self.object(v)?;
            out.push(self.new_object(Value::Tuple(vec![key, value])));
        }
        Ok(out)
    }

    /// `SafeConstructor.construct_mapping`: merge keys first, then keys must be hashable and
    /// equal keys collapse (first position, last value).
    fn mapping(&mut self, node: NodeId) -> Result<Vec<(ObjId, ObjId)>, LoadError> {
        if matches!(self.nodes[node].kind, NodeKind::Map(_)) {
            self.flatten(node, 0)?;
        }
        let NodeKind::Map(pairs) = self.nodes[node].kind.clone() else {
            return Err(self.expected("a mapping node", node));
        };
        let mut out: Vec<(ObjId, ObjId)> = Vec::with_capacity(pairs.len());
        let mut index: HashMap<KeyRepr, usize> = HashMap::with_capacity(pairs.len());
        for (k, v) in pairs {
            let key = self.object(k)?;
            if !is_hashable(&self.objects[key]) {
                return Err(syntax("while constructing a mapping: found unhashable key"));
            }
            let value = self.object(v)?;
            match index.entry(key_repr(&self.objects[key], key)) {
                std::collections::hash_map::Entry::Occupied(slot) => out[*slot.get()].1 = value,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(out.len());
                    out.push((key, value));
                }
            }
        }
        Ok(out)
    }

    /// `SafeConstructor.flatten_mapping` of PyYAML 6.0.4: replaces `<<` entries by the merged
    /// pairs, which come first (so explicit keys override them); `=` keys become plain strings.
    /// Like PyYAML it edits the node in place and drops each `<<` entry before following it,
    /// which is what makes a mapping that merges itself terminate.
    ///
    /// Merged pairs are taken in document order (`<<: [*a, *b]` lists a's pairs, then b's) and
    /// a pair whose key is the *same object* as an earlier merged key is skipped (6.0.4 keys on
    /// `id(key_node.value)`). Distinct key nodes with equal text are both kept, so the later
    /// mapping wins when the dict is built; see [`MergeKeyIdentity`] for when keys are shared.
    fn flatten(&mut self, node: NodeId, depth: usize) -> Result<(), LoadError> {
        if depth > MAX_MERGE_DEPTH {
            return Err(LoadError::recursion());
        }
        let mut merge: Vec<(NodeId, NodeId)> = Vec::new();
        let mut merged_keys: HashSet<MergeKeyIdentity> = HashSet::new();
        let mut index = 0;
        while let Some((k, v)) = self.pair_at(node, index) {
            if self.nodes[k].tag == MERGE_TAG {
                if let NodeKind::Map(pairs) = &mut self.nodes[node].kind {
                    pairs.remove(index);
                }
                match self.nodes[v].kind.clone() {
                    NodeKind::Map(_) => {
                        self.flatten(v, depth + 1)?;
                        self.merge_new_pairs(v, &mut merge, &mut merged_keys);
                    }
                    NodeKind::Seq(subnodes) => {
                        for sub in subnodes {
                            if !matches!(self.nodes[sub].kind, NodeKind::Map(_)) {
                                return Err(syntax(format!(
                                    "while constructing a mapping: expected a mapping for merging, but found {}",
                                    self.nodes[sub].id_name()
                                )));
                            }
                            self.flatten(sub, depth + 1)?;
                            self.merge_new_pairs(sub, &mut merge, &mut merged_keys);
                        }
                    }
                    NodeKind::Scalar(_) => {
                        return Err(syntax(format!(
                            "while constructing a mapping: expected a mapping or list of mappings for merging, but found {}",
                            self.nodes[v].id_name()
                        )))
                    }
                }
                self.merged_pairs += merge.len();
                if self.merged_pairs > MAX_MERGED_PAIRS {
                    return Err(syntax("too many merged keys"));
                }
            } else {
                if self.nodes[k].tag == VALUE_TAG {
                    self.nodes[k].tag = STR_TAG.to_string();
                }
                index += 1;
            }
        }
        if !merge.is_empty() {
            merge.extend(self.map_pairs(node));
            self.nodes[node].kind = NodeKind::Map(merge);
        }
        Ok(())
    }

    /// Appends the pairs of a (flattened) mapping to `merge`, skipping keys already merged.
    fn merge_new_pairs(
        &self,
        source: NodeId,
        merge: &mut Vec<(NodeId, NodeId)>,
        merged_keys: &mut HashSet<MergeKeyIdentity>,
    ) {
        for (k, v) in self.map_pairs(source) {
            if merged_keys.insert(MergeKeyIdentity::of(&self.nodes[k], k)) {
                merge.push((k, v));
            }
        }
    }

    fn pair_at(&self, node: NodeId, index: usize) -> Option<(NodeId, NodeId)> {
        match &self.nodes[node].kind {
            NodeKind::Map(pairs) => pairs.get(index).copied(),
            _ => None,
        }
    }

    fn map_pairs(&self, node: NodeId) -> Vec<(NodeId, NodeId)> {
        match &self.nodes[node].kind {
            NodeKind::Map(pairs) => pairs.clone(),
            _ => Vec::new(),
        }
    }
}

/// What PyYAML 6.0.4's `id(key_node.value)` compares while merging. A key node reached twice
/// (through an alias, or a mapping merged twice) is the same object. So are scalar keys of at
/// most one Latin-1 character, whatever node they come from: CPython caches the empty string
/// and every one-character Latin-1 string, and the scanner's slices return those caches. So
/// `<<: [{a: 1}, {a: 2}]` keeps `a: 1` while `<<: [{ab: 1}, {ab: 2}]` ends with `ab: 2`.
#[derive(Debug, PartialEq, Eq, Hash)]
enum MergeKeyIdentity {
    Node(NodeId),
    CachedStr(String),
}

impl MergeKeyIdentity {
    fn of(node: &Node, id: NodeId) -> Self {
        match &node.kind {
            NodeKind::Scalar(text) if is_cpython_cached_str(text) => Self::CachedStr(text.clone()),
            _ => Self::Node(id),
        }
    }
}

fn is_cpython_cached_str(text: &str) -> bool {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (None, _) => true,
        (Some(c), None) => (c as u32) < 256,
        _ => false,
    }
}

fn index_error() -> LoadError {
    LoadError::Py(PyError::new(PyExc::IndexError, "string index out of range"))
}

fn construct_bool(text: &str) -> Result<Value, LoadError> {
    match text.to_lowercase().as_str() {
        "yes" | "true" | "on" => Ok(Value::Bool(true)),
        "no" | "false" | "off" => Ok(Value::Bool(false)),
        other => Err(LoadError::Py(PyError::new(
            PyExc::KeyError,
            repr_str(other),
        ))),
    }
}

/// Splits a leading sign like PyYAML: `-` negates, `+` is dropped.
fn split_sign(value: &str) -> Result<(bool, &str), LoadError> {
    match value.chars().next() {
        None => Err(index_error()),
        Some('-') => Ok((true, &value[1..])),
        Some('+') => Ok((false, &value[1..])),
        Some(_) => Ok((false, value)),
    }
}

/// `construct_yaml_int`: underscores dropped, `0b`, `0x`, leading-zero octal, `a:b:c` base 60.
fn construct_int(text: &str) -> Result<BigInt, LoadError> {
    let cleaned = text.replace('_', "");
    let (negative, value) = split_sign(&cleaned)?;
    let py = |r: Result<BigInt, PyError>| r.map_err(LoadError::Py);
    let magnitude = if value == "0" {
        BigInt::from(0)
    } else if let Some(bits) = value.strip_prefix("0b") {
        py(parse_int(bits, 2))?
    } else if let Some(hex) = value.strip_prefix("0x") {
        py(parse_int(hex, 16))?
    } else if value.chars().next().ok_or_else(index_error)? == '0' {
        py(parse_int(value, 8))?
    } else if value.contains(':') {
        let mut total = BigInt::from(0);
        let mut base = BigInt::from(1);
        for part in value.split(':').rev() {
            total += py(parse_int(part, 10))? * &base;
            base *= 60;
        }
        total
    } else {
        py(parse_int(value, 10))?
    };
    Ok(if negative { -magnitude } else { magnitude })
}

enum Float {
    Value(f64),
    SharedNan,
}

/// `construct_yaml_float`: lowercased, underscores dropped, `.inf`/`.nan`, `a:b.c` base 60.
fn construct_float(text: &str) -> Result<Float, LoadError> {
    let cleaned = text.replace('_', "").to_lowercase();
    let (negative, value) = split_sign(&cleaned)?;
    let sign = if negative { -1.0 } else { 1.0 };
    let py = |r: Result<f64, PyError>| r.map_err(LoadError::Py);
    if value == ".inf" {
        return Ok(Float::Value(sign * f64::INFINITY));
    }
    if value == ".nan" {
        return Ok(Float::SharedNan);
    }
    if value.contains(':') {
        let mut total = 0.0;
        let mut base = BigInt::from(1);
        for part in value.split(':').rev() {
            total += py(parse_float(part))? * base.to_f64().unwrap_or(f64::INFINITY);
            base *= 60;
        }
        return Ok(Float::Value(sign * total));
    }
    Ok(Float::Value(sign * py(parse_float(value))?))
}

/// `construct_yaml_binary`: `base64.decodebytes`, which skips characters outside the alphabet.
fn construct_binary(text: &str) -> Result<Vec<u8>, LoadError> {
    if !text.is_ascii() {
        return Err(syntax("failed to convert base64 data into ascii"));
    }
    let mut out = Vec::new();
    let (mut quad, mut left, mut pads) = (0u8, 0u32, 0u8);
    for byte in text.bytes() {
        if byte == b'=' {
            if quad >= 2 {
                pads += 1;
                if quad + pads >= 4 {
                    return Ok(out);
                }
            }
            continue;
        }
        let Some(v) = base64_value(byte) else {
            continue;
        };
        pads = 0;
        match quad {
            0 => {
                quad = 1;
                left = v;
            }
            1 => {
                quad = 2;
                out.push(((left << 2) | (v >> 4)) as u8);
                left = v & 0x0f;
            }
            2 => {
                quad = 3;
                out.push(((left << 4) | (v >> 2)) as u8);
                left = v & 0x03;
            }
            _ => {
                quad = 0;
                out.push(((left << 6) | v) as u8);
                left = 0;
            }
        }
    }
    match quad {
        0 => Ok(out),
        _ => Err(syntax("failed to decode base64 data")),
    }
}

fn base64_value(byte: u8) -> Option<u32> {
    let v = match byte {
        b'A'..=b'Z' => byte - b'A',
        b'a'..=b'z' => byte - b'a' + 26,
        b'0'..=b'9' => byte - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}
