//! Python numbers: `int(str, base)`, `str(int)` with CPython's 4300-digit limit, `float(str)`
//! and `repr(float)`.

use num_bigint::BigInt;
use num_traits::{Num, Zero};

use super::text::{repr_str, strip};
use super::PyError;

/// CPython's default `sys.get_int_max_str_digits()`.
const MAX_STR_DIGITS: usize = 4300;

/// `int(text, base)` for the bases YAML and argparse use (2, 8, 10, 16).
pub fn parse_int(text: &str, base: u32) -> Result<BigInt, PyError> {
    let invalid = || {
        PyError::value(format!(
            "invalid literal for int() with base {base}: {}",
            repr_str(text)
        ))
    };
    let s = strip(text);
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let prefix = match base {
        2 => "0b",
        8 => "0o",
        16 => "0x",
        _ => "",
    };
    let mut body = s;
    let mut after_prefix = false;
    if !prefix.is_empty() && s.len() >= 2 && s[..2].eq_ignore_ascii_case(prefix) {
        body = &s[2..];
        after_prefix = true;
    }
    // Underscores may separate digits, and follow a base prefix, but never double up or trail.
    let mut digits = String::with_capacity(body.len());
    let mut previous_underscore = !after_prefix;
    for c in body.chars() {
        if c == '_' {
            if previous_underscore {
                return Err(invalid());
            }
            previous_underscore = true;
            continue;
        }
        if !c.is_digit(base) {
            return Err(invalid());
        }
        digits.push(c);
        previous_underscore = false;
    }
    if digits.is_empty() || previous_underscore {
        return Err(invalid());
    }
    if base == 10 && digits.len() > MAX_STR_DIGITS {
        return Err(PyError::value(format!(
            "Exceeds the limit ({MAX_STR_DIGITS} digits) for integer string conversion: value has {} digits; use sys.set_int_max_str_digits() to increase the limit",
            digits.len()
        )));
    }
    let value = BigInt::from_str_radix(&digits, base).map_err(|_| invalid())?;
    Ok(if negative { -value } else { value })
}

/// `str(int)`, which CPython refuses past 4300 digits.
pub fn int_to_string(value: &BigInt) -> Result<String, PyError> {
    let text = value.to_string();
    let digits = text.trim_start_matches('-').len();
    if digits > MAX_STR_DIGITS {
        return Err(PyError::value(format!(
            "Exceeds the limit ({MAX_STR_DIGITS} digits) for integer string conversion; use sys.set_int_max_str_digits() to increase the limit"
        )));
    }
    Ok(text)
}

/// `float(text)`.
pub fn parse_float(text: &str) -> Result<f64, PyError> {
    let invalid = || {
        PyError::value(format!(
            "could not convert string to float: {}",
            repr_str(text)
        ))
    };
    let s = strip(text);
    let (sign, unsigned) = match s.as_bytes().first() {
        Some(b'-') => (-1.0, &s[1..]),
        Some(b'+') => (1.0, &s[1..]),
        _ => (1.0, s),
    };
    let lower = unsigned.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return Ok(sign * f64::INFINITY);
    }
    if lower == "nan" {
        return Ok(f64::NAN);
    }
    // Underscores are allowed only between digits.
    let bytes = unsigned.as_bytes();
    let mut cleaned = String::with_capacity(unsigned.len());
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'_' {
            let digit_before = i > 0 && bytes[i - 1].is_ascii_digit();
            let digit_after = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !(digit_before && digit_after) {
                return Err(invalid());
            }
            continue;
        }
        if !(b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) {
            return Err(invalid());
        }
        cleaned.push(b as char);
    }
    if !cleaned.bytes().any(|b| b.is_ascii_digit()) || cleaned.starts_with(['+', '-']) {
        return Err(invalid());
    }
    cleaned
        .parse::<f64>()
        .map(|v| sign * v)
        .map_err(|_| invalid())
}

/// `repr(float)`: the shortest digits that round-trip, in fixed notation when the decimal
/// exponent is in -4..16, otherwise as `d.ddde+XX`.
pub fn float_repr(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    // `{:e}` gives the shortest round-trip digits, e.g. "-1.2345e-5".
    let sci = format!("{value:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if !(-5 < exponent && exponent < 16) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}e{exp_sign}{:02}", exponent.abs());
    }
    // Fixed notation: place the decimal point `exponent + 1` digits in.
    let point = exponent + 1;
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else {
        let point = point as usize;
        if digits.len() <= point {
            format!("{digits}{}.0", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    };
    format!("{sign}{body}")
}

/// Python's exact comparison of an int with a float (no rounding of the int).
pub fn int_equals_float(int: &BigInt, float: f64) -> bool {
    if !float.is_finite() || float.fract() != 0.0 {
        return false;
    }
    if float == 0.0 {
        return int.is_zero();
    }
    // An integral f64 converts to an exact decimal string without a fraction.
    format!("{float:.0}")
        .parse::<BigInt>()
        .is_ok_and(|f| &f == int)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1e16, "1e+16"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1.5e300, "1.5e+300"),
            (-0.0, "-0.0"),
            (2.5e-7, "2.5e-07"),
            (1000.0, "1000.0"),
            (0.1, "0.1"),
            (1e15, "1000000000000000.0"),
            (90.5, "90.5"),
        ];
        for (value, expected) in cases {
            assert_eq!(float_repr(value), expected, "{value}");
        }
    }

    #[test]
    fn int_parsing_follows_python() {
        assert_eq!(parse_int(" 1_2 ", 10).unwrap(), BigInt::from(12));
        assert_eq!(parse_int("0x1f", 16).unwrap(), BigInt::from(31));
        assert_eq!(parse_int("-17", 8).unwrap(), BigInt::from(-15));
        assert_eq!(
            parse_int("", 2).unwrap_err().message,
            "invalid literal for int() with base 2: ''"
        );
        assert!(parse_int("1__2", 10).is_err());
        assert!(parse_int("12_", 10).is_err());
        let long = "1".repeat(4301);
        assert!(parse_int(&long, 10)
            .unwrap_err()
            .message
            .contains("value has 4301 digits"));
    }

    #[test]
    fn float_parsing_follows_python() {
        assert_eq!(parse_float("1.").unwrap(), 1.0);
        assert_eq!(parse_float(".5").unwrap(), 0.5);
        assert_eq!(parse_float("1.e+5").unwrap(), 100000.0);
        assert_eq!(parse_float("-inf").unwrap(), f64::NEG_INFINITY);
        assert_eq!(
            parse_float("abc").unwrap_err().message,
            "could not convert string to float: 'abc'"
        );
    }

    #[test]
    fn int_float_equality_is_exact() {
        assert!(int_equals_float(&BigInt::from(1), 1.0));
        assert!(!int_equals_float(
            &(BigInt::from(2u64.pow(53)) + 1),
            2f64.powi(53)
        ));
    }
}
