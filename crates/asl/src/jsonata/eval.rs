//! Evaluation of parsed JSONata expressions.

use super::functions;
use super::parse::{Expr, Lambda};
use crate::limits::{self, Budget};
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
    /// Random state for `$random` / `$uuid` (of the root scope or an evaluation scope).
    rng: Cell<u64>,
    /// Whether `rng` is this scope's own (the root, or the scope of one evaluation).
    own_rng: bool,
    /// Depth and work left to the evaluation (shared by all scopes).
    budget: Rc<Budget>,
}

impl Env {
    pub fn root(vars: HashMap<String, Val>, seed: u64) -> Rc<Env> {
        Rc::new(Env {
            vars: RefCell::new(vars),
            parent: None,
            rng: Cell::new(seed),
            own_rng: true,
            budget: Rc::new(Budget::new()),
        })
    }

    /// The scope of one evaluation over shared globals: its own bindings and random
    /// state, so that evaluations of a template do not affect each other, and the
    /// budget it draws on.
    pub fn evaluation(globals: &Rc<Env>, seed: u64, budget: Rc<Budget>) -> Rc<Env> {
        Rc::new(Env {
            vars: RefCell::new(HashMap::new()),
            parent: Some(globals.clone()),
            rng: Cell::new(seed),
            own_rng: true,
            budget,
        })
    }

    /// The random state of the nearest root or evaluation scope.
    pub fn rng(&self) -> &Cell<u64> {
        match &self.parent {
            Some(p) if !self.own_rng => p.rng(),
            _ => &self.rng,
        }
    }

    fn child(parent: &Rc<Env>) -> Rc<Env> {
        Rc::new(Env {
            vars: RefCell::new(HashMap::new()),
            parent: Some(parent.clone()),
            rng: Cell::new(0),
            own_rng: false,
            budget: parent.budget.clone(),
        })
    }

    fn get(&self, name: &str) -> Option<Val> {
        if let Some(v) = self.vars.borrow().get(name) {
            return Some(v.clone());
        }
        self.parent.as_ref().and_then(|p| p.get(name))
    }

