//! The checked-in OpenAPI document matches the code.

#[test]
fn openapi_document_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json");
    let generated = tenancy_http::openapi_json();
    if tenancy::config::env_flag("UPDATE_OPENAPI") {
        std::fs::write(path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in.trim_end() == generated.trim_end(),
        "openapi.json is out of date: regenerate it with `cargo run -p tenancy -- openapi > openapi.json` \
         (or UPDATE_OPENAPI=1 cargo test -p tenancy --test openapi)"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}
