//! Amazon EventBridge event patterns (content filtering).
//!
//! A [`Pattern`] is parsed once from JSON and then tested against many events with
//! [`Pattern::matches`]. The supported syntax and the rules for rejected patterns are
//! documented in `docs/event-patterns.md`.
//!
//! # Why hand-written
//!
//! The one maintained Rust crate for this syntax is `quamina` (a port of Tim Bray's Go
//! library). It was considered and not used because:
//! - it is a many-patterns-at-once automaton keyed by pattern ids and fed raw bytes,
//!   while we hold one pattern per subscription and already have a `serde_json::Value`;
//! - its errors do not carry the JSON path of the offending key, which our API returns
//!   to users who write patterns;
//! - it does not cover the whole EventBridge syntax we want (`$or`, `anything-but` with
//!   `suffix`/`wildcard`, `prefix`/`suffix` with `equals-ignore-case`);
//! - it needs a newer toolchain than the workspace's `rust-version` and brings a set of
//!   concurrency dependencies for a few hundred lines of tree walking.
//!
//! # Matching model
//!
//! A field condition holds if ANY pattern value matches ANY leaf value at its path
//! (arrays of scalars, at any depth, contribute each element); all fields of a pattern
//! object must hold; one branch of each `$or` must hold. Objects are not leaves:
//! `{"exists": true}` does not match a path holding only objects, and an empty array
//! counts as absent.
//!
//! Arrays of objects are matched with event-ruler's "array consistency"
//! (`rulesForJSONEvent`, also quamina's): all the conditions under a key holding an
//! array of objects must be met by ONE element, never some by one element and the rest
//! by another. `$or` branches join the conditions of their scope, as event-ruler's
//! expansion of `$or` into sub-rules does, so a branch naming the same array as a field
//! beside the `$or` is held to the same element.

use serde_json::{Map, Value};
use thiserror::Error;

/// A parsed, validated event pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    root: ObjectPattern,
}

/// An invalid pattern: where (the JSON path of the offending key) and what is wrong.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("{path}: {kind}")]
pub struct PatternError {
    /// Dotted JSON path of the offending key, `$or` branches as `$or[i]`; `<root>` for
    /// the pattern itself.
    pub path: String,
    /// What is wrong there.
    pub kind: PatternErrorKind,
}

/// The reasons a pattern is rejected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PatternErrorKind {
    #[error("pattern must be a JSON object")]
    NotAnObject,
    #[error("empty object is not allowed")]
    EmptyObject,
    #[error("match values must be in an array")]
    ValueNotInArray,
    #[error("empty array is not allowed")]
    EmptyArray,
    #[error("nested arrays are not allowed in a match list")]
    NestedArray,
    #[error("operator object must have exactly one key, found {0}")]
    OperatorArity(usize),
    #[error("unknown operator \"{0}\"")]
    UnknownOperator(String),
    #[error("\"{op}\" expects {expected}")]
    BadOperand { op: &'static str, expected: &'static str },
    #[error("\"numeric\" expects an operator followed by a number, once or twice")]
    NumericShape,
    #[error("\"numeric\" has unknown comparison \"{0}\"")]
    NumericOperator(String),
    #[error("\"numeric\" range needs one lower bound (\">\" or \">=\") and one upper bound (\"<\" or \"<=\")")]
    NumericPair,
    #[error(
        "\"numeric\" range must give its lower bound (\">\" or \">=\") first, then its upper bound (\"<\" or \"<=\")"
    )]
    NumericUpperFirst,
    #[error("\"numeric\" range is empty: lower bound {lower} is not below upper bound {upper} (use [\"=\", x] for one value)")]
    NumericEmptyRange { lower: f64, upper: f64 },
    #[error("wildcard has consecutive '*' characters")]
    ConsecutiveWildcards,
    #[error("wildcard has an invalid escape: only \\* and \\\\ are allowed")]
    InvalidEscape,
    #[error("\"$or\" expects an array of at least two pattern objects")]
    OrShape,
    #[error("\"{0}\" is an operator name and cannot be a field name inside \"$or\"")]
    ReservedInOr(String),
    #[error("number {0} cannot be represented: it underflows to 0 or overflows a 64-bit float")]
    UnrepresentableNumber(String),
    #[error("\"anything-but\" {0} must not be empty")]
    EmptyAnythingBut(&'static str),
    #[error("the \"$or\" branches combine into {0} alternatives, more than the limit of {MAX_OR_COMBINATIONS}")]
    TooManyCombinations(u64),
}

