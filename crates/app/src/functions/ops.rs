//! Functions (the Lambda role): HTTP endpoints registered by name that Task states
//! invoke with Lambda's contract, signed like webhooks.
//!
//! Operations: `PUT /v1/functions/{name}` creates a function (with a `whsec_` secret
//! shown in that response only, sealed at rest) or replaces its url and timeout
//! (keeping its secret); read, list and delete. Every change writes its audit entry in
//! the same transaction.
//!
//! Invocation (the task handlers, see docs/functions.md): the payload is `POST`ed as
//! JSON to the function's url with the Standard Webhooks headers (`webhook-id` = the
//! task's idempotency key, `webhook-timestamp`, `webhook-signature: v1,<HMAC-SHA256>`,
//! signed by [`tenancy_events::webhook::sign_all`] as deliveries are) and
//! `Idempotency-Key`; the response body is the result. Errors follow Lambda:
//!
//! | the function answers | the task fails with | cause |
//! |---|---|---|
//! | `X-Amz-Function-Error` (any status) or a 4xx but 429, body `{errorType, errorMessage}` | `errorType` (`Lambda.Unknown` without one) | the body |
//! | 429 | `Lambda.TooManyRequestsException` | fixed text |
//! | 5xx (or a 3xx: redirects are not followed) | `Lambda.ServiceException` | fixed text |
//! | nothing within `timeout_s` | `Lambda.Unknown` (Lambda's error for a function timeout) | `{"errorType": "Sandbox.Timedout", ...}` |
//! | no connection / a broken one | `Lambda.SdkClientException` | coarse text |
//! | a destination the outbound policy refuses | `Tenancy.DestinationNotAllowed` | fixed text |
//! | no function of that name | `Lambda.ResourceNotFoundException` | names it |

use serde_json::{json, Value};
use tenancy_domain::function::{self, Function, FunctionSpec};
use tenancy_domain::time::Timestamp;
use tenancy_domain::{Error, ErrorCode, Result};
use tenancy_events::webhook::WebhookSecret;
use tenancy_store::{Effects, StoredFunction};

use crate::context::Permission as P;
use crate::functions::tasks::{secret_owner, INVOKE_RESOURCE};
use crate::{App, OpContext};

pub use tenancy_domain::api::FunctionWithSecret;

impl App {
    /// Creates a function (with a new secret, returned this once) or replaces its url
    /// and timeout (its secret stays); whether it was created.
    pub async fn function_put(
        &self,
        ctx: &OpContext,
        name: &str,
        spec: FunctionSpec,
    ) -> Result<(FunctionWithSecret, bool)> {
        ctx.authorize(P::FunctionAdmin)?;
        let f = spec.into_function(name, Timestamp::now())?;
        let secret = WebhookSecret::generate().expose();
        let sealed = self.secret_box()?.seal(&secret_owner(name), &secret);
        let audit = ctx.audit(
            "function.put",
            format!("function/{name}"),
            None,
            json!({"url": f.url, "timeout_s": f.timeout_s}),
        );
        let stored = StoredFunction { function: f, secret: sealed };
        let (stored, created) =
            self.store().functions().function_put(&stored, &Effects::none().with_audit(audit)).await?;
        Ok((FunctionWithSecret { function: stored.function, secret: created.then_some(secret) }, created))
    }

    pub async fn function_get(&self, ctx: &OpContext, name: &str) -> Result<Function> {
        ctx.authorize(P::FunctionRead)?;
        Ok(self.store().functions().function_get(name).await?.function)
    }

    pub async fn function_list(&self, ctx: &OpContext) -> Result<Vec<Function>> {
        ctx.authorize(P::FunctionRead)?;
        self.store().functions().function_list().await
    }

    /// Deletes a function. State machines naming it are not checked: their tasks then
    /// fail with `Lambda.ResourceNotFoundException` (as in AWS, where a deleted
    /// function does not stop a state machine from being defined or started).
    pub async fn function_delete(&self, ctx: &OpContext, name: &str) -> Result<()> {
        ctx.authorize(P::FunctionAdmin)?;
        let audit = ctx.audit("function.delete", format!("function/{name}"), None, json!({}));
        self.store().functions().function_delete(name, &Effects::none().with_audit(audit)).await
    }

    /// Refuses (400 `unknown-function`, naming the state) a definition whose tasks name
    /// a function that is not registered: `(state, function name as written)` pairs
    /// from the definition's walk.
    pub(crate) async fn check_functions(&self, used: &[(String, String)]) -> Result<()> {
        for (state, written) in used {
            let unknown = |why: &str| Error::InvalidRequest {
                code: ErrorCode::UnknownFunction,
                message: format!("state {state:?}: {why}; register it with PUT /v1/functions/{{name}}"),
            };
            if written.is_empty() {
                return Err(unknown("lambda:invoke needs a FunctionName (a function name or ARN)"));
            }
            let Some(name) = function::name_of_function_name(written) else {
                return Err(unknown(&format!("{written:?} is not a function name or ARN")));
            };
            match self.store().functions().function_get(name).await {
                Ok(_) => {}
                Err(Error::NotFound { .. }) => {
                    return Err(unknown(&format!("the function {name:?} is not registered")));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The function a Task state names statically, if any: the function ARN resource, or
/// a `lambda:invoke` task's `FunctionName` written in `Parameters` or `Arguments` (not
/// `FunctionName.$` nor a JSONata expression, known at run time only). An empty name
/// when a `lambda:invoke` task has no `FunctionName` in any form (nor arguments
/// computed whole by a JSONata expression).
pub fn named_function(resource: &str, state: &Value) -> Option<String> {
    let base = resource.strip_suffix(tenancy_engine::WAIT_FOR_TASK_TOKEN).unwrap_or(resource);
    if function::name_of_arn(base).is_some() {
        return Some(base.to_owned());
    }
    if base != INVOKE_RESOURCE {
        return None;
    }
    let args = [&state["Parameters"], &state["Arguments"]];
    if args.iter().any(|a| a.is_string() || a.get("FunctionName.$").is_some()) {
        return None;
    }
    match args.iter().find_map(|a| a.get("FunctionName")) {
        Some(Value::String(n)) if n.trim_start().starts_with("{%") => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => None,
        None => Some(String::new()),
    }
}
