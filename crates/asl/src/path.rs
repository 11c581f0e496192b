//! JSONPath as used by ASL: selection paths (`InputPath`, `.$` values, `Variable` ...)
//! and reference paths (`ResultPath`), which can also write into a document.
//!
//! Supported syntax: `$` (input), `$$` (context object), `$name` (a variable), `.field`,
//! `['field']` / `["field"]`, `[n]` (negative counts from the end), `[*]`, `.*`,
//! `[start:end]`, `..field` and filters `[?(@.a.b OP literal)]` with `==`, `!=`, `<`,
//! `<=`, `>`, `>=` (or `[?(@.a)]` for presence).

use serde_json::{Map, Value};
use std::fmt;
use thiserror::Error;

/// Where a path starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Root {
    /// `$`: the state's input.
    Input,
    /// `$$`: the context object.
    Context,
    /// `$name`: a workflow variable.
    Variable(String),
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Field(String),
    Index(i64),
    Wildcard,
    Slice(Option<i64>, Option<i64>),
    Descendant(String),
    Filter(Filter),
}

/// A filter `[?(@.path OP literal)]`; without operator it tests presence.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub path: Vec<Segment>,
    pub op: Option<(CmpOp, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed JSONPath.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    pub root: Root,
    pub segments: Vec<Segment>,
    text: String,
}

#[derive(Debug, Error, PartialEq)]
pub enum PathError {
    #[error("invalid path {path:?}: {reason}")]
    Syntax { path: String, reason: String },
    #[error("no results for path: {0}")]
    NotFound(String),
    #[error("{0}")]
    Reference(String),
    /// The matches of an indefinite path are too large to copy.
    #[error("{0}")]
    Limit(String),
}

/// The values a path evaluation can read from.
pub struct Scope<'a> {
    pub input: &'a Value,
    pub context: &'a Value,
    pub variables: &'a Map<String, Value>,
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonPath {
    /// Parses a path; it must start with `$`.
    pub fn parse(text: &str) -> Result<JsonPath, PathError> {
        Parser::new(text).parse()
    }

    /// The text the path was parsed from.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// A definite path names at most one value; an indefinite one (wildcard, slice,
    /// descendant, filter) yields an array of matches.
    pub fn is_definite(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Field(_) | Segment::Index(_)))
    }

    /// The path in Jayway's bracket notation, e.g. `$['a'][0]`, used in AWS error text.
    pub fn canonical(&self) -> String {
        let mut out = match &self.root {
            Root::Input => "$".to_string(),
            Root::Context => "$$".to_string(),
            Root::Variable(v) => format!("${v}"),
        };
        for s in &self.segments {
            match s {
                Segment::Field(f) => out.push_str(&format!("['{f}']")),
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
                Segment::Wildcard => out.push_str("[*]"),
                Segment::Slice(a, b) => out.push_str(&format!(
                    "[{}:{}]",
                    a.map(|v| v.to_string()).unwrap_or_default(),
                    b.map(|v| v.to_string()).unwrap_or_default()
                )),
                Segment::Descendant(f) => out.push_str(&format!("..['{f}']")),
                Segment::Filter(_) => out.push_str("[?]"),
            }
        }
        out
    }

    /// Evaluates the path. A definite path that matches nothing is an error; an
    /// indefinite path returns the (possibly empty) array of matches.
    pub fn select(&self, scope: &Scope<'_>) -> Result<Value, PathError> {
        let start = match &self.root {
            Root::Input => scope.input,
            Root::Context => scope.context,
            Root::Variable(name) => scope.variables.get(name).ok_or_else(|| PathError::NotFound(self.text.clone()))?,
        };
        let found = select_segments(start, &self.segments);
        if self.is_definite() {
            found.into_iter().next().cloned().ok_or_else(|| PathError::NotFound(self.canonical()))
        } else {
            // `$..a` on `{"a": {"a": ...}}` matches each level, which holds all the
            // levels below: copying every match could take the square of the input.
            let cap = crate::limits::MAX_EVAL_WORK;
            let mut work = 0u64;
            for v in &found {
                work += crate::limits::weight(v, cap - work.min(cap));
                if work > cap {
                    return Err(PathError::Limit(format!(
                        "the matches of the path {} exceed the work limit of {cap} units",
                        self.text
                    )));
                }
            }
            Ok(Value::Array(found.into_iter().cloned().collect()))
        }
    }

    /// Reads from `input` only (for paths known to be rooted at `$`).
    pub fn select_input(&self, input: &Value) -> Result<Value, PathError> {
        let empty = Map::new();
        self.select(&Scope { input, context: &Value::Null, variables: &empty })
    }

    /// Whether this is a valid reference path (`ResultPath`): `$` followed by fields
    /// and indexes only.
    pub fn is_reference(&self) -> bool {
        self.root == Root::Input && self.is_definite()
    }

    /// Writes `value` at this reference path inside `doc`, creating objects on the way.
    pub fn write(&self, doc: Value, value: Value) -> Result<Value, PathError> {
        if !self.is_reference() {
            return Err(PathError::Reference(format!("{} is not a reference path", self.text)));
        }
        let mut doc = doc;
        write_at(&mut doc, &self.segments, value, &self.text)?;
        Ok(doc)
    }
}

