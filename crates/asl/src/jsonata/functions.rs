//! Built-in JSONata functions, plus the functions Step Functions adds
//! (`$partition`, `$range`, `$hash`, `$random`, `$uuid`, `$parse`).

use super::eval::{apply, num, truthy, Env, EvalError, Val};
use super::parse::Expr;
use crate::limits::{self, MAX_SEQUENCE_ITEMS};
use base64::Engine as _;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::rc::Rc;

/// What JavaScript's `encodeURIComponent` leaves as it is: `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const URI_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// What JavaScript's `encodeURI` leaves as it is: the above and `; , / ? : @ & = + $ #`.
const URI: &percent_encoding::AsciiSet = &URI_COMPONENT
    .remove(b';')
    .remove(b',')
    .remove(b'/')
    .remove(b'?')
    .remove(b':')
    .remove(b'@')
    .remove(b'&')
    .remove(b'=')
    .remove(b'+')
    .remove(b'$')
    .remove(b'#');

/// The functions this interpreter implements: JSONata 2.x's library but for
/// [`UNSUPPORTED`], and Step Functions' additions.
const NAMES: &[&str] = &[
    // String
    "string",
    "length",
    "substring",
    "substringBefore",
    "substringAfter",
    "uppercase",
    "lowercase",
    "trim",
    "pad",
    "contains",
    "split",
    "join",
    "match",
    "replace",
    "base64encode",
    "base64decode",
    "encodeUrlComponent",
    "encodeUrl",
    "decodeUrlComponent",
    "decodeUrl",
    // Numeric
    "number",
    "abs",
    "floor",
    "ceil",
    "round",
    "power",
    "sqrt",
    "random",
    "formatBase",
    // Aggregation
    "sum",
    "max",
    "min",
    "average",
    // Boolean
    "boolean",
    "not",
    "exists",
    // Array
    "count",
    "append",
    "sort",
    "reverse",
    "shuffle",
    "distinct",
    "zip",
    // Object
    "keys",
    "lookup",
    "spread",
    "merge",
    "sift",
    "each",
    "error",
    "assert",
    "type",
    // Date/time (without pictures)
    "fromMillis",
    "toMillis",
    // Higher-order
    "map",
    "filter",
    "single",
    "reduce",
    // Step Functions
    "partition",
    "range",
    "hash",
    "uuid",
    "parse",
];

/// Functions of JSONata 2.x's library that a definition may not call (refused when it
/// is parsed), with the reason.
pub const UNSUPPORTED: &[(&str, &str)] = &[
    ("eval", "it would parse and run text from the data as an expression"),
    ("formatNumber", "its picture strings are not implemented"),
    ("formatInteger", "its picture strings are not implemented"),
    ("parseInteger", "its picture strings are not implemented"),
    ("now", "the interpreter is deterministic (use $states.context.State.EnteredTime)"),
    ("millis", "the interpreter is deterministic (use $states.context.State.EnteredTime)"),
];

/// Functions supported with at most this many arguments (their picture and timezone
/// arguments are not implemented).
const MAX_ARGS: &[(&str, usize)] = &[("fromMillis", 1), ("toMillis", 1)];

pub fn exists(name: &str) -> bool {
    NAMES.contains(&name)
}

/// A function of JSONata's library that the interpreter does not implement is a
/// definition error naming it (unless the expression binds the name itself, as a
/// lambda's parameter or with `:=`), not a failure at run time. A name outside the
/// library is not refused: Step Functions accepts it and fails at run time with
/// `T1006: Attempted to invoke a non-function` (recorded in the conformance corpus,
/// `$randomSeeded`), and so does the interpreter.
pub fn check_calls(e: &Expr) -> Result<(), String> {
    let mut bound = HashSet::new();
    bound_names(e, &mut bound);
    check_calls_in(e, &bound)
}

fn children(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Num(_) | Expr::Str(_) | Expr::Bool(_) | Expr::Null | Expr::Regex(_) | Expr::Var(_) | Expr::Name(_) => {
            vec![]
        }
        Expr::Path(a, b) | Expr::Index(a, b) | Expr::Binary(_, a, b) => vec![a, b],
        Expr::Array(items) | Expr::Block(items) => items.iter().collect(),
        Expr::Object(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).collect(),
        Expr::Group(lhs, pairs) => {
            std::iter::once(lhs.as_ref()).chain(pairs.iter().flat_map(|(k, v)| [k, v])).collect()
        }
        Expr::Neg(x) | Expr::Bind(_, x) => vec![x],
        Expr::Call(f, args) => std::iter::once(f.as_ref()).chain(args).collect(),
        Expr::Lambda(l) => vec![&l.body],
        Expr::Cond(c, t, f) => [Some(c.as_ref()), Some(t.as_ref()), f.as_deref()].into_iter().flatten().collect(),
    }
}

