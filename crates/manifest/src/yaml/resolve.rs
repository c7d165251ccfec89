//! PyYAML's implicit resolvers (YAML 1.1): which tag a plain scalar gets from its text.
//! `yes`/`no`/`on`/`off` are booleans, `0755` is octal, `1:30` is sexagesimal, `~` is null,
//! `2024-01-01` is a timestamp, `1e3` (no dot, no exponent sign) stays a string.

use std::sync::LazyLock;

use regex::Regex;

pub const STR_TAG: &str = "tag:yaml.org,2002:str";
pub const SEQ_TAG: &str = "tag:yaml.org,2002:seq";
pub const MAP_TAG: &str = "tag:yaml.org,2002:map";
pub const NULL_TAG: &str = "tag:yaml.org,2002:null";
pub const BOOL_TAG: &str = "tag:yaml.org,2002:bool";
pub const INT_TAG: &str = "tag:yaml.org,2002:int";
pub const FLOAT_TAG: &str = "tag:yaml.org,2002:float";
pub const TIMESTAMP_TAG: &str = "tag:yaml.org,2002:timestamp";
pub const MERGE_TAG: &str = "tag:yaml.org,2002:merge";
pub const VALUE_TAG: &str = "tag:yaml.org,2002:value";

fn re(pattern: &str) -> Regex {
    // The patterns are constants checked by the unit tests below.
    Regex::new(pattern).unwrap_or_else(|e| panic!("bad resolver pattern: {e}"))
}

static BOOL: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)\z")
});
static FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?",
        r"|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?",
        r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*",
        r"|[-+]?\.(?:inf|Inf|INF)",
        r"|\.(?:nan|NaN|NAN))\z"
    ))
});
static INT: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"^(?:[-+]?0b[0-1_]+",
        r"|[-+]?0[0-7_]+",
        r"|[-+]?(?:0|[1-9][0-9_]*)",
        r"|[-+]?0x[0-9a-fA-F_]+",
        r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)\z"
    ))
});
static NULL: LazyLock<Regex> = LazyLock::new(|| re(r"^(?:~|null|Null|NULL|)\z"));
static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]",
        r"|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?",
        r"(?:[Tt]|[ \t]+)[0-9][0-9]?",
        r":[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?",
        r"(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)\z"
    ))
});

/// The tag PyYAML's `Resolver` gives a plain scalar. Resolvers are tried in PyYAML's order for
/// the first character, though the patterns never overlap.
pub fn resolve_scalar(value: &str) -> &'static str {
    let first = value.chars().next();
    let candidates: &[(&'static str, &LazyLock<Regex>)] = match first {
        None => &[(NULL_TAG, &NULL)],
        Some('y' | 'Y' | 't' | 'T' | 'f' | 'F' | 'o' | 'O') => &[(BOOL_TAG, &BOOL)],
        Some('n' | 'N') => &[(BOOL_TAG, &BOOL), (NULL_TAG, &NULL)],
        Some('~') => &[(NULL_TAG, &NULL)],
        Some('.') => &[(FLOAT_TAG, &FLOAT)],
        Some('-' | '+') => &[(FLOAT_TAG, &FLOAT), (INT_TAG, &INT)],
        Some('0'..='9') => &[
            (FLOAT_TAG, &FLOAT),
            (INT_TAG, &INT),
            (TIMESTAMP_TAG, &TIMESTAMP),
        ],
        Some('<') if value == "<<" => return MERGE_TAG,
        Some('=') if value == "=" => return VALUE_TAG,
        _ => &[],
    };
    candidates
        .iter()
        .find(|(_, pattern)| pattern.is_match(value))
        .map_or(STR_TAG, |(tag, _)| tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_1_1_scalars() {
        let cases = [
            ("", NULL_TAG),
            ("~", NULL_TAG),
            ("Null", NULL_TAG),
            ("nULL", STR_TAG),
            ("yes", BOOL_TAG),
            ("Off", BOOL_TAG),
            ("yEs", STR_TAG),
            ("y", STR_TAG),
            ("0755", INT_TAG),
            ("0o17", STR_TAG),
            ("09", STR_TAG),
            ("0x1F", INT_TAG),
            ("0b101", INT_TAG),
            ("190:20:30", INT_TAG),
            ("1_000", INT_TAG),
            ("1e3", STR_TAG),
            ("1.0e+3", FLOAT_TAG),
            ("1.0e3", STR_TAG),
            (".5", FLOAT_TAG),
            ("-.5", STR_TAG),
            ("1.", FLOAT_TAG),
            ("-.INF", FLOAT_TAG),
            (".NaN", FLOAT_TAG),
            ("1:30.5", FLOAT_TAG),
            ("2002-12-14", TIMESTAMP_TAG),
            ("2002-1-14", STR_TAG),
            ("2001-12-14t21:59:43.10-05:00", TIMESTAMP_TAG),
            ("2001-12-14 21:59:43.10", TIMESTAMP_TAG),
            ("<<", MERGE_TAG),
            ("=", VALUE_TAG),
            ("0.1.0", STR_TAG),
        ];
        for (text, tag) in cases {
            assert_eq!(resolve_scalar(text), tag, "{text}");
        }
    }
}
