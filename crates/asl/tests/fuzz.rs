//! Fuzzing on the stable toolchain: proptest over the crate's untrusted-input entry
//! points, the definition parser and validator (and a run of what parses), JSONPath,
//! JSONata and the intrinsic functions. Inputs are seeds from the ASL conformance
//! corpus (`tests/data/asl-conformance/`: whole definitions, and every path,
//! expression and intrinsic call found in them), mutated: characters inserted,
//! deleted, replaced, spans repeated (deep nesting), JSON nodes replaced by arbitrary
//! values. The property is that nothing panics, overflows the stack or hangs: every
//! input is accepted or refused with an error.
//!
//! Bounded for the normal test run (a few seconds per target); `TENANCY_FUZZ_CASES=N`
//! runs N cases per target (`scripts/fuzz` for a long run). A failing case is shrunk
//! and printed; its fix gets a regression case in `regressions` below.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value};
use tenancy_asl::intrinsics::{Call, Entropy};
use tenancy_asl::path::{JsonPath, Scope};
use tenancy_asl::runner::{self, BoxFuture, TaskRunner};
use tenancy_asl::{jsonata, ExecutionContext, Failure, StateMachine, TaskRequest};
use tenancy_fuzzkit::{apply, check, pointers};

/// One evaluation slower than this is reported as a hang (the limits of
/// `tenancy_asl::limits` bound every evaluation to about a second in a debug build).
const HANG: Duration = Duration::from_secs(20);

struct Seeds {
    definitions: Vec<Value>,
    inputs: Vec<Value>,
    paths: Vec<String>,
    jsonata: Vec<String>,
    intrinsics: Vec<String>,
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/asl-conformance");
        let mut s = Seeds { definitions: vec![], inputs: vec![], paths: vec![], jsonata: vec![], intrinsics: vec![] };
        let mut files: Vec<_> = std::fs::read_dir(&dir).expect("the conformance corpus").flatten().collect();
        files.sort_by_key(|e| e.path());
        for f in files {
            if f.path().extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Ok(case) = serde_json::from_slice::<Value>(&std::fs::read(f.path()).expect("read case")) else {
                continue;
            };
            collect_strings(&case["definition"], &mut s);
            s.definitions.push(case["definition"].clone());
            s.inputs.push(case["input"].clone());
        }
        for v in [&mut s.paths, &mut s.jsonata, &mut s.intrinsics] {
            v.sort();
            v.dedup();
        }
        assert!(s.definitions.len() > 100 && !s.paths.is_empty() && !s.jsonata.is_empty() && !s.intrinsics.is_empty());
        s
    })
}

fn collect_strings(v: &Value, s: &mut Seeds) {
    match v {
        Value::String(t) if t.starts_with("{%") => s.jsonata.push(jsonata::strip_delims(t)),
        Value::String(t) if t.starts_with("States.") => s.intrinsics.push(t.clone()),
        Value::String(t) if t.starts_with('$') => s.paths.push(t.clone()),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, s)),
        Value::Object(m) => m.values().for_each(|i| collect_strings(i, s)),
        _ => {}
    }
}

/// Characters the grammars care about, plus a few that they do not.
const ALPHABET: &[char] = &[
    '$',
    '.',
    '[',
    ']',
    '(',
    ')',
    '{',
    '}',
    '\'',
    '"',
    '\\',
    ',',
    ':',
    ';',
    '*',
    '?',
    '@',
    '=',
    '<',
    '>',
    '!',
    '&',
    '|',
    '%',
    '~',
    '^',
    '#',
    '/',
    '-',
    '+',
    ' ',
    '0',
    '1',
    '9',
    'a',
    'x',
    'e',
    'E',
    '`',
    '\u{e9}',
    '\u{1f600}',
    '\0',
    '\n',
];

fn edit() -> impl Strategy<Value = tenancy_fuzzkit::Edit> {
    tenancy_fuzzkit::edit(ALPHABET)
}