fn write_at(target: &mut Value, segs: &[Segment], value: Value, text: &str) -> Result<(), PathError> {
    let Some((first, rest)) = segs.split_first() else {
        *target = value;
        return Ok(());
    };
    match first {
        Segment::Field(name) => {
            let Value::Object(map) = target else {
                return Err(PathError::Reference(format!("Unable to apply ResultPath \"{text}\" to input")));
            };
            let slot = map.entry(name.clone()).or_insert(Value::Null);
            if !rest.is_empty() && !slot.is_object() && !slot.is_array() {
                *slot = Value::Object(Map::new());
            }
            write_at(slot, rest, value, text)
        }
        Segment::Index(i) => {
            let Value::Array(items) = target else {
                return Err(PathError::Reference(format!("Unable to apply ResultPath \"{text}\" to input")));
            };
            let idx = resolve_index(*i, items.len())
                .ok_or_else(|| PathError::Reference(format!("Unable to apply ResultPath \"{text}\" to input")))?;
            write_at(&mut items[idx], rest, value, text)
        }
        _ => Err(PathError::Reference(format!("{text} is not a reference path"))),
    }
}

fn resolve_index(i: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let idx = if i < 0 { len + i } else { i };
    (0..len).contains(&idx).then_some(idx as usize)
}

fn select_segments<'v>(start: &'v Value, segs: &[Segment]) -> Vec<&'v Value> {
    let mut current = vec![start];
    for seg in segs {
        let mut next = Vec::new();
        for v in current {
            apply_segment(v, seg, &mut next);
        }
        current = next;
    }
    current
}

fn apply_segment<'v>(v: &'v Value, seg: &Segment, out: &mut Vec<&'v Value>) {
    match seg {
        Segment::Field(name) => {
            if let Some(x) = v.as_object().and_then(|m| m.get(name)) {
                out.push(x);
            }
        }
        Segment::Index(i) => {
            if let Some(items) = v.as_array() {
                if let Some(idx) = resolve_index(*i, items.len()) {
                    out.push(&items[idx]);
                }
            }
        }
        Segment::Wildcard => match v {
            Value::Array(items) => out.extend(items.iter()),
            Value::Object(map) => out.extend(map.values()),
            _ => {}
        },
        Segment::Slice(a, b) => {
            if let Some(items) = v.as_array() {
                let len = items.len() as i64;
                let norm = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
                let start = a.map(norm).unwrap_or(0);
                let end = b.map(norm).unwrap_or(len);
                if start < end {
                    out.extend(items[start as usize..end as usize].iter());
                }
            }
        }
        Segment::Descendant(name) => descend(v, name, out),
        Segment::Filter(filter) => {
            let candidates: Vec<&Value> = match v {
                Value::Array(items) => items.iter().collect(),
                Value::Object(map) => map.values().collect(),
                _ => vec![],
            };
            for c in candidates {
                if filter_matches(c, filter) {
                    out.push(c);
                }
            }
        }
    }
}

