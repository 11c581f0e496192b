//! The conformance suites' case lists (the suites run in crates/store-sql/tests).

/// Every case a suite defines (`pub async fn name(store: ...)`) is in its macro's case
/// list: a case written but not listed would never run.
#[test]
fn every_case_is_listed() {
    let suites = [
        ("conformance.rs", include_str!("../src/conformance.rs")),
        ("workflow_conformance.rs", include_str!("../src/workflow_conformance.rs")),
        ("queue_conformance.rs", include_str!("../src/queue_conformance.rs")),
    ];
    for (file, src) in suites {
        let list_start = src.find("(@cases $make;").unwrap_or_else(|| panic!("{file}: no case list"));
        let list_end = list_start + src[list_start..].find(");").expect("the case list ends");
        let listed: Vec<&str> = src[list_start + "(@cases $make;".len()..list_end]
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        let defined: Vec<&str> = src
            .lines()
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .filter(|l| l.contains("(store: Arc<dyn Store>)") || l.contains("(store: std::sync::Arc<dyn"))
            .map(|l| &l[..l.find('(').expect("a parameter list")])
            .collect();
        assert!(!defined.is_empty(), "{file}: no cases found");
        let missing: Vec<_> = defined.iter().filter(|c| !listed.contains(c)).collect();
        assert!(missing.is_empty(), "{file}: cases defined but not listed: {missing:?}");
        let unknown: Vec<_> = listed.iter().filter(|c| !defined.contains(c)).collect();
        assert!(unknown.is_empty(), "{file}: listed but not defined: {unknown:?}");
    }
}