/// A seed from `pick` with edits, or (less often) a string of alphabet characters.
fn mutated(pick: fn(&Seeds) -> &Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (any::<prop::sample::Index>(), prop::collection::vec(edit(), 0..6))
            .prop_map(move |(i, edits)| apply(i.get::<String>(pick(seeds())), &edits)),
        1 => prop::collection::vec(prop::sample::select(ALPHABET), 0..40).prop_map(|c| c.into_iter().collect()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    tenancy_fuzzkit::json_value("[a-c0-9$.\\-{}% ]{0,8}", "[a-c]{1,2}")
}

/// An input: a corpus input or an arbitrary value.
fn input() -> impl Strategy<Value = Value> {
    prop_oneof![any::<prop::sample::Index>().prop_map(|i| i.get(&seeds().inputs).clone()), json_value(),]
}

struct Rng(u64);

impl Entropy for Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0
    }
}

fn timed<T>(what: &str, text: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    let t = Instant::now();
    let out = f();
    if t.elapsed() > HANG {
        return Err(TestCaseError::fail(format!("{what} took {:?} on {text:?}", t.elapsed())));
    }
    Ok(out)
}

fn jsonpath_case(text: &str, doc: &Value, value: &Value) -> Result<(), TestCaseError> {
    timed("JSONPath", text, || {
        if let Ok(p) = JsonPath::parse(text) {
            let _ = p.canonical();
            let vars: Map<String, Value> = doc.as_object().cloned().unwrap_or_default();
            let scope = Scope { input: doc, context: value, variables: &vars };
            let _ = p.select(&scope);
            let _ = p.select_input(doc);
            if p.is_reference() {
                let _ = p.write(doc.clone(), value.clone());
            }
        }
    })
}

fn jsonata_case(text: &str, states: &Value, seed: u64) -> Result<(), TestCaseError> {
    let vars: Map<String, Value> = states.as_object().cloned().unwrap_or_default();
    timed("JSONata", text, || {
        let _ = jsonata::check_template(&Value::String(format!("{{% {text} %}}")));
        let _ = jsonata::evaluate(text, &serde_json::json!({"input": states}), &vars, seed);
    })
}

fn intrinsic_case(text: &str, input: &Value, seed: u64) -> Result<(), TestCaseError> {
    timed("intrinsic", text, || {
        if let Ok(call) = Call::parse(text) {
            let vars = Map::new();
            let scope = Scope { input, context: input, variables: &vars };
            let _ = call.eval(&scope, &mut Rng(seed));
        }
    })
}

/// JSONata's built-in functions (`crates/asl/src/jsonata/functions.rs`).
const JSONATA_FUNCTIONS: &[&str] = &[
    "abs",
    "append",
    "assert",
    "average",
    "boolean",
    "ceil",
    "contains",
    "count",
    "decodeUrl",
    "decodeUrlComponent",
    "distinct",
    "each",
    "encodeUrl",
    "encodeUrlComponent",
    "error",
    "eval",
    "exists",
    "filter",
    "floor",
    "formatBase",
    "formatInteger",
    "formatNumber",
    "fromMillis",
    "hash",
    "join",
    "keys",
    "length",
    "lookup",
    "lowercase",
    "map",
    "match",
    "max",
    "merge",
    "millis",
    "min",
    "not",
    "now",
    "number",
    "pad",
    "parse",
    "parseInteger",
    "partition",
    "power",
    "random",
    "range",
    "reduce",
    "replace",
    "reverse",
    "round",
    "shuffle",
    "sift",
    "single",
    "sort",
    "split",
    "spread",
    "sqrt",
    "string",
    "substring",
    "substringAfter",
    "substringBefore",
    "sum",
    "toMillis",
    "trim",
    "type",
    "uppercase",
    "uuid",
    "values",
    "zip",
];

