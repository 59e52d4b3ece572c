//! No write before the unique `user_id` index exists: the deployment's custom resource creates every index
//! and always answers CloudFormation; a writer environment checks once, creates the index or refuses (503,
//! with a log line saying what to run), and never writes without it.

use std::convert::Infallible;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use domain::mongodb::bson::{doc, Document};
use domain::mongodb::{Client, IndexModel};
use domain::{CacheConfig, Settings, TicketCache, WriterIndexPolicy};
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use integration_tests::binaries::debug_binary;
use integration_tests::runtime_api::{lambda_env, RuntimeApi};
use integration_tests::{app_state, call, monitored_client, server, unique_database, Auth, CommandLog, HttpEvent, Reply, StandIn, TestDb};
use lambda_adapter::custom_resource::{self, Status};
use lambda_adapter::{AppState, Metrics, Operation};
use lambda_http::{Context, LambdaEvent};
use serde_json::{json, Value};

/// What the pre-signed URL stand-in received: method, path with query, content type, body.
type Received = (String, String, Option<String>, Value);

/// A local stand-in for CloudFormation's pre-signed S3 `ResponseURL`: records each request and answers
/// 200, or 503 for the first `failures` requests.
struct ResponseUrl {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl ResponseUrl {
    async fn start(failures: usize) -> ResponseUrl {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/cloudformation-response/stack%7Cguid?X-Amz-Signature=abc", listener.local_addr().unwrap());
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let method = request.method().to_string();
                            let target = request.uri().to_string();
                            let content_type = request.headers().get("content-type").map(|v| v.to_str().unwrap_or("?").to_owned());
                            let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let count = {
                                let mut log = log.lock().unwrap();
                                log.push((method, target, content_type, body));
                                log.len()
                            };
                            let status = if count <= failures { 503 } else { 200 };
                            Ok::<_, Infallible>(hyper::Response::builder().status(status).body(Full::new(Bytes::new())).unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        ResponseUrl { url, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The one answer CloudFormation got (after any failed deliveries).
    fn answer(&self) -> Value {
        let received = self.received();
        let (method, target, content_type, body) = received.last().cloned().unwrap_or_else(|| panic!("no answer was sent"));
        assert_eq!(method, "PUT");
        assert!(target.ends_with("/cloudformation-response/stack%7Cguid?X-Amz-Signature=abc"), "the pre-signed URL as given: {target}");
        assert_eq!(content_type.as_deref(), Some(""), "the URL is signed without a content type");
        body
    }
}

fn request(request_type: &str, response_url: &str, physical_id: Option<&str>) -> Value {
    let mut event = json!({
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:stack-ttl-sweeper",
        "ResponseURL": response_url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/stack/guid",
        "RequestId": format!("request-{request_type}"),
        "ResourceType": "Custom::DatabaseIndexes",
        "LogicalResourceId": "DatabaseIndexes",
        "ResourceProperties": { "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:stack-ttl-sweeper" },
    });
    if let Some(id) = physical_id {
        event["PhysicalResourceId"] = json!(id);
    }
    event
}

/// An invocation with `left` before its deadline.
fn invocation(payload: Value, left: Duration) -> LambdaEvent<Value> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let mut context = Context::default();
    context.deadline = (now + left).as_millis() as u64;
    LambdaEvent::new(payload, context)
}

/// Function state on its own client, configured as a deployed function, over a database with no indexes.
async fn state_for(uri: &str, database: &str, policy: WriterIndexPolicy) -> AppState {
    let mut settings = Settings::from_lookup(|k| match k {
        "MONGODB_URI" => Some(uri.to_owned()),
        "MONGODB_DATABASE" => Some(database.to_owned()),
        _ => None,
    })
    .unwrap();
    settings.cache.writer_index_policy = policy;
    let client = lambda_adapter::startup::connect(uri, "test", settings.cache.operation_timeout).await.unwrap();
    AppState::new(&client, settings, Metrics::memory("T", "t"))
}

async fn index_names(client: &Client, database: &str) -> Vec<String> {
    let collection = client.database(database).collection::<Document>("bytemark_tickets_cache");
    match collection.list_indexes().await {
        Ok(cursor) => {
            let indexes: Vec<IndexModel> = cursor.try_collect().await.unwrap();
            let mut names: Vec<String> = indexes.into_iter().filter_map(|i| i.options?.name).collect();
            names.sort();
            names
        }
        Err(_) => vec![],
    }
}

fn has_unique_user_index(indexes: &[IndexModel]) -> bool {
    indexes.iter().any(|i| i.keys == doc! { "user_id": 1 } && i.options.as_ref().and_then(|o| o.unique) == Some(true))
}

async fn put(state: &AppState, user: i64) -> Reply {
    let body = json!({ "passes": [{ "pass_uuid": "p", "status": "ACTIVE", "payload": { "n": user } }] });
    call(state, Operation::UpdateTickets, HttpEvent::new("PUT", format!("/v1/users/{user}/tickets")).auth(Auth::Iam).json(&body)).await
}

async fn push(state: &AppState, user: i64) -> Reply {
    let body = json!({ "kind": "passes", "errors": ["E"], "id": "x" });
    call(state, Operation::PushLog, HttpEvent::new("POST", format!("/v1/users/{user}/logs")).auth(Auth::Iam).json(&body)).await
}

#[tokio::test]
async fn the_custom_resource_creates_every_index_and_answers_cloudformation() {
    let database = unique_database("cfn");
    let state = state_for(&server().uri, &database, WriterIndexPolicy::Create).await;
    let checker = Client::with_uri_str(&server().uri).await.unwrap();
    assert!(index_names(&checker, &database).await.is_empty(), "a fresh database");
    let expected = domain::indexes::index_models().len() + 1; // and _id

    for request_type in ["Create", "Update"] {
        let cloudformation = ResponseUrl::start(0).await;
        let physical = (request_type == "Update").then_some("cache.old");
        let event = invocation(request(request_type, &cloudformation.url, physical), Duration::from_secs(300));
        let sent = custom_resource::handle(Ok(&state), event).await.unwrap();
        assert_eq!(sent.status, Status::Success, "{sent:?}");
        let answer = cloudformation.answer();
        assert_eq!(answer["Status"], "SUCCESS", "{answer}");
        assert_eq!(answer["PhysicalResourceId"], format!("{database}.bytemark_tickets_cache"));
        assert_eq!(answer["StackId"], "arn:aws:cloudformation:us-east-1:123456789012:stack/stack/guid");
        assert_eq!(answer["RequestId"], format!("request-{request_type}"));
        assert_eq!(answer["LogicalResourceId"], "DatabaseIndexes");
        assert!(answer["Reason"].as_str().unwrap().contains("in place"), "{answer}");
        assert_eq!(index_names(&checker, &database).await.len(), expected, "{request_type}: every index");
    }

    // Delete answers SUCCESS and touches nothing: the data and its indexes stay.
    assert_eq!(put(&state, 5).await.status, 200);
    let cloudformation = ResponseUrl::start(0).await;
    let id = format!("{database}.bytemark_tickets_cache");
    let sent =
        custom_resource::handle(Ok(&state), invocation(request("Delete", &cloudformation.url, Some(&id)), Duration::from_secs(300))).await;
    assert_eq!(sent.unwrap().status, Status::Success);
    let answer = cloudformation.answer();
    assert_eq!((answer["Status"].as_str(), answer["PhysicalResourceId"].as_str()), (Some("SUCCESS"), Some(id.as_str())));
    assert_eq!(index_names(&checker, &database).await.len(), expected);
    let documents = checker.database(&database).collection::<Document>("bytemark_tickets_cache").count_documents(doc! {}).await.unwrap();
    assert_eq!(documents, 1);
}

#[tokio::test]
async fn the_custom_resource_always_answers_even_when_the_work_cannot_be_done() {
    // The database is down: Create fails fast, with the reason; Delete still succeeds (it needs nothing).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = state_for(&format!("mongodb://127.0.0.1:{port}/"), "cache", WriterIndexPolicy::Create).await;
    let cloudformation = ResponseUrl::start(0).await;
    let started = Instant::now();
    let sent = custom_resource::handle(Ok(&down), invocation(request("Create", &cloudformation.url, None), Duration::from_secs(300)))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let answer = cloudformation.answer();
    assert_eq!(answer["Status"], "FAILED");
    assert!(answer["Reason"].as_str().unwrap().contains("creating the indexes of cache.bytemark_tickets_cache failed"), "{answer}");
    assert_eq!(sent.status, Status::Failed);
    let cloudformation = ResponseUrl::start(0).await;
    let sent =
        custom_resource::handle(Ok(&down), invocation(request("Delete", &cloudformation.url, Some("x")), Duration::from_secs(300))).await;
    assert_eq!(sent.unwrap().status, Status::Success);
    assert_eq!(cloudformation.answer()["PhysicalResourceId"], "x", "Delete echoes the id it was given");

    // The build outlasts the invocation: the answer still goes out before the deadline (15 s kept back).
    let standin = StandIn::spawn(0).unwrap();
    let slow = state_for(&standin.uri, &unique_database("cfnslow"), WriterIndexPolicy::Create).await;
    assert_eq!(put(&slow, 1).await.status, 200, "connected before the server slows down");
    let admin = Client::with_uri_str(&standin.uri).await.unwrap();
    admin.database("admin").run_command(doc! { "standinSetDelay": 10_000 }).await.unwrap();
    let cloudformation = ResponseUrl::start(0).await;
    let started = Instant::now();
    let left = Duration::from_secs(17);
    let sent = custom_resource::handle(Ok(&slow), invocation(request("Create", &cloudformation.url, None), left)).await.unwrap();
    assert!(started.elapsed() < left, "answered before the deadline: {:?}", started.elapsed());
    assert_eq!(sent.status, Status::Failed);
    assert!(cloudformation.answer()["Reason"].as_str().unwrap().contains("took longer than the"), "{:?}", cloudformation.answer());
    admin.database("admin").run_command(doc! { "standinSetDelay": 0 }).await.unwrap();

    // A failed delivery is tried again.
    let database = unique_database("cfnretry");
    let state = state_for(&server().uri, &database, WriterIndexPolicy::Create).await;
    let cloudformation = ResponseUrl::start(1).await;
    let sent =
        custom_resource::handle(Ok(&state), invocation(request("Create", &cloudformation.url, None), Duration::from_secs(300))).await;
    assert_eq!(sent.unwrap().status, Status::Success);
    assert_eq!(cloudformation.received().len(), 2, "one 503, then delivered");
}

/// The real ttl-sweeper binary, started without a usable configuration: start-up fails, yet the process
/// keeps serving, and CloudFormation gets a FAILED answer with the reason instead of waiting.
#[tokio::test]
async fn the_sweeper_answers_cloudformation_even_when_start_up_failed() {
    let api = RuntimeApi::start().await.unwrap();
    let mut child = Command::new(debug_binary("ttl-sweeper"))
        .envs(lambda_env("ttl-sweeper", &api.endpoint()))
        .env_remove("MONGODB_URI")
        .env_remove("MONGODB_URI_SECRET_ARN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let cloudformation = ResponseUrl::start(0).await;
    let reply = api.invoke(&request("Create", &cloudformation.url, None), Duration::from_secs(30)).await;
    let answer = cloudformation.answer();
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    assert!(answer["Reason"].as_str().unwrap().contains("could not start: configuration: set MONGODB_URI"), "{answer}");
    assert_eq!(reply.unwrap()["Status"], "FAILED", "the invocation itself succeeded: the answer was delivered");
    // A schedule's event reports the start-up failure as an invocation error.
    let scheduled = api.invoke(&json!({ "source": "aws.scheduler" }), Duration::from_secs(30)).await.unwrap_err();
    assert!(scheduled.contains("StartupFailed"), "{scheduled}");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_writer_creates_the_missing_unique_index_once_then_writes_in_one_round_trip() {
    let commands = CommandLog::default();
    let client = monitored_client(&server().uri, &commands).await;
    let config = CacheConfig { database: unique_database("wcreate"), ..CacheConfig::default() };
    let cache = TicketCache::new(&client, config);
    let db = TestDb { client: client.clone(), cache: cache.clone(), commands: commands.clone(), database: cache.config().database.clone() };
    let state = app_state(&db, Default::default());

    assert_eq!(put(&state, 1).await.status, 200);
    assert_eq!(commands.names(), ["listIndexes", "createIndexes", "findAndModify"], "checked, created, then written");
    let indexes: Vec<IndexModel> = cache.collection().list_indexes().await.unwrap().try_collect().await.unwrap();
    assert!(has_unique_user_index(&indexes), "{indexes:?}");
    commands.clear();
    assert_eq!(put(&state, 1).await.status, 200);
    assert_eq!(push(&state, 1).await.status, 201);
    assert_eq!(
        commands.names(),
        ["findAndModify", "findAndModify"],
        "afterwards one round trip per write (the replace and the push are each one findAndModify)"
    );
}

#[tokio::test]
async fn a_writer_refuses_to_write_without_a_usable_unique_index() {
    // WRITER_INDEX_POLICY=require and no index: 503 for writes, nothing stored, reads unaffected.
    let database = unique_database("wrequire");
    let state = state_for(&server().uri, &database, WriterIndexPolicy::Require).await;
    for reply in [put(&state, 1).await, push(&state, 1).await] {
        assert_eq!(
            (reply.status, reply.error_code(), reply.header("retry-after")),
            (503, Some("unavailable"), Some("2")),
            "{}",
            reply.body
        );
    }
    let read = call(&state, Operation::GetTickets, HttpEvent::new("GET", "/v1/users/1/tickets").auth(Auth::user(1))).await;
    assert_eq!(read.status, 404);
    let collection = state.cache.collection();
    assert_eq!(collection.count_documents(doc! {}).await.unwrap(), 0, "nothing written");
    // Once someone creates it, the same environment writes: a refusal is not remembered.
    state.cache.ensure_indexes().await.unwrap();
    assert_eq!(put(&state, 1).await.status, 200);

    // An index on user_id that is not unique (as an older service may have made) is not enough, even when
    // the writer may create indexes: building the unique one would clash with it.
    let database = unique_database("wnotunique");
    let state = state_for(&server().uri, &database, WriterIndexPolicy::Create).await;
    state.cache.collection().create_index(IndexModel::builder().keys(doc! { "user_id": 1 }).build()).await.unwrap();
    assert_eq!(put(&state, 2).await.status, 503);
    assert_eq!(state.cache.collection().count_documents(doc! {}).await.unwrap(), 0, "nothing written");
}

#[tokio::test]
async fn a_writer_started_while_the_database_is_down_creates_the_index_once_it_is_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let state = state_for(&format!("mongodb://127.0.0.1:{port}/"), &unique_database("wdown"), WriterIndexPolicy::Create).await;
    state.prepare(Operation::UpdateTickets);
    let started = Instant::now();
    let reply = put(&state, 1).await;
    assert_eq!((reply.status, reply.header("retry-after")), (503, Some("2")));
    assert!(started.elapsed() < Duration::from_secs(5), "a database that is down fails fast: {:?}", started.elapsed());
    let _standin = StandIn::spawn(port).unwrap();
    let mut status = 503;
    for _ in 0..20 {
        status = put(&state, 1).await.status;
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(status, 200);
    let indexes: Vec<IndexModel> = state.cache.collection().list_indexes().await.unwrap().try_collect().await.unwrap();
    assert!(has_unique_user_index(&indexes), "{indexes:?}");
}

/// The real update-tickets binary with `WRITER_INDEX_POLICY=require` on an empty database: the refusal's
/// log line, in the production format, says what to run.
#[tokio::test]
async fn a_refused_write_logs_what_to_run() {
    let database = unique_database("wlog");
    let api = RuntimeApi::start().await.unwrap();
    let log = std::env::temp_dir().join(format!("{database}.log"));
    let mut child = Command::new(debug_binary("update-tickets"))
        .envs(lambda_env("update-tickets", &api.endpoint()))
        .env("MONGODB_URI", &server().uri)
        .env("MONGODB_DATABASE", &database)
        .env("WRITER_INDEX_POLICY", "require")
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let body = json!({ "passes": [{ "pass_uuid": "p", "status": "ACTIVE", "payload": {} }] });
    let event = HttpEvent::new("PUT", "/v1/users/1/tickets").auth(Auth::Iam).json(&body).to_json();
    let response = api.invoke(&event, Duration::from_secs(30)).await.unwrap();
    assert_eq!(response["statusCode"], 503, "{response}");
    let _ = child.kill();
    let _ = child.wait();
    let logged = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let line =
        logged.lines().find(|l| l.contains("writes refused until the unique user_id index exists")).unwrap_or_else(|| panic!("{logged}"));
    assert!(line.contains("\"level\":\"ERROR\""), "{line}");
    let create = format!(
        r#"db.getSiblingDB(\"{database}\").getCollection(\"bytemark_tickets_cache\").createIndex({{user_id: 1}}, {{unique: true}})"#
    );
    assert!(line.contains(&create), "{line}");
    assert!(line.contains("WRITER_INDEX_POLICY=require") && line.contains("ttl-sweeper"), "{line}");
}
