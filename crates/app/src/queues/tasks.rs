//! `sqs:sendMessage` and `tenancy:queue.send`: a Task state sends a message.

use serde_json::{json, Value};
use tenancy_domain::queue::SendMessage;
use tenancy_domain::time::Timestamp;

/// Registers the Task state that sends a message.
pub fn register(r: &tenancy_engine::Registry) {
    SEND_RESOURCES.iter().for_each(|res| r.register(res, SendMessageTask));
}

/// The task resources that send a message: Step Functions' SQS integration and ours.
pub const SEND_RESOURCES: [&str; 2] = ["arn:aws:states:::sqs:sendMessage", "tenancy:queue.send"];

/// `arn:aws:states:::sqs:sendMessage` and `tenancy:queue.send`: parameters `QueueUrl`
/// (the queue is its last path segment) or `QueueName`, `MessageBody` (any JSON; with
/// `.waitForTaskToken` put `$$.Task.Token` in it), and optionally `MessageGroupId`,
/// `MessageDeduplicationId`, `DelaySeconds`, `MessageAttributes` (SQS's form,
/// `{"name": {"DataType": "String", "StringValue": "..."}}`, or a plain string per
/// name). The message carries the step's trace context as its `traceparent`
/// attribute. Result `{"MessageId"}`. The dedup id
/// defaults to the task's idempotency key, so a re-run of the same attempt (after a
/// crash) does not enqueue twice within the 5-minute dedup window.
pub struct SendMessageTask;

/// The parameters of `sqs:sendMessage`, named as Step Functions names them.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendParams {
    queue_name: Option<String>,
    queue_url: Option<String>,
    #[serde(default)]
    message_body: Value,
    message_group_id: Option<String>,
    message_deduplication_id: Option<String>,
    /// A whole number of seconds (checked by hand for SQS's wording).
    #[serde(default)]
    delay_seconds: Value,
    #[serde(default)]
    message_attributes: Option<serde_json::Map<String, Value>>,
}

/// SQS's `MessageAttributes` as string attributes: `{"StringValue": ...}` (of any
/// `DataType`, numbers being strings in SQS too) or a plain string.
fn attributes(
    given: Option<serde_json::Map<String, Value>>,
) -> Result<std::collections::BTreeMap<String, String>, tenancy_asl::Failure> {
    let mut out = std::collections::BTreeMap::new();
    for (name, v) in given.unwrap_or_default() {
        let value = match &v {
            Value::String(s) => s.clone(),
            Value::Object(o) => match o.get("StringValue") {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    return Err(tenancy_engine::failure(
                        "States.Runtime",
                        format!("MessageAttributes.{name} needs a StringValue"),
                    ))
                }
            },
            _ => {
                return Err(tenancy_engine::failure(
                    "States.Runtime",
                    format!("MessageAttributes.{name} must be a string or {{\"StringValue\": ...}}"),
                ))
            }
        };
        out.insert(name, value);
    }
    Ok(out)
}

#[async_trait::async_trait]
impl tenancy_engine::TaskHandler for SendMessageTask {
    async fn call(&self, call: tenancy_engine::TaskCall<'_>) -> tenancy_engine::TaskResult {
        use tenancy_engine::{app_failure, failure, TaskOutput};
        let p: SendParams = call.params()?;
        let queue = match (p.queue_name, p.queue_url.as_deref()) {
            (Some(name), _) => name,
            (None, Some(url)) => url.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_owned(),
            (None, None) => return Err(failure("States.Runtime", "sqs:sendMessage needs QueueUrl or QueueName")),
        };
        if p.message_body.is_null() {
            return Err(failure("States.Runtime", "sqs:sendMessage needs a MessageBody"));
        }
        let delay_s = match &p.delay_seconds {
            Value::Null => None,
            v => Some(v.as_u64().ok_or_else(|| failure("States.Runtime", "DelaySeconds must be a whole number"))?),
        };
        let send = SendMessage {
            body: p.message_body,
            delay_s,
            group_id: p.message_group_id,
            dedup_id: Some(p.message_deduplication_id.unwrap_or_else(|| call.idempotency_key.to_owned())),
            attributes: attributes(p.message_attributes)?,
        };
        let message = send.into_new().map_err(app_failure)?.with_traceparent(tenancy_trace::traceparent());
        let sent = call.store.queues().message_send(&queue, &[message], Timestamp::now()).await.map_err(app_failure)?;
        Ok(TaskOutput::new(json!({"MessageId": sent[0].id})))
    }
}