/// A scalar JSON value compared by value (numbers numerically).
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
}

impl Scalar {
    fn from_value(v: &Value) -> Option<Scalar> {
        match v {
            Value::Null => Some(Scalar::Null),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::Number(n) => n.as_f64().map(Scalar::Number),
            Value::String(s) => Some(Scalar::String(s.clone())),
            Value::Array(_) | Value::Object(_) => None,
        }
    }

    fn matches(&self, v: &Value) -> bool {
        match (self, v) {
            (Scalar::Null, Value::Null) => true,
            (Scalar::Bool(a), Value::Bool(b)) => a == b,
            (Scalar::Number(a), Value::Number(b)) => b.as_f64() == Some(*a),
            (Scalar::String(a), Value::String(b)) => a == b,
            _ => false,
        }
    }
}

/// A pattern object: every field must hold, and one branch of every `$or`.
#[derive(Debug, Clone, PartialEq)]
struct ObjectPattern {
    fields: Vec<(String, Node)>,
    ors: Vec<Vec<ObjectPattern>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Leaf(Vec<Matcher>),
    Object(ObjectPattern),
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    Exact(Scalar),
    Prefix { text: String, ignore_case: bool },
    Suffix { text: String, ignore_case: bool },
    EqualsIgnoreCase(String),
    Wildcard(Wildcard),
    AnythingBut(AnythingBut),
    Numeric(NumericRange),
    Exists(bool),
}