fn bound_names<'e>(e: &'e Expr, out: &mut HashSet<&'e str>) {
    match e {
        Expr::Bind(name, _) => {
            out.insert(name);
        }
        Expr::Lambda(l) => out.extend(l.params.iter().map(String::as_str)),
        _ => {}
    }
    for c in children(e) {
        bound_names(c, out);
    }
}

fn check_name(name: &str, nargs: Option<usize>, bound: &HashSet<&str>) -> Result<(), String> {
    if bound.contains(name) {
        return Ok(());
    }
    if let Some((_, why)) = UNSUPPORTED.iter().find(|(n, _)| *n == name) {
        return Err(format!("the JSONata function ${name} is not supported: {why}"));
    }
    if let (Some(n), Some((_, max))) = (nargs, MAX_ARGS.iter().find(|(f, _)| *f == name)) {
        if n > *max {
            return Err(format!(
                "the JSONata function ${name} is supported with at most {max} argument(s): its picture and timezone arguments are not"
            ));
        }
    }
    Ok(())
}

fn check_calls_in(e: &Expr, bound: &HashSet<&str>) -> Result<(), String> {
    match e {
        Expr::Call(f, args) => {
            if let Expr::Var(name) = f.as_ref() {
                if !name.is_empty() {
                    check_name(name, Some(args.len()), bound)?;
                }
            }
        }
        // `x ~> $f(...)` passes x as the first argument.
        Expr::Binary(op, _, rhs) if op == "~>" => match rhs.as_ref() {
            Expr::Call(f, args) => {
                if let Expr::Var(name) = f.as_ref() {
                    check_name(name, Some(args.len() + 1), bound)?;
                }
            }
            Expr::Var(name) if !name.is_empty() => check_name(name, Some(1), bound)?,
            _ => {}
        },
        _ => {}
    }
    for c in children(e) {
        check_calls_in(c, bound)?;
    }
    Ok(())
}

fn arg_json(args: &[Val], i: usize) -> Option<&Value> {
    args.get(i).and_then(Val::json)
}

fn arg_num(name: &str, args: &[Val], i: usize) -> Result<Option<f64>, EvalError> {
    match args.get(i) {
        None | Some(Val::Undef) => Ok(None),
        Some(Val::Json(Value::Number(n))) => Ok(n.as_f64()),
        _ => Err(format!("T0410: Argument {} of function \"{name}\" does not match function signature", i + 1)),
    }
}

fn arg_str<'a>(name: &str, args: &'a [Val], i: usize) -> Result<Option<&'a str>, EvalError> {
    match args.get(i) {
        None | Some(Val::Undef) => Ok(None),
        Some(Val::Json(Value::String(s))) => Ok(Some(s)),
        _ => Err(format!("T0410: Argument {} of function \"{name}\" does not match function signature", i + 1)),
    }
}

fn array_of(v: Option<&Value>) -> Vec<Value> {
    match v {
        None => vec![],
        Some(Value::Array(a)) => a.clone(),
        Some(other) => vec![other.clone()],
    }
}

fn numbers(name: &str, v: Option<&Value>) -> Result<Vec<f64>, EvalError> {
    array_of(v)
        .iter()
        .map(|x| {
            x.as_f64().ok_or_else(|| format!("T0412: Argument 1 of function \"{name}\" must be an array of numbers"))
        })
        .collect()
}

/// `$string` of a value: strings as they are, other JSON compact.
pub fn string_of(v: &Val) -> Result<String, EvalError> {
    match v {
        Val::Json(Value::String(s)) => Ok(s.clone()),
        Val::Json(j) => Ok(j.to_string()),
        Val::Undef => Ok(String::new()),
        _ => Ok(String::new()),
    }
}

fn j(v: Value) -> Result<Val, EvalError> {
    Ok(Val::Json(v))
}

