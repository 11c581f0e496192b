//! Intrinsic functions (`States.Format(...)` and friends) for the JSONPath query language.

use crate::limits::{self, Budget};
use crate::path::{JsonPath, PathError, Scope};
use base64::Engine as _;
use serde_json::Value;
use sha2::Digest as _;
use thiserror::Error;

/// A parsed intrinsic function call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Literal(Value),
    /// A quoted string literal, its escapes resolved once at parse time.
    Str(StrLiteral),
    Path(JsonPath),
    Call(Call),
}

/// A quoted string literal (`'...'`). Inside it `\'`, `\{`, `\}` and `\\` stand for
/// `'`, `{`, `}` and `\` (Step Functions' reserved characters); any other backslash is a
/// definition error. The escapes are resolved once, here: `pieces` is the text split
/// around the unescaped `{}` pairs, the placeholders of `States.Format`, so an escaped
/// `\{\}` is never taken for one.
#[derive(Debug, Clone, PartialEq)]
pub struct StrLiteral {
    pub value: String,
    pub pieces: Vec<String>,
}

#[derive(Debug, Error, PartialEq)]
pub enum IntrinsicError {
    /// The expression does not parse (a definition error).
    #[error("invalid intrinsic function {text:?}: {reason}")]
    Syntax { text: String, reason: String },
    /// Evaluation failed (States.IntrinsicFailure at run time).
    #[error("{0}")]
    Failure(String),
    /// A path argument found nothing.
    #[error(transparent)]
    Path(#[from] PathError),
}

/// Whether a string value (of a `.$` key) is an intrinsic function call.
pub fn looks_like_call(text: &str) -> bool {
    text.trim_start().starts_with("States.")
}

/// Random numbers, UUIDs: supplied by the caller so evaluation stays deterministic.
pub trait Entropy {
    fn next_u64(&mut self) -> u64;
}

impl Call {
    pub fn parse(text: &str) -> Result<Call, IntrinsicError> {
        let mut p = P { text, chars: text.chars().collect(), pos: 0, depth: 0 };
        p.ws();
        let call = p.call()?;
        p.ws();
        if p.pos != p.chars.len() {
            return Err(p.err("unexpected trailing characters"));
        }
        Ok(call)
    }

    /// Evaluates the call. The arguments it reads and the values it builds count
    /// against [`limits::MAX_EVAL_WORK`]; strings and arrays it builds are bounded by
    /// [`limits::MAX_STRING_BYTES`] and [`limits::MAX_SEQUENCE_ITEMS`].
    pub fn eval(&self, scope: &Scope<'_>, rng: &mut dyn Entropy) -> Result<Value, IntrinsicError> {
        self.eval_with(scope, rng, &Budget::new())
    }

    /// Evaluates the call within an existing budget (that of a whole template).
    pub fn eval_with(
        &self,
        scope: &Scope<'_>,
        rng: &mut dyn Entropy,
        budget: &Budget,
    ) -> Result<Value, IntrinsicError> {
        let mut args = Vec::with_capacity(self.args.len());
        for a in &self.args {
            let v = match a {
                Arg::Literal(v) => v.clone(),
                Arg::Str(s) => Value::String(s.value.clone()),
                Arg::Path(p) => p.select(scope)?,
                Arg::Call(c) => c.eval_with(scope, rng, budget)?,
            };
            budget.charge_value(&v).map_err(IntrinsicError::Failure)?;
            args.push(v);
        }
        let out = match (self.name.as_str(), self.args.first()) {
            // A literal template: its placeholders were found when it was parsed.
            ("States.Format", Some(Arg::Str(template))) => format_pieces(&template.pieces, &args[1..])?,
            _ => apply(&self.name, args, rng)?,
        };
        limits::check_built(&out, budget).map_err(IntrinsicError::Failure)?;
        Ok(out)
    }
}

fn fail(msg: impl Into<String>) -> IntrinsicError {
    IntrinsicError::Failure(msg.into())
}

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), IntrinsicError> {
    if args.len() != n {
        return Err(fail(format!("The function {name} expects {n} argument(s) but received {}", args.len())));
    }
    Ok(())
}

