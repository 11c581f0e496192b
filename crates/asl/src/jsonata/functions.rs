//! Built-in JSONata functions, plus the functions Step Functions adds
//! (`$partition`, `$range`, `$hash`, `$random`, `$uuid`, `$parse`).

use super::eval::{apply, deep_eq, num, truthy, Env, EvalError, Val};
use base64::Engine as _;
use serde_json::{Map, Value};
use std::rc::Rc;

const NAMES: &[&str] = &[
    "sum",
    "count",
    "max",
    "min",
    "average",
    "string",
    "number",
    "boolean",
    "not",
    "exists",
    "length",
    "uppercase",
    "lowercase",
    "trim",
    "substring",
    "substringBefore",
    "substringAfter",
    "contains",
    "split",
    "join",
    "keys",
    "values",
    "merge",
    "append",
    "reverse",
    "sort",
    "distinct",
    "abs",
    "floor",
    "ceil",
    "round",
    "power",
    "sqrt",
    "type",
    "map",
    "filter",
    "lookup",
    "now",
    "millis",
    "base64encode",
    "base64decode",
    "partition",
    "range",
    "hash",
    "random",
    "uuid",
    "parse",
    "replace",
    "zip",
];

pub fn exists(name: &str) -> bool {
    NAMES.contains(&name)
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

pub fn call(name: &str, args: Vec<Val>, env: &Rc<Env>) -> Result<Val, EvalError> {
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
            let parts: Vec<Value> = match args.get(1) {
                Some(Val::Regex(r)) => r.split(s).map(|p| Value::String(p.to_string())).collect(),
                Some(Val::Json(Value::String(sep))) if sep.is_empty() => {
                    s.chars().map(|c| Value::String(c.to_string())).collect()
                }
                Some(Val::Json(Value::String(sep))) => {
                    s.split(sep.as_str()).map(|p| Value::String(p.to_string())).collect()
                }
                _ => return Err("T0410: Argument 2 of function \"split\" does not match function signature".into()),
            };
            let limit = arg_num(name, &args, 2)?.map(|l| l as usize).unwrap_or(usize::MAX);
            j(Value::Array(parts.into_iter().take(limit).collect()))
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
        "sort" => {
            let mut a = array_of(a0);
            a.sort_by(|x, y| match (x, y) {
                (Value::Number(p), Value::Number(q)) => {
                    p.as_f64().partial_cmp(&q.as_f64()).unwrap_or(std::cmp::Ordering::Equal)
                }
                (Value::String(p), Value::String(q)) => p.cmp(q),
                _ => std::cmp::Ordering::Equal,
            });
            j(Value::Array(a))
        }
        "distinct" => {
            let mut out: Vec<Value> = Vec::new();
            for x in array_of(a0) {
                if !out.iter().any(|y| deep_eq(&x, y)) {
                    out.push(x);
                }
            }
            j(Value::Array(out))
        }
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
        "map" | "filter" => {
            let f = args.get(1).cloned().unwrap_or(Val::Undef);
            let mut out = Vec::new();
            for (i, x) in array_of(a0).into_iter().enumerate() {
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
                Some(Val::Regex(r)) => j(Value::String(r.replace_all(s, rep).into_owned())),
                Some(Val::Json(Value::String(p))) if !p.is_empty() => j(Value::String(s.replace(p.as_str(), rep))),
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