#[derive(Debug, Clone, PartialEq)]
enum AnythingBut {
    Values(Vec<Scalar>),
    Prefix(Vec<String>),
    Suffix(Vec<String>),
    EqualsIgnoreCase(Vec<String>),
    Wildcard(Vec<Wildcard>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Bound {
    Unbounded,
    Inclusive(f64),
    Exclusive(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct NumericRange {
    lower: Bound,
    upper: Bound,
}

impl NumericRange {
    fn contains(&self, x: f64) -> bool {
        let above = match self.lower {
            Bound::Unbounded => true,
            Bound::Inclusive(l) => x >= l,
            Bound::Exclusive(l) => x > l,
        };
        let below = match self.upper {
            Bound::Unbounded => true,
            Bound::Inclusive(u) => x <= u,
            Bound::Exclusive(u) => x < u,
        };
        above && below
    }
}

/// A wildcard expression: literal runs separated by `*`.
#[derive(Debug, Clone, PartialEq)]
struct Wildcard {
    tokens: Vec<WildToken>,
}

#[derive(Debug, Clone, PartialEq)]
enum WildToken {
    Literal(Vec<char>),
    Star,
}

impl Wildcard {
    fn parse(src: &str) -> Result<Wildcard, PatternErrorKind> {
        let mut tokens = Vec::new();
        let mut lit = Vec::new();
        let mut chars = src.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('*' | '\\')) => lit.push(e),
                    _ => return Err(PatternErrorKind::InvalidEscape),
                },
                '*' => {
                    if !lit.is_empty() {
                        tokens.push(WildToken::Literal(std::mem::take(&mut lit)));
                    } else if tokens.last() == Some(&WildToken::Star) {
                        return Err(PatternErrorKind::ConsecutiveWildcards);
                    }
                    tokens.push(WildToken::Star);
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            tokens.push(WildToken::Literal(lit));
        }
        Ok(Wildcard { tokens })
    }

    /// Glob match: each `*` matches any run of characters, including none.
    fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let mut pos = 0usize;
        let mut tokens = self.tokens.iter().peekable();
        // Leading literal must be a prefix.
        if let Some(WildToken::Literal(l)) = tokens.peek() {
            if !text.starts_with(l) {
                return false;
            }
            pos = l.len();
            tokens.next();
        }
        let mut after_star = false;
        while let Some(tok) = tokens.next() {
            match tok {
                WildToken::Star => after_star = true,
                WildToken::Literal(l) => {
                    if tokens.peek().is_none() {
                        // Last literal after a star must be a suffix of what is left.
                        return text.len() - pos >= l.len() && text.ends_with(l);
                    }
                    // Middle literal: leftmost occurrence is always the best choice.
                    match find(&text[pos..], l) {
                        Some(at) => pos += at + l.len(),
                        None => return false,
                    }
                    after_star = false;
                }
            }
        }
        after_star || pos == text.len()
    }
}

fn find(hay: &[char], needle: &[char]) -> Option<usize> {
    if needle.len() > hay.len() {
        return None;
    }
    (0..=hay.len() - needle.len()).find(|&i| hay[i..].starts_with(needle))
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

impl Matcher {
    /// Whether this matcher accepts one leaf value (never an object or array).
    fn matches_leaf(&self, v: &Value) -> bool {
        match self {
            Matcher::Exact(s) => s.matches(v),
            Matcher::Prefix { text, ignore_case } => v.as_str().is_some_and(|s| {
                if *ignore_case {
                    lower(s).starts_with(&lower(text))
                } else {
                    s.starts_with(text.as_str())
                }
            }),
            Matcher::Suffix { text, ignore_case } => v.as_str().is_some_and(|s| {
                if *ignore_case {
                    lower(s).ends_with(&lower(text))
                } else {
                    s.ends_with(text.as_str())
                }
            }),
            Matcher::EqualsIgnoreCase(t) => v.as_str().is_some_and(|s| lower(s) == lower(t)),
            Matcher::Wildcard(w) => v.as_str().is_some_and(|s| w.matches(s)),
            Matcher::Numeric(r) => v.as_f64().is_some_and(|x| r.contains(x)),
            Matcher::Exists(want) => *want,
            Matcher::AnythingBut(ab) => match ab {
                AnythingBut::Values(vals) => !vals.iter().any(|s| s.matches(v)),
                AnythingBut::Prefix(ps) => v.as_str().is_some_and(|s| !ps.iter().any(|p| s.starts_with(p.as_str()))),
                AnythingBut::Suffix(ps) => v.as_str().is_some_and(|s| !ps.iter().any(|p| s.ends_with(p.as_str()))),
                AnythingBut::EqualsIgnoreCase(ts) => {
                    v.as_str().is_some_and(|s| !ts.iter().any(|t| lower(s) == lower(t)))
                }
                AnythingBut::Wildcard(ws) => v.as_str().is_some_and(|s| !ws.iter().any(|w| w.matches(s))),
            },
        }
    }
}

/// At most this many alternatives (the sub-patterns `$or` expands into, as event-ruler
/// compiles them) per pattern: matching may try each of them.
pub const MAX_OR_COMBINATIONS: u64 = 1000;

/// Operator names, which event-ruler refuses as field names inside `$or` branches.
const OPERATORS: [&str; 25] = [
    "exactly",
    "equals-ignore-case",
    "prefix",
    "suffix",
    "anything-but",
    "exists",
    "wildcard",
    "numeric",
    "cidr",
    "=",
    "<",
    "<=",
    ">",
    ">=",
    "regex",
    "not-wildcard",
    "not-equals-ignore-case",
    "date-after",
    "date-on-or-after",
    "date-before",
    "date-on-or-before",
    "in-date-range",
    "ip-address-in-range",
    "ip-address-not-in-range",
    "$and",
];

impl ObjectPattern {
    /// How many alternatives this pattern expands into (saturating).
    fn combinations(&self) -> u64 {
        let fields = self.fields.iter().fold(1u64, |acc, (_, n)| match n {
            Node::Object(inner) => acc.saturating_mul(inner.combinations()),
            Node::Leaf(_) => acc,
        });
        self.ors.iter().fold(fields, |acc, branches| {
            acc.saturating_mul(branches.iter().fold(0u64, |sum, b| sum.saturating_add(b.combinations())))
        })
    }
}

impl Pattern {
    /// Parses and validates an EventBridge event pattern.
    pub fn parse(pattern: &Value) -> Result<Pattern, PatternError> {
        Pattern::parse_with(pattern, true)
    }

    /// Parses a pattern stored before the checks event-ruler makes were added (numeric
    /// bounds in either order or equal, `anything-but` on `null`/booleans or with an
    /// empty prefix or suffix, operator names as fields inside `$or`): it is accepted
    /// with its old meaning, so that a subscription created then keeps matching. The
    /// limit on `$or` alternatives still applies.
    pub fn parse_lenient(pattern: &Value) -> Result<Pattern, PatternError> {
        Pattern::parse_with(pattern, false)
    }

    fn parse_with(pattern: &Value, strict: bool) -> Result<Pattern, PatternError> {
        let Value::Object(map) = pattern else {
            return Err(err("", PatternErrorKind::NotAnObject));
        };
        let root = parse_object(map, "", Ctx { in_or: false, strict })?;
        let combinations = root.combinations();
        if combinations > MAX_OR_COMBINATIONS {
            return Err(err("", PatternErrorKind::TooManyCombinations(combinations)));
        }
        Ok(Pattern { root })
    }

    /// Parses a pattern from JSON text; a number the text holds that a 64-bit float
    /// cannot represent (see [`unrepresentable_number`]) is refused.
    pub fn parse_str(pattern: &str) -> Result<Pattern, PatternError> {
        if let Some(number) = unrepresentable_number(pattern.as_bytes()) {
            return Err(err("", PatternErrorKind::UnrepresentableNumber(number)));
        }
        let value: Value = serde_json::from_str(pattern)
            .map_err(|_| PatternError { path: root_path(""), kind: PatternErrorKind::NotAnObject })?;
        Pattern::parse(&value)
    }

    /// Whether the event matches this pattern.
    pub fn matches(&self, event: &Value) -> bool {
        eval_scope(&[&self.root], event.as_object())
    }
}

/// The first number literal of JSON text that a 64-bit float cannot represent: one
/// that is not zero but rounds to zero (`1E-325`), or one too large (`1E400`). JSON
/// parsers turn the first silently into `0` (serde_json does), so a pattern holding it
/// would not mean what it says; event-ruler refuses both. Strings are skipped.
pub fn unrepresentable_number(json: &[u8]) -> Option<String> {
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < json.len() && matches!(json[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    i += 1;
                }
                let text = std::str::from_utf8(&json[start..i]).unwrap_or_default();
                let mantissa = text.split(['e', 'E']).next().unwrap_or_default();
                let nonzero = mantissa.bytes().any(|b| matches!(b, b'1'..=b'9'));
                match text.parse::<f64>() {
                    Ok(x) if x.is_infinite() || (x == 0.0 && nonzero) => return Some(text.to_owned()),
                    _ => {}
                }
            }
            _ => i += 1,
        }
    }
    None
}