fn as_str<'v>(name: &str, v: &'v Value) -> Result<&'v str, IntrinsicError> {
    v.as_str().ok_or_else(|| fail(format!("The function {name} expects a string argument, got {v}")))
}

fn as_array<'v>(name: &str, v: &'v Value) -> Result<&'v Vec<Value>, IntrinsicError> {
    v.as_array().ok_or_else(|| fail(format!("The function {name} expects an array argument, got {v}")))
}

fn as_int(name: &str, v: &Value) -> Result<i64, IntrinsicError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| fail(format!("The function {name} expects an integer argument, got {v}"))),
        _ => Err(fail(format!("The function {name} expects an integer argument, got {v}"))),
    }
}

/// Java's `Math.round`: half rounds up.
fn java_round(v: &Value, name: &str) -> Result<i64, IntrinsicError> {
    let f = v.as_f64().ok_or_else(|| fail(format!("The function {name} expects a number argument, got {v}")))?;
    Ok((f + 0.5).floor() as i64)
}

fn apply(name: &str, args: Vec<Value>, rng: &mut dyn Entropy) -> Result<Value, IntrinsicError> {
    match name {
        "States.Format" => {
            let template = as_str(
                name,
                args.first().ok_or_else(|| fail("The function States.Format expects at least 1 argument"))?,
            )?;
            format(template, &args[1..])
        }
        "States.StringToJson" => {
            arity(name, &args, 1)?;
            let s = as_str(name, &args[0])?;
            if s.trim().is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_str(s).map_err(|e| fail(format!("The function {name} could not parse {s:?}: {e}")))
        }
        "States.JsonToString" => {
            arity(name, &args, 1)?;
            Ok(Value::String(args[0].to_string()))
        }
        "States.Array" => Ok(Value::Array(args)),
        "States.ArrayPartition" => {
            arity(name, &args, 2)?;
            let items = as_array(name, &args[0])?;
            let size = as_int(name, &args[1])?;
            if size <= 0 {
                return Err(fail(format!(
                    "Invalid chunk size {size} for the function {name}: the chunk size must be greater than 0"
                )));
            }
            Ok(Value::Array(items.chunks(size as usize).map(|c| Value::Array(c.to_vec())).collect()))
        }
        "States.ArrayContains" => {
            arity(name, &args, 2)?;
            let items = as_array(name, &args[0])?;
            Ok(Value::Bool(items.iter().any(|x| json_eq(x, &args[1]))))
        }
        "States.ArrayRange" => {
            arity(name, &args, 3)?;
            let (start, end, step) = (as_int(name, &args[0])?, as_int(name, &args[1])?, as_int(name, &args[2])?);
            array_range(start, end, step).map(|v| Value::Array(v.into_iter().map(Value::from).collect()))
        }
        "States.ArrayGetItem" => {
            arity(name, &args, 2)?;
            let items = as_array(name, &args[0])?;
            let idx = as_int(name, &args[1])?;
            usize::try_from(idx)
                .ok()
                .and_then(|i| items.get(i))
                .cloned()
                .ok_or_else(|| fail(format!("Index {idx} is out of bounds for the function {name}")))
        }
        "States.ArrayLength" => {
            arity(name, &args, 1)?;
            Ok(Value::from(as_array(name, &args[0])?.len()))
        }
        "States.ArrayUnique" => {
            arity(name, &args, 1)?;
            let mut out: Vec<Value> = Vec::new();
            out.extend(unique(as_array(name, &args[0])?.clone()));
            Ok(Value::Array(out))
        }
        "States.Base64Encode" => {
            arity(name, &args, 1)?;
            let s = as_str(name, &args[0])?;
            if s.chars().count() > limits::MAX_BASE64_INPUT_CHARS {
                return Err(fail(format!("The input to {name} exceeds {} characters", limits::MAX_BASE64_INPUT_CHARS)));
            }
            Ok(Value::String(base64::engine::general_purpose::STANDARD.encode(s)))
        }
        "States.Base64Decode" => {
            arity(name, &args, 1)?;
            let s = as_str(name, &args[0])?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| fail(format!("The function {name} could not decode {s:?}: {e}")))?;
            String::from_utf8(bytes)
                .map(Value::String)
                .map_err(|_| fail(format!("The function {name} decoded bytes that are not UTF-8")))
        }
        "States.Hash" => {
            arity(name, &args, 2)?;
            let data = match &args[0] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let alg = as_str(name, &args[1])?;
            Ok(Value::String(hash(&data, alg)?))
        }
        "States.JsonMerge" => {
            arity(name, &args, 3)?;
            if args[2] != Value::Bool(false) {
                return Err(fail(
                    "The function States.JsonMerge supports only shallow merges: the third argument must be false",
                ));
            }
            let (Value::Object(a), Value::Object(b)) = (&args[0], &args[1]) else {
                return Err(fail("The function States.JsonMerge expects two objects"));
            };
            let mut out = a.clone();
            for (k, v) in b {
                out.insert(k.clone(), v.clone());
            }
            Ok(Value::Object(out))
        }
        "States.MathRandom" => {
            if args.len() != 2 && args.len() != 3 {
                return Err(fail("The function States.MathRandom expects 2 or 3 arguments"));
            }
            let start = java_round(&args[0], name)?;
            let end = java_round(&args[1], name)?;
            if end <= start {
                return Err(fail(format!("The function {name} expects start < end")));
            }
            // end > start, so the difference fits in a u64 even when it overflows i64.
            let span = end.wrapping_sub(start) as u64;
            let r = match args.get(2) {
                Some(seed) => {
                    use rand::{Rng, SeedableRng};
                    let mut g = rand::rngs::StdRng::seed_from_u64(as_int(name, seed)? as u64);
                    g.gen_range(0..span)
                }
                None => rng.next_u64() % span,
            };
            Ok(Value::from(start.wrapping_add(r as i64)))
        }
        "States.MathAdd" => {
            arity(name, &args, 2)?;
            java_round(&args[0], name)?
                .checked_add(java_round(&args[1], name)?)
                .map(Value::from)
                .ok_or_else(|| fail(format!("The result of {name} is out of range")))
        }
        "States.StringSplit" => {
            arity(name, &args, 2)?;
            let s = as_str(name, &args[0])?;
            let delims: Vec<char> = as_str(name, &args[1])?.chars().collect();
            let parts: Vec<Value> = s
                .split(|c| delims.contains(&c))
                .filter(|p| !p.is_empty())
                .take(limits::MAX_SEQUENCE_ITEMS + 1)
                .map(|p| Value::String(p.to_string()))
                .collect();
            limits::check_items(parts.len()).map_err(fail)?;
            Ok(Value::Array(parts))
        }
        "States.UUID" => {
            arity(name, &args, 0)?;
            let bytes = ((rng.next_u64() as u128) << 64) | rng.next_u64() as u128;
            Ok(Value::String(uuid::Builder::from_random_bytes(bytes.to_le_bytes()).into_uuid().to_string()))
        }
        other => Err(fail(format!("Unknown intrinsic function {other}"))),
    }
}

