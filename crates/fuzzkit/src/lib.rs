//! The fuzz harness the parsers' fuzz tests share (docs/fuzzing.md): proptest on the
//! stable toolchain, seeds mutated as text ([`edit`], [`apply`]) and as JSON
//! ([`json_value`], [`pointers`]), run by [`check`] for [`cases`] cases.
//!
//! A dev-dependency only: `crates/asl`, `crates/events` and `crates/audit` fuzz their
//! untrusted-input entry points with it, each with its own seeds and properties.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

/// Characters JSON-shaped grammars care about, plus a few that they do not.
pub const JSON_ALPHABET: &[char] = &[
    '{',
    '}',
    '[',
    ']',
    '"',
    '\\',
    ',',
    ':',
    '-',
    '+',
    '.',
    'e',
    'E',
    '0',
    '1',
    '9',
    'a',
    'x',
    ' ',
    '\n',
    't',
    'n',
    'u',
    '$',
    '*',
    '\u{e9}',
    '\u{1f600}',
    '\0',
];

/// One edit of a text.
#[derive(Debug, Clone)]
pub enum Edit {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
    /// Repeats the span `[at, at+len)` `times` times: nesting and long inputs.
    Repeat(usize, usize, usize),
    Truncate(usize),
}

/// Edits drawing their characters from `alphabet`.
pub fn edit(alphabet: &'static [char]) -> impl Strategy<Value = Edit> {
    let ch = prop::sample::select(alphabet);
    prop_oneof![
        3 => (any::<usize>(), ch.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        2 => any::<usize>().prop_map(Edit::Delete),
        3 => (any::<usize>(), ch).prop_map(|(i, c)| Edit::Replace(i, c)),
        1 => (any::<usize>(), 1usize..6, prop_oneof![2usize..8, 100usize..400])
            .prop_map(|(a, l, t)| Edit::Repeat(a, l, t)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// `seed` with `edits` applied in order (positions taken modulo the length).
pub fn apply(seed: &str, edits: &[Edit]) -> String {
    let mut c: Vec<char> = seed.chars().collect();
    for e in edits {
        let n = c.len();
        match *e {
            Edit::Insert(i, ch) => c.insert(i % (n + 1), ch),
            Edit::Delete(i) if n > 0 => {
                c.remove(i % n);
            }
            Edit::Replace(i, ch) if n > 0 => c[i % n] = ch,
            Edit::Repeat(at, len, times) if n > 0 => {
                let at = at % n;
                let span: Vec<char> = c[at..(at + len).min(n)].to_vec();
                let tail = c.split_off(at);
                for _ in 0..times {
                    c.extend_from_slice(&span);
                }
                c.extend(tail);
            }
            Edit::Truncate(i) if n > 0 => c.truncate(i % n),
            _ => {}
        }
    }
    c.into_iter().collect()
}

/// Arbitrary JSON values up to four levels deep: strings matching `strings`, object
/// keys matching `keys` (regular expressions), and numbers at the edges of `f64`.
pub fn json_value(strings: &'static str, keys: &'static str) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![Just(0.5f64), Just(-1e300), Just(5e-324), Just(f64::MAX), any::<f64>()]
            .prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        strings.prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((keys, inner), 0..4).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// JSON pointers of every node of `v` below `at` (pass `String::new()` for the root,
/// which is not listed).
pub fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    let esc = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| {
            let p = format!("{at}/{}", esc(k));
            out.push(p.clone());
            pointers(c, p, out);
        }),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| {
            let p = format!("{at}/{i}");
            out.push(p.clone());
            pointers(c, p, out);
        }),
        _ => {}
    }
}

/// Cases per target: `TENANCY_FUZZ_CASES`, else `default` (a count that takes a few
/// seconds in the normal test run; `scripts/fuzz` sets a long one).
pub fn cases(default: u32) -> u32 {
    // A test hook, not a setting of the server.
    #[allow(clippy::disallowed_methods)]
    let cases = std::env::var("TENANCY_FUZZ_CASES").ok().and_then(|s| s.parse().ok());
    cases.unwrap_or(default)
}

/// Runs `test` over [`cases`]`(default_cases)` values of `strategy`; a failure is
/// shrunk and panics with the smallest failing value. Nothing is persisted.
pub fn check<S: Strategy>(default_cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let config = Config { cases: cases(default_cases), failure_persistence: None, ..Config::default() };
    if let Err(e) = TestRunner::new(config).run(&strategy, test) {
        panic!("{e}");
    }
}
