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
/// `MessageDeduplicationId`, `DelaySeconds`. Result `{"MessageId"}`. The dedup id
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
        };
        let message = send.into_new().map_err(app_failure)?;
        let sent = call.store.queues().message_send(&queue, &[message], Timestamp::now()).await.map_err(app_failure)?;
        Ok(TaskOutput::new(json!({"MessageId": sent[0].id})))
    }
}
