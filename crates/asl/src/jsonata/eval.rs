//! Evaluation of parsed JSONata expressions.

use super::functions;
use super::parse::{Expr, Lambda};
use serde_json::{Map, Number, Value};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// A JSONata value: JSON, `undefined`, a function or a regular expression.
#[derive(Clone)]
pub enum Val {
    Undef,
    Json(Value),
    Lambda(Rc<Lambda>, Rc<Env>),
    Builtin(String),
    Regex(Rc<regex::Regex>),
}

impl Val {
    pub fn json(&self) -> Option<&Value> {
        match self {
            Val::Json(v) => Some(v),
            _ => None,
        }
    }
}

/// A variable scope.
#[derive(Default)]
pub struct Env {
    vars: RefCell<HashMap<String, Val>>,
    parent: Option<Rc<Env>>,
    /// Random state for `$random` / `$uuid` (used at the root scope only).
    rng: Cell<u64>,
}

impl Env {
    pub fn root(vars: HashMap<String, Val>, seed: u64) -> Rc<Env> {
        Rc::new(Env { vars: RefCell::new(vars), parent: None, rng: Cell::new(seed) })
    }

    /// The random state of the root scope.
    pub fn rng(&self) -> &Cell<u64> {
        match &self.parent {
            Some(p) => p.rng(),
            None => &self.rng,
        }
    }

    fn child(parent: &Rc<Env>) -> Rc<Env> {
        Rc::new(Env { vars: RefCell::new(HashMap::new()), parent: Some(parent.clone()), rng: Cell::new(0) })
    }

    fn get(&self, name: &str) -> Option<Val> {
        if let Some(v) = self.vars.borrow().get(name) {
            return Some(v.clone());
        }
        self.parent.as_ref().and_then(|p| p.get(name))
    }

    fn set(&self, name: &str, v: Val) {
        self.vars.borrow_mut().insert(name.to_string(), v);
    }
}

pub type EvalError = String;

pub fn num(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)
    }
}

/// JSONata's `$boolean` cast.
pub fn truthy(v: &Val) -> bool {
    match v {
        Val::Undef => false,
        Val::Json(j) => json_truthy(j),
        _ => true,
    }
}

fn json_truthy(j: &Value) -> bool {
    match j {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().unwrap_or(0.0) != 0.0,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(json_truthy),
        Value::Object(o) => !o.is_empty(),
    }
}

pub fn deep_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| deep_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| deep_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Collects the defined results of a mapping into a JSONata sequence.
fn sequence(items: Vec<Val>) -> Val {
    let mut out = Vec::new();
    for v in items {
        match v {
            Val::Undef => {}
            Val::Json(Value::Array(a)) => out.extend(a),
            Val::Json(j) => out.push(j),
            other => return other,
        }
    }
    match out.len() {
        0 => Val::Undef,
        1 => Val::Json(out.pop().unwrap_or(Value::Null)),
        _ => Val::Json(Value::Array(out)),
    }
}