fn descend<'v>(v: &'v Value, name: &str, out: &mut Vec<&'v Value>) {
    match v {
        Value::Object(map) => {
            if let Some(x) = map.get(name) {
                out.push(x);
            }
            for x in map.values() {
                descend(x, name, out);
            }
        }
        Value::Array(items) => {
            for x in items {
                descend(x, name, out);
            }
        }
        _ => {}
    }
}

fn filter_matches(v: &Value, filter: &Filter) -> bool {
    let found = select_segments(v, &filter.path);
    let Some(actual) = found.first() else {
        return false;
    };
    let Some((op, expected)) = &filter.op else {
        return true;
    };
    let ord = match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => {
            a.as_f64().unwrap_or(f64::NAN).partial_cmp(&b.as_f64().unwrap_or(f64::NAN))
        }
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (a, b) => {
            return match op {
                CmpOp::Eq => a == &b,
                CmpOp::Ne => a != &b,
                _ => false,
            }
        }
    };
    let Some(ord) = ord else { return false };
    use std::cmp::Ordering::*;
    match op {
        CmpOp::Eq => ord == Equal,
        CmpOp::Ne => ord != Equal,
        CmpOp::Lt => ord == Less,
        CmpOp::Le => ord != Greater,
        CmpOp::Gt => ord == Greater,
        CmpOp::Ge => ord != Less,
    }
}

