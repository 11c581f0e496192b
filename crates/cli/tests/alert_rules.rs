//! docs/alerts.yml against docs/operations.md and the code: every metric an alert
//! uses is a documented family, every documented `tenancy_*` family is recorded by
//! some source file, and `promtool check rules` (plus `promtool test rules` on
//! docs/alerts.test.yml) accepts the rules when promtool is installed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `tenancy_*` / `process_*` identifier in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("tenancy_").chain(text.match_indices("process_")) {
        if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let name: String =
            text[i..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
        out.insert(name);
    }
    out
}

/// The families docs/operations.md documents: the backticked names of its Metrics section.
fn documented() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let metrics = &doc[doc.find("## Metrics").unwrap()..doc.find("## Alerts").unwrap()];
    metrics
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            (s.starts_with("tenancy_") || s.starts_with("process_"))
                && s.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

fn family(name: &str) -> &str {
    ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name)
}

#[test]
fn alerts_use_documented_metrics() {
    let rules = std::fs::read_to_string(root().join("docs/alerts.yml")).unwrap();
    let documented = documented();
    let used = metric_names(&rules);
    assert!(used.len() >= 10, "{used:?}");
    let unknown: Vec<_> = used.iter().filter(|n| !documented.contains(family(n))).collect();
    assert!(unknown.is_empty(), "docs/alerts.yml uses metrics docs/operations.md does not list: {unknown:?}");
}

#[test]
fn documented_families_are_recorded_by_the_code() {
    fn sources(dir: &Path, out: &mut String) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with("tests") {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut code = String::new();
    sources(&root().join("crates"), &mut code);
    let documented = documented();
    assert!(documented.len() >= 25, "{documented:?}");
    let missing: Vec<_> = documented.iter().filter(|n| !code.contains(&format!("\"{n}\""))).collect();
    assert!(missing.is_empty(), "docs/operations.md lists families no code records: {missing:?}");
}

#[test]
fn promtool_accepts_the_rules() {
    let Ok(out) = std::process::Command::new("promtool").arg("--version").output() else {
        eprintln!("promtool is not installed (Debian: apt-get install prometheus): skipped");
        return;
    };
    assert!(out.status.success());
    for args in [["check", "rules", "docs/alerts.yml"], ["test", "rules", "docs/alerts.test.yml"]] {
        let out = std::process::Command::new("promtool").args(args).current_dir(root()).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