/// SplitMix64 over the evaluation's random state: deterministic per step.
fn next_random(env: &Env) -> u64 {
    let cell = env.rng();
    let seed = cell.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
    cell.set(seed);
    let mut z = seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Calls a built-in function. `$map` and `$filter`, which evaluate inside, have their
/// own small frame: the frame of the other functions is large (in debug builds) and
/// must not sit on the stack of every nested evaluation.
pub fn call(name: &str, args: Vec<Val>, env: &Rc<Env>) -> Result<Val, EvalError> {
    match name {
        "map" | "filter" => map_filter(name, args, env),
        "sort" | "each" | "sift" | "single" | "reduce" => higher_order(name, args, env),
        _ => call_simple(name, args, env),
    }
}

fn function_arg<'a>(name: &str, args: &'a [Val], i: usize) -> Result<&'a Val, EvalError> {
    match args.get(i) {
        Some(f @ (Val::Lambda(..) | Val::Builtin(_))) => Ok(f),
        _ => Err(format!("T0410: Argument {} of function \"{name}\" does not match function signature", i + 1)),
    }
}

/// A sequence of results: nothing is undefined, one is itself, more an array.
fn seq(mut out: Vec<Value>) -> Result<Val, EvalError> {
    Ok(match out.len() {
        0 => Val::Undef,
        1 => Val::Json(out.pop().unwrap_or(Value::Null)),
        _ => Val::Json(Value::Array(out)),
    })
}

/// The functions that call a function argument for each item: `$sort` with a
/// comparator, `$each`, `$sift`, `$single`, `$reduce`.
#[inline(never)]
fn higher_order(name: &str, args: Vec<Val>, env: &Rc<Env>) -> Result<Val, EvalError> {
    let a0 = arg_json(&args, 0);
    match name {
        "sort" => {
            let mut items = array_of(a0);
            if args.get(1).is_none() {
                if items.iter().all(Value::is_number) {
                    items.sort_by(|x, y| x.as_f64().partial_cmp(&y.as_f64()).unwrap_or(std::cmp::Ordering::Equal));
                } else if items.iter().all(Value::is_string) {
                    items.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
                } else {
                    return Err("D3070: The single argument form of the sort function can only be applied to an array of strings or an array of numbers.  Use the second argument to specify a comparison function".into());
                }
                return if a0.is_none() { Ok(Val::Undef) } else { j(Value::Array(items)) };
            }
            let f = function_arg(name, &args, 1)?;
            // A stable merge sort: `f(a, b)` true means a goes after b, as in JSONata.
            let mut width = 1;
            while width < items.len() {
                let mut merged = Vec::with_capacity(items.len());
                for chunk in items.chunks(2 * width) {
                    let (l, r) = chunk.split_at(width.min(chunk.len()));
                    let (mut i, mut k) = (0, 0);
                    while i < l.len() && k < r.len() {
                        let after = truthy(&apply(
                            f,
                            vec![Val::Json(l[i].clone()), Val::Json(r[k].clone())],
                            &Val::Undef,
                            env,
                        )?);
                        if after {
                            merged.push(r[k].clone());
                            k += 1;
                        } else {
                            merged.push(l[i].clone());
                            i += 1;
                        }
                    }
                    merged.extend_from_slice(&l[i..]);
                    merged.extend_from_slice(&r[k..]);
                }
                items = merged;
                width *= 2;
            }
            if a0.is_none() {
                Ok(Val::Undef)
            } else {
                j(Value::Array(items))
            }
        }
        "each" | "sift" => {
            let Some(Value::Object(obj)) = a0 else {
                return match a0 {
                    None => Ok(Val::Undef),
                    Some(_) => {
                        Err(format!("T0410: Argument 1 of function \"{name}\" does not match function signature"))
                    }
                };
            };
            let f = function_arg(name, &args, 1)?;
            let whole = Val::Json(Value::Object(obj.clone()));
            let mut out = Vec::new();
            let mut kept = Map::new();
            for (k, v) in obj {
                let r = apply(
                    f,
                    vec![Val::Json(v.clone()), Val::Json(Value::String(k.clone())), whole.clone()],
                    &Val::Undef,
                    env,
                )?;
                if name == "each" {
                    if let Val::Json(x) = r {
                        out.push(x);
                    }
                } else if truthy(&r) {
                    kept.insert(k.clone(), v.clone());
                }
            }
            if name == "each" {
                seq(out)
            } else if kept.is_empty() {
                Ok(Val::Undef)
            } else {
                j(Value::Object(kept))
            }
        }
        "single" => {
            let items = array_of(a0);
            let whole = Val::Json(Value::Array(items.clone()));
            let mut found = None;
            for (i, x) in items.into_iter().enumerate() {
                let keep = match args.get(1) {
                    None => true,
                    Some(_) => {
                        let f = function_arg(name, &args, 1)?;
                        truthy(&apply(
                            f,
                            vec![Val::Json(x.clone()), Val::Json(num(i as f64)), whole.clone()],
                            &Val::Undef,
                            env,
                        )?)
                    }
                };
                if keep {
                    if found.is_some() {
                        return Err("D3138: The $single() function expected exactly 1 matching result.  Instead it matched more.".into());
                    }
                    found = Some(x);
                }
            }
            found.map(Val::Json).ok_or_else(|| {
                "D3139: The $single() function expected exactly 1 matching result.  Instead it matched 0.".into()
            })
        }
        "reduce" => {
            let items = array_of(a0);
            let f = function_arg(name, &args, 1)?;
            let whole = Val::Json(Value::Array(items.clone()));
            let mut iter = items.into_iter().enumerate();
            let mut acc = match args.get(2) {
                Some(init) => init.clone(),
                None => match iter.next() {
                    Some((_, first)) => Val::Json(first),
                    None => return Ok(Val::Undef),
                },
            };
            for (i, x) in iter {
                acc = apply(f, vec![acc, Val::Json(x), Val::Json(num(i as f64)), whole.clone()], &Val::Undef, env)?;
            }
            Ok(acc)
        }
        _ => unreachable!("dispatched by call()"),
    }
}