struct Parser<'a> {
    text: &'a str,
    chars: Vec<char>,
    pos: usize,
    /// Filters open around the current position.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser { text, chars: text.chars().collect(), pos: 0, depth: 0 }
    }

    fn err(&self, reason: &str) -> PathError {
        PathError::Syntax { path: self.text.to_string(), reason: reason.to_string() }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn parse(mut self) -> Result<JsonPath, PathError> {
        if !self.eat('$') {
            return Err(self.err("a path must start with '$'"));
        }
        let root = if self.eat('$') {
            Root::Context
        } else if self.peek().is_some_and(is_name_char) {
            Root::Variable(self.name())
        } else {
            Root::Input
        };
        let segments = self.segments(false)?;
        if self.pos != self.chars.len() {
            return Err(self.err("unexpected trailing characters"));
        }
        Ok(JsonPath { root, segments, text: self.text.to_string() })
    }

    fn name(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(is_name_char) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn segments(&mut self, in_filter: bool) -> Result<Vec<Segment>, PathError> {
        let mut segs = Vec::new();
        loop {
            match self.peek() {
                Some('.') => {
                    self.pos += 1;
                    if self.eat('.') {
                        let name = self.name();
                        if name.is_empty() {
                            return Err(self.err("expected a field name after '..'"));
                        }
                        segs.push(Segment::Descendant(name));
                    } else if self.eat('*') {
                        segs.push(Segment::Wildcard);
                    } else {
                        let name = self.name();
                        if name.is_empty() {
                            return Err(self.err("expected a field name after '.'"));
                        }
                        segs.push(Segment::Field(name));
                    }
                }
                Some('[') => {
                    self.pos += 1;
                    segs.push(self.bracket()?);
                    if !self.eat(']') {
                        return Err(self.err("expected ']'"));
                    }
                }
                _ => break,
            }
            if segs.len() > crate::limits::MAX_PATH_SEGMENTS {
                return Err(self.err(&format!("a path has at most {} segments", crate::limits::MAX_PATH_SEGMENTS)));
            }
            if in_filter && matches!(self.peek(), Some(' ' | ')' | '=' | '!' | '<' | '>')) {
                break;
            }
        }
        Ok(segs)
    }

    fn bracket(&mut self) -> Result<Segment, PathError> {
        match self.peek() {
            Some('\'') | Some('"') => {
                let quote = self.peek().unwrap_or('\'');
                self.pos += 1;
                let mut s = String::new();
                loop {
                    match self.peek() {
                        None => return Err(self.err("unterminated quoted name")),
                        Some('\\') if self.chars.get(self.pos + 1) == Some(&quote) => {
                            s.push(quote);
                            self.pos += 2;
                        }
                        Some(c) if c == quote => {
                            self.pos += 1;
                            break;
                        }
                        Some(c) => {
                            s.push(c);
                            self.pos += 1;
                        }
                    }
                }
                Ok(Segment::Field(s))
            }
            Some('*') => {
                self.pos += 1;
                Ok(Segment::Wildcard)
            }
            Some('?') => {
                self.pos += 1;
                if !self.eat('(') {
                    return Err(self.err("expected '(' after '?'"));
                }
                self.depth += 1;
                if self.depth > crate::limits::MAX_EXPRESSION_DEPTH {
                    return Err(
                        self.err(&format!("filters nest deeper than {} levels", crate::limits::MAX_EXPRESSION_DEPTH))
                    );
                }
                let f = self.filter();
                self.depth -= 1;
                let f = f?;
                if !self.eat(')') {
                    return Err(self.err("expected ')' closing the filter"));
                }
                Ok(Segment::Filter(f))
            }
            _ => {
                let a = self.int()?;
                if self.eat(':') {
                    let b = self.int()?;
                    Ok(Segment::Slice(a, b))
                } else {
                    a.map(Segment::Index).ok_or_else(|| self.err("expected an index, a name, '*' or a filter"))
                }
            }
        }
    }

    fn int(&mut self) -> Result<Option<i64>, PathError> {
        let start = self.pos;
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos == start {
            return Ok(None);
        }
        let s: String = self.chars[start..self.pos].iter().collect();
        s.parse().map(Some).map_err(|_| self.err("bad index"))
    }

    fn skip_ws(&mut self) {
        while self.peek() == Some(' ') {
            self.pos += 1;
        }
    }

    fn filter(&mut self) -> Result<Filter, PathError> {
        self.skip_ws();
        if !self.eat('@') {
            return Err(self.err("a filter must start with '@'"));
        }
        let path = self.segments(true)?;
        self.skip_ws();
        let op = match (self.peek(), self.chars.get(self.pos + 1).copied()) {
            (Some('='), Some('=')) => Some((CmpOp::Eq, 2)),
            (Some('!'), Some('=')) => Some((CmpOp::Ne, 2)),
            (Some('<'), Some('=')) => Some((CmpOp::Le, 2)),
            (Some('>'), Some('=')) => Some((CmpOp::Ge, 2)),
            (Some('<'), _) => Some((CmpOp::Lt, 1)),
            (Some('>'), _) => Some((CmpOp::Gt, 1)),
            _ => None,
        };
        let Some((op, len)) = op else {
            return Ok(Filter { path, op: None });
        };
        self.pos += len;
        self.skip_ws();
        let start = self.pos;
        let mut in_quote = None;
        while let Some(c) = self.peek() {
            match in_quote {
                Some(q) if c == q => in_quote = None,
                Some(_) => {}
                None if c == '\'' || c == '"' => in_quote = Some(c),
                None if c == ')' => break,
                None => {}
            }
            self.pos += 1;
        }
        let raw: String = self.chars[start..self.pos].iter().collect();
        let raw = raw.trim();
        let literal = if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            Value::String(inner.to_string())
        } else {
            serde_json::from_str(raw).map_err(|_| self.err("bad literal in filter"))?
        };
        Ok(Filter { path, op: Some((op, literal)) })
    }
}