fn root_path(path: &str) -> String {
    if path.is_empty() {
        "<root>".to_owned()
    } else {
        path.to_owned()
    }
}

fn err(path: &str, kind: PatternErrorKind) -> PatternError {
    PatternError { path: root_path(path), kind }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// How to parse: `in_or`, the object is (inside) a `$or` branch, where operator names
/// are refused as field names (they are almost always a misplaced operator); `strict`,
/// whether event-ruler's checks apply (see [`Pattern::parse_lenient`]).
#[derive(Debug, Clone, Copy)]
struct Ctx {
    in_or: bool,
    strict: bool,
}

fn parse_object(map: &Map<String, Value>, path: &str, ctx: Ctx) -> Result<ObjectPattern, PatternError> {
    if map.is_empty() {
        return Err(err(path, PatternErrorKind::EmptyObject));
    }
    let mut out = ObjectPattern { fields: Vec::new(), ors: Vec::new() };
    for (key, value) in map {
        let here = join(path, key);
        if key == "$or" {
            out.ors.push(parse_or(value, &here, ctx)?);
            continue;
        }
        if ctx.in_or && ctx.strict && OPERATORS.contains(&key.as_str()) {
            return Err(err(&here, PatternErrorKind::ReservedInOr(key.clone())));
        }
        let node = match value {
            Value::Object(inner) => Node::Object(parse_object(inner, &here, ctx)?),
            Value::Array(items) => Node::Leaf(parse_match_list(items, &here, ctx.strict)?),
            _ => return Err(err(&here, PatternErrorKind::ValueNotInArray)),
        };
        out.fields.push((key.clone(), node));
    }
    Ok(out)
}

fn parse_or(value: &Value, path: &str, ctx: Ctx) -> Result<Vec<ObjectPattern>, PatternError> {
    let Value::Array(branches) = value else {
        return Err(err(path, PatternErrorKind::OrShape));
    };
    if branches.len() < 2 {
        return Err(err(path, PatternErrorKind::OrShape));
    }
    branches
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let here = format!("{path}[{i}]");
            match b {
                Value::Object(m) => parse_object(m, &here, Ctx { in_or: true, ..ctx }),
                _ => Err(err(&here, PatternErrorKind::NotAnObject)),
            }
        })
        .collect()
}