/// Inclusive range from `start` to `end` by `step`, at most
/// [`limits::MAX_ARRAY_RANGE_ITEMS`] items (Step Functions' limit).
pub fn array_range(start: i64, end: i64, step: i64) -> Result<Vec<i64>, IntrinsicError> {
    if step == 0 {
        return Err(fail("The function States.ArrayRange expects a non-zero step"));
    }
    let mut out = Vec::new();
    let mut x = start;
    while (step > 0 && x <= end) || (step < 0 && x >= end) {
        out.push(x);
        if out.len() > limits::MAX_ARRAY_RANGE_ITEMS {
            return Err(fail(format!(
                "The function States.ArrayRange would produce more than {} items",
                limits::MAX_ARRAY_RANGE_ITEMS
            )));
        }
        match x.checked_add(step) {
            Some(n) => x = n,
            None => break,
        }
    }
    Ok(out)
}

/// The items without repeats (first occurrence kept), with [`json_eq`]'s equality, in
/// linear time (a quadratic scan of a large array would take minutes).
pub fn unique(items: Vec<Value>) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    items.into_iter().filter(|x| seen.insert(canonical_key(x))).collect()
}

/// A string that two values share exactly when [`json_eq`] holds: numbers as `f64`,
/// object keys sorted.
fn canonical_key(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Number(n) => {
                let f = n.as_f64().unwrap_or(0.0);
                let f = if f == 0.0 { 0.0 } else { f };
                out.push_str(&format!("n{f:?}"));
            }
            Value::Array(items) => {
                out.push('[');
                for x in items {
                    write(x, out);
                    out.push(',');
                }
                out.push(']');
            }
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for k in keys {
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&m[k.as_str()], out);
                    out.push(',');
                }
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// JSON equality where `1` equals `1.0`.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn hash(data: &str, alg: &str) -> Result<String, IntrinsicError> {
    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
    Ok(match alg {
        "MD5" => hex(&md5::Md5::digest(data.as_bytes())),
        "SHA-1" => hex(&sha1::Sha1::digest(data.as_bytes())),
        "SHA-256" => hex(&sha2::Sha256::digest(data.as_bytes())),
        "SHA-384" => hex(&sha2::Sha384::digest(data.as_bytes())),
        "SHA-512" => hex(&sha2::Sha512::digest(data.as_bytes())),
        other => {
            return Err(fail(format!(
                "The hash algorithm {other} is not supported: use MD5, SHA-1, SHA-256, SHA-384 or SHA-512"
            )))
        }
    })
}

