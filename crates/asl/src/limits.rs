//! The interpreter's limits, in one place: how deep a definition, an expression or a
//! value may nest, how much work one expression may do, how large the strings and
//! sequences it builds may grow, and how far a timer may reach.
//!
//! They exist so that hostile input is refused or bounded and never overflows the
//! stack (which aborts the process: no panic handler catches it) or takes gigabytes or
//! minutes. Every figure is checked in the parsers and evaluators of this crate; the
//! engine adds its own limits (history, payload size, execution time) on top. Where
//! Step Functions documents a figure, the constant follows it and says so.
//!
//! The depth limits are chosen so that the interpreter's deepest recursion fits in a
//! 2 MiB thread stack (Rust's default for spawned threads and tokio's blocking pool),
//! in a debug build too: a JSONata evaluation at its depth limit uses less than 1 MiB
//! (tested), the parsers and the other recursions far less.

use serde_json::Value;
use std::cell::Cell;

/// JSON nesting of a state machine definition (objects and arrays), checked before it
/// is parsed. The same figure as `serde_json`'s default recursion limit, so every
/// definition that arrives as JSON text over the API passes; it bounds how deeply
/// Parallel branches, Map processors and Choice rules can nest.
pub const MAX_DEFINITION_DEPTH: usize = 128;

/// Nesting of `And` / `Or` / `Not` in one Choice rule.
pub const MAX_CHOICE_RULE_DEPTH: usize = 32;

/// Nesting of one expression: the depth of a JSONata expression's syntax tree
/// (parentheses, operators, calls, paths `a.b.c`, ...), of intrinsic function calls
/// inside each other (`States.Format(States.Format(...))`), and of JSONPath filters
/// inside each other. Deeper expressions are refused when the definition is parsed.
pub const MAX_EXPRESSION_DEPTH: usize = 100;

/// Segments of one JSONPath (`$.a.b[0]` has 3). A reference path (`ResultPath`) builds
/// one object level per segment, so it follows [`MAX_VALUE_DEPTH`].
pub const MAX_PATH_SEGMENTS: usize = MAX_VALUE_DEPTH;

/// Nested evaluation frames of one JSONata evaluation (each sub-expression is a frame;
/// a recursive lambda uses two or more per call, so it can recurse about 250 times).
/// Past it the evaluation fails with JSONata's `U1001` "Stack overflow error". At
/// this depth an evaluation uses less than 1 MiB of stack (tested), also in debug
/// builds, where the crate is compiled with `opt-level = 1` (see the workspace's
/// `Cargo.toml`).
pub const MAX_EVAL_DEPTH: usize = 500;

/// Units of work of the JSONata expressions of one state (all those it evaluates when
/// it is entered or finishes within one step, a Map's `ItemSelector` over all its
/// items included), and of one JSONPath payload template (what its paths and intrinsic
/// function calls copy and build), and of one path's matches: one per evaluated
/// sub-expression, one per JSON value (and per 8 bytes of string) read, copied or
/// built. Past it the evaluation fails (`U1002`); the whole budget takes about a
/// second in a debug build.
pub const MAX_EVAL_WORK: u64 = 5_000_000;

/// Length in bytes of a string that an expression or intrinsic function builds
/// (four times Step Functions' 256 KiB payload limit, so that intermediate strings can
/// exceed what a state may output).
pub const MAX_STRING_BYTES: usize = 1024 * 1024;

/// Items of an array or JSONata sequence that an expression builds.
pub const MAX_SEQUENCE_ITEMS: usize = 100_000;

/// Nesting of a value a state outputs, assigns to a variable or passes to a task or to
/// branches, and of a task's result.
/// Values are persisted as JSON in the engine's cursor and history and read back with
/// `serde_json`, whose recursion limit is 128: 64 leaves room for the cursor's own
/// nesting around them.
pub const MAX_VALUE_DEPTH: usize = 64;

/// Items of `States.ArrayRange` (and JSONata's `$range`): Step Functions' figure.
pub const MAX_ARRAY_RANGE_ITEMS: usize = 1000;