fn parse_match_list(items: &[Value], path: &str, strict: bool) -> Result<Vec<Matcher>, PatternError> {
    if items.is_empty() {
        return Err(err(path, PatternErrorKind::EmptyArray));
    }
    items
        .iter()
        .map(|item| match item {
            Value::Array(_) => Err(err(path, PatternErrorKind::NestedArray)),
            Value::Object(op) => parse_operator(op, path, strict),
            scalar => Ok(Matcher::Exact(Scalar::from_value(scalar).expect("scalar json value"))),
        })
        .collect()
}

fn bad(path: &str, op: &'static str, expected: &'static str) -> PatternError {
    err(path, PatternErrorKind::BadOperand { op, expected })
}

fn parse_operator(op: &Map<String, Value>, path: &str, strict: bool) -> Result<Matcher, PatternError> {
    if op.len() != 1 {
        return Err(err(path, PatternErrorKind::OperatorArity(op.len())));
    }
    let (name, arg) = op.iter().next().expect("one key");
    match name.as_str() {
        "prefix" | "suffix" => {
            let is_prefix = name == "prefix";
            let op_name = if is_prefix { "prefix" } else { "suffix" };
            let expected = "a string or {\"equals-ignore-case\": string}";
            let (text, ignore_case) = match arg {
                Value::String(s) => (s.clone(), false),
                Value::Object(m) if m.len() == 1 => match m.get("equals-ignore-case") {
                    Some(Value::String(s)) => (s.clone(), true),
                    _ => return Err(bad(path, op_name, expected)),
                },
                _ => return Err(bad(path, op_name, expected)),
            };
            Ok(if is_prefix { Matcher::Prefix { text, ignore_case } } else { Matcher::Suffix { text, ignore_case } })
        }
        "equals-ignore-case" => match arg {
            Value::String(s) => Ok(Matcher::EqualsIgnoreCase(s.clone())),
            _ => Err(bad(path, "equals-ignore-case", "a string")),
        },
        "wildcard" => match arg {
            Value::String(s) => Wildcard::parse(s).map(Matcher::Wildcard).map_err(|k| err(path, k)),
            _ => Err(bad(path, "wildcard", "a string")),
        },
        "exists" => match arg {
            Value::Bool(b) => Ok(Matcher::Exists(*b)),
            _ => Err(bad(path, "exists", "true or false")),
        },
        "numeric" => parse_numeric(arg, path, strict).map(Matcher::Numeric),
        "anything-but" => parse_anything_but(arg, path, strict).map(Matcher::AnythingBut),
        other => Err(err(path, PatternErrorKind::UnknownOperator(other.to_owned()))),
    }
}