/// Argument values at the edges: huge, tiny, negative, fractional, non-finite as
/// text, empty, odd types, functions, regular expressions, undefined.
const JSONATA_ARGS: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "1.5",
    "-0.5",
    "1e308",
    "-1e308",
    "1e-308",
    "9007199254740993",
    "-9223372036854775808",
    "18446744073709551616",
    "4294967296",
    "2147483648",
    "36",
    "37",
    "\"\"",
    "\"abc\"",
    "\"#0.00\"",
    "\"#,##0.###e0\"",
    "\"%\"",
    "\"%E0\"",
    "\"\u{e9}\u{e9}\"",
    "\"[Y0001]-[M01]-[D01]\"",
    "\"w\"",
    "\"I\"",
    "\"MD5\"",
    "\"SHA-256\"",
    "\"2026-01-01T00:00:00Z\"",
    "[]",
    "[1,2,3]",
    "[\"b\",\"a\"]",
    "[[1],[2,[3]]]",
    "{}",
    "{\"a\":1}",
    "null",
    "true",
    "$nothing",
    "/a*/",
    "/(x)(y)?/i",
    "function($a,$b){$a>$b}",
    "function($v){$v}",
    "$string",
    "$states",
    "$states.input",
    "\"x\" & $pad(\"\", 100000)",
];

fn jsonata_call() -> impl Strategy<Value = String> {
    let arg = prop::sample::select(JSONATA_ARGS);
    (prop::sample::select(JSONATA_FUNCTIONS), prop::collection::vec(arg, 0..5), any::<bool>()).prop_map(
        |(f, args, chain)| {
            let call = format!("${f}({})", args.join(", "));
            if chain {
                // The result as the input of a path and another call.
                format!("({call}).a[0] ~> $string()")
            } else {
                call
            }
        },
    )
}

const INTRINSICS: &[&str] = &[
    "States.Array",
    "States.ArrayContains",
    "States.ArrayGetItem",
    "States.ArrayLength",
    "States.ArrayPartition",
    "States.ArrayRange",
    "States.ArrayUnique",
    "States.Base64Decode",
    "States.Base64Encode",
    "States.Format",
    "States.Hash",
    "States.JsonMerge",
    "States.JsonToString",
    "States.MathAdd",
    "States.MathRandom",
    "States.StringSplit",
    "States.StringToJson",
    "States.UUID",
];

const INTRINSIC_ARGS: &[&str] = &[
    "0",
    "-1",
    "1",
    "3",
    "1.5",
    "-0.5",
    "1e308",
    "-1e308",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551616",
    "2147483648",
    "'x'",
    "''",
    "'{}'",
    "'a{}b{}'",
    "'\\{'",
    "'SHA-512'",
    "'MD5'",
    "'=='",
    "'eyJhIjoxfQ=='",
    "'!!'",
    "'[1,2'",
    "'1e400'",
    "null",
    "true",
    "$",
    "$.a",
    "$.a[0]",
    "$$.Execution.Input",
    "$.items[*]",
    "States.Array(1, 2)",
    "States.ArrayRange(1, 1000000, 1)",
    "States.StringToJson('[1,[2]]')",
];

fn intrinsic_call() -> impl Strategy<Value = String> {
    (prop::sample::select(INTRINSICS), prop::collection::vec(prop::sample::select(INTRINSIC_ARGS), 0..5))
        .prop_map(|(f, args)| format!("{f}({})", args.join(", ")))
}

#[test]
fn jsonata_function_calls() {
    check(500, (jsonata_call(), input(), any::<u64>()), |(text, states, seed)| jsonata_case(&text, &states, seed));
}

#[test]
fn intrinsic_function_calls() {
    check(500, (intrinsic_call(), input(), any::<u64>()), |(text, input, seed)| intrinsic_case(&text, &input, seed));
}

#[test]
fn jsonpath_parse_select_write() {
    check(600, (mutated(|s| &s.paths), input(), json_value()), |(text, doc, value)| jsonpath_case(&text, &doc, &value));
}

#[test]
fn jsonata_parse_evaluate() {
    check(600, (mutated(|s| &s.jsonata), input(), any::<u64>()), |(text, states, seed)| {
        jsonata_case(&text, &states, seed)
    });
}

#[test]
fn intrinsic_functions_parse_evaluate() {
    check(600, (mutated(|s| &s.intrinsics), input(), any::<u64>()), |(text, input, seed)| {
        intrinsic_case(&text, &input, seed)
    });
}

struct FailingTasks;

