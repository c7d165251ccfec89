//! YAML objects to [`Json`] with `json.dumps` rules: tuples are arrays; bytes, dates, sets and
//! odd keys become deferred `TypeError`s; a container inside itself is a "Circular reference".

use super::timestamp::Timestamp;
use super::value::{Obj, ObjId, Value};
use crate::py::json::Json;
use crate::py::{PyError, PyExc};

/// Past this many converted values we stop: the document expands exponentially through aliases,
/// where Python would run out of memory.
const MAX_VALUES: usize = 1_000_000;

pub fn to_json(obj: Obj<'_>) -> Json {
    let mut budget = MAX_VALUES;
    convert(obj, &mut Vec::new(), &mut budget)
}

fn not_serializable(obj: Obj<'_>) -> Json {
    Json::Fail(PyError::type_error(format!(
        "Object of type {} is not JSON serializable",
        obj.type_name()
    )))
}

fn convert(obj: Obj<'_>, ancestors: &mut Vec<ObjId>, budget: &mut usize) -> Json {
    if *budget == 0 {
        return Json::Fail(PyError::new(
            PyExc::RecursionError,
            "document too large to encode",
        ));
    }
    *budget -= 1;
    let value = obj.value();
    let container = matches!(value, Value::List(_) | Value::Tuple(_) | Value::Dict(_));
    if container && ancestors.contains(&obj.id()) {
        return Json::Fail(PyError::value("Circular reference detected"));
    }
    match value {
        Value::None => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::Int(i.clone()),
        Value::Float(f) => Json::Float(*f),
        Value::Str(s) => Json::Str(s.clone()),
        Value::Bytes(_) | Value::Timestamp(_) | Value::Set(_) => not_serializable(obj),
        Value::List(_) | Value::Tuple(_) => {
            ancestors.push(obj.id());
            let items = obj
                .elements()
                .into_iter()
                .map(|item| convert(item, ancestors, budget))
                .collect();
            ancestors.pop();
            Json::Array(items)
        }
        Value::Dict(_) => {
            ancestors.push(obj.id());
            let entries = obj
                .entries()
                .into_iter()
                .map(|(k, v)| (key(k), convert(v, ancestors, budget)))
                .collect();
            ancestors.pop();
            Json::Object(entries)
        }
    }
}

/// Dict keys `json.dumps` accepts: str, int, float, bool, None. Its error names the C type,
/// so dates are `datetime.date`.
fn key(obj: Obj<'_>) -> Json {
    match obj.value() {
        Value::None => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::Int(i.clone()),
        Value::Float(f) => Json::Float(*f),
        Value::Str(s) => Json::Str(s.clone()),
        _ => {
            let type_name = match obj.value() {
                Value::Timestamp(Timestamp::Date(_)) => "datetime.date",
                Value::Timestamp(Timestamp::DateTime(_)) => "datetime.datetime",
                _ => obj.type_name(),
            };
            Json::Fail(PyError::type_error(format!(
                "keys must be str, int, float, bool or None, not {type_name}"
            )))
        }
    }
}
