//! The local stack itself: provisioning from `infra/template.yaml` against the AWS emulator, and
//! the Lambda harness running a real binary (the test-only `echo-lambda`) behind cargo-lambda.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, KeyType, ProjectionType, TimeToLiveStatus};
use aws_sdk_sqs::types::QueueAttributeName;
use e2e::{
    FunctionHarness, HarnessOptions, HttpApiGateway, InvokeError, LocalStack, SqsEventSource,
    provision, unique_prefix,
};
use serde_json::{Value, json};

#[tokio::test]
async fn provisioning_creates_the_template_table_with_its_index_and_ttl() {
    let stack = LocalStack::from_env()
        .await
        .expect("local stack is up (make stack-up)");
    let resources = provision(stack.sdk_config(), &unique_prefix("smoke-table"))
        .await
        .unwrap();
    let dynamo = aws_sdk_dynamodb::Client::new(stack.sdk_config());

    let table = dynamo
        .describe_table()
        .table_name(&resources.table_name)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let keys: Vec<(&str, &KeyType)> = table
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type()))
        .collect();
    assert_eq!(keys, vec![("pk", &KeyType::Hash), ("sk", &KeyType::Range)]);
    let gsi = &table.global_secondary_indexes()[0];
    assert_eq!(gsi.index_name(), Some("due-index"));
    let gsi_keys: Vec<&str> = gsi
        .key_schema()
        .iter()
        .map(|k| k.attribute_name())
        .collect();
    assert_eq!(gsi_keys, vec!["gsi1pk", "gsi1sk"]);
    assert_eq!(
        gsi.projection().and_then(|p| p.projection_type()),
        Some(&ProjectionType::KeysOnly)
    );

    let ttl = dynamo
        .describe_time_to_live()
        .table_name(&resources.table_name)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
}

#[tokio::test]
async fn provisioning_creates_the_queues_with_their_redrive_policies_and_the_app_secret() {
    let stack = LocalStack::from_env()
        .await
        .expect("local stack is up (make stack-up)");
    let prefix = unique_prefix("smoke-queues");
    let resources = provision(stack.sdk_config(), &prefix).await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(stack.sdk_config());

    for (queue, dlq) in [
        (&resources.sync_queue_url, &resources.sync_dlq_url),
        (&resources.rules_queue_url, &resources.rules_dlq_url),
    ] {
        let attributes = |url: &str| {
            let sqs = sqs.clone();
            let url = url.to_owned();
            async move {
                sqs.get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(QueueAttributeName::All)
                    .send()
                    .await
                    .unwrap()
                    .attributes
                    .unwrap()
            }
        };
        let (queue_attributes, dlq_attributes) = (attributes(queue).await, attributes(dlq).await);
        let policy: Value =
            serde_json::from_str(&queue_attributes[&QueueAttributeName::RedrivePolicy]).unwrap();
        assert_eq!(
            policy["deadLetterTargetArn"],
            dlq_attributes[&QueueAttributeName::QueueArn].as_str()
        );
        assert_eq!(policy["maxReceiveCount"].to_string().trim_matches('"'), "5");
        let visibility: u64 = queue_attributes[&QueueAttributeName::VisibilityTimeout]
            .parse()
            .unwrap();
        assert!(visibility >= 360, "visibility timeout {visibility}");
        assert!(!dlq_attributes.contains_key(&QueueAttributeName::RedrivePolicy));
    }

    let secrets = aws_sdk_secretsmanager::Client::new(stack.sdk_config());
    let secret = secrets
        .get_secret_value()
        .secret_id(&resources.app_credentials_secret_id)
        .send()
        .await
        .unwrap();
    assert!(
        secret.name().unwrap().starts_with(&format!("{prefix}/")),
        "{:?}",
        secret.name()
    );
    let value: Value = serde_json::from_str(secret.secret_string().unwrap()).unwrap();
    assert!(
        value["client_secret"]
            .as_str()
            .is_some_and(|s| s.len() == 40),
        "a generated placeholder: {value}"
    );
    assert_eq!(
        resources.token_secret_prefix,
        format!("{prefix}/integrations/")
    );
}

