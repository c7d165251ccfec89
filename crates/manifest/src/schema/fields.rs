//! The reference's field helpers (`_require_string`, `_optional_int`, ...), on Python values.
//! `Val` is a Python value where `None` stands for Python `None` (absent key or YAML `null`).

use std::sync::LazyLock;

use num_bigint::BigInt;
use regex::Regex;

use super::error::ManifestError;
use crate::py::num::{float_repr, int_to_string};
use crate::py::text::strip;
use crate::yaml::{Obj, PyInt, Value};

pub(crate) type Val<'a> = Option<Obj<'a>>;
type Result<T> = std::result::Result<T, ManifestError>;

/// A present value, with YAML `null` read as Python `None`.
pub(crate) fn some(v: Option<Obj<'_>>) -> Val<'_> {
    v.filter(|o| !o.is_none())
}

/// `value or <empty>`: falsy values (None, empty, zero, "") read as "nothing".
pub(crate) fn or_empty(v: Val<'_>) -> Val<'_> {
    v.filter(Obj::truthy)
}

/// `bool(value)`.
pub(crate) fn truthy(v: Val<'_>) -> bool {
    v.is_some_and(|o| o.truthy())
}

/// `bool(mapping.get(key, default))`: the default applies only when the key is absent.
pub(crate) fn truthy_or(mapping: Obj<'_>, key: &str, default: bool) -> bool {
    match mapping.get(key) {
        None => default,
        Some(v) => v.truthy(),
    }
}

pub(crate) fn require_mapping<'a>(v: Val<'a>, field: &str) -> Result<Obj<'a>> {
    v.filter(Obj::is_dict)
        .ok_or_else(|| ManifestError::NotObject {
            field: field.to_string(),
        })
}

pub(crate) fn require_string(v: Val<'_>, field: &str) -> Result<String> {
    match v.and_then(|o| o.as_str()).map(strip) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(ManifestError::NotString {
            field: field.to_string(),
        }),
    }
}

static ENV_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\A[A-Za-z_][A-Za-z0-9_]*\z").unwrap_or_else(|e| panic!("bad pattern: {e}"))
});

pub(crate) fn is_env_name(name: &str) -> bool {
    ENV_NAME.is_match(name)
}

pub(crate) fn require_env_name(v: Val<'_>, field: &str) -> Result<String> {
    let name = require_string(v, field)?;
    if !is_env_name(&name) {
        return Err(ManifestError::NotEnvName {
            field: field.to_string(),
        });
    }
    Ok(name)
}

pub(crate) fn require_int(v: Val<'_>, field: &str) -> Result<PyInt> {
    v.and_then(|o| o.as_int())
        .ok_or_else(|| ManifestError::NotInteger {
            field: field.to_string(),
        })
}

pub(crate) fn optional_int(v: Val<'_>, field: &str) -> Result<Option<PyInt>> {
    v.map(|o| require_int(Some(o), field)).transpose()
}

/// `_optional_string`: `None` or blank means unset; other types are refused.
pub(crate) fn optional_string(v: Val<'_>, field: &str) -> Result<Option<String>> {
    let Some(obj) = v else { return Ok(None) };
    let s = obj
        .as_str()
        .ok_or_else(|| ManifestError::NotOptionalString {
            field: field.to_string(),
        })?;
    let cleaned = strip(s);
    Ok((!cleaned.is_empty()).then(|| cleaned.to_string()))
}

pub(crate) fn require_bool(v: Val<'_>, field: &str) -> Result<bool> {
    v.and_then(|o| o.as_bool())
        .ok_or_else(|| ManifestError::NotBoolean {
            field: field.to_string(),
        })
}

pub(crate) fn optional_bool(v: Val<'_>, field: &str, default: bool) -> Result<bool> {
    match v {
        None => Ok(default),
        some => require_bool(some, field),
    }
}

/// The items of an array field, or `NotArray` (a string or mapping is not an array).
pub(crate) fn require_list<'a>(v: Val<'a>, field: &str) -> Result<Vec<Obj<'a>>> {
    match v {
        None => Ok(Vec::new()),
        Some(o) if o.is_list_like() => Ok(o.elements()),
        Some(_) => Err(ManifestError::NotArray {
            field: field.to_string(),
        }),
    }
}

/// `_require_string_array`: each item a non-empty string named `<field>[]`.
pub(crate) fn require_string_array(v: Val<'_>, field: &str) -> Result<Vec<String>> {
    let item_field = format!("{field}[]");
    require_list(v, field)?
        .into_iter()
        .map(|item| require_string(Some(item), &item_field))
        .collect()
}

/// `str(x)` of an env value.
fn scalar_text(obj: Obj<'_>) -> Option<std::result::Result<String, crate::py::PyError>> {
    Some(match obj.value() {
        Value::Str(s) => Ok(s.clone()),
        Value::Bool(true) => Ok("True".to_string()),
        Value::Bool(false) => Ok("False".to_string()),
        Value::Int(i) => int_to_string(i),
        Value::Float(f) => Ok(float_repr(*f)),
        _ => return None,
    })
}

/// `_require_string_map` (the `env` block): env-name keys, scalar values turned into text.
/// Keys are trimmed, so two spellings of a name collapse into one entry (the last value wins).
pub(crate) fn require_string_map(v: Val<'_>, field: &str) -> Result<Vec<(String, String)>> {
    let Some(obj) = v else { return Ok(Vec::new()) };
    let mapping = require_mapping(Some(obj), field)?;
    let key_field = format!("{field} key");
    let mut parsed: Vec<(String, String)> = Vec::new();
    for (key, raw) in mapping.entries() {
        let name = require_env_name(Some(key), &key_field)?;
        let text = scalar_text(raw)
            .ok_or_else(|| ManifestError::NotScalar {
                field: format!("{field}.{name}"),
            })?
            .map_err(ManifestError::Python)?;
        match parsed.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = text,
            None => parsed.push((name, text)),
        }
    }
    Ok(parsed)
}

pub(crate) fn validate_positive(v: Option<&PyInt>, field: &str) -> Result<()> {
    if v.is_some_and(|i| i.value() <= BigInt::from(0)) {
        return Err(ManifestError::NotPositive {
            field: field.to_string(),
        });
    }
    Ok(())
}

pub(crate) fn validate_port(v: &PyInt, field: &str) -> Result<()> {
    let value = v.value();
    if value < BigInt::from(1) || value > BigInt::from(65535) {
        return Err(ManifestError::PortRange {
            field: field.to_string(),
        });
    }
    Ok(())
}

/// `_normalize_hosts`: an array of non-empty strings, lowercased, de-duplicated, order kept.
pub(crate) fn normalize_hosts(items: &[Obj<'_>], field: &str) -> Result<Vec<String>> {
    let mut hosts: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, item) in items.iter().enumerate() {
        let host = require_string(Some(*item), &format!("{field}[{index}]"))?.to_lowercase();
        if seen.insert(host.clone()) {
            hosts.push(host);
        }
    }
    Ok(hosts)
}

/// `mapping.get(key, default)` for an int field: the default only when the key is absent.
pub(crate) fn int_or(mapping: Obj<'_>, key: &str, default: i64, field: &str) -> Result<PyInt> {
    match mapping.get(key) {
        None => Ok(PyInt::from(default)),
        Some(v) => require_int(some(Some(v)), field),
    }
}
