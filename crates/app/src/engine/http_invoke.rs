//! `arn:aws:states:::http:invoke`: an HTTP request from a Task state.
//!
//! Parameters: `ApiEndpoint` (URL), `Method`, `Headers`, `QueryParameters`,
//! `RequestBody` (JSON, or a string sent as is). Result: `StatusCode`, `StatusText`,
//! `Headers`, `ResponseBody` (parsed JSON when it parses, else the text). A non-2xx
//! answer fails the task with `States.Http.StatusCode.<code>`; a transport error with
//! `States.Http.Socket`. The request carries `Idempotency-Key: <task idempotency key>`.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use super::handlers::{failure, TaskCall, TaskHandler, TaskOutput, TaskResult};

pub const RESOURCE: &str = "arn:aws:states:::http:invoke";

pub struct HttpInvoke {
    client: reqwest::Client,
}

impl HttpInvoke {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client with default settings builds");
        HttpInvoke { client }
    }
}

impl Default for HttpInvoke {
    fn default() -> Self {
        HttpInvoke::new()
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[async_trait]
impl TaskHandler for HttpInvoke {
    async fn call(&self, call: TaskCall<'_>) -> TaskResult {
        let p = call.parameters;
        let url = p["ApiEndpoint"]
            .as_str()
            .ok_or_else(|| failure("States.Runtime", "http:invoke needs ApiEndpoint (a URL string)"))?;
        let method = p["Method"].as_str().unwrap_or("GET").to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| failure("States.Runtime", format!("invalid Method {method:?}")))?;
        let mut req = self.client.request(method, url).header("Idempotency-Key", call.idempotency_key);
        if let Some(headers) = p["Headers"].as_object() {
            for (k, v) in headers {
                req = req.header(k.as_str(), text(v));
            }
        }
        if let Some(q) = p["QueryParameters"].as_object() {
            let pairs: Vec<(String, String)> = q.iter().map(|(k, v)| (k.clone(), text(v))).collect();
            req = req.query(&pairs);
        }
        match &p["RequestBody"] {
            Value::Null => {}
            Value::String(s) => req = req.body(s.clone()),
            v => req = req.json(v),
        }
        let res = req.send().await.map_err(|e| failure("States.Http.Socket", e.to_string()))?;
        let status = res.status();
        let mut headers = Map::new();
        for (k, v) in res.headers() {
            headers.insert(k.as_str().to_owned(), json!(v.to_str().unwrap_or_default()));
        }
        let body = res.text().await.map_err(|e| failure("States.Http.Socket", e.to_string()))?;
        let body_value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        let result = json!({
            "StatusCode": status.as_u16(),
            "StatusText": status.canonical_reason().unwrap_or(""),
            "Headers": headers,
            "ResponseBody": body_value,
        });
        if !status.is_success() {
            return Err(failure(&format!("States.Http.StatusCode.{}", status.as_u16()), result.to_string()));
        }
        Ok(TaskOutput::new(result))
    }
}