#[tokio::test]
async fn function_environments_come_from_the_template_with_local_names() {
    let stack = LocalStack::from_env()
        .await
        .expect("local stack is up (make stack-up)");
    let resources = provision(stack.sdk_config(), &unique_prefix("smoke-env"))
        .await
        .unwrap();
    let env = |bin: &str| -> std::collections::BTreeMap<String, String> {
        resources
            .function_env(
                bin,
                &[("AppClientId", "11111111-2222-3333-4444-555555555555")],
            )
            .unwrap()
            .into_iter()
            .collect()
    };
    let sync = env("mailbox-sync");
    assert_eq!(sync["TABLE_NAME"], resources.table_name);
    assert_eq!(sync["RULES_QUEUE_URL"], resources.rules_queue_url);
    assert_eq!(
        sync["APP_CREDENTIALS_SECRET_ID"],
        resources.app_credentials_secret_id
    );
    assert_eq!(sync["TOKEN_SECRET_PREFIX"], resources.token_secret_prefix);
    assert_eq!(
        sync["APP_CLIENT_ID"],
        "11111111-2222-3333-4444-555555555555"
    );
    assert_eq!(sync["GRAPH_BASE_URL"], "https://graph.microsoft.com/v1.0");
    assert_eq!(
        env("sync-dispatcher")["SYNC_QUEUE_URL"],
        resources.sync_queue_url
    );
    let api = env("management-api");
    assert!(
        !api.contains_key("PUBLIC_BASE_URL"),
        "depends on the HTTP API: the caller sets it"
    );
    assert!(
        !api.contains_key("API_JWT_ISSUER"),
        "a parameter without default stays unset"
    );
}

async fn echo(env: &[(&str, &str)]) -> FunctionHarness {
    FunctionHarness::start("echo-lambda", env)
        .await
        .expect("echo-lambda starts")
}

#[tokio::test]
async fn the_harness_invokes_a_real_binary_as_a_lambda_function() {
    let harness = echo(&[("GREETING", "hello")]).await;
    let out = harness
        .invoke(&json!({"n": 1, "env": "GREETING"}))
        .await
        .unwrap();
    assert_eq!(out["echo"]["n"], 1);
    assert_eq!(out["env"], "hello");
    assert_eq!(out["runtime"]["function_name"], "echo-lambda");
    assert_eq!(
        out["runtime"]["invoked_function_arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:echo-lambda"
    );
    let remaining = out["runtime"]["remaining_ms"].as_i64().unwrap();
    assert!(
        (1..=30_000).contains(&remaining),
        "deadline is now + timeout, not 1970: {remaining}"
    );

    let err = harness.invoke(&json!({"fail": "boom"})).await.unwrap_err();
    assert!(
        matches!(&err, InvokeError::Function { error_message, .. } if error_message == "boom"),
        "{err:?}"
    );
    // Still serving after a function error.
    assert_eq!(
        harness.invoke(&json!({"n": 2})).await.unwrap()["echo"]["n"],
        2
    );
}

#[tokio::test]
async fn the_harness_serves_http_functions_through_function_urls() {
    let harness = echo(&[]).await;
    let url = format!("{}/connect/start?x=1", harness.http_base_url());
    let response = reqwest::get(&url).await.unwrap();
    let status = response.status();
    let echo_header = response.headers().get("x-echo").cloned();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(echo_header.unwrap(), "1");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["path"], "/connect/start");
    assert_eq!(body["query"], "x=1");
    assert_eq!(body["method"], "GET");
}

