//! Identifiers: validation of caller-supplied ids and generation of new ones.

use crate::{Error, Result};

/// Tenant and plan ids are DNS-label-like so they can name schemas, databases and
/// directories: 1 to 63 characters of `a-z`, `0-9` and `-`, starting with a letter
/// or digit and not ending with `-`.
pub fn validate_slug(kind: &str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{kind} id {id:?} is invalid: use 1-63 lowercase letters, digits and '-', not starting or ending with '-'"
        )))
    }
}

/// A new random id with a type prefix, e.g. `exe_0193...`; time ordered (UUID v7).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// A generated tenant id: `t-` and 16 hex digits of a random UUID.
pub fn new_tenant_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("t-{}", &u[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["acme", "a", "acme-2", "0day"] {
            validate_slug("tenant", ok).unwrap();
        }
        for bad in ["", "-a", "a-", "Acme", "a_b", "a.b", &"x".repeat(64)] {
            assert!(validate_slug("tenant", bad).is_err(), "{bad:?}");
        }
        validate_slug("tenant", &new_tenant_id()).unwrap();
    }
}
