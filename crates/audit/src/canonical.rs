//! Canonical JSON for hashing, after RFC 8785 (JSON Canonicalization Scheme).
//!
//! - no whitespace;
//! - object members sorted by key, comparing keys as UTF-16 code units, recursively;
//! - strings: `"` and `\` escaped with a backslash, U+0008, U+0009, U+000A, U+000C,
//!   U+000D as `\b \t \n \f \r`, other characters below U+0020 as `\u00xx` (lowercase
//!   hex), everything else (including non-ASCII and `/`) written as is, in UTF-8;
//! - integers (JSON numbers serde_json holds as `i64`/`u64`) written as plain decimal;
//! - other numbers written as ECMAScript's `Number.prototype.toString` does: the
//!   shortest digits that round-trip, fixed notation for exponents in `[-6, 21)`, else
//!   `d.ddde+N` / `d.ddde-N`; a fractional number with an integral value (`5.0`) is
//!   written as the integer (`5`);
//! - `true`, `false`, `null` as is.
//!
//! The one departure from RFC 8785: integers beyond 2^53 are written exactly rather
//! than rounded through a double. `docs/audit.md` has a Python version.

use serde_json::Value;

/// The canonical encoding of `value`.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                out.push_str(&format_f64(n.as_f64().expect("finite json number")));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_value(v, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// ECMAScript `Number::toString` for a finite double.
fn format_f64(x: f64) -> String {
    if x == 0.0 {
        return "0".to_owned();
    }
    if x < 0.0 {
        return format!("-{}", format_f64(-x));
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "d.ddde-N".
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("integer exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = i32::try_from(digits.len()).expect("few digits");
    // Value is 0.DIGITS * 10^n.
    let n = exp + 1;
    if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        format!("{int}.{frac}")
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let sign = if e < 0 { '-' } else { '+' };
        let (first, rest) = digits.split_at(1);
        if rest.is_empty() {
            format!("{first}e{sign}{}", e.abs())
        } else {
            format!("{first}.{rest}e{sign}{}", e.abs())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_recursively_without_whitespace() {
        let v = json!({"b": 1, "a": {"d": [true, null], "c": "x"}});
        assert_eq!(canonical_json(&v), r#"{"a":{"c":"x","d":[true,null]},"b":1}"#);
    }

    #[test]
    fn escapes_strings_like_rfc8785() {
        let v = json!("q\"b\\/\u{8}\t\n\u{c}\r\u{1}\u{7f}é€😀");
        assert_eq!(canonical_json(&v), "\"q\\\"b\\\\/\\b\\t\\n\\f\\r\\u0001\u{7f}é€😀\"");
    }

    #[test]
    fn sorts_keys_by_utf16_code_units() {
        // By code point U+FF61 sorts before U+1F600; in UTF-16 the surrogate pair of
        // U+1F600 (D83D DE00) sorts before FF61, which is what RFC 8785 wants.
        let v = json!({"\u{FF61}": 2, "\u{1F600}": 1});
        assert_eq!(canonical_json(&v), "{\"\u{1F600}\":1,\"\u{FF61}\":2}");
    }

    #[test]
    fn formats_numbers_like_ecmascript() {
        let cases = [
            (0.0, "0"),
            (-0.0, "0"),
            (5.0, "5"),
            (0.1, "0.1"),
            (-1.5, "-1.5"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123456.789, "123456.789"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (4.5e300, "4.5e+300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ];
        for (x, want) in cases {
            assert_eq!(format_f64(x), want, "{x:e}");
        }
    }

    #[test]
    fn integers_are_exact() {
        let v: Value = serde_json::from_str("[18446744073709551615, -9223372036854775808, 5.0]").expect("json");
        assert_eq!(canonical_json(&v), "[18446744073709551615,-9223372036854775808,5]");
    }
}