#[tokio::test]
async fn a_killed_function_fails_its_invocation_and_restarts_cold() {
    let harness = Arc::new(echo(&[]).await);
    let first_pid = harness.pid().await.unwrap();

    // Crash mid-invocation: the invocation fails like Lambda's Runtime.ExitError.
    let slow = tokio::spawn({
        let harness = harness.clone();
        async move { harness.invoke(&json!({"sleep_ms": 10_000})).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    harness.kill().await;
    assert!(!harness.is_running().await);
    let err = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, InvokeError::Crashed { .. }), "{err:?}");

    // An invocation sent while no process runs waits for the restart, then runs once.
    let queued = tokio::spawn({
        let harness = harness.clone();
        async move { harness.invoke(&json!({"n": "queued"})).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    harness.restart().await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), queued)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(out["echo"]["n"], "queued");
    assert_ne!(
        out["runtime"]["pid"].as_u64().unwrap(),
        u64::from(first_pid),
        "a new process"
    );
    assert_eq!(
        harness.invoke(&json!({"n": 3})).await.unwrap()["echo"]["n"],
        3
    );
}

#[tokio::test]
async fn a_function_process_that_exits_fails_its_invocation() {
    let harness = echo(&[]).await;
    let err = harness.invoke(&json!({"exit": 3})).await.unwrap_err();
    assert!(
        matches!(&err, InvokeError::Crashed { error_message } if error_message.contains("exit")),
        "{err:?}"
    );
    assert!(!harness.is_running().await);
    harness.restart().await.unwrap();
    assert_eq!(
        harness.invoke(&json!({"n": 4})).await.unwrap()["echo"]["n"],
        4
    );
}

#[tokio::test]
async fn the_http_api_routes_paths_to_functions_like_api_gateway() {
    let gateway = HttpApiGateway::start().await.unwrap();
    let harness = echo(&[("PUBLIC_BASE_URL", gateway.base_url())]).await;
    gateway.add_route("ANY", "/api/{proxy+}", &harness);
    gateway.add_route("GET", "/connect", &harness);

    let response = reqwest::Client::new()
        .post(format!("{}/api/integrations?limit=2", gateway.base_url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["method"].as_str(), body["path"].as_str()),
        (Some("POST"), Some("/api/integrations"))
    );
    assert_eq!(body["query"], "limit=2");

    assert_eq!(
        reqwest::get(format!("{}/connect", gateway.base_url()))
            .await
            .unwrap()
            .status(),
        200
    );
    for unrouted in ["/connect/x", "/nope", "/api"] {
        let status = reqwest::get(format!("{}{unrouted}", gateway.base_url()))
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "{unrouted}");
    }
    let out = harness
        .invoke(&json!({"env": "PUBLIC_BASE_URL"}))
        .await
        .unwrap();
    assert_eq!(out["env"], gateway.base_url());
}

#[tokio::test]
async fn each_simulator_runs_on_its_own_port_and_stops_with_its_handle() {
    let (a, b) = tokio::try_join!(e2e::SimProcess::start(1), e2e::SimProcess::start(2)).unwrap();
    assert_ne!(a.base_url, b.base_url);
    assert_eq!(a.graph_base_url(), format!("{}/v1.0", a.base_url));
    let pid = a.pid().unwrap();
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains(") Z"),
        "m365-sim {pid} still runs: {state}"
    );
    assert!(
        reqwest::get(&b.base_url).await.is_ok(),
        "the other simulator still answers"
    );
}

#[tokio::test]
async fn the_sqs_event_source_deletes_successes_and_redrives_reported_failures() {
    let stack = LocalStack::from_env()
        .await
        .expect("local stack is up (make stack-up)");
    let resources = provision(stack.sdk_config(), &unique_prefix("smoke-sqs"))
        .await
        .unwrap();
    let harness = echo(&[]).await;
    let source = SqsEventSource::new(
        stack.sdk_config(),
        &resources.sync_queue_url,
        &resources.queue_arns["SyncQueue"],
        5,
        true,
    );
    let sqs = aws_sdk_sqs::Client::new(stack.sdk_config());
    for body in ["one", "fail", "two"] {
        sqs.send_message()
            .queue_url(&resources.sync_queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    let batch = source.poll_once(&harness).await.unwrap();
    assert_eq!(batch.message_ids.len(), 3);
    assert_eq!(batch.failed.len(), 1);
    assert!(
        source.poll_once(&harness).await.unwrap().is_empty(),
        "the failure is invisible until retried"
    );

    // maxReceiveCount is 5: four more receives, then the failure moves to the dead-letter queue.
    let mut batch = batch;
    for _ in 0..4 {
        source.retry_now(&batch).await.unwrap();
        batch = source.poll_once(&harness).await.unwrap();
        assert_eq!(batch.failed.len(), 1);
    }
    source.retry_now(&batch).await.unwrap();
    assert!(source.poll_once(&harness).await.unwrap().is_empty());
    let dead = sqs
        .receive_message()
        .queue_url(&resources.sync_dlq_url)
        .send()
        .await
        .unwrap();
    let bodies: Vec<&str> = dead.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, vec!["fail"]);
}

#[tokio::test]
async fn the_aws_call_counter_forwards_sdk_calls_and_counts_them_by_operation() {
    let stack = LocalStack::from_env()
        .await
        .expect("local stack is up (make stack-up)");
    let resources = provision(stack.sdk_config(), &unique_prefix("smoke-count"))
        .await
        .unwrap();
    let counter = e2e::AwsCallCounter::start(stack.endpoint_url())
        .await
        .unwrap();
    let through = stack
        .sdk_config()
        .to_builder()
        .endpoint_url(counter.url())
        .build();
    let dynamo = aws_sdk_dynamodb::Client::new(&through);
    let sqs = aws_sdk_sqs::Client::new(&through);

    let before = counter.snapshot();
    for i in 0..3 {
        dynamo
            .put_item()
            .table_name(&resources.table_name)
            .item("pk", AttributeValue::S(format!("COUNT#{i}")))
            .item("sk", AttributeValue::S("x".into()))
            .send()
            .await
            .unwrap();
    }
    let got = dynamo
        .get_item()
        .table_name(&resources.table_name)
        .key("pk", AttributeValue::S("COUNT#1".into()))
        .key("sk", AttributeValue::S("x".into()))
        .send()
        .await
        .unwrap();
    assert!(got.item.is_some(), "the proxied write reached the emulator");
    sqs.send_message()
        .queue_url(&resources.sync_queue_url)
        .message_body("{}")
        .send()
        .await
        .unwrap();
    // A refused call is forwarded with its status and counted too.
    let missing = dynamo
        .get_item()
        .table_name("no-such-table")
        .key("pk", AttributeValue::S("x".into()))
        .key("sk", AttributeValue::S("x".into()))
        .send()
        .await;
    assert!(missing.is_err());

    let counts = counter.since(&before);
    let calls: Vec<(&str, u64)> = counts
        .iter()
        .map(|(op, c)| (op.as_str(), c.calls))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("dynamodb:GetItem", 2),
            ("dynamodb:PutItem", 3),
            ("sqs:SendMessage", 1)
        ]
    );
    assert_eq!(e2e::awscalls::dynamodb_writes_reads(&counts), (3, 2));
    assert!(counts["dynamodb:PutItem"].request_bytes > 0);
    assert!(counts["dynamodb:GetItem"].response_bytes > 0);
}

