//! Runs every case of the AWS-recorded conformance corpus
//! (`tests/data/asl-conformance/` at the workspace root) through the in-memory runner.
//!
//! Compared: status; on success the output (deep JSON equality, numbers compared by
//! value); on failure the error and the cause, exactly. Paths listed in a case's
//! `ignore_paths` (run-dependent values such as execution ARNs, UUIDs, random numbers)
//! are skipped, as the corpus README prescribes.
//!
//! `known_failures.txt` lists each failing case with a reason. The test fails when an
//! unlisted case fails or when the pass count of a query language drops below its
//! threshold; it prints a note for listed cases that now pass.
//!
//! Set `ASL_CONFORMANCE_VERBOSE=1` to print the differences of every failing case.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use tenancy_asl::runner::{self, BoxFuture, Status, TaskRunner};
use tenancy_asl::{ExecutionContext, Failure, StateMachine, TaskRequest};

/// Minimum number of passing cases per query language.
const THRESHOLDS: &[(&str, usize)] = &[("JSONPath", 730), ("JSONata", 108), ("mixed", 10)];

struct FailingTasks;

impl TaskRunner for FailingTasks {
    fn run_task<'a>(&'a self, request: &'a TaskRequest) -> BoxFuture<'a, Result<Value, Failure>> {
        Box::pin(
            async move { Err(Failure::new("States.TaskFailed", format!("no task handler for {}", request.resource))) },
        )
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(fut: F) -> F::Output {
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

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/asl-conformance")
}

/// Removes the value at a `$.a.b` path (rooted at "expected") from a document.
fn remove_path(doc: &mut Value, path: &str) {
    let Some(rest) = path.strip_prefix("$.") else {
        return;
    };
    let parts: Vec<&str> = rest.split('.').collect();
    let mut cur = doc;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let Value::Object(map) = cur else { return };
        if last {
            map.remove(*part);
            return;
        }
        match map.get_mut(*part) {
            Some(next) => cur = next,
            None => return,
        }
    }
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Runs one case; `Err` describes the difference.
fn run_case(case: &Value) -> Result<(), String> {
    let definition = &case["definition"];
    let input = case["input"].clone();
    let expected = &case["expected"];
    let mut ctx = ExecutionContext::new("conformance", "case", input.clone(), 1_767_225_600_000);
    if case["state_machine_type"] == "EXPRESS" {
        ctx.redrive_count = None;
    }
    let mut actual = match StateMachine::parse(definition) {
        Err(e) => serde_json::json!({"status": "INVALID_DEFINITION", "error": e.to_string()}),
        Ok(machine) => {
            let result = block_on(runner::run(&machine, &ctx, input, &FailingTasks));
            match result.status {
                Status::Succeeded(output) => {
                    serde_json::json!({"status": "SUCCEEDED", "output": output})
                }
                Status::Failed(f) => {
                    serde_json::json!({"status": "FAILED", "error": f.error, "cause": f.cause})
                }
            }
        }
    };
    let mut expected = expected.clone();
    for p in case["ignore_paths"].as_array().into_iter().flatten() {
        if let Some(p) = p.as_str() {
            remove_path(&mut expected, p);
            remove_path(&mut actual, p);
        }
    }
    if json_eq(&expected, &actual) {
        Ok(())
    } else {
        Err(format!("expected {expected}\n     actual   {actual}"))
    }
}

fn known_failures() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/known_failures.txt"))
        .unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(" | ") {
            Some((name, reason)) => (name.trim().to_string(), reason.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

#[test]
fn conformance_corpus() {
    // A test hook of this crate's own, which cannot reach tenancy's config module.
    #[allow(clippy::disallowed_methods)]
    let verbose = std::env::var("ASL_CONFORMANCE_VERBOSE").is_ok();
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 848, "the corpus has 848 cases");
    let known = known_failures();
    let mut passed: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut now_passing = Vec::new();
    let mut failing = BTreeSet::new();
    for file in &files {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(file).expect("read case")).expect("parse case");
        let name = case["name"].as_str().unwrap_or_default().to_string();
        let ql = case["query_language"].as_str().unwrap_or("JSONPath").to_string();
        let outcome = std::panic::catch_unwind(|| run_case(&case))
            .unwrap_or_else(|_| Err("the interpreter panicked".to_string()));
        let entry = passed.entry(ql).or_default();
        entry.1 += 1;
        match outcome {
            Ok(()) => {
                entry.0 += 1;
                if known.contains_key(&name) {
                    now_passing.push(name);
                }
            }
            Err(diff) => {
                if verbose {
                    println!("FAIL {name}\n     {diff}");
                }
                if !known.contains_key(&name) {
                    unexpected.push(format!("{name}\n     {diff}"));
                }
                failing.insert(name);
            }
        }
    }
    for (ql, (ok, total)) in &passed {
        println!("{ql}: {ok}/{total}");
    }
    for name in &now_passing {
        println!("note: {name} is listed in known_failures.txt but passes now");
    }
    let stale: Vec<&String> = known
        .keys()
        .filter(|k| !files.iter().any(|f| f.file_stem().is_some_and(|s| s.to_str() == Some(k.as_str()))))
        .collect();
    assert!(stale.is_empty(), "known_failures.txt names cases that do not exist: {stale:?}");
    for (ql, min) in THRESHOLDS {
        let ok = passed.get(*ql).map(|p| p.0).unwrap_or(0);
        assert!(ok >= *min, "{ql}: {ok} cases pass, below the threshold {min}");
    }
    assert!(
        unexpected.is_empty(),
        "{} case(s) fail that are not in known_failures.txt:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
}