/// `States.Format` with a template that is not a literal (a path, a nested call): its
/// text is data, not intrinsic syntax, so it has no escapes and every `{}` is a
/// placeholder.
fn format(template: &str, args: &[Value]) -> Result<Value, IntrinsicError> {
    let pieces: Vec<String> = template.split("{}").map(str::to_string).collect();
    format_pieces(&pieces, args)
}

/// Joins `pieces` with the rendered `args` in between: one argument per gap.
fn format_pieces(pieces: &[String], args: &[Value]) -> Result<Value, IntrinsicError> {
    if pieces.len() != args.len() + 1 {
        return Err(fail("The number of arguments does not match the number of placeholders in States.Format"));
    }
    let mut out = String::new();
    for (i, piece) in pieces.iter().enumerate() {
        out.push_str(piece);
        if let Some(v) = args.get(i) {
            out.push_str(&java_string(v));
        }
        limits::check_string(&out).map_err(fail)?;
    }
    Ok(Value::String(out))
}

/// A value rendered like Java's `toString` of the deserialized JSON (as AWS does in
/// States.Format): strings bare, objects `{a=1, b=[]}`.
pub fn java_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => format!("[{}]", items.iter().map(java_string).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            format!("{{{}}}", map.iter().map(|(k, x)| format!("{k}={}", java_string(x))).collect::<Vec<_>>().join(", "))
        }
    }
}

struct P<'a> {
    text: &'a str,
    chars: Vec<char>,
    pos: usize,
    /// Calls open around the current position.
    depth: usize,
}