/// Sends `body` to the echo function's URL with `content_type`; its answer echoes the body back.
async fn echo_raw(
    harness: &FunctionHarness,
    content_type: &str,
    body: Vec<u8>,
) -> (reqwest::StatusCode, Vec<u8>) {
    let url = format!("{}/echo?echo=raw", harness.http_base_url());
    let (size, within) = (body.len(), Duration::from_secs(20));
    let call = async {
        let response = reqwest::Client::new()
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        Ok::<_, reqwest::Error>((status, response.bytes().await?.to_vec()))
    };
    tokio::time::timeout(within, call)
        .await
        .unwrap_or_else(|_| panic!("{content_type}, {size} B: no answer within {within:?}"))
        .unwrap_or_else(|e| panic!("{content_type}, {size} B: {e}"))
}

/// Request and response bodies from 1 KB to ~1 MB get through a function URL and an invocation.
/// cargo-lambda answers the runtime's `/response` before reading its body; the body of a function
/// URL answer beyond ~8 KB then never ended while the proxy's connection stayed idle, so the
/// caller hung (see the `lambda` module docs).
#[tokio::test]
async fn bodies_up_to_a_megabyte_get_through_function_urls_and_invocations_both_ways() {
    let harness = echo(&[]).await;
    for size in [1024, 16 * 1024, 256 * 1024, 1_000_000] {
        // Varied, so that a truncated, repeated or reordered body shows.
        let text: String = (0..size)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect();
        let (status, back) = echo_raw(&harness, "text/plain", text.clone().into_bytes()).await;
        assert_eq!(
            status,
            200,
            "text, {size} B: {}",
            String::from_utf8_lossy(&back)
        );
        assert!(
            back == text.as_bytes(),
            "text, {size} B: {} B back, first difference at {:?}",
            back.len(),
            back.iter().zip(text.as_bytes()).position(|(a, b)| a != b)
        );

        // Not UTF-8: base64 in the event and in the answer (`isBase64Encoded`), raw on the wire.
        let binary: Vec<u8> = (0..size).map(|i| (i * 31 % 256) as u8).collect();
        assert!(std::str::from_utf8(&binary).is_err());
        let (status, back) = echo_raw(&harness, "application/octet-stream", binary.clone()).await;
        assert_eq!(
            status,
            200,
            "binary, {size} B: {}",
            String::from_utf8_lossy(&back)
        );
        assert!(
            back == binary,
            "binary, {size} B: {} B back, first difference at {:?}",
            back.len(),
            back.iter().zip(&binary).position(|(a, b)| a != b)
        );

        // The same sizes as an invocation's payload and result.
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            harness.invoke(&json!({"pad": text})),
        )
        .await
        .unwrap_or_else(|_| panic!("invoke, {size} B: no answer"))
        .unwrap_or_else(|e| panic!("invoke, {size} B: {e}"));
        assert!(
            out["echo"]["pad"].as_str() == Some(text.as_str()),
            "invoke, {size} B: {} B back",
            out["echo"]["pad"].as_str().map_or(0, str::len)
        );
    }
    // A binary body is described as base64 with `isBase64Encoded`.
    let response = reqwest::Client::new()
        .post(format!("{}/echo", harness.http_base_url()))
        .header("content-type", "application/octet-stream")
        .body(vec![0xff, 0xfe, 0x00, b'a'])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["body"], "//4AYQ==");
    assert_eq!(body["isBase64Encoded"], true);
}

