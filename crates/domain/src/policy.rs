//! Operators' authorization policies (docs/policies.md): named Cedar texts, checked
//! against the schema on upload and evaluated with the built-in policies that
//! reproduce the roles.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;
use crate::{Error, ErrorCode, Result};

/// The longest Cedar text a policy may hold.
pub const MAX_CEDAR_BYTES: usize = 64 * 1024;

/// A stored operator policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Policy {
    pub name: String,
    /// The Cedar text: one or more `permit`/`forbid` statements.
    pub cedar: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The body of `PUT /v1/policies/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub cedar: String,
}

/// The answer of `GET /v1/policies`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyList {
    pub items: Vec<Policy>,
}

/// The body of `POST /v1/policies/check`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyCheck {
    /// The API key's id (`key_...`).
    pub principal: String,
    /// The operation: its OpenAPI `operationId` (`get_tenant`, `suspend_tenant`).
    pub action: String,
    /// The resource as a Cedar entity id: `Tenancy::Tenant::"acme"`,
    /// `Tenancy::Queue::"jobs"`, `Tenancy::Platform::"tenancy"`.
    pub resource: String,
}

/// The answer of `POST /v1/policies/check`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyDecision {
    /// `allow` or `deny`.
    pub decision: String,
    /// The policies that decided it: the permits that allowed it, or the forbids that
    /// denied it (none: nothing permitted it). Built-in ones are `builtin.role.<role>`.
    pub policies: Vec<String>,
    /// Policies that failed to evaluate (they count as not applying).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidRequest { code: ErrorCode::InvalidPolicy, message: message.into() }
}

/// A policy's name: 1-64 of `a-z0-9._-`, starting with a letter or digit; `builtin` and
/// anything under `builtin.` are the built-in policies' names.
pub fn validate_name(name: &str) -> Result<()> {
    let ok_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    let ok_start = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.is_empty() || name.len() > 64 || !ok_chars || !ok_start {
        return Err(invalid(format!("policy name {name:?} must be 1-64 of a-z, 0-9, '.', '_', '-'")));
    }
    if name == "builtin" || name.starts_with("builtin.") {
        return Err(invalid(format!("policy name {name:?} is reserved for the built-in policies")));
    }
    Ok(())
}

impl PolicySpec {
    /// What can be checked without the schema: size and emptiness.
    pub fn validate(&self) -> Result<()> {
        if self.cedar.trim().is_empty() {
            return Err(invalid("a policy's cedar text is empty"));
        }
        if self.cedar.len() > MAX_CEDAR_BYTES {
            return Err(invalid(format!("a policy's cedar text is over {MAX_CEDAR_BYTES} bytes")));
        }
        Ok(())
    }
}

/// An invalid policy's error at a place in its text (1-based line and column).
pub fn invalid_at(cedar: &str, offset: Option<usize>, message: &str) -> Error {
    match offset {
        Some(off) => {
            let (line, col) = line_col(cedar, off);
            invalid(format!("line {line}, column {col}: {message}"))
        }
        None => invalid(message.to_owned()),
    }
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        validate_name("eu-only").unwrap();
        validate_name("support.read_only").unwrap();
        for bad in ["", "Eu", "-x", "builtin", "builtin.role.admin", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lines_and_columns() {
        assert_eq!(line_col("abc", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab\n", 3), (2, 1));
    }
}