impl P<'_> {
    fn err(&self, reason: &str) -> IntrinsicError {
        IntrinsicError::Syntax { text: self.text.to_string(), reason: reason.to_string() }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn call(&mut self) -> Result<Call, IntrinsicError> {
        self.depth += 1;
        if self.depth > limits::MAX_EXPRESSION_DEPTH {
            return Err(
                self.err(&format!("intrinsic function calls nest deeper than {} levels", limits::MAX_EXPRESSION_DEPTH))
            );
        }
        let call = self.call_body();
        self.depth -= 1;
        call
    }

    fn call_body(&mut self) -> Result<Call, IntrinsicError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '_') {
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        if !name.starts_with("States.") {
            return Err(self.err("a function name must start with 'States.'"));
        }
        self.ws();
        if self.peek() != Some('(') {
            return Err(self.err("expected '('"));
        }
        self.pos += 1;
        let mut args = Vec::new();
        self.ws();
        if self.peek() == Some(')') {
            self.pos += 1;
            return Ok(Call { name, args });
        }
        loop {
            self.ws();
            args.push(self.arg()?);
            self.ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(')') => {
                    self.pos += 1;
                    return Ok(Call { name, args });
                }
                _ => return Err(self.err("expected ',' or ')'")),
            }
        }
    }

    fn arg(&mut self) -> Result<Arg, IntrinsicError> {
        match self.peek() {
            Some('\'') => {
                self.pos += 1;
                let (mut value, mut pieces) = (String::new(), Vec::new());
                let mut piece = String::new();
                loop {
                    match self.peek() {
                        None => return Err(self.err("unterminated string literal")),
                        Some('\\') => {
                            let c = match self.chars.get(self.pos + 1).copied() {
                                Some(c @ ('\'' | '{' | '}' | '\\')) => c,
                                Some(c) => {
                                    return Err(self.err(&format!(
                                        "invalid escape '\\{c}' in a string literal: only \\', \\{{, \\}} and \\\\ are escapes"
                                    )))
                                }
                                None => return Err(self.err("dangling escape")),
                            };
                            value.push(c);
                            piece.push(c);
                            self.pos += 2;
                        }
                        Some('{') if self.chars.get(self.pos + 1) == Some(&'}') => {
                            value.push_str("{}");
                            pieces.push(std::mem::take(&mut piece));
                            self.pos += 2;
                        }
                        Some('\'') => {
                            self.pos += 1;
                            break;
                        }
                        Some(c) => {
                            value.push(c);
                            piece.push(c);
                            self.pos += 1;
                        }
                    }
                }
                pieces.push(piece);
                Ok(Arg::Str(StrLiteral { value, pieces }))
            }
            Some('$') => {
                let start = self.pos;
                let mut depth = 0i32;
                let mut quote = None;
                while let Some(c) = self.peek() {
                    match (quote, c) {
                        (Some(q), c) if c == q => quote = None,
                        (Some(_), _) => {}
                        (None, '\'' | '"') => quote = Some(c),
                        (None, '[' | '(') => depth += 1,
                        (None, ']') => depth -= 1,
                        (None, ')') if depth == 0 => break,
                        (None, ')') => depth -= 1,
                        (None, ',') if depth == 0 => break,
                        (None, c) if c.is_whitespace() && depth == 0 => break,
                        _ => {}
                    }
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                JsonPath::parse(&text).map(Arg::Path).map_err(|e| self.err(&e.to_string()))
            }
            Some('S') => Ok(Arg::Call(self.call()?)),
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|c| !matches!(c, ',' | ')') && !c.is_whitespace()) {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                match serde_json::from_str::<Value>(&text) {
                    Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => Ok(Arg::Literal(v)),
                    _ => Err(self.err(&format!("unexpected argument {text:?}"))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Map};

    struct Fixed(u64);
    impl Entropy for Fixed {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
            self.0
        }
    }

    fn eval(expr: &str, input: Value) -> Result<Value, IntrinsicError> {
        let vars = Map::new();
        let scope = Scope { input: &input, context: &Value::Null, variables: &vars };
        Call::parse(expr)?.eval(&scope, &mut Fixed(1))
    }

    #[test]
    fn format_and_escapes() {
        assert_eq!(
            eval("States.Format('a {} b \\{\\} {}', $.x, $.y)", json!({"x": 1, "y": {"k": [1, "s"]}})),
            Ok(json!("a 1 b {} {k=[1, s]}"))
        );
        assert!(eval("States.Format('{}')", json!({})).is_err());
    }

    #[test]
    fn nested_calls() {
        assert_eq!(
            eval("States.ArrayGetItem(States.StringSplit('a-b-c', '-'), States.MathAdd(1, 1))", json!({})),
            Ok(json!("c"))
        );
        assert_eq!(eval("States.ArrayLength(States.Array(1, 'x', null))", json!({})), Ok(json!(3)));
    }

    #[test]
    fn math_add_rounds_like_java() {
        assert_eq!(eval("States.MathAdd(-2.5, 0)", json!({})), Ok(json!(-2)));
        assert_eq!(eval("States.MathAdd(2.5, 0)", json!({})), Ok(json!(3)));
    }

    #[test]
    fn hash_and_base64() {
        assert_eq!(eval("States.Hash('input data', 'MD5')", json!({})), Ok(json!("812f45842bc6d66ee14572ce20db8e86")));
        assert_eq!(eval("States.Base64Decode(States.Base64Encode('hé'))", json!({})), Ok(json!("hé")));
        assert!(eval("States.Hash('x', 'CRC')", json!({})).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowing() {
        let nested = |n: usize| format!("{}'x'{}", "States.Format('{}', ".repeat(n), ")".repeat(n));
        assert_eq!(eval(&nested(limits::MAX_EXPRESSION_DEPTH), json!({})), Ok(json!("x")));
        let e = Call::parse(&nested(20_000)).unwrap_err().to_string();
        assert!(e.contains("nest deeper than"), "{e}");
        let e = Call::parse(&format!("States.Array({}1{})", "States.Array(".repeat(20_000), ")".repeat(20_000)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nest deeper than"), "{e}");
    }

    #[test]
    fn arithmetic_does_not_overflow() {
        let max = i64::MAX;
        assert_eq!(array_range(max - 1, max, 1).unwrap(), vec![max - 1, max]);
        assert_eq!(array_range(i64::MIN + 1, i64::MIN, -1).unwrap(), vec![i64::MIN + 1, i64::MIN]);
        assert!(eval(&format!("States.MathAdd({max}, 1)"), json!({})).is_err());
        let r = eval("States.MathRandom(-9223372036854775807, 9223372036854775807)", json!({})).unwrap();
        assert!(r.is_i64());
    }

    #[test]
    fn output_is_bounded() {
        assert_eq!(array_range(1, 1000, 1).unwrap().len(), 1000);
        assert!(array_range(1, 1001, 1).is_err());
        assert!(eval("States.ArrayRange(0, 9223372036854775807, 1)", json!({})).is_err());
        // 64 KiB in, 100 placeholders: 6.4 MiB out is refused.
        let big = "x".repeat(64 * 1024);
        let template = "{}".repeat(100);
        let args = ", $.s".repeat(100);
        let e = eval(&format!("States.Format('{template}'{args})"), json!({"s": big})).unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
        // Reading the same large value many times runs out of work.
        let args = "$.a, ".repeat(300);
        let items: Vec<u32> = (0..20_000).collect();
        let e = eval(&format!("States.ArrayLength(States.Array({args}1))"), json!({"a": items})).unwrap_err();
        assert!(e.to_string().starts_with("U1002"), "{e}");
    }

    #[test]
    fn unique_is_linear_and_keeps_first() {
        let items: Vec<Value> = (0..200_000).map(|i| json!(i % 1000)).collect();
        assert_eq!(unique(items).len(), 1000);
        assert_eq!(unique(vec![json!(1), json!(1.0), json!({"a": 1, "b": 2}), json!({"b": 2, "a": 1.0})]).len(), 2);
        assert_eq!(unique(vec![json!("1"), json!(1), json!([1]), json!(["1"])]).len(), 4);
    }

    #[test]
    fn parse_errors() {
        assert!(Call::parse("States.Format('x'").is_err());
        assert!(Call::parse("Foo.Bar()").is_err());
        assert!(Call::parse("States.Array(x)").is_err());
        let e = Call::parse("States.Format('a\\nb')").unwrap_err().to_string();
        assert!(e.contains("invalid escape '\\n'"), "{e}");
    }

    proptest! {
        #[test]
        fn parser_never_panics(text in "States\\.[A-Za-z.]{0,12}[(),'$.a-z0-9{}\\\\ S]{0,60}") {
            let _ = Call::parse(&text);
        }

        #[test]
        fn partition_concatenates_back(items in proptest::collection::vec(0i64..100, 0..40), size in 1i64..10) {
            let out = eval(&format!("States.ArrayPartition($.a, {size})"), json!({"a": items})).unwrap();
            let chunks = out.as_array().unwrap();
            let flat: Vec<Value> = chunks.iter().flat_map(|c| c.as_array().unwrap().clone()).collect();
            prop_assert_eq!(flat, items.iter().map(|x| json!(x)).collect::<Vec<_>>());
            for (i, c) in chunks.iter().enumerate() {
                let n = c.as_array().unwrap().len() as i64;
                prop_assert!(n >= 1 && n <= size);
                if i + 1 < chunks.len() { prop_assert_eq!(n, size); }
            }
        }

        #[test]
        fn range_is_inclusive_and_stepped(start in -50i64..50, len in 0i64..50, step in 1i64..7) {
            let end = start + len;
            let v = array_range(start, end, step).unwrap();
            prop_assert_eq!(v.first().copied(), Some(start));
            prop_assert!(v.windows(2).all(|w| w[1] - w[0] == step));
            prop_assert!(*v.last().unwrap() <= end && *v.last().unwrap() + step > end);
        }
    }
}