/// An invocation sent before a kill fails with it even when the process had not taken its
/// event yet (it was busy with another): it never runs on the next process. While no process
/// runs, `invoke_if_running` (what the SQS event source uses, so that a poll racing a kill ends
/// before the restart) fails at once, where `invoke` waits for the restart.
#[tokio::test]
async fn invocations_waiting_for_a_killed_process_fail_with_it() {
    let harness = Arc::new(echo(&[]).await);
    let call = |payload: Value| {
        let harness = harness.clone();
        tokio::spawn(async move { harness.invoke(&payload).await })
    };
    let busy = call(json!({"sleep_ms": 10_000}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let waiting = call(json!({"sleep_ms": 4_000, "n": "waiting"}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    harness.kill().await;
    for (what, call) in [("busy", busy), ("waiting", waiting)] {
        let err = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer"))
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(err, InvokeError::Crashed { .. }),
            "{what}: {err:?}"
        );
    }

    let err = tokio::time::timeout(
        Duration::from_secs(2),
        harness.invoke_if_running(&json!({"n": 1})),
    )
    .await
    .expect("fails at once")
    .unwrap_err();
    assert!(matches!(err, InvokeError::Crashed { .. }), "{err:?}");

    harness.restart().await.unwrap();
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(10), harness.invoke(&json!({"n": 2})))
        .await
        .expect("answer")
        .unwrap();
    assert_eq!(out["echo"]["n"], 2);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the new process ran the failed invocation first: {:?}",
        started.elapsed()
    );
    assert_eq!(
        harness.invoke_if_running(&json!({"n": 3})).await.unwrap()["echo"]["n"],
        3
    );
}

/// A function killed at any moment of an invocation (waiting for its event, running, or sending
/// its result) ends that invocation within seconds: with its result, or with `Runtime.ExitError`
/// as Lambda does; never by the invoke timeout. Races once left an invocation held by no
/// process: a process being killed polled again after it was retired and was handed the next
/// event under the retired generation; a result forwarded while its process died was dropped
/// with the proxy's handler; an event that reached the proxy just after the kill waited for a
/// restart. Results are large at times, so that kills also land while one is on its way through
/// the proxy. `KILL_STRESS_ITERATIONS` (default 200) scales it up;
/// `SOAK_SEED` replays a run.
#[tokio::test]
async fn every_invocation_ends_promptly_however_its_function_is_killed() {
    let options = HarnessOptions {
        invoke_timeout: Duration::from_secs(5),
        ..HarnessOptions::default()
    };
    let harness = Arc::new(
        FunctionHarness::start_with("echo-lambda", &[] as &[(&str, &str)], options)
            .await
            .expect("echo-lambda starts"),
    );
    let seed = e2e::chaos::seed();
    let mut rng = e2e::chaos::Rng(seed);
    let iterations = e2e::chaos::env_num("KILL_STRESS_ITERATIONS", 200.0) as usize;
    let pad = "x".repeat(256 * 1024);
    let started = Instant::now();
    let (mut answered, mut crashed) = (0, 0);
    for i in 0..iterations {
        let payload = json!({
            "i": i,
            "sleep_ms": rng.below(10),
            "pad": if rng.below(2) == 0 { pad.as_str() } else { "" },
        });
        let call = tokio::spawn({
            let harness = harness.clone();
            async move { harness.invoke(&payload).await }
        });
        // At once at times: the process may not have polled again since its last invocation.
        if rng.below(3) > 0 {
            tokio::time::sleep(Duration::from_millis(rng.below(25))).await;
        }
        harness.kill().await;
        // An event not yet handed out goes to the next process.
        harness.restart().await.expect("restart");
        let result = tokio::time::timeout(Duration::from_secs(8), call)
            .await
            .unwrap_or_else(|_| panic!("iteration {i} (SOAK_SEED={seed}): no answer"))
            .expect("invoke task");
        match result {
            Ok(out) => {
                assert_eq!(out["echo"]["i"], i, "iteration {i} (SOAK_SEED={seed})");
                answered += 1;
            }
            Err(InvokeError::Crashed { .. }) => crashed += 1,
            Err(e) => panic!(
                "iteration {i} (SOAK_SEED={seed}): {e}; log {}",
                harness.log_path().display()
            ),
        }
    }
    eprintln!(
        "{iterations} kills in {:.1}s: {answered} answered, {crashed} Runtime.ExitError (SOAK_SEED={seed})",
        started.elapsed().as_secs_f64()
    );
    assert!(crashed > 0, "some kills landed mid-invocation");
}
