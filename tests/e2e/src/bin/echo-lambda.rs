//! A test-only Lambda function for the harness's own tests (not deployed).
//!
//! Echoes its event with what the runtime told it. Special events: `{"fail": "message"}`
//! returns an error, `{"sleep_ms": N}` sleeps first, `{"env": "NAME"}` also returns that
//! variable, `{"exit": CODE}` exits the process. API Gateway v2 (function URL) events get an
//! HTTP response describing the request, or with `echo=raw` in the query string the request's
//! body itself (same `Content-Type`, same `isBase64Encoded`); SQS events report the records
//! whose body is `fail` as `batchItemFailures`.

use std::time::{Duration, SystemTime};

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    if let Some(ms) = payload.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = payload.get("exit").and_then(Value::as_i64) {
        std::process::exit(code as i32);
    }
    if let Some(message) = payload.get("fail").and_then(Value::as_str) {
        return Err(message.into());
    }
    let remaining_ms = context
        .deadline()
        .duration_since(SystemTime::now())
        .map(|d| d.as_millis() as i64)
        .unwrap_or_else(|e| -(e.duration().as_millis() as i64));
    let runtime = json!({
        "function_name": context.env_config.function_name,
        "memory_mb": context.env_config.memory,
        "version": context.env_config.version,
        "invoked_function_arn": context.invoked_function_arn,
        "request_id": context.request_id,
        "remaining_ms": remaining_ms,
        "pid": std::process::id(),
    });
    if let Some(records) = payload.get("Records").and_then(Value::as_array) {
        // An SQS batch: records whose body is "fail" are reported as failures.
        let failures: Vec<Value> = records
            .iter()
            .filter(|r| r.get("body").and_then(Value::as_str) == Some("fail"))
            .map(|r| json!({"itemIdentifier": r.get("messageId")}))
            .collect();
        return Ok(json!({"batchItemFailures": failures}));
    }
    if let Some(path) = payload.get("rawPath").and_then(Value::as_str) {
        let query = payload
            .get("rawQueryString")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if query.split('&').any(|pair| pair == "echo=raw") {
            let content_type = payload
                .pointer("/headers/content-type")
                .cloned()
                .unwrap_or_else(|| json!("application/octet-stream"));
            return Ok(json!({
                "statusCode": 200,
                "headers": {"content-type": content_type, "x-echo": "raw"},
                "multiValueHeaders": {},
                "cookies": [],
                "isBase64Encoded": payload.get("isBase64Encoded").cloned().unwrap_or(json!(false)),
                "body": payload.get("body").cloned().unwrap_or(json!("")),
            }));
        }
        let body = json!({
            "method": payload.pointer("/requestContext/http/method"),
            "path": path,
            "query": payload.get("rawQueryString"),
            "body": payload.get("body"),
            "isBase64Encoded": payload.get("isBase64Encoded"),
        });
        return Ok(json!({
            "statusCode": 200,
            "headers": {"content-type": "application/json", "x-echo": "1"},
            "multiValueHeaders": {},
            "cookies": [],
            "isBase64Encoded": false,
            "body": body.to_string(),
        }));
    }
    let env = payload
        .get("env")
        .and_then(Value::as_str)
        .map(|name| std::env::var(name).ok());
    Ok(json!({"echo": payload, "runtime": runtime, "env": env}))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handle)).await
}