fn parse_numeric(arg: &Value, path: &str, strict: bool) -> Result<NumericRange, PatternError> {
    let Value::Array(items) = arg else {
        return Err(err(path, PatternErrorKind::NumericShape));
    };
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        return Err(err(path, PatternErrorKind::NumericShape));
    }
    let mut range = NumericRange { lower: Bound::Unbounded, upper: Bound::Unbounded };
    let mut equals = false;
    for (i, pair) in items.chunks(2).enumerate() {
        let (Value::String(cmp), Value::Number(n)) = (&pair[0], &pair[1]) else {
            return Err(err(path, PatternErrorKind::NumericShape));
        };
        let x = n.as_f64().ok_or_else(|| err(path, PatternErrorKind::NumericShape))?;
        let (slot_is_lower, bound) = match cmp.as_str() {
            ">" => (true, Bound::Exclusive(x)),
            ">=" => (true, Bound::Inclusive(x)),
            "<" => (false, Bound::Exclusive(x)),
            "<=" => (false, Bound::Inclusive(x)),
            "=" => {
                if items.len() != 2 {
                    return Err(err(path, PatternErrorKind::NumericPair));
                }
                equals = true;
                range.lower = Bound::Inclusive(x);
                range.upper = Bound::Inclusive(x);
                continue;
            }
            other => return Err(err(path, PatternErrorKind::NumericOperator(other.to_owned()))),
        };
        let slot = if slot_is_lower { &mut range.lower } else { &mut range.upper };
        if *slot != Bound::Unbounded {
            return Err(err(path, PatternErrorKind::NumericPair));
        }
        // event-ruler reads a range as lower bound, then upper bound.
        if strict && i == 0 && !slot_is_lower && items.len() == 4 {
            return Err(err(path, PatternErrorKind::NumericUpperFirst));
        }
        *slot = bound;
    }
    if !equals {
        let value = |b: Bound| match b {
            Bound::Inclusive(x) | Bound::Exclusive(x) => Some(x),
            Bound::Unbounded => None,
        };
        if let (Some(lower), Some(upper)) = (value(range.lower), value(range.upper)) {
            let both_inclusive = matches!((range.lower, range.upper), (Bound::Inclusive(_), Bound::Inclusive(_)));
            if lower > upper || (lower == upper && (strict || !both_inclusive)) {
                return Err(err(path, PatternErrorKind::NumericEmptyRange { lower, upper }));
            }
        }
    }
    Ok(range)
}

/// `anything-but` takes a value, a non-empty list of strings or of numbers, or an
/// object with exactly one of `prefix`, `suffix`, `equals-ignore-case`, `wildcard`
/// (each a string or a non-empty list of strings).
fn parse_anything_but(arg: &Value, path: &str, strict: bool) -> Result<AnythingBut, PatternError> {
    const OP: &str = "anything-but";
    const EXPECTED: &str = "a string, a number, a non-empty array of strings or numbers, or an object with one of prefix, suffix, equals-ignore-case, wildcard";
    match arg {
        Value::String(_) | Value::Number(_) => Ok(AnythingBut::Values(vec![Scalar::from_value(arg).expect("scalar")])),
        Value::Bool(_) | Value::Null if !strict => {
            Ok(AnythingBut::Values(vec![Scalar::from_value(arg).expect("scalar")]))
        }
        Value::Bool(_) | Value::Null => Err(bad(path, OP, EXPECTED)),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(err(path, PatternErrorKind::EmptyArray));
            }
            let all_strings = items.iter().all(Value::is_string);
            let all_numbers = items.iter().all(Value::is_number);
            if !(all_strings || all_numbers) {
                return Err(bad(path, OP, EXPECTED));
            }
            Ok(AnythingBut::Values(items.iter().map(|v| Scalar::from_value(v).expect("scalar")).collect()))
        }
        Value::Object(m) => {
            if m.len() != 1 {
                return Err(bad(path, OP, EXPECTED));
            }
            let (name, inner) = m.iter().next().expect("one key");
            if !matches!(name.as_str(), "prefix" | "suffix" | "equals-ignore-case" | "wildcard") {
                return Err(err(path, PatternErrorKind::UnknownOperator(format!("anything-but/{name}"))));
            }
            let strings = strings_or_list(inner)
                .ok_or_else(|| bad(path, OP, "its operator to take a string or a non-empty array of strings"))?;
            if strict && strings.iter().any(String::is_empty) {
                match name.as_str() {
                    "prefix" => return Err(err(path, PatternErrorKind::EmptyAnythingBut("prefix"))),
                    "suffix" => return Err(err(path, PatternErrorKind::EmptyAnythingBut("suffix"))),
                    _ => {}
                }
            }
            match name.as_str() {
                "prefix" => Ok(AnythingBut::Prefix(strings)),
                "suffix" => Ok(AnythingBut::Suffix(strings)),
                "equals-ignore-case" => Ok(AnythingBut::EqualsIgnoreCase(strings)),
                _ => strings
                    .iter()
                    .map(|s| Wildcard::parse(s))
                    .collect::<Result<Vec<_>, _>>()
                    .map(AnythingBut::Wildcard)
                    .map_err(|k| err(path, k)),
            }
        }
    }
}

