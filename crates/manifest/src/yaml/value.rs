//! The Python objects `yaml.safe_load` builds, kept in an arena so that shared and recursive
//! structures (anchors and aliases) stay shared, as they are in Python.

use num_bigint::BigInt;

use super::timestamp::Timestamp;
use crate::py::num::float_repr;

pub type ObjId = usize;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(BigInt),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Timestamp(Timestamp),
    List(Vec<ObjId>),
    /// A `(key, value)` pair inside a `!!omap` or `!!pairs` list.
    Tuple(Vec<ObjId>),
    /// A dict: insertion order, one entry per equal key (the first key, the last value).
    Dict(Vec<(ObjId, ObjId)>),
    Set(Vec<ObjId>),
}

/// A loaded YAML document: the object arena and the root (`None` for an empty document).
#[derive(Debug, Clone)]
pub struct Doc {
    pub(crate) objects: Vec<Value>,
    pub(crate) root: ObjId,
}

impl Doc {
    pub fn root(&self) -> Obj<'_> {
        Obj {
            doc: self,
            id: self.root,
        }
    }

    pub fn obj(&self, id: ObjId) -> Obj<'_> {
        Obj { doc: self, id }
    }
}

/// A reference to one object of a [`Doc`], with the Python operations the parser needs.
#[derive(Clone, Copy)]
pub struct Obj<'a> {
    doc: &'a Doc,
    id: ObjId,
}

impl std::fmt::Debug for Obj<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Obj({:?})", self.value())
    }
}

/// A Python `int`, which includes `bool` (`True` is `1`): the reference accepts YAML `true`
/// where it wants an integer and prints it back as `true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PyInt {
    Bool(bool),
    Int(BigInt),
}

impl PyInt {
    pub fn value(&self) -> BigInt {
        match self {
            PyInt::Bool(b) => BigInt::from(u8::from(*b)),
            PyInt::Int(i) => i.clone(),
        }
    }

    /// The value when it fits an `i64` (ports, sizes and timeouts always do in practice).
    pub fn to_i64(&self) -> Option<i64> {
        i64::try_from(self.value()).ok()
    }
}

impl From<i64> for PyInt {
    fn from(v: i64) -> Self {
        PyInt::Int(BigInt::from(v))
    }
}

impl<'a> Obj<'a> {
    pub fn id(&self) -> ObjId {
        self.id
    }

    pub fn doc(&self) -> &'a Doc {
        self.doc
    }

    pub fn value(&self) -> &'a Value {
        &self.doc.objects[self.id]
    }

    /// `type(x).__name__`.
    pub fn type_name(&self) -> &'static str {
        match self.value() {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Timestamp(Timestamp::Date(_)) => "date",
            Value::Timestamp(Timestamp::DateTime(_)) => "datetime",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
        }
    }

    pub fn is_none(&self) -> bool {
        matches!(self.value(), Value::None)
    }

    /// Python truthiness (`bool(x)`).
    pub fn truthy(&self) -> bool {
        match self.value() {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => i != &BigInt::from(0),
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Bytes(b) => !b.is_empty(),
            Value::Timestamp(_) => true,
            Value::List(v) | Value::Tuple(v) | Value::Set(v) => !v.is_empty(),
            Value::Dict(d) => !d.is_empty(),
        }
    }

    pub fn as_str(&self) -> Option<&'a str> {
        match self.value() {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// `isinstance(x, int)`, which is true for booleans too.
    pub fn as_int(&self) -> Option<PyInt> {
        match self.value() {
            Value::Bool(b) => Some(PyInt::Bool(*b)),
            Value::Int(i) => Some(PyInt::Int(i.clone())),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value() {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn is_dict(&self) -> bool {
        matches!(self.value(), Value::Dict(_))
    }

    /// `isinstance(x, Sequence) and not isinstance(x, (str, bytes))`: a list or a tuple.
    pub fn is_list_like(&self) -> bool {
        matches!(self.value(), Value::List(_) | Value::Tuple(_))
    }

    /// The items of a list or tuple.
    pub fn elements(&self) -> Vec<Obj<'a>> {
        match self.value() {
            Value::List(v) | Value::Tuple(v) => v.iter().map(|&id| self.doc.obj(id)).collect(),
            _ => Vec::new(),
        }
    }

    /// The `(key, value)` entries of a dict, in order.
    pub fn entries(&self) -> Vec<(Obj<'a>, Obj<'a>)> {
        match self.value() {
            Value::Dict(d) => d
                .iter()
                .map(|&(k, v)| (self.doc.obj(k), self.doc.obj(v)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `d.get(key)` for a string key; `None` when absent (a YAML `null` is `Some(None-object)`).
    pub fn get(&self, key: &str) -> Option<Obj<'a>> {
        match self.value() {
            Value::Dict(d) => d
                .iter()
                .find(|&&(k, _)| matches!(&self.doc.objects[k], Value::Str(s) if s == key))
                .map(|&(_, v)| self.doc.obj(v)),
            _ => None,
        }
    }

    /// `d.get(key)` where an absent key and `null` both mean "not set".
    pub fn get_some(&self, key: &str) -> Option<Obj<'a>> {
        self.get(key).filter(|v| !v.is_none())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

/// A dict key reduced to what Python's `__eq__`/`__hash__` compare: `1`, `1.0` and `True` are the
/// same key; NaN only equals itself (the same object).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum KeyRepr {
    None,
    Number(BigInt),
    Float(u64),
    NaN(ObjId),
    Str(String),
    Bytes(Vec<u8>),
    Date(super::timestamp::Date),
    NaiveDateTime(super::timestamp::DateTime),
    AwareDateTime(i128),
    /// Only reachable for unhashable keys, which the constructor refuses first.
    Identity(ObjId),
}

pub(crate) fn key_repr(value: &Value, id: ObjId) -> KeyRepr {
    match value {
        Value::None => KeyRepr::None,
        Value::Bool(b) => KeyRepr::Number(BigInt::from(u8::from(*b))),
        Value::Int(i) => KeyRepr::Number(i.clone()),
        Value::Float(f) if f.is_nan() => KeyRepr::NaN(id),
        Value::Float(f) if f.is_finite() && f.fract() == 0.0 => {
            // An integral float equals the int of the same value.
            let text = format!("{f:.0}");
            text.parse::<BigInt>()
                .map(KeyRepr::Number)
                .unwrap_or_else(|_| KeyRepr::Str(float_repr(*f)))
        }
        Value::Float(f) => KeyRepr::Float(f.to_bits()),
        Value::Str(s) => KeyRepr::Str(s.clone()),
        Value::Bytes(b) => KeyRepr::Bytes(b.clone()),
        Value::Timestamp(Timestamp::Date(d)) => KeyRepr::Date(*d),
        Value::Timestamp(Timestamp::DateTime(dt)) => match dt.offset_minutes {
            None => KeyRepr::NaiveDateTime(*dt),
            Some(_) => KeyRepr::AwareDateTime(dt.utc_micros()),
        },
        Value::List(_) | Value::Tuple(_) | Value::Dict(_) | Value::Set(_) => KeyRepr::Identity(id),
    }
}

/// Whether a value can be a dict key or set member (`collections.abc.Hashable`).
pub(crate) fn is_hashable(value: &Value) -> bool {
    !matches!(value, Value::List(_) | Value::Dict(_) | Value::Set(_))
}
