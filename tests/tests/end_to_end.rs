//! End to end: the four real function binaries, each started behind a local Lambda Runtime API, driven
//! over HTTP with API Gateway and EventBridge events; and the Secrets Manager start-up path against an
//! AWS emulator (LocalStack on Docker hosts, moto server here).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use integration_tests::binaries::debug_binary;
use integration_tests::runtime_api::{lambda_env, RuntimeApi};
use integration_tests::{server, unique_database, workspace_root, Auth, HttpEvent};
use serde_json::{json, Value};

/// A function process behind its own runtime API; killed on drop.
struct Function {
    api: RuntimeApi,
    child: Child,
}

impl Function {
    async fn start(name: &str, env: &[(&str, String)]) -> Function {
        let api = RuntimeApi::start().await.unwrap();
        let mut command = Command::new(debug_binary(name));
        command.envs(lambda_env(name, &api.endpoint())).env_remove("MONGODB_URI").env("RUST_LOG", "warn");
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap_or_else(|e| panic!("{name}: {e}"));
        let function = Function { api, child };
        function.api.wait_for_first_poll(Duration::from_secs(30)).await.unwrap_or_else(|| panic!("{name} never polled for an event"));
        function
    }

    async fn invoke(&self, event: Value) -> Value {
        self.api.invoke(&event, Duration::from_secs(20)).await.unwrap_or_else(|e| panic!("invoke: {e}"))
    }

    async fn http(&self, event: HttpEvent) -> (u16, Value) {
        let response = self.invoke(event.to_json()).await;
        let status = response["statusCode"].as_u64().unwrap_or(0) as u16;
        let body = response["body"].as_str().map(|b| serde_json::from_str(b).unwrap_or(Value::Null)).unwrap_or(Value::Null);
        (status, body)
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn every_route_and_the_schedule_through_the_real_binaries() {
    let database = unique_database("e2e");
    let env = [("MONGODB_URI", server().uri.clone()), ("MONGODB_DATABASE", database.clone())];
    let sweeper = Function::start("ttl-sweeper", &env).await;
    // The sweeper creates the indexes (the unique user_id index the writers rely on).
    let summary = sweeper.invoke(json!({ "version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {} })).await;
    assert_eq!(summary["trigger"], "scheduled_event");
    assert_eq!(summary["indexes_ok"], true, "{summary}");

    let (get, put, post) =
        tokio::join!(Function::start("get-tickets", &env), Function::start("update-tickets", &env), Function::start("push-log", &env));

    let pass = json!({ "pass_uuid": "p1", "status": "ACTIVE", "payload": { "fare": 2.75 } });
    let (status, body) = put.http(HttpEvent::new("PUT", "/v1/users/77/tickets").auth(Auth::Iam).json(&json!({ "passes": [pass] }))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["passes"], 1);

    let (status, body) = post
        .http(HttpEvent::new("POST", "/v1/users/77/logs").auth(Auth::Iam).json(&json!({ "kind": "passes", "errors": ["E"], "id": "x" })))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = post
        .http(HttpEvent::new("POST", "/v1/users/77/logs").auth(Auth::Iam).json(&json!({ "kind": "passes", "errors": ["E"], "id": "x" })))
        .await;
    assert_eq!(status, 200, "a retried id is not stored twice");

    let (status, body) = get.http(HttpEvent::new("GET", "/v1/users/77/tickets").auth(Auth::user(77))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["passes"][0]["integrity"], "verified");
    // The same warm process serves a function-URL style event (no route key) and a refusal.
    let (status, _) = get.http(HttpEvent::new("GET", "/v1/users/77/tickets").auth(Auth::user(78)).without_route_key()).await;
    assert_eq!(status, 403);
    let (status, _) = get.http(HttpEvent::new("GET", "/v1/users/79/tickets").auth(Auth::user(79))).await;
    assert_eq!(status, 404);

    // The scheduler's shape works too.
    let summary = sweeper.invoke(json!({ "source": "aws.scheduler", "scheduled_time": "2026-11-24T12:00:00Z" })).await;
    assert_eq!(summary["trigger"], "scheduler");
    assert_eq!(summary["deleted_documents"], 0);
    assert_eq!(summary["errors_last_hour"]["total"], 1, "{summary}");
}

/// Starts an AWS emulator with a Secrets Manager API: LocalStack when Docker answers, else moto server.
/// Returns its endpoint and a guard that stops it.
fn aws_emulator() -> Result<(String, Box<dyn std::any::Any>), String> {
    if integration_tests::docker_available().is_ok() {
        use testcontainers_modules::localstack::LocalStack;
        use testcontainers_modules::testcontainers::runners::SyncRunner;
        let container = std::thread::spawn(|| LocalStack::default().start())
            .join()
            .map_err(|_| "LocalStack start panicked")?
            .map_err(|e| e.to_string())?;
        let port = container.get_host_port_ipv4(4566).map_err(|e| e.to_string())?;
        eprintln!("[harness] AWS emulator: LocalStack (testcontainers)");
        return Ok((format!("http://127.0.0.1:{port}"), Box::new(container)));
    }
    let moto = workspace_root().join(".venv/bin/moto_server");
    if !moto.exists() {
        return Err(format!("no Docker for LocalStack and no {} (run `make venv`)", moto.display()));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let child = Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Kill(child);
    // moto imports much of boto on start: seconds on an idle machine, more on a loaded 2-core CI runner.
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            eprintln!("[harness] AWS emulator: moto server");
            return Ok((format!("http://127.0.0.1:{port}"), Box::new(guard)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("moto server did not start within 30 s".into())
}

#[tokio::test]
async fn the_uri_can_come_from_secrets_manager() {
    let (endpoint, _emulator) = aws_emulator().unwrap_or_else(|reason| panic!("no AWS emulator: {reason}"));
    let aws_env = [
        ("AWS_ENDPOINT_URL", endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ];
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(lambda_adapter::startup::aws_https_client())
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let created = secrets
        .create_secret()
        .name(unique_database("mongodb-uri"))
        .secret_string(json!({ "uri": server().uri }).to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("create secret: {}", aws_sdk_secretsmanager::error::DisplayErrorContext(e)));
    let arn = created.arn().unwrap().to_owned();

    let mut env: Vec<(&str, String)> = aws_env.to_vec();
    env.push(("MONGODB_URI_SECRET_ARN", arn));
    env.push(("MONGODB_DATABASE", unique_database("secret")));
    let get = Function::start("get-tickets", &env).await;
    let (status, body) = get.http(HttpEvent::new("GET", "/v1/users/5/tickets").auth(Auth::user(5))).await;
    assert_eq!(status, 404, "reached MongoDB with the URI from the secret: {body}");

    // A secret that does not exist fails start-up (reported to the runtime API), never serving requests.
    let api = RuntimeApi::start().await.unwrap();
    let mut child = Command::new(debug_binary("get-tickets"))
        .envs(lambda_env("get-tickets", &api.endpoint()))
        .envs(aws_env.iter().map(|(k, v)| (k.to_string(), v.clone())))
        .env_remove("MONGODB_URI")
        .env("MONGODB_URI_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let exited = (0..100).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        child.try_wait().ok().flatten()
    });
    let _ = child.kill();
    assert!(exited.is_some_and(|s| !s.success()), "start-up must fail without the secret");
    assert!(api.first_poll().is_none(), "it never asked for an event");
}