#[inline(never)]
fn map_filter(name: &str, args: Vec<Val>, env: &Rc<Env>) -> Result<Val, EvalError> {
    let f = args.get(1).cloned().unwrap_or(Val::Undef);
    let mut out = Vec::new();
    for (i, x) in array_of(arg_json(&args, 0)).into_iter().enumerate() {
        let item = Val::Json(x.clone());
        let r = apply(&f, vec![item.clone(), Val::Json(num(i as f64))], &item, env)?;
        if name == "map" {
            if let Val::Json(v) = r {
                out.push(v);
            }
        } else if truthy(&r) {
            out.push(x);
        }
    }
    j(Value::Array(out))
}

#[inline(never)]
fn call_simple(name: &str, args: Vec<Val>, env: &Rc<Env>) -> Result<Val, EvalError> {
    let a0 = arg_json(&args, 0);
    match name {
        "sum" => j(num(numbers(name, a0)?.iter().sum())),
        "count" => j(num(match args.first() {
            None | Some(Val::Undef) => 0.0,
            Some(Val::Json(Value::Array(a))) => a.len() as f64,
            _ => 1.0,
        })),
        "max" | "min" | "average" => {
            let ns = numbers(name, a0)?;
            if ns.is_empty() {
                return Ok(Val::Undef);
            }
            let v = match name {
                "max" => ns.iter().cloned().fold(f64::MIN, f64::max),
                "min" => ns.iter().cloned().fold(f64::MAX, f64::min),
                _ => ns.iter().sum::<f64>() / ns.len() as f64,
            };
            j(num(v))
        }
        "string" => match args.first() {
            None | Some(Val::Undef) => Ok(Val::Undef),
            Some(Val::Json(v)) if !v.is_string() && args.get(1).is_some_and(truthy) => {
                j(Value::String(serde_json::to_string_pretty(v).map_err(|e| e.to_string())?))
            }
            Some(v) => j(Value::String(string_of(v)?)),
        },
        "number" => match a0 {
            None => Ok(Val::Undef),
            Some(Value::Number(n)) => j(Value::Number(n.clone())),
            Some(Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .map(|f| Val::Json(num(f)))
                .map_err(|_| format!("D3030: Unable to cast value to a number: {s:?}")),
            Some(Value::Bool(b)) => j(num(if *b { 1.0 } else { 0.0 })),
            Some(other) => Err(format!("D3030: Unable to cast value to a number: {other}")),
        },
        "boolean" => match args.first() {
            None | Some(Val::Undef) => Ok(Val::Undef),
            Some(v) => j(Value::Bool(truthy(v))),
        },
        "not" => match args.first() {
            None | Some(Val::Undef) => Ok(Val::Undef),
            Some(v) => j(Value::Bool(!truthy(v))),
        },
        "exists" => j(Value::Bool(!matches!(args.first(), None | Some(Val::Undef)))),
        "length" => match arg_str(name, &args, 0)? {
            Some(s) => j(num(s.chars().count() as f64)),
            None => Ok(Val::Undef),
        },
        "uppercase" | "lowercase" | "trim" => match arg_str(name, &args, 0)? {
            Some(s) => j(Value::String(match name {
                "uppercase" => s.to_uppercase(),
                "lowercase" => s.to_lowercase(),
                _ => s.split_whitespace().collect::<Vec<_>>().join(" "),
            })),
            None => Ok(Val::Undef),
        },
        "substring" => {
            let Some(s) = arg_str(name, &args, 0)? else {
                return Ok(Val::Undef);
            };
            let chars: Vec<char> = s.chars().collect();
            let len = chars.len() as i64;
            let mut start = arg_num(name, &args, 1)?.unwrap_or(0.0) as i64;
            if start < 0 {
                start = (len + start).max(0);
            }
            let start = start.min(len) as usize;
            let end = match arg_num(name, &args, 2)? {
                Some(l) => (start as i64 + l.max(0.0) as i64).min(len) as usize,
                None => len as usize,
            };
            j(Value::String(chars[start..end.max(start)].iter().collect()))
        }
        "substringBefore" | "substringAfter" => {
            let Some(s) = arg_str(name, &args, 0)? else {
                return Ok(Val::Undef);
            };
            let pat = arg_str(name, &args, 1)?.unwrap_or("");
            j(Value::String(match s.find(pat) {
                Some(i) if name == "substringBefore" => s[..i].to_string(),
                Some(i) => s[i + pat.len()..].to_string(),
                None => s.to_string(),
            }))
        }
        "contains" => {
            let Some(s) = arg_str(name, &args, 0)? else {
                return Ok(Val::Undef);
            };
            match args.get(1) {
                Some(Val::Regex(r)) => j(Value::Bool(r.is_match(s))),
                Some(Val::Json(Value::String(p))) => j(Value::Bool(s.contains(p.as_str()))),
                _ => Err("T0410: Argument 2 of function \"contains\" does not match function signature".into()),
            }
        }
        "split" => {
            let Some(s) = arg_str(name, &args, 0)? else {
                return Ok(Val::Undef);
            };
            let limit = arg_num(name, &args, 2)?.map(|l| l as usize).unwrap_or(usize::MAX);
            // At most one item past the limit is built, then refused.
            let take = limit.min(MAX_SEQUENCE_ITEMS + 1);
            let parts: Vec<Value> = match args.get(1) {
                Some(Val::Regex(r)) => r.split(s).take(take).map(|p| Value::String(p.to_string())).collect(),
                Some(Val::Json(Value::String(sep))) if sep.is_empty() => {
                    s.chars().take(take).map(|c| Value::String(c.to_string())).collect()
                }
                Some(Val::Json(Value::String(sep))) => {
                    s.split(sep.as_str()).take(take).map(|p| Value::String(p.to_string())).collect()
                }
                _ => return Err("T0410: Argument 2 of function \"split\" does not match function signature".into()),
            };
            limits::check_items(parts.len())?;
            j(Value::Array(parts))
        }
        "join" => {
            let sep = arg_str(name, &args, 1)?.unwrap_or("");
            let parts: Result<Vec<String>, EvalError> = array_of(a0)
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| "T0412: Argument 1 of function \"join\" must be an array of strings".to_string())
                })
                .collect();
            j(Value::String(parts?.join(sep)))
        }
        "keys" => match a0 {
            Some(Value::Object(m)) => j(Value::Array(m.keys().map(|k| Value::String(k.clone())).collect())),
            _ => Ok(Val::Undef),
        },
        "values" => match a0 {
            Some(Value::Object(m)) => j(Value::Array(m.values().cloned().collect())),
            _ => Ok(Val::Undef),
        },
        "merge" => {
            let mut out = Map::new();
            for o in array_of(a0) {
                match o {
                    Value::Object(m) => out.extend(m),
                    _ => return Err("T0412: Argument 1 of function \"merge\" must be an array of objects".into()),
                }
            }
            j(Value::Object(out))
        }
        "append" => {
            let mut a = array_of(a0);
            a.extend(array_of(arg_json(&args, 1)));
            j(Value::Array(a))
        }
        "reverse" => {
            let mut a = array_of(a0);
            a.reverse();
            j(Value::Array(a))
        }
        "pad" => {
            let Some(s) = arg_str(name, &args, 0)? else {
                return Ok(Val::Undef);
            };
            let width = arg_num(name, &args, 1)?.unwrap_or(0.0);
            let fill: Vec<char> = match arg_str(name, &args, 2)? {
                Some(c) if !c.is_empty() => c.chars().collect(),
                _ => vec![' '],
            };
            let len = s.chars().count();
            let target = width.abs().min(limits::MAX_STRING_BYTES as f64) as usize;
            if target <= len {
                return j(Value::String(s.to_string()));
            }
            let padding: String = fill.iter().cycle().take(target - len).collect();
            j(Value::String(if width < 0.0 { padding + s } else { s.to_string() + &padding }))
        }
        "match" => {
            let Some(s) = arg_str(name, &args, 0)? else {
                return Ok(Val::Undef);
            };
            let Some(Val::Regex(r)) = args.get(1) else {
                return Err("T0410: Argument 2 of function \"match\" does not match function signature".into());
            };
            let limit = match arg_num(name, &args, 2)? {
                Some(l) if l < 0.0 => {
                    return Err("D3040: Third argument of match function must evaluate to a positive number".into())
                }
                Some(l) => l as usize,
                None => usize::MAX,
            };
            let mut out = Vec::new();
            for caps in r.captures_iter(s).take(limit.min(MAX_SEQUENCE_ITEMS + 1)) {
                let Some(m) = caps.get(0) else { continue };
                let groups: Vec<Value> =
                    caps.iter().skip(1).map(|g| Value::String(g.map_or("", |g| g.as_str()).to_string())).collect();
                let mut o = Map::new();
                o.insert("match".into(), Value::String(m.as_str().to_string()));
                // Indexes count UTF-16 code units, as JSONata (JavaScript) does.
                o.insert("index".into(), num(s[..m.start()].encode_utf16().count() as f64));
                o.insert("groups".into(), Value::Array(groups));
                out.push(Value::Object(o));
                limits::check_items(out.len())?;
            }
            seq(out)
        }
        "encodeUrlComponent" | "encodeUrl" => match arg_str(name, &args, 0)? {
            Some(s) => {
                let set = if name == "encodeUrl" { URI } else { URI_COMPONENT };
                j(Value::String(percent_encoding::utf8_percent_encode(s, set).to_string()))
            }
            None => Ok(Val::Undef),
        },
        "decodeUrlComponent" | "decodeUrl" => match arg_str(name, &args, 0)? {
            Some(s) => {
                if s.split('%')
                    .skip(1)
                    .any(|p| p.len() < 2 || !p.is_char_boundary(2) || u8::from_str_radix(&p[..2], 16).is_err())
                {
                    return Err("D3140: Malformed URL passed to $decodeUrl(): URI malformed".into());
                }
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|d| Val::Json(Value::String(d.into_owned())))
                    .map_err(|_| "D3140: Malformed URL passed to $decodeUrl(): URI malformed".into())
            }
            None => Ok(Val::Undef),
        },
        "formatBase" => {
            let Some(x) = arg_num(name, &args, 0)? else {
                return Ok(Val::Undef);
            };
            let radix = arg_num(name, &args, 1)?.unwrap_or(10.0);
            if !(2.0..=36.0).contains(&radix) {
                return Err(format!(
                    "D3100: The radix of the formatBase function must be between 2 and 36.  It was given {radix}"
                ));
            }
            let v = x.round();
            if v.abs() >= 9.0e15 {
                return Err("D1001: Number out of range".into());
            }
            let (neg, mut n, radix) = (v < 0.0, v.abs() as u64, radix as u64);
            let mut digits = Vec::new();
            loop {
                digits.push(std::char::from_digit((n % radix) as u32, radix as u32).unwrap_or('0'));
                n /= radix;
                if n == 0 {
                    break;
                }
            }
            if neg {
                digits.push('-');
            }
            j(Value::String(digits.iter().rev().collect()))
        }
        "shuffle" => {
            let mut items = array_of(a0);
            for i in (1..items.len()).rev() {
                let k = (next_random(env) % (i as u64 + 1)) as usize;
                items.swap(i, k);
            }
            if a0.is_none() {
                Ok(Val::Undef)
            } else {
                j(Value::Array(items))
            }
        }
        "spread" => {
            fn spread(v: &Value, out: &mut Vec<Value>) {
                match v {
                    Value::Object(m) => {
                        for (k, x) in m {
                            out.push(Value::Object(Map::from_iter([(k.clone(), x.clone())])));
                        }
                    }
                    Value::Array(items) => items.iter().for_each(|x| spread(x, out)),
                    other => out.push(other.clone()),
                }
            }
            match a0 {
                None => Ok(Val::Undef),
                Some(v) => {
                    let mut out = Vec::new();
                    spread(v, &mut out);
                    seq(out)
                }
            }
        }
        "error" => Err(format!("D3137: {}", arg_str(name, &args, 0)?.unwrap_or("$error() function evaluated"))),
        "assert" => match args.first() {
            Some(Val::Json(Value::Bool(true))) => Ok(Val::Undef),
            Some(Val::Json(Value::Bool(false))) => {
                Err(format!("D3141: {}", arg_str(name, &args, 1)?.unwrap_or("$assert() statement failed")))
            }
            _ => Err("T0410: Argument 1 of function \"assert\" does not match function signature".into()),
        },
        "fromMillis" => match arg_num(name, &args, 0)? {
            Some(ms) => {
                // Years 0 to 9999: what an ISO 8601 timestamp without expansion holds.
                if !(-62_167_219_200_000.0..=253_402_300_799_999.0).contains(&ms) {
                    return Err("D1001: Number out of range".into());
                }
                j(Value::String(crate::timestamp::format_ms(ms.floor() as i64)))
            }
            None => Ok(Val::Undef),
        },
        "toMillis" => match arg_str(name, &args, 0)? {
            Some(s) => {
                crate::timestamp::parse(s).map(|t| Val::Json(num(crate::timestamp::to_ms(t) as f64))).ok_or_else(|| {
                    format!("D3110: Failed to parse date/time {s:?}: expected an ISO 8601 timestamp with an offset")
                })
            }
            None => Ok(Val::Undef),
        },
        "distinct" => j(Value::Array(crate::intrinsics::unique(array_of(a0)))),
        "abs" | "floor" | "ceil" | "round" | "sqrt" => match arg_num(name, &args, 0)? {
            Some(x) => j(num(match name {
                "abs" => x.abs(),
                "floor" => x.floor(),
                "ceil" => x.ceil(),
                "sqrt" => x.sqrt(),
                _ => {
                    let p = 10f64.powi(arg_num(name, &args, 1)?.unwrap_or(0.0) as i32);
                    let v = x * p;
                    // Round half to even, as JSONata does.
                    let r = v.round();
                    let r = if (v - v.trunc()).abs() == 0.5 && r % 2.0 != 0.0 { r - v.signum() } else { r };
                    r / p
                }
            })),
            None => Ok(Val::Undef),
        },
        "power" => match (arg_num(name, &args, 0)?, arg_num(name, &args, 1)?) {
            (Some(x), Some(y)) => j(num(x.powf(y))),
            _ => Ok(Val::Undef),
        },
        "type" => match args.first() {
            None | Some(Val::Undef) => Ok(Val::Undef),
            Some(Val::Json(v)) => j(Value::String(crate::jsonata::type_name(v).to_string())),
            Some(_) => j(Value::String("function".into())),
        },
        "lookup" => match (a0, arg_str(name, &args, 1)?) {
            (Some(Value::Object(m)), Some(k)) => Ok(m.get(k).cloned().map(Val::Json).unwrap_or(Val::Undef)),
            _ => Ok(Val::Undef),
        },
        "base64encode" => match arg_str(name, &args, 0)? {
            Some(s) => j(Value::String(base64::engine::general_purpose::STANDARD.encode(s))),
            None => Ok(Val::Undef),
        },
        "base64decode" => match arg_str(name, &args, 0)? {
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .map(|s| Val::Json(Value::String(s)))
                .ok_or_else(|| "D3137: invalid base64 input".to_string()),
            None => Ok(Val::Undef),
        },
        "replace" => {
            let Some(s) = arg_str(name, &args, 0)? else {
                return Ok(Val::Undef);
            };
            let rep = arg_str(name, &args, 2)?.unwrap_or("");
            match args.get(1) {
                Some(Val::Regex(r)) => j(Value::String(replace_regex(s, r, rep)?)),
                Some(Val::Json(Value::String(p))) if !p.is_empty() => {
                    let n = s.matches(p.as_str()).count();
                    limits::check_string_len((s.len() - n * p.len()).saturating_add(n.saturating_mul(rep.len())))?;
                    j(Value::String(s.replace(p.as_str(), rep)))
                }
                _ => Err("D3010: Second argument of replace function cannot be an empty string".into()),
            }
        }
        "zip" => {
            let arrays: Vec<Vec<Value>> = args.iter().map(|a| array_of(a.json())).collect();
            let n = arrays.iter().map(Vec::len).min().unwrap_or(0);
            j(Value::Array((0..n).map(|i| Value::Array(arrays.iter().map(|a| a[i].clone()).collect())).collect()))
        }
        "partition" => {
            let items = match a0 {
                Some(Value::Array(a)) => a.clone(),
                _ => return Err("The first argument of $partition must be an array".into()),
            };
            let size = arg_num(name, &args, 1)?.unwrap_or(0.0);
            if size < 1.0 || size.fract() != 0.0 {
                return Err("The chunk size of $partition must be a positive integer".into());
            }
            j(Value::Array(items.chunks(size as usize).map(|c| Value::Array(c.to_vec())).collect()))
        }
        "range" => {
            let (Some(start), Some(end), Some(step)) =
                (arg_num(name, &args, 0)?, arg_num(name, &args, 1)?, arg_num(name, &args, 2)?)
            else {
                return Err("$range expects start, end and step".into());
            };
            if [start, end, step].iter().any(|x| x.fract() != 0.0) {
                return Err("The arguments of $range must be integers".into());
            }
            crate::intrinsics::array_range(start as i64, end as i64, step as i64)
                // Step Functions returns a JSONata sequence: a single item is unwrapped.
                .map(|v| match v.as_slice() {
                    [one] => Val::Json(Value::from(*one)),
                    _ => Val::Json(Value::Array(v.into_iter().map(Value::from).collect())),
                })
                .map_err(|e| e.to_string())
        }
        "hash" => {
            let data = string_of(args.first().unwrap_or(&Val::Undef))?;
            let alg = arg_str(name, &args, 1)?.unwrap_or("SHA-256");
            hash(&data, alg).map(|h| Val::Json(Value::String(h)))
        }
        "random" => {
            let r = next_random(env);
            j(num((r >> 11) as f64 / (1u64 << 53) as f64))
        }
        "uuid" => {
            let bytes = ((next_random(env) as u128) << 64) | next_random(env) as u128;
            j(Value::String(uuid::Builder::from_random_bytes(bytes.to_le_bytes()).into_uuid().to_string()))
        }
        "parse" => match arg_str(name, &args, 0)? {
            Some(s) => {
                serde_json::from_str(s).map(Val::Json).map_err(|e| format!("$parse could not parse the string: {e}"))
            }
            None => Ok(Val::Undef),
        },
        "now" | "millis" => Err(format!("${name} is not supported: the interpreter is deterministic")),
        other => Err(format!("T1006: Attempted to invoke a non-function: ${other}")),
    }
}