/// Characters of the input to `States.Base64Encode`: Step Functions' figure.
pub const MAX_BASE64_INPUT_CHARS: usize = 10_000;

/// The longest timer in seconds (a Wait, a retry back-off, a task's TimeoutSeconds or
/// HeartbeatSeconds): one year, Step Functions' maximum duration of a standard
/// execution (31,536,000 s). Longer values are clamped to it, and deadline arithmetic
/// saturates, so that no figure overflows.
pub const MAX_TIMER_SECONDS: u64 = 31_536_000;

/// The largest timer in milliseconds.
pub const MAX_TIMER_MS: i64 = MAX_TIMER_SECONDS as i64 * 1000;

/// `now + seconds`, with `seconds` clamped to [`MAX_TIMER_SECONDS`] and the sum
/// saturating: a deadline that never overflows.
pub fn deadline_after_seconds(now_ms: i64, seconds: f64) -> i64 {
    let ms =
        if seconds.is_nan() || seconds <= 0.0 { 0 } else { (seconds * 1000.0).round().min(MAX_TIMER_MS as f64) as i64 };
    now_ms.saturating_add(ms)
}

/// Clamps a number of seconds (TimeoutSeconds, HeartbeatSeconds) to
/// [`MAX_TIMER_SECONDS`].
pub fn clamp_timer_seconds(seconds: f64) -> u64 {
    if seconds.is_nan() || seconds <= 0.0 {
        0
    } else {
        seconds.min(MAX_TIMER_SECONDS as f64) as u64
    }
}

/// The nesting depth of a JSON value (a scalar is 0, `[]` is 1, `[[1]]` is 2),
/// computed without recursion so that it is safe on any value.
pub fn json_depth(v: &Value) -> usize {
    let mut max = 0;
    let mut todo: Vec<(&Value, usize)> = vec![(v, 0)];
    while let Some((v, d)) = todo.pop() {
        match v {
            Value::Array(items) => {
                max = max.max(d + 1);
                todo.extend(items.iter().map(|x| (x, d + 1)));
            }
            Value::Object(m) => {
                max = max.max(d + 1);
                todo.extend(m.values().map(|x| (x, d + 1)));
            }
            _ => {}
        }
    }
    max
}

