//! Operators' authorization policies (docs/policies.md): named Cedar texts, checked
//! against the schema on upload and evaluated with the built-in policies that
//! reproduce the roles.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;
use crate::{Error, ErrorCode, Result};

/// The longest Cedar text a policy may hold.
pub const MAX_CEDAR_BYTES: usize = 64 * 1024;

/// The deepest a policy's brackets (`(`, `[`, `{`) may nest, outside string literals
/// and comments. Hostile input: Cedar's parser, validator and evaluator recurse on
/// the expression tree, so a text nested thousands deep would overflow a thread's
/// stack; no real policy comes near this.
pub const MAX_CEDAR_NESTING: usize = 32;

/// The most expression-building tokens (operators, `.`, `if`, brackets) a policy's
/// text may hold: a chain like `a && a && ...` nests as deep as it is long.
pub const MAX_CEDAR_OPERATORS: usize = 2_000;

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
        check_shape(&self.cedar)
    }
}

/// The lexical bounds on a policy's text ([`MAX_CEDAR_NESTING`],
/// [`MAX_CEDAR_OPERATORS`]), checked without recursion before anything parses it.
/// String literals and `//` comments are skipped.
pub fn check_shape(cedar: &str) -> Result<()> {
    let bytes = cedar.as_bytes();
    let (mut depth, mut operators, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                operators += 1;
                if depth > MAX_CEDAR_NESTING {
                    return Err(invalid_at(
                        cedar,
                        Some(i),
                        &format!("brackets nest deeper than {MAX_CEDAR_NESTING} levels"),
                    ));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'&' | b'|' | b'!' | b'=' | b'<' | b'>' | b'+' | b'-' | b'*' | b'.' => operators += 1,
            b'i' if bytes.get(i + 1) == Some(&b'f') && is_word_edge(bytes, i, 2) => operators += 1,
            _ => {}
        }
        if operators > MAX_CEDAR_OPERATORS {
            return Err(invalid_at(cedar, Some(i), &format!("the text holds over {MAX_CEDAR_OPERATORS} operators")));
        }
        i += 1;
    }
    Ok(())
}

/// Whether the `len` bytes at `i` are a whole word (not part of an identifier).
fn is_word_edge(bytes: &[u8], i: usize, len: usize) -> bool {
    let ident = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let before = i > 0 && ident(&bytes[i - 1]);
    let after = bytes.get(i + len).is_some_and(ident);
    !before && !after
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