/// `$replace` with a regular expression: `$0` is the match, `$1`..`$n` its groups
/// (as many digits as name a group), `$$` a dollar sign. The result is built within
/// [`limits::MAX_STRING_BYTES`], checked at every piece.
fn replace_regex(s: &str, r: &regex::Regex, rep: &str) -> Result<String, EvalError> {
    let mut out = String::new();
    let mut last = 0;
    let push = |out: &mut String, piece: &str| -> Result<(), EvalError> {
        limits::check_string_len(out.len() + piece.len())?;
        out.push_str(piece);
        Ok(())
    };
    for caps in r.captures_iter(s) {
        let Some(m) = caps.get(0) else { continue };
        push(&mut out, &s[last..m.start()])?;
        let chars: Vec<char> = rep.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '$' && chars.get(i + 1) == Some(&'$') {
                push(&mut out, "$")?;
                i += 2;
            } else if chars[i] == '$' && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
                let mut end = i + 1;
                while chars.get(end).is_some_and(char::is_ascii_digit) {
                    end += 1;
                }
                // Fewer digits while the number names no group.
                let mut digits: String = chars[i + 1..end].iter().collect();
                while digits.len() > 1 && digits.parse::<usize>().map_or(true, |g| g >= caps.len()) {
                    digits.pop();
                }
                let group = digits.parse::<usize>().ok().and_then(|g| caps.get(g));
                push(&mut out, group.map_or("", |g| g.as_str()))?;
                i += 1 + digits.len();
            } else {
                let mut buf = [0u8; 4];
                push(&mut out, chars[i].encode_utf8(&mut buf))?;
                i += 1;
            }
        }
        last = m.end();
    }
    push(&mut out, &s[last..])?;
    Ok(out)
}

fn hash(data: &str, alg: &str) -> Result<String, EvalError> {
    use sha2::Digest as _;
    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
    Ok(match alg {
        "MD5" => hex(&md5::Md5::digest(data.as_bytes())),
        "SHA-1" => hex(&sha1::Sha1::digest(data.as_bytes())),
        "SHA-256" => hex(&sha2::Sha256::digest(data.as_bytes())),
        "SHA-384" => hex(&sha2::Sha384::digest(data.as_bytes())),
        "SHA-512" => hex(&sha2::Sha512::digest(data.as_bytes())),
        other => return Err(format!("The hash algorithm {other} is not supported")),
    })
}