/// Whether a value nests deeper than `limit`, without recursion; stops early.
pub fn deeper_than(v: &Value, limit: usize) -> bool {
    let mut todo: Vec<(&Value, usize)> = vec![(v, 0)];
    while let Some((v, d)) = todo.pop() {
        match v {
            Value::Array(_) | Value::Object(_) if d + 1 > limit => return true,
            Value::Array(items) => todo.extend(items.iter().map(|x| (x, d + 1))),
            Value::Object(m) => todo.extend(m.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    false
}

/// The work of reading or copying a value: one unit per JSON value and per 8 bytes of
/// string, counted without recursion and only up to `cap` (the walk stops there).
pub fn weight(v: &Value, cap: u64) -> u64 {
    let mut total = 0u64;
    let mut todo = vec![v];
    while let Some(v) = todo.pop() {
        total += 1;
        match v {
            Value::String(s) => total += s.len() as u64 / 8,
            Value::Array(items) => todo.extend(items.iter()),
            Value::Object(m) => {
                total += m.keys().map(|k| k.len() as u64 / 8).sum::<u64>();
                todo.extend(m.values());
            }
            _ => {}
        }
        if total > cap {
            return total;
        }
    }
    total
}

/// The budget of one evaluation: nesting and work left. Shared (by reference) between
/// the frames of the evaluation.
#[derive(Debug)]
pub struct Budget {
    depth: Cell<usize>,
    work: Cell<u64>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new()
    }
}

impl Budget {
    pub fn new() -> Budget {
        Budget { depth: Cell::new(0), work: Cell::new(0) }
    }

    /// Charges `units` of work; fails past [`MAX_EVAL_WORK`].
    pub fn charge(&self, units: u64) -> Result<(), String> {
        let w = self.work.get().saturating_add(units);
        self.work.set(w);
        if w > MAX_EVAL_WORK {
            return Err(format!(
                "U1002: Expression evaluation exceeded the work limit of {MAX_EVAL_WORK} steps: check for an infinite loop or a value that is too large"
            ));
        }
        Ok(())
    }

    /// Charges the weight of a value that is read or copied.
    pub fn charge_value(&self, v: &Value) -> Result<(), String> {
        let left = MAX_EVAL_WORK.saturating_sub(self.work.get());
        self.charge(weight(v, left))
    }

    /// Enters a nested frame; fails past [`MAX_EVAL_DEPTH`]. Pair with [`Budget::leave`].
    pub fn enter(&self) -> Result<(), String> {
        let d = self.depth.get() + 1;
        if d > MAX_EVAL_DEPTH {
            return Err(format!(
                "U1001: Stack overflow error: Check for non-terminating recursive function. Consider rewriting as tail-recursive. (the evaluation nests deeper than {MAX_EVAL_DEPTH} frames)"
            ));
        }
        self.depth.set(d);
        Ok(())
    }

    pub fn leave(&self) {
        self.depth.set(self.depth.get().saturating_sub(1));
    }
}

/// Checks the length of a string an expression or function built.
pub fn check_string(s: &str) -> Result<(), String> {
    check_string_len(s.len())
}

/// Checks the length in bytes of a string before it is built.
pub fn check_string_len(len: usize) -> Result<(), String> {
    if len > MAX_STRING_BYTES {
        return Err(format!("U1004: The string of {len} bytes exceeds the limit of {MAX_STRING_BYTES} bytes"));
    }
    Ok(())
}

/// Checks the length of an array or sequence an expression or function built.
pub fn check_items(n: usize) -> Result<(), String> {
    if n > MAX_SEQUENCE_ITEMS {
        return Err(format!("U1003: The sequence of {n} items exceeds the limit of {MAX_SEQUENCE_ITEMS} items"));
    }
    Ok(())
}

/// Checks the size of a value an expression or function built: its length if it is a
/// string or an array, and the work of building it.
pub fn check_built(v: &Value, budget: &Budget) -> Result<(), String> {
    match v {
        Value::String(s) => check_string(s)?,
        Value::Array(items) => check_items(items.len())?,
        _ => {}
    }
    budget.charge_value(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depth_is_computed_without_recursion() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!([])), 1);
        assert_eq!(json_depth(&json!({"a": [1, {"b": []}]})), 4);
        let mut v = json!(0);
        for _ in 0..100_000 {
            v = Value::Array(vec![v]);
        }
        assert_eq!(json_depth(&v), 100_000);
        assert!(deeper_than(&v, 64));
        assert!(!deeper_than(&json!({"a": [1]}), 2));
        assert!(deeper_than(&json!({"a": [1]}), 1));
        // Dropping such a value recurses: unwrap it by hand.
        while let Value::Array(mut items) = v {
            v = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn timers_saturate_and_clamp() {
        assert_eq!(deadline_after_seconds(1000, 2.0), 3000);
        assert_eq!(deadline_after_seconds(0, 9.3e18), MAX_TIMER_MS);
        assert_eq!(deadline_after_seconds(i64::MAX - 5, 10.0), i64::MAX);
        assert_eq!(deadline_after_seconds(7, f64::INFINITY), 7 + MAX_TIMER_MS);
        assert_eq!(deadline_after_seconds(7, -3.0), 7);
        assert_eq!(clamp_timer_seconds(9.3e18), MAX_TIMER_SECONDS);
        assert_eq!(clamp_timer_seconds(30.0), 30);
    }

    #[test]
    fn budget_counts_depth_and_work() {
        let b = Budget::new();
        for _ in 0..MAX_EVAL_DEPTH {
            b.enter().unwrap();
        }
        assert!(b.enter().unwrap_err().starts_with("U1001"));
        b.leave();
        b.enter().unwrap();
        assert!(b.charge(MAX_EVAL_WORK).is_ok());
        assert!(b.charge(1).unwrap_err().starts_with("U1002"));
    }
}