fn strings_or_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items.iter().map(|i| i.as_str().map(str::to_owned)).collect(),
        _ => None,
    }
}

/// Pushes `v` into `out`, flattening arrays at any depth.
fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

/// Whether the pattern objects in `conj` all hold on one event object (`None`: the
/// object is absent, so every field under it is absent).
///
/// `$or` groups are resolved first, by trying their branches (a branch's fields join
/// the conjunction, as event-ruler's expansion of `$or` into sub-rules does); then the
/// fields are grouped by key, so that every sub-pattern naming the same key is tested
/// against the same element of an array of objects (array consistency).
fn eval_scope(conj: &[&ObjectPattern], node: Option<&Map<String, Value>>) -> bool {
    let mut flat: Vec<&ObjectPattern> = conj.to_vec();
    let mut pending: Vec<&[ObjectPattern]> = conj.iter().flat_map(|p| p.ors.iter().map(Vec::as_slice)).collect();
    resolve_ors(&mut flat, &mut pending, node)
}

fn resolve_ors<'p>(
    flat: &mut Vec<&'p ObjectPattern>,
    pending: &mut Vec<&'p [ObjectPattern]>,
    node: Option<&Map<String, Value>>,
) -> bool {
    let Some(group) = pending.pop() else {
        return eval_fields(flat, node);
    };
    let mut found = false;
    for branch in group {
        let (saved_flat, saved_pending) = (flat.len(), pending.len());
        flat.push(branch);
        pending.extend(branch.ors.iter().map(Vec::as_slice));
        found = resolve_ors(flat, pending, node);
        flat.truncate(saved_flat);
        pending.truncate(saved_pending);
        if found {
            break;
        }
    }
    pending.push(group);
    found
}

/// The fields of `flat` (no `$or` left) on one object: for each key, every leaf
/// condition must hold on the leaf values there, and all the object sub-patterns must
/// hold together on one object there (any one, if the key holds an array of objects).
fn eval_fields(flat: &[&ObjectPattern], node: Option<&Map<String, Value>>) -> bool {
    let mut keys: Vec<&str> = flat.iter().flat_map(|p| p.fields.iter().map(|(k, _)| k.as_str())).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter().all(|key| {
        let mut children = Vec::new();
        if let Some(child) = node.and_then(|o| o.get(key)) {
            flatten(child, &mut children);
        }
        let nodes = flat.iter().flat_map(|p| p.fields.iter().filter(|(k, _)| k == key).map(|(_, n)| n));
        let mut objects: Vec<&ObjectPattern> = Vec::new();
        for n in nodes {
            match n {
                Node::Leaf(matchers) => {
                    if !eval_leaf(matchers, &children) {
                        return false;
                    }
                }
                Node::Object(inner) => objects.push(inner),
            }
        }
        if objects.is_empty() {
            return true;
        }
        let mut elements = children.iter().filter_map(|c| c.as_object()).peekable();
        if elements.peek().is_none() {
            return eval_scope(&objects, None);
        }
        elements.any(|e| eval_scope(&objects, Some(e)))
    })
}

fn eval_leaf(matchers: &[Matcher], values: &[&Value]) -> bool {
    let leaves: Vec<&Value> = values.iter().copied().filter(|v| !v.is_object()).collect();
    if leaves.is_empty() {
        return matchers.contains(&Matcher::Exists(false));
    }
    matchers.iter().any(|m| leaves.iter().any(|leaf| m.matches_leaf(leaf)))
}