    /// Reads a variable's JSON value by reference (no copy).
    fn with_json<R>(&self, name: &str, f: impl FnOnce(&Value) -> R) -> Option<R> {
        if let Some(v) = self.vars.borrow().get(name) {
            return match v {
                Val::Json(j) => Some(f(j)),
                _ => None,
            };
        }
        self.parent.as_ref().and_then(|p| p.with_json(name, f))
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
fn sequence(items: Vec<Val>) -> Result<Val, EvalError> {
    let mut out = Vec::new();
    for v in items {
        match v {
            Val::Undef => {}
            Val::Json(Value::Array(a)) => out.extend(a),
            Val::Json(j) => out.push(j),
            other => return Ok(other),
        }
        limits::check_items(out.len())?;
    }
    Ok(match out.len() {
        0 => Val::Undef,
        1 => Val::Json(out.pop().unwrap_or(Value::Null)),
        _ => Val::Json(Value::Array(out)),
    })
}

/// `$var.a.b`: the fields of a variable read in place, copying only what is selected
/// (not the whole variable, e.g. `$states`). `None` when the path is not such a chain
/// or crosses an array (whose mapping the general evaluation does).
fn borrowed_path(e: &Expr, env: &Env) -> Option<Val> {
    let mut names = Vec::new();
    let mut cur = e;
    let root = loop {
        match cur {
            Expr::Path(lhs, rhs) => match rhs.as_ref() {
                Expr::Name(n) if n != "*" => {
                    names.push(n.as_str());
                    cur = lhs;
                }
                _ => return None,
            },
            Expr::Var(v) if !v.is_empty() && !names.is_empty() => break v,
            _ => return None,
        }
    };
    env.with_json(root, |mut v| {
        for n in names.iter().rev() {
            match v {
                Value::Object(m) => match m.get(*n) {
                    Some(x) => v = x,
                    None => return Some(Val::Undef),
                },
                Value::Array(_) => return None,
                _ => return Some(Val::Undef),
            }
        }
        Some(Val::Json(v.clone()))
    })
    .flatten()
}

/// Evaluates an expression within the evaluation's budget: each call is one frame of
/// depth ([`limits::MAX_EVAL_DEPTH`]) and one unit of work ([`limits::MAX_EVAL_WORK`]).
pub fn eval(e: &Expr, ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
    let budget = env.budget.clone();
    budget.enter()?;
    let r = budget.charge(1).and_then(|()| eval_inner(e, ctx, env));
    budget.leave();
    r
}

/// Dispatches to one function per kind of expression: each keeps its locals in its
/// own frame, so that a nested evaluation costs only the frames it uses (a single
/// large `match` would reserve the locals of every arm in every frame).
fn eval_inner(e: &Expr, ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
    match e {
        Expr::Num(n) => Ok(Val::Json(num(*n))),
        Expr::Str(s) => Ok(Val::Json(Value::String(s.clone()))),
        Expr::Bool(b) => Ok(Val::Json(Value::Bool(*b))),
        Expr::Null => Ok(Val::Json(Value::Null)),
        Expr::Regex(r) => eval_regex(r, env),
        Expr::Var(name) if name.is_empty() => Ok(ctx.clone()),
        Expr::Var(name) => eval_var(name, env),
        Expr::Name(n) => eval_name(n, ctx, env),
        Expr::Path(lhs, rhs) => eval_path(e, lhs, rhs, ctx, env),
        Expr::Index(lhs, idx) => eval_index(lhs, idx, ctx, env),
        Expr::Array(items) => eval_array(items, ctx, env),
        Expr::Object(pairs) => eval_object(pairs, ctx, env),
        Expr::Group(lhs, pairs) => eval_group(lhs, pairs, ctx, env),
        Expr::Neg(x) => eval_neg(x, ctx, env),
        Expr::Binary(op, l, r) => binary(op, l, r, ctx, env),
        Expr::Call(f, args) => eval_call(f, args, ctx, env),
        Expr::Lambda(l) => Ok(Val::Lambda(l.clone(), env.clone())),
        Expr::Bind(name, x) => eval_bind(name, x, ctx, env),
        Expr::Block(items) => eval_block(items, ctx, env),
        Expr::Cond(c, t, f) => eval_cond(c, t, f.as_deref(), ctx, env),
    }
}

#[inline(never)]
fn eval_regex(r: &str, env: &Rc<Env>) -> Result<Val, EvalError> {
    env.budget.charge(r.len() as u64)?;
    Ok(Val::Regex(Rc::new(regex::Regex::new(r).map_err(|e| format!("S0302: invalid regular expression: {e}"))?)))
}

#[inline(never)]
fn eval_var(name: &str, env: &Rc<Env>) -> Result<Val, EvalError> {
    Ok(match env.get(name) {
        Some(v) => {
            if let Val::Json(j) = &v {
                env.budget.charge_value(j)?;
            }
            v
        }
        None if functions::exists(name) => Val::Builtin(name.to_string()),
        None => Val::Undef,
    })
}

#[inline(never)]
fn eval_name(n: &str, ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
    let v = match ctx {
        Val::Json(j) => field(j, n)?,
        _ => Val::Undef,
    };
    if let Val::Json(j) = &v {
        env.budget.charge_value(j)?;
    }
    Ok(v)
}

#[inline(never)]
fn eval_path(e: &Expr, lhs: &Expr, rhs: &Expr, ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
    if let Some(v) = borrowed_path(e, env) {
        if let Val::Json(j) = &v {
            env.budget.charge_value(j)?;
        }
        return Ok(v);
    }
    let base = eval(lhs, ctx, env)?;
    match base {
        Val::Undef => Ok(Val::Undef),
        Val::Json(Value::Array(items)) => {
            let mut out = Vec::new();
            for it in items {
                out.push(eval(rhs, &Val::Json(it), env)?);
            }
            sequence(out)
        }
        other => eval(rhs, &other, env),
    }
}

#[inline(never)]
fn eval_index(lhs: &Expr, idx: &Expr, ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
    let base = eval(lhs, ctx, env)?;
    let items = match base {
        Val::Undef => return Ok(Val::Undef),
        Val::Json(Value::Array(a)) => a,
        Val::Json(j) => vec![j],
        other => return Ok(other),
    };
    if let Expr::Num(n) = idx {
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

#[inline(never)]
fn eval_array(items: &[Expr], ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
    let mut out = Vec::new();
    for it in items {
        match eval(it, ctx, env)? {
            Val::Undef => {}
            Val::Json(j) => out.push(j),
            _ => return Err("T2001: functions cannot be placed in arrays".into()),
        }
        limits::check_items(out.len())?;
    }
    Ok(Val::Json(Value::Array(out)))
}

#[inline(never)]
fn eval_object(pairs: &[(Expr, Expr)], ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
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
    Ok(Val::Json(Value::Object(m)))
}

/// `a{key: value}` (JSONata's grouping): each item of `a` goes to the group of the key
/// it gives; each group's value is evaluated with the group's items as context (one
/// item alone, several as an array). Two pairs giving the same key are an error
/// (`D1009`), as in JSONata.
#[inline(never)]
fn eval_group(lhs: &Expr, pairs: &[(Expr, Expr)], ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
    let items = match eval(lhs, ctx, env)? {
        Val::Undef => vec![],
        Val::Json(Value::Array(a)) => a,
        Val::Json(j) => vec![j],
        _ => return Err("T1003: Key in object structure must evaluate to a string".into()),
    };
    // key -> (index of the pair that produced it, the items in the group), in order.
    let mut groups: Vec<(String, usize, Vec<Value>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for item in items {
        let item_val = Val::Json(item.clone());
        for (pair, (k, _)) in pairs.iter().enumerate() {
            let key = match eval(k, &item_val, env)? {
                Val::Json(Value::String(s)) => s,
                Val::Undef => continue,
                _ => return Err("T1003: Key in object structure must evaluate to a string".into()),
            };
            match index.get(&key) {
                Some(&g) if groups[g].1 != pair => {
                    return Err(format!("D1009: Multiple key definitions evaluate to same key: {key:?}"));
                }
                Some(&g) => groups[g].2.push(item.clone()),
                None => {
                    index.insert(key.clone(), groups.len());
                    groups.push((key, pair, vec![item.clone()]));
                }
            }
            limits::check_items(groups.len())?;
        }
    }
    let mut m = Map::new();
    for (key, pair, mut members) in groups {
        let context = if members.len() == 1 { members.pop().unwrap_or(Value::Null) } else { Value::Array(members) };
        match eval(&pairs[pair].1, &Val::Json(context), env)? {
            Val::Undef => {}
            Val::Json(j) => {
                m.insert(key, j);
            }
            _ => return Err("T2001: functions cannot be placed in objects".into()),
        }
    }
    Ok(Val::Json(Value::Object(m)))
}

#[inline(never)]
fn eval_neg(x: &Expr, ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
    match eval(x, ctx, env)? {
        Val::Undef => Ok(Val::Undef),
        Val::Json(Value::Number(n)) => Ok(Val::Json(num(-n.as_f64().unwrap_or(0.0)))),
        _ => Err("D1002: Cannot negate a non-numeric value".into()),
    }
}

#[inline(never)]
fn eval_call(f: &Expr, args: &[Expr], ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
    let func = eval(f, ctx, env)?;
    let mut vals = Vec::with_capacity(args.len());
    for a in args {
        vals.push(eval(a, ctx, env)?);
    }
    apply(&func, vals, ctx, env)
}

#[inline(never)]
fn eval_bind(name: &str, x: &Expr, ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
    let v = eval(x, ctx, env)?;
    env.set(name, v.clone());
    Ok(v)
}

#[inline(never)]
fn eval_block(items: &[Expr], ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
    let scope = Env::child(env);
    let mut last = Val::Undef;
    for it in items {
        last = eval(it, ctx, &scope)?;
    }
    Ok(last)
}

#[inline(never)]
fn eval_cond(c: &Expr, t: &Expr, f: Option<&Expr>, ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
    if truthy(&eval(c, ctx, env)?) {
        eval(t, ctx, env)
    } else if let Some(f) = f {
        eval(f, ctx, env)
    } else {
        Ok(Val::Undef)
    }
}

fn field(ctx: &Value, name: &str) -> Result<Val, EvalError> {
    match ctx {
        Value::Object(m) => {
            if name == "*" {
                sequence(m.values().cloned().map(Val::Json).collect())
            } else {
                Ok(m.get(name).cloned().map(Val::Json).unwrap_or(Val::Undef))
            }
        }
        Value::Array(items) => sequence(items.iter().map(|it| field(it, name)).collect::<Result<_, _>>()?),
        _ => Ok(Val::Undef),
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
        Val::Builtin(name) => {
            let r = functions::call(name, args, env)?;
            if let Val::Json(j) = &r {
                limits::check_built(j, &env.budget)?;
            }
            Ok(r)
        }
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

#[inline(never)]
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
        return pipe(a, r, ctx, env);
    }
    let b = eval(r, ctx, env)?;
    combine(op, a, b, env)
}

/// `a ~> $f(args)`: applies `$f` with `a` as its first argument.
#[inline(never)]
fn pipe(a: Val, r: &Expr, ctx: &Val, env: &Rc<Env>) -> Result<Val, EvalError> {
    match r {
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
    }
}

/// A binary operator over its evaluated operands (no evaluation nests inside).
#[inline(never)]
fn combine(op: &str, a: Val, b: Val, env: &Rc<Env>) -> Result<Val, EvalError> {
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
            let (x, y) = (s(&a)?, s(&b)?);
            limits::check_string_len(x.len() + y.len())?;
            env.budget.charge((x.len() + y.len()) as u64 / 8)?;
            Val::Json(Value::String(x + &y))
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
