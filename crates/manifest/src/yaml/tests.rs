//! `safe_load` against PyYAML results recorded from PyYAML 6.0.4 (the version the locked
//! reference venv holds; see docs/manifest.md).

use super::*;
use crate::py::json::{dumps, Json};

/// Renders a loaded value as Python `repr`-like text for compact assertions.
fn show(obj: Obj<'_>) -> String {
    match obj.value() {
        Value::None => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => crate::py::num::float_repr(*f),
        Value::Str(s) => crate::py::text::repr_str(s),
        Value::Bytes(b) => format!(
            "b{}",
            crate::py::text::repr_str(&String::from_utf8_lossy(b))
        ),
        Value::Timestamp(t) => format!("{t:?}"),
        Value::List(_) | Value::Tuple(_) => {
            let items: Vec<String> = obj.elements().into_iter().map(show).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Set(items) => format!("set({})", items.len()),
        Value::Dict(_) => {
            let items: Vec<String> = obj
                .entries()
                .into_iter()
                .map(|(k, v)| format!("{}: {}", show(k), show(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

fn load(text: &str) -> String {
    match safe_load(text) {
        Ok(doc) => show(doc.root()),
        Err(LoadError::Syntax(_)) => "YAMLError".into(),
        Err(LoadError::Py(e)) => format!("{e}"),
    }
}

#[test]
fn matches_pyyaml_on_recorded_cases() {
    let cases = [
        ("x: [http://a]", "{'x': ['http://a']}"),
        ("x: {a:b}", "{'x': {'a:b': None}}"),
        ("x: 1\n---\ny: 2", "YAMLError"),
        ("", "None"),
        ("# c", "None"),
        ("---", "None"),
        ("x: &a 1\ny: &a 2", "YAMLError"),
        ("x: *b", "YAMLError"),
        (
            "a: &a {k: 1}\nb: {<<: *a, j: 2}",
            "{'a': {'k': 1}, 'b': {'k': 1, 'j': 2}}",
        ),
        (
            "a: &a {k: 1}\nb: {j: 2, <<: *a, k: 3}",
            "{'a': {'k': 1}, 'b': {'k': 3, 'j': 2}}",
        ),
        ("x: ! 123", "{'x': 123}"),
        ("x: ! '123'", "{'x': 123}"),
        ("x: !!str 123", "{'x': '123'}"),
        ("x: !<tag:yaml.org,2002:int> '5'", "{'x': 5}"),
        ("x: !!bool maybe", "KeyError: 'maybe'"),
        ("x: !!int ''", "IndexError: string index out of range"),
        ("x: !!int ' 1_2 '", "{'x': 12}"),
        ("x: !!float abc", "could not convert string to float: 'abc'"),
        ("x: !!omap [a: 1, b: 2]", "{'x': [['a', 1], ['b', 2]]}"),
        ("x: !!binary aGVsbG8=", "{'x': b'hello'}"),
        ("x: 1:30", "{'x': 90}"),
        ("x: 1:30.5", "{'x': 90.5}"),
        ("x: 190:20:30", "{'x': 685230}"),
        ("x: 0o17", "{'x': '0o17'}"),
        ("x: 017", "{'x': 15}"),
        ("x: 0x1F", "{'x': 31}"),
        ("x: +12_3", "{'x': 123}"),
        ("x: 1e3", "{'x': '1e3'}"),
        ("x: 1.0e+3", "{'x': 1000.0}"),
        ("x: -.5", "{'x': '-.5'}"),
        ("x: .inf", "{'x': inf}"),
        ("x: 2024-02-30", "day is out of range for month"),
        ("x: 0b__", "invalid literal for int() with base 2: ''"),
        ("x: =", "YAMLError"),
        ("x: !foo 1", "YAMLError"),
        ("x: ~", "{'x': None}"),
        ("x: nULL", "{'x': 'nULL'}"),
        ("x: yEs", "{'x': 'yEs'}"),
        ("x: On", "{'x': True}"),
        ("x: n", "{'x': 'n'}"),
        ("? [a]\n: 1", "YAMLError"),
        ("1: a\n1.0: b\ntrue: c", "{1: 'c'}"),
        ("x: \u{85}", "{'x': None}"),
        ("x: a\u{7f}", "YAMLError"),
        ("x: !!null ''", "{'x': None}"),
        ("x: !!str", "{'x': ''}"),
        ("x: <<", "YAMLError"),
        ("<<: [{a: 1}, {a: 2, c: 3}]", "{'a': 1, 'c': 3}"),
        ("<<: 1", "YAMLError"),
        ("x: 09", "{'x': '09'}"),
        ("x: 1__0", "{'x': 10}"),
        ("x: -1:30", "{'x': -90}"),
        ("\u{feff}x: 1", "{'x': 1}"),
        ("x: &a.b 1", "YAMLError"),
        ("x: !!str {=: 5}", "{'x': '5'}"),
        ("=: 1", "{'=': 1}"),
        (": x", "YAMLError"),
        ("a: {b: 1, : 2}", "YAMLError"),
        ("? \n: x", "{None: 'x'}"),
        ("x: a\tb", "YAMLError"),
        ("x: \"a\tb\" # c\td", "{'x': 'a\\tb'}"),
        ("a: &a {<<: *a}", "{'a': {}}"),
    ];
    for (text, expected) in cases {
        assert_eq!(load(text), expected, "input: {text:?}");
    }
}

/// PyYAML 6.0.4 merges `<<: [...]` in list order and drops a merged key that is the same object
/// as one merged before (6.0.3 reversed the list instead). Recorded with PyYAML 6.0.4.
#[test]
fn merge_key_order_matches_pyyaml_6_0_4() {
    let cases = [
        // A later mapping of the list wins for keys that are distinct objects ...
        ("<<: [{ab: 1}, {ab: 2, c: 3}]", "{'ab': 2, 'c': 3}"),
        (
            "a: &a {mem: 1, cpu: 1}\nb: &b {mem: 2, img: b}\nvm: {<<: [*b, *a]}",
            "{'a': {'mem': 1, 'cpu': 1}, 'b': {'mem': 2, 'img': 'b'}, 'vm': {'mem': 1, 'img': 'b', 'cpu': 1}}",
        ),
        (
            "a: &a {mem: 1, cpu: 1}\nb: &b {mem: 2, img: b}\nvm: {<<: [*a, *b]}",
            "{'a': {'mem': 1, 'cpu': 1}, 'b': {'mem': 2, 'img': 'b'}, 'vm': {'mem': 2, 'cpu': 1, 'img': 'b'}}",
        ),
        // ... but one-character Latin-1 and empty keys are CPython's cached strings: the first wins.
        ("<<: [{a: 1}, {a: 2, c: 3}]", "{'a': 1, 'c': 3}"),
        ("<<: [{'a': 1}, {\"a\": 2}]", "{'a': 1}"),
        ("<<: [{\"\\x61\": 1}, {a: 2}]", "{'a': 1}"),
        ("<<: [{\u{e9}: 1}, {\u{e9}: 2}]", "{'\u{e9}': 1}"),
        ("<<: [{\u{20ac}: 1}, {\u{20ac}: 2}]", "{'\u{20ac}': 2}"),
        ("<<: [{'': 1}, {'': 2}]", "{'': 1}"),
        ("<<: [{1: x}, {1: y}]", "{1: 'x'}"),
        ("<<: [{ab: x, ab: y}]", "{'ab': 'y'}"),
        ("<<: [{a: x, a: y}]", "{'a': 'x'}"),
        // The same key node reached twice is one object.
        ("x: &k kk\n<<: [{*k : 1}, {*k : 2}]", "{'kk': 1, 'x': 'kk'}"),
        ("m: &m {ab: 1}\n<<: [*m, *m]", "{'ab': 1, 'm': {'ab': 1}}"),
        // Several `<<` entries, and nested merges.
        (
            "m: &m {ab: 1}\nn: &n {ab: 2}\ny: {<<: *m, <<: *n}",
            "{'m': {'ab': 1}, 'n': {'ab': 2}, 'y': {'ab': 2}}",
        ),
        (
            "m: &m {ab: 1}\nn: &n {ab: 2, <<: *m}\ny: {<<: [*n, *m]}",
            "{'m': {'ab': 1}, 'n': {'ab': 2}, 'y': {'ab': 2}}",
        ),
        (
            "m: &m {ab: 1, cd: 0}\nn: &n {ab: 2, <<: *m}\ny: {<<: [*m, *n]}",
            "{'m': {'ab': 1, 'cd': 0}, 'n': {'ab': 2, 'cd': 0}, 'y': {'ab': 2, 'cd': 0}}",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(load(text), expected, "input: {text:?}");
    }
}

#[test]
fn recursive_structures_stay_shared() {
    let doc = safe_load("x: &a [1, *a]").unwrap();
    let x = doc.root().get("x").unwrap();
    let inner = x.elements()[1];
    assert_eq!(inner.id(), x.id());
}

#[test]
fn first_failure_in_breadth_first_order() {
    // PyYAML builds the top-level scalars before nested collections.
    assert_eq!(
        load("a: [2024-02-30]\nb: 0b__"),
        "invalid literal for int() with base 2: ''"
    );
}

#[test]
fn nesting_is_bounded_like_python_recursion() {
    // Measured with the reference CLI: 489 nested sequences under the root load, 490 do not.
    assert!(safe_load(&format!("x:\n{}1", "- ".repeat(489))).is_ok());
    let deep = format!("x:\n{}1", "- ".repeat(490));
    assert_eq!(
        load(&deep),
        "RecursionError: maximum recursion depth exceeded"
    );
}

#[test]
fn timestamps_are_not_json() {
    let doc = safe_load("d: 2024-01-01").unwrap();
    let json = Json::Fail(crate::py::PyError::type_error(format!(
        "Object of type {} is not JSON serializable",
        doc.root().get("d").unwrap().type_name()
    )));
    assert_eq!(
        dumps(&json).unwrap_err().message,
        "Object of type date is not JSON serializable"
    );
}