pub fn eval(e: &Expr, ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
    Ok(match e {
        Expr::Num(n) => Val::Json(num(*n)),
        Expr::Str(s) => Val::Json(Value::String(s.clone())),
        Expr::Bool(b) => Val::Json(Value::Bool(*b)),
        Expr::Null => Val::Json(Value::Null),
        Expr::Regex(r) => {
            Val::Regex(Rc::new(regex::Regex::new(r).map_err(|e| format!("S0302: invalid regular expression: {e}"))?))
        }
        Expr::Var(name) if name.is_empty() => ctx.clone(),
        Expr::Var(name) => match env.get(name) {
            Some(v) => v,
            None if functions::exists(name) => Val::Builtin(name.clone()),
            None => Val::Undef,
        },
        Expr::Name(n) => field(ctx, n),
        Expr::Path(lhs, rhs) => {
            let base = eval(lhs, ctx, env)?;
            match base {
                Val::Undef => Val::Undef,
                Val::Json(Value::Array(items)) => {
                    let mut out = Vec::new();
                    for it in items {
                        out.push(eval(rhs, &Val::Json(it), env)?);
                    }
                    sequence(out)
                }
                other => eval(rhs, &other, env)?,
            }
        }
        Expr::Index(lhs, idx) => {
            let base = eval(lhs, ctx, env)?;
            let items = match base {
                Val::Undef => return Ok(Val::Undef),
                Val::Json(Value::Array(a)) => a,
                Val::Json(j) => vec![j],
                other => return Ok(other),
            };
            if let Expr::Num(n) = idx.as_ref() {
                let len = items.len() as i64;
                let mut i = n.floor() as i64;
                if i < 0 {
                    i += len;
                }
                return Ok(items.get(i as usize).cloned().map(Val::Json).unwrap_or(Val::Undef));
            }
            let mut out = Vec::new();
            let len = items.len() as i64;
            for (pos, it) in items.iter().enumerate() {
                let item = Val::Json(it.clone());
                match eval(idx, &item, env)? {
                    Val::Json(Value::Number(n)) => {
                        let mut i = n.as_f64().unwrap_or(0.0).floor() as i64;
                        if i < 0 {
                            i += len;
                        }
                        if i == pos as i64 {
                            out.push(item);
                        }
                    }
                    v if truthy(&v) => out.push(item),
                    _ => {}
                }
            }
            sequence(out)
        }
        Expr::Array(items) => {
            let mut out = Vec::new();
            for it in items {
                match eval(it, ctx, env)? {
                    Val::Undef => {}
                    Val::Json(j) => out.push(j),
                    _ => return Err("T2001: functions cannot be placed in arrays".into()),
                }
            }
            Val::Json(Value::Array(out))
        }
        Expr::Object(pairs) => {
            let mut m = Map::new();
            for (k, v) in pairs {
                let key = match eval(k, ctx, env)? {
                    Val::Json(Value::String(s)) => s,
                    _ => return Err("T1003: Key in object structure must evaluate to a string".into()),
                };
                match eval(v, ctx, env)? {
                    Val::Undef => {}
                    Val::Json(j) => {
                        m.insert(key, j);
                    }
                    _ => return Err("T2001: functions cannot be placed in objects".into()),
                }
            }
            Val::Json(Value::Object(m))
        }
        Expr::Neg(x) => match eval(x, ctx, env)? {
            Val::Undef => Val::Undef,
            Val::Json(Value::Number(n)) => Val::Json(num(-n.as_f64().unwrap_or(0.0))),
            _ => return Err("D1002: Cannot negate a non-numeric value".into()),
        },
        Expr::Binary(op, l, r) => binary(op, l, r, ctx, env)?,
        Expr::Call(f, args) => {
            let func = eval(f, ctx, env)?;
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(eval(a, ctx, env)?);
            }
            apply(&func, vals, ctx, env)?
        }
        Expr::Lambda(l) => Val::Lambda(l.clone(), env.clone()),
        Expr::Bind(name, x) => {
            let v = eval(x, ctx, env)?;
            env.set(name, v.clone());
            v
        }
        Expr::Block(items) => {
            let scope = Env::child(env);
            let mut last = Val::Undef;
            for it in items {
                last = eval(it, ctx, &scope)?;
            }
            last
        }
        Expr::Cond(c, t, f) => {
            if truthy(&eval(c, ctx, env)?) {
                eval(t, ctx, env)?
            } else if let Some(f) = f {
                eval(f, ctx, env)?
            } else {
                Val::Undef
            }
        }
    })
}

fn field(ctx: &Val, name: &str) -> Val {
    match ctx {
        Val::Json(Value::Object(m)) => {
            if name == "*" {
                sequence(m.values().cloned().map(Val::Json).collect())
            } else {
                m.get(name).cloned().map(Val::Json).unwrap_or(Val::Undef)
            }
        }
        Val::Json(Value::Array(items)) => {
            sequence(items.iter().map(|it| field(&Val::Json(it.clone()), name)).collect())
        }
        _ => Val::Undef,
    }
}

pub fn apply(func: &Val, args: Vec<Val>, ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
    match func {
        Val::Lambda(l, closure) => {
            let scope = Env::child(closure);
            for (i, p) in l.params.iter().enumerate() {
                scope.set(p, args.get(i).cloned().unwrap_or(Val::Undef));
            }
            eval(&l.body, ctx, &scope)
        }
        Val::Builtin(name) => functions::call(name, args, env),
        _ => Err("T1006: Attempted to invoke a non-function".into()),
    }
}

