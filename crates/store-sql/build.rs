//! Discovers the migrations: every `migrations/<engine>/NNNN_name.sql` becomes an entry
//! `(NNNN, "name", include_str!(..))` of `$OUT_DIR/migrations.rs`, in version order, so
//! a new migration is a file and nothing else. The store runs them with its own runner
//! (one transaction each, PostgreSQL's advisory lock, refusals with an operator's
//! message: `src/migrations.rs`), which is why this is not `sqlx::migrate!`. A file
//! whose name does not follow the pattern, two files of one version, or engines whose
//! lists differ in versions or names stop the build.

use std::fmt::Write;
use std::path::Path;

// Cargo hands a build script its output directory in the environment.
#[allow(clippy::disallowed_methods)]
fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut out = String::new();
    let mut lists = Vec::new();
    for engine in ["sqlite", "postgres"] {
        let dir = root.join(engine);
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut found: Vec<(i64, String, String)> = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a migrations directory entry").path();
            let file = path.file_name().and_then(|f| f.to_str()).expect("a UTF-8 file name").to_owned();
            let parsed = file
                .strip_suffix(".sql")
                .and_then(|stem| stem.split_once('_'))
                .and_then(|(n, name)| Some((n.parse::<i64>().ok()?, name)))
                .filter(|(_, name)| !name.is_empty());
            let Some((version, name)) = parsed else {
                panic!("{}: a migration is named NNNN_name.sql", path.display())
            };
            found.push((version, name.to_owned(), path.display().to_string()));
        }
        found.sort();
        for pair in found.windows(2) {
            assert!(pair[0].0 != pair[1].0, "{engine}: two migrations of version {}", pair[0].0);
        }
        writeln!(out, "pub(super) const {}: &[(i64, &str, &str)] = &[", engine.to_uppercase()).unwrap();
        for (version, name, path) in &found {
            writeln!(out, "    ({version}, {name:?}, include_str!({path:?})),").unwrap();
        }
        out.push_str("];\n");
        lists.push(found.into_iter().map(|(v, n, _)| (v, n)).collect::<Vec<_>>());
    }
    assert_eq!(lists[0], lists[1], "the SQLite and PostgreSQL migrations must have the same versions and names");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("migrations.rs");
    std::fs::write(dest, out).expect("writing migrations.rs");
}
