//! A small HTTP client for the CLI: JSON in, JSON out, problems as errors.

use reqwest::{Method, StatusCode};
use serde_json::Value;

/// An error from the server (a problem document) or from reaching it.
#[derive(Debug)]
pub enum ClientError {
    /// The server answered with a problem.
    Api { status: StatusCode, code: String, detail: String },
    /// The server could not be reached.
    Unreachable(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Api { status, code, detail } => write!(f, "{detail} ({code}, HTTP {})", status.as_u16()),
            ClientError::Unreachable(e) => write!(f, "cannot reach the server: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Client { http: reqwest::Client::new(), base: base.trim_end_matches('/').to_owned(), token }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).query(query);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| ClientError::Unreachable(e.to_string()))?;
        let status = res.status();
        let text = res.text().await.map_err(|e| ClientError::Unreachable(e.to_string()))?;
        let json: Value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        if status.is_success() {
            return Ok(json);
        }
        let field = |k: &str| json.get(k).and_then(Value::as_str).map(str::to_owned);
        Err(ClientError::Api {
            status,
            code: field("code").unwrap_or_else(|| "http-error".into()),
            detail: field("detail").unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned()),
        })
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ClientError> {
        self.call(Method::GET, path, query, None).await
    }
}