fn as_num(v: &Val, side: &str, op: &str) -> Result<Option<f64>, EvalError> {
    match v {
        Val::Undef => Ok(None),
        Val::Json(Value::Number(n)) => Ok(n.as_f64()),
        _ => Err(format!("T2001: The {side} side of the \"{op}\" operator must evaluate to a number")),
    }
}

fn binary(op: &str, l: &Expr, r: &Expr, ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
    if op == "and" {
        return Ok(Val::Json(Value::Bool(truthy(&eval(l, ctx, env)?) && truthy(&eval(r, ctx, env)?))));
    }
    if op == "or" {
        return Ok(Val::Json(Value::Bool(truthy(&eval(l, ctx, env)?) || truthy(&eval(r, ctx, env)?))));
    }
    let a = eval(l, ctx, env)?;
    if op == "??" {
        return match a {
            Val::Undef => eval(r, ctx, env),
            other => Ok(other),
        };
    }
    if op == "?:" {
        return if truthy(&a) { Ok(a) } else { eval(r, ctx, env) };
    }
    if op == "~>" {
        return match r {
            Expr::Call(f, args) => {
                let func = eval(f, ctx, env)?;
                let mut vals = vec![a];
                for x in args {
                    vals.push(eval(x, ctx, env)?);
                }
                apply(&func, vals, ctx, env)
            }
            other => {
                let func = eval(other, ctx, env)?;
                apply(&func, vec![a], ctx, env)
            }
        };
    }
    let b = eval(r, ctx, env)?;
    Ok(match op {
        "+" | "-" | "*" | "/" | "%" => {
            let (x, y) = (as_num(&a, "left", op)?, as_num(&b, "right", op)?);
            let (Some(x), Some(y)) = (x, y) else {
                return Ok(Val::Undef);
            };
            let v = match op {
                "+" => x + y,
                "-" => x - y,
                "*" => x * y,
                "/" => x / y,
                _ => x % y,
            };
            if !v.is_finite() {
                return Err("D1001: Number out of range".into());
            }
            Val::Json(num(v))
        }
        "&" => {
            let s = |v: &Val| match v {
                Val::Undef => Ok(String::new()),
                other => functions::string_of(other),
            };
            Val::Json(Value::String(format!("{}{}", s(&a)?, s(&b)?)))
        }
        "=" | "!=" => {
            let eq = match (&a, &b) {
                (Val::Json(x), Val::Json(y)) => deep_eq(x, y),
                _ => false,
            };
            let defined = !matches!(a, Val::Undef) && !matches!(b, Val::Undef);
            Val::Json(Value::Bool(if op == "=" { eq } else { defined && !eq }))
        }
        "<" | "<=" | ">" | ">=" => {
            let ord = match (&a, &b) {
                (Val::Undef, _) | (_, Val::Undef) => return Ok(Val::Json(Value::Bool(false))),
                (Val::Json(Value::Number(x)), Val::Json(Value::Number(y))) => x.as_f64().partial_cmp(&y.as_f64()),
                (Val::Json(Value::String(x)), Val::Json(Value::String(y))) => Some(x.cmp(y)),
                _ => {
                    return Err(format!(
                    "T2010: The expressions either side of operator \"{op}\" must evaluate to numeric or string values"
                ))
                }
            };
            let Some(ord) = ord else {
                return Ok(Val::Json(Value::Bool(false)));
            };
            use std::cmp::Ordering::*;
            Val::Json(Value::Bool(match op {
                "<" => ord == Less,
                "<=" => ord != Greater,
                ">" => ord == Greater,
                _ => ord != Less,
            }))
        }
        "in" => {
            let found = match (&a, &b) {
                (Val::Json(x), Val::Json(Value::Array(items))) => items.iter().any(|y| deep_eq(x, y)),
                (Val::Json(x), Val::Json(y)) => deep_eq(x, y),
                _ => false,
            };
            Val::Json(Value::Bool(found))
        }
        other => return Err(format!("S0201: unsupported operator {other}")),
    })
}