fn is_name_char(c: char) -> bool {
    !matches!(c, '.' | '[' | ']' | ' ' | '(' | ')' | ',' | '\'' | '"' | '=' | '!' | '<' | '>' | '$' | '@' | '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn sel(path: &str, input: Value) -> Result<Value, PathError> {
        JsonPath::parse(path).unwrap().select_input(&input)
    }

    #[test]
    fn selects_fields_indexes_and_slices() {
        let doc = json!({"a": {"b": [1, 2, 3]}, "x y": 5});
        assert_eq!(sel("$.a.b[1]", doc.clone()), Ok(json!(2)));
        assert_eq!(sel("$.a.b[-1]", doc.clone()), Ok(json!(3)));
        assert_eq!(sel("$.a.b[1:]", doc.clone()), Ok(json!([2, 3])));
        assert_eq!(sel("$.a.b[:1]", doc.clone()), Ok(json!([1])));
        assert_eq!(sel("$.a.b[*]", doc.clone()), Ok(json!([1, 2, 3])));
        assert_eq!(sel("$['x y']", doc.clone()), Ok(json!(5)));
        assert_eq!(sel("$..b", doc.clone()), Ok(json!([[1, 2, 3]])));
        assert!(matches!(sel("$.nope", doc), Err(PathError::NotFound(_))));
    }

    #[test]
    fn filters() {
        let doc = json!({"u": [{"s": 0, "n": "a"}, {"s": 1, "n": "b"}]});
        assert_eq!(sel("$.u[?(@.s == 0)]", doc.clone()), Ok(json!([{"s": 0, "n": "a"}])));
        assert_eq!(sel("$.u[?(@.n != 'a')].n", doc), Ok(json!(["b"])));
    }

    #[test]
    fn roots() {
        let p = JsonPath::parse("$$.Execution.Id").unwrap();
        assert_eq!(p.root, Root::Context);
        let p = JsonPath::parse("$var.x").unwrap();
        assert_eq!(p.root, Root::Variable("var".into()));
        assert!(JsonPath::parse("a.b").is_err());
        assert!(JsonPath::parse("$.a[").is_err());
    }

    #[test]
    fn writes_reference_paths() {
        let p = JsonPath::parse("$.a.b").unwrap();
        assert_eq!(p.write(json!({"x": 1}), json!(2)), Ok(json!({"x": 1, "a": {"b": 2}})));
        assert_eq!(JsonPath::parse("$").unwrap().write(json!(1), json!(2)), Ok(json!(2)));
        assert!(p.write(json!("s"), json!(2)).is_err());
    }

    #[test]
    fn long_and_deep_paths_are_refused_not_overflowing() {
        let limit = crate::limits::MAX_PATH_SEGMENTS;
        assert!(JsonPath::parse(&format!("${}", ".a".repeat(limit))).is_ok());
        let e = JsonPath::parse(&format!("${}", ".a".repeat(100_000))).unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
        let e = JsonPath::parse(&format!("${}", "[0]".repeat(100_000))).unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
        let nested = format!("$.a{}{}", "[?(@.a".repeat(20_000), ")]".repeat(20_000));
        let e = JsonPath::parse(&nested).unwrap_err();
        assert!(e.to_string().contains("nest deeper"), "{e}");
    }

    #[test]
    fn copying_nested_matches_is_bounded() {
        // 60 nested levels over 100,000 numbers: `$..a` matches every level, and each
        // match holds the array: 6,000,000 values to copy.
        let items: Vec<u32> = (0..100_000).collect();
        let mut doc = json!({"a": items});
        for _ in 0..60 {
            doc = json!({"a": doc});
        }
        let e = sel("$..a", doc.clone()).unwrap_err();
        assert!(e.to_string().contains("work limit"), "{e}");
        assert_eq!(sel("$..a[0]", doc).map(|v| v.as_array().map(Vec::len)), Ok(Some(1)));
    }

    #[test]
    fn descendant_search_reaches_deep_input() {
        // A value as deep as JSON text can be (serde_json reads at most 128 levels).
        let mut doc = json!({"k": 1});
        for _ in 0..126 {
            doc = json!({"a": doc});
        }
        assert_eq!(sel("$..k", doc), Ok(json!([1])));
    }

    proptest! {
        #[test]
        fn parser_never_panics(text in "\\$[a-z.\\[\\]?()@*'=<> 0-9-]{0,60}") {
            let _ = JsonPath::parse(&text);
        }

        #[test]
        fn dotted_paths_round_trip(names in proptest::collection::vec("[a-zA-Z_][a-zA-Z0-9_]{0,6}", 1..5)) {
            let text = format!("$.{}", names.join("."));
            let p = JsonPath::parse(&text).unwrap();
            prop_assert_eq!(p.as_str(), text.as_str());
            prop_assert_eq!(p.segments.len(), names.len());
            let mut doc = json!(42);
            for n in names.iter().rev() {
                doc = json!({ n.clone(): doc });
            }
            prop_assert_eq!(p.select_input(&doc), Ok(json!(42)));
            let written = p.write(json!({}), json!(42)).unwrap();
            prop_assert_eq!(p.select_input(&written), Ok(json!(42)));
        }
    }
}
