//! Functions (the Lambda role): HTTP endpoints that Task states invoke with Lambda's
//! contract (`arn:aws:lambda:REGION:ACCOUNT:function:NAME`, `arn:aws:states:::lambda:invoke`).

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;
use crate::{Error, ErrorCode, Result};

/// A function's timeout when `timeout_s` is not given.
pub const DEFAULT_TIMEOUT_S: u64 = 30;
/// Lambda's longest function timeout (15 minutes).
pub const MAX_TIMEOUT_S: u64 = 900;
/// Lambda's longest function name.
pub const MAX_NAME_LEN: usize = 64;

/// The body of `PUT /v1/functions/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// Absolute `http://` or `https://` URL receiving the invocations (`POST`).
    pub url: String,
    /// How long an invocation may take, 1-900 seconds (default 30); past it the task
    /// fails with `Lambda.Unknown` (a function timeout, as Lambda reports it).
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Reserved for connections (credentials for the function's endpoint), which do not
    /// exist yet: any value is refused with 400 `unsupported-connection`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub connection: Option<serde_json::Value>,
}

/// A registered function as the API shows it (never its signing secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Function {
    pub name: String,
    pub url: String,
    pub timeout_s: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Checks a function name as Lambda does: 1-64 letters, digits, `-` and `_` (so a
/// name from an AWS definition, `MyFunction` or `allocate_tenant`, is used unchanged).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("function name {name:?} is invalid: use 1-{MAX_NAME_LEN} letters, digits, '-' and '_'")))
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidRequest { code: ErrorCode::InvalidFunction, message }
}

impl FunctionSpec {
    /// The function `name` this body describes, created (or replaced) at `now`.
    pub fn into_function(self, name: &str, now: Timestamp) -> Result<Function> {
        validate_name(name)?;
        let rest = self.url.strip_prefix("https://").or_else(|| self.url.strip_prefix("http://"));
        let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
        if !host.is_some_and(|h| !h.is_empty() && !h.starts_with(':')) || self.url.contains(char::is_whitespace) {
            return Err(Error::InvalidRequest {
                code: ErrorCode::InvalidUrl,
                message: format!("function url must be an absolute http or https URL, got {:?}", self.url),
            });
        }
        if self.connection.is_some() {
            return Err(Error::InvalidRequest {
                code: ErrorCode::UnsupportedConnection,
                message: "connection is not supported yet (connections are a later feature): \
                          leave it out and authenticate the caller by the function's signature"
                    .into(),
            });
        }
        let timeout_s = self.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S);
        if timeout_s == 0 || timeout_s > MAX_TIMEOUT_S {
            return Err(invalid(format!("timeout_s must be between 1 and {MAX_TIMEOUT_S}, got {timeout_s}")));
        }
        Ok(Function { name: name.to_owned(), url: self.url, timeout_s, created_at: now, updated_at: now })
    }
}

/// Where a Task names a function: the `NAME` of `arn:<partition>:lambda:REGION:ACCOUNT:function:NAME`
/// (an alias or version suffix `:QUALIFIER` is accepted and ignored). `None` when
/// `resource` is not a function ARN.
pub fn name_of_arn(resource: &str) -> Option<&str> {
    let mut parts = resource.split(':');
    let (arn, _partition, service) = (parts.next()?, parts.next()?, parts.next()?);
    if arn != "arn" || service != "lambda" {
        return None;
    }
    let (_region, _account, kind, name) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let qualifier_ok = parts.next().is_none_or(|q| !q.is_empty()) && parts.next().is_none();
    (kind == "function" && !name.is_empty() && qualifier_ok).then_some(name)
}

/// The function a `lambda:invoke` task's `FunctionName` names: a name (`allocate`), a
/// name with a qualifier (`allocate:prod`), a partial ARN (`123456789012:function:allocate`)
/// or a full ARN; qualifiers are ignored. `None` when it is none of these.
pub fn name_of_function_name(function_name: &str) -> Option<&str> {
    if function_name.starts_with("arn:") {
        return name_of_arn(function_name);
    }
    let parts: Vec<&str> = function_name.split(':').collect();
    let name = match parts.as_slice() {
        [name] | [name, _] => *name,
        [_account, "function", name] | [_account, "function", name, _] => *name,
        _ => return None,
    };
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> Result<Function> {
        serde_json::from_value::<FunctionSpec>(v).unwrap().into_function("allocate", Timestamp(0))
    }

    #[test]
    fn specs() {
        let f = spec(json!({"url": "https://fn.example.com/allocate"})).unwrap();
        assert_eq!(f.timeout_s, DEFAULT_TIMEOUT_S);
        assert_eq!(spec(json!({"url": "http://h:8080", "timeout_s": 900})).unwrap().timeout_s, 900);
        for t in [0, 901] {
            assert_eq!(
                spec(json!({"url": "http://h", "timeout_s": t})).unwrap_err().code(),
                ErrorCode::InvalidFunction
            );
        }
        for url in ["ftp://h", "https://", "h.example.com", "http://a b", "https://:80/", "http:///x"] {
            assert_eq!(spec(json!({"url": url})).unwrap_err().code(), ErrorCode::InvalidUrl, "{url}");
        }
        let e = spec(json!({"url": "http://h", "connection": "crm"})).unwrap_err();
        assert_eq!(e.code(), ErrorCode::UnsupportedConnection);
        for name in ["", "a b", "a.b", "a:b", &"x".repeat(65)] {
            assert_eq!(validate_name(name).unwrap_err().code(), ErrorCode::InvalidFunction, "{name}");
        }
        for name in ["allocate", "MyFunction", "allocate_tenant-2", &"x".repeat(64)] {
            validate_name(name).unwrap();
        }
    }

    #[test]
    fn names_in_arns() {
        assert_eq!(name_of_arn("arn:aws:lambda:us-east-1:123456789012:function:allocate"), Some("allocate"));
        assert_eq!(name_of_arn("arn:aws:lambda:us-east-1:123456789012:function:allocate:prod"), Some("allocate"));
        assert_eq!(name_of_arn("arn:aws-cn:lambda:cn-north-1:123456789012:function:f:$LATEST"), Some("f"));
        for not in [
            "arn:aws:states:::lambda:invoke",
            "arn:aws:lambda:us-east-1:123456789012:layer:x",
            "arn:aws:lambda:us-east-1:123456789012:function:",
            "arn:aws:lambda:us-east-1:123456789012:function:f:",
            "arn:aws:lambda:us-east-1:123456789012:function:f:1:2",
            "tenancy:noop",
        ] {
            assert_eq!(name_of_arn(not), None, "{not}");
        }
        for (given, name) in [
            ("allocate", "allocate"),
            ("allocate:prod", "allocate"),
            ("123456789012:function:allocate", "allocate"),
            ("123456789012:function:allocate:3", "allocate"),
            ("arn:aws:lambda:us-east-1:123456789012:function:allocate", "allocate"),
        ] {
            assert_eq!(name_of_function_name(given), Some(name), "{given}");
        }
        for not in ["", "a:b:c", "arn:aws:s3:::bucket", "1:layer:x"] {
            assert_eq!(name_of_function_name(not), None, "{not}");
        }
    }
}
