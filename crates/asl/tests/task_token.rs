//! `$$.Task.Token` of callback tasks (`.waitForTaskToken`).

use serde_json::json;
use tenancy_asl::{idempotency_key, Action, ExecutionContext, StateMachine};

#[test]
fn callback_tasks_see_their_token_and_others_do_not() {
    let m = StateMachine::parse(&json!({
        "StartAt": "Plain",
        "States": {
            "Plain": {"Type": "Task", "Resource": "tenancy:noop", "Parameters": {"ctx.$": "$$"}, "Next": "Await"},
            "Await": {"Type": "Task", "Resource": "tenancy:callback.waitForTaskToken",
                "Parameters": {"token.$": "$$.Task.Token"}, "End": true}
        }
    }))
    .unwrap();
    let ctx = ExecutionContext::new("sm", "e", json!({}), 0);
    let step = m.start(&ctx, json!({}), 0);
    let Action::RunTask(plain) = &step.action else { panic!("{:?}", step.action) };
    assert!(plain.parameters["ctx"].get("Task").is_none());
    let step = m.task_succeeded(&ctx, &step.cursor, json!({}), 1).unwrap();
    let Action::RunTask(req) = &step.action else { panic!("{:?}", step.action) };
    assert_eq!(req.parameters["token"], json!(req.idempotency_key));
    assert_eq!(req.idempotency_key, idempotency_key(&ctx.execution_id, "Await", 0));
}