impl TaskRunner for FailingTasks {
    fn run_task<'a>(&'a self, request: &'a TaskRequest) -> BoxFuture<'a, Result<Value, Failure>> {
        Box::pin(async move { Err(Failure::new("States.TaskFailed", format!("no handler for {}", request.resource))) })
    }
}

fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[derive(Debug, Clone)]
enum NodeEdit {
    /// Replaces the node with an arbitrary value.
    Replace(prop::sample::Index, Value),
    /// Replaces a string node with a mutated string (edits of its own text).
    EditString(prop::sample::Index, Vec<tenancy_fuzzkit::Edit>),
    /// Removes an object member or array item.
    Remove(prop::sample::Index),
    /// Puts a copy of one node in place of another (a subtree inside itself nests).
    Graft(prop::sample::Index, prop::sample::Index),
}

fn node_edit() -> impl Strategy<Value = NodeEdit> {
    let ix = any::<prop::sample::Index>;
    prop_oneof![
        2 => (ix(), json_value()).prop_map(|(i, v)| NodeEdit::Replace(i, v)),
        3 => (ix(), prop::collection::vec(edit(), 1..4)).prop_map(|(i, e)| NodeEdit::EditString(i, e)),
        2 => ix().prop_map(NodeEdit::Remove),
        1 => (ix(), ix()).prop_map(|(a, b)| NodeEdit::Graft(a, b)),
    ]
}

fn mutate_definition(mut def: Value, edits: &[NodeEdit]) -> Value {
    for e in edits {
        let mut ps = Vec::new();
        pointers(&def, String::new(), &mut ps);
        if ps.is_empty() {
            break;
        }
        match e {
            NodeEdit::Replace(i, v) => *def.pointer_mut(i.get::<String>(&ps).as_str()).expect("pointer") = v.clone(),
            NodeEdit::EditString(i, edits) => {
                let node = def.pointer_mut(i.get::<String>(&ps).as_str()).expect("pointer");
                if let Value::String(s) = node {
                    *s = apply(s, edits);
                }
            }
            NodeEdit::Remove(i) => {
                let p = i.get::<String>(&ps).as_str();
                let (parent, last) = p.rsplit_once('/').expect("a child pointer");
                match def.pointer_mut(parent).expect("parent") {
                    Value::Object(m) => {
                        m.shift_remove(&last.replace("~1", "/").replace("~0", "~"));
                    }
                    Value::Array(a) => {
                        a.remove(last.parse::<usize>().expect("index"));
                    }
                    _ => {}
                }
            }
            NodeEdit::Graft(from, to) => {
                let v = def.pointer(from.get::<String>(&ps).as_str()).expect("pointer").clone();
                *def.pointer_mut(to.get::<String>(&ps).as_str()).expect("pointer") = v;
            }
        }
    }
    def
}

fn definition_case(def: &Value, input: &Value) -> Result<(), TestCaseError> {
    timed("definition", &def.to_string(), || {
        let _ = StateMachine::parse(def).map(|machine| {
            let ctx = ExecutionContext::new("fuzz", "case", input.clone(), 1_767_225_600_000);
            block_on(runner::run(&machine, &ctx, input.clone(), &FailingTasks))
        });
    })
}

#[test]
fn definitions_parse_validate_run() {
    let strategy = (any::<prop::sample::Index>(), prop::collection::vec(node_edit(), 1..5), input());
    check(300, strategy, |(i, edits, input)| {
        let def = mutate_definition(i.get(&seeds().definitions).clone(), &edits);
        definition_case(&def, &input)
    });
}

/// Inputs the fuzzer found that once panicked or overflowed: each stays a test.
mod regressions {
    use super::*;

    #[test]
    fn corpus_seeds_themselves() {
        let s = seeds();
        for p in &s.paths {
            jsonpath_case(p, &Value::Null, &Value::Null).unwrap();
        }
        for e in &s.jsonata {
            jsonata_case(e, &Value::Null, 1).unwrap();
        }
        for c in &s.intrinsics {
            intrinsic_case(c, &Value::Null, 1).unwrap();
        }
    }
}
