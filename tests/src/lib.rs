//! Test harness: one MongoDB server per test process, chosen in this order and announced on stderr:
//!
//! 1. `MONGODB_URI`, when set;
//! 2. a MongoDB 7 container through testcontainers, when a Docker daemon answers (checked in milliseconds);
//! 3. DocumentDB through its launcher (`documentdb.rs`), when the launcher is on this host;
//! 4. the project's MongoDB stand-in (`tests/mongo-standin/standin.py`, mongomock behind the wire protocol).
//!
//! `TEST_MONGODB=uri|container|documentdb|standin` forces one (and fails when it is not available), so
//! the same suite runs on each engine. Every test gets its own database, so tests run in parallel against
//! the one server.

pub mod binaries;
pub mod documentdb;
pub mod environments;
pub mod fault_drill;
pub mod fault_proxy;
mod read_invariants;
pub mod runtime_api;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use domain::mongodb::bson::{Bson, Document};
use domain::mongodb::event::command::CommandEvent;
use domain::mongodb::event::EventHandler;
use domain::mongodb::options::ClientOptions;
use domain::mongodb::Client;
use domain::{CacheConfig, TicketCache};

use crate::documentdb::{DocumentDb, LauncherError};

/// Which kind of server the tests run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Whatever `MONGODB_URI` points at.
    Uri,
    /// MongoDB 7 in a container (testcontainers).
    MongoContainer,
    /// DocumentDB through its launcher.
    DocumentDb,
    /// The project's stand-in (mongomock).
    StandIn,
}

impl Engine {
    /// The engine `TEST_MONGODB` forces, if any.
    fn forced() -> Option<Engine> {
        let value = std::env::var("TEST_MONGODB").unwrap_or_default();
        match value.trim() {
            "" | "auto" => None,
            "uri" => Some(Engine::Uri),
            "container" => Some(Engine::MongoContainer),
            "documentdb" => Some(Engine::DocumentDb),
            "standin" => Some(Engine::StandIn),
            other => panic!("TEST_MONGODB={other:?}: expected uri, container, documentdb, standin or auto"),
        }
    }
}

/// The server every test in this process talks to.
#[derive(Debug, Clone)]
pub struct TestServer {
    pub uri: String,
    pub engine: Engine,
    /// What the log line says about it.
    pub description: String,
}

static SERVER: OnceLock<TestServer> = OnceLock::new();

/// The process-wide test server, started on first use.
pub fn server() -> &'static TestServer {
    SERVER.get_or_init(|| {
        let server = pick_server();
        let _ = writeln!(std::io::stderr(), "[harness] MongoDB for tests: {} ({})", server.description, redact(&server.uri));
        server
    })
}

fn note(message: &str) {
    let _ = writeln!(std::io::stderr(), "[harness] {message}");
}

fn pick_server() -> TestServer {
    let uri = std::env::var("MONGODB_URI").ok().filter(|u| !u.trim().is_empty());
    match Engine::forced() {
        Some(Engine::Uri) => {
            let uri = uri.unwrap_or_else(|| panic!("TEST_MONGODB=uri needs MONGODB_URI"));
            TestServer { uri, engine: Engine::Uri, description: "MONGODB_URI".into() }
        }
        Some(Engine::MongoContainer) => match docker_available() {
            Ok(()) => start_container(),
            Err(reason) => panic!("TEST_MONGODB=container: {reason}"),
        },
        Some(Engine::DocumentDb) => match documentdb::launcher() {
            Ok(launcher) => start_documentdb(&launcher),
            Err(LauncherError::Configured(reason) | LauncherError::NotHere(reason)) => panic!("TEST_MONGODB=documentdb: {reason}"),
        },
        Some(Engine::StandIn) => start_standin(),
        None => {
            if let Some(uri) = uri {
                return TestServer { uri, engine: Engine::Uri, description: "MONGODB_URI".into() };
            }
            match docker_available() {
                Ok(()) => return start_container(),
                Err(reason) => note(&format!("no MongoDB container: {reason}")),
            }
            match documentdb::launcher() {
                Ok(launcher) => return start_documentdb(&launcher),
                Err(LauncherError::Configured(reason)) => panic!("{reason}"),
                Err(LauncherError::NotHere(reason)) => note(&reason),
            }
            start_standin()
        }
    }
}

/// A launcher that is present but cannot start its server is a broken host, not a reason to test on
/// something else: that would hide the failure behind a green run on the stand-in.
fn start_documentdb(launcher: &Path) -> TestServer {
    let server =
        DocumentDb::start(launcher).unwrap_or_else(|e| panic!("{e} (TEST_MONGODB=standin runs the tests on the stand-in instead)"));
    let description = format!("DocumentDB (port {}, launcher {})", server.port, launcher.display());
    let uri = server.uri.clone();
    // Stopped when this process ends (the session watches a pipe that closes then); keep it running until then.
    std::mem::forget(server);
    TestServer { uri, engine: Engine::DocumentDb, description }
}

fn start_standin() -> TestServer {
    let standin = StandIn::spawn(0).unwrap_or_else(|e| panic!("cannot start the MongoDB stand-in: {e}"));
    let uri = standin.uri.clone();
    // The stand-in exits with this process (--exit-with-parent); keep the handle alive until then.
    std::mem::forget(standin);
    TestServer { uri, engine: Engine::StandIn, description: "stand-in".into() }
}

fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}<credentials>{}", &uri[..scheme + 3], &uri[at..]),
        _ => uri.to_owned(),
    }
}

/// Answers whether a Docker daemon responds to `/_ping`, quickly, with the reason when it does not.
pub fn docker_available() -> Result<(), String> {
    let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let timeout = Duration::from_millis(500);
    let mut stream: Box<dyn ReadWrite> = if let Some(path) = host.strip_prefix("unix://") {
        let stream = std::os::unix::net::UnixStream::connect(path).map_err(|e| format!("Docker socket {path}: {e}"))?;
        stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        Box::new(stream)
    } else if let Some(addr) = host.strip_prefix("tcp://") {
        let addr = std::net::ToSocketAddrs::to_socket_addrs(addr)
            .map_err(|e| format!("DOCKER_HOST {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("DOCKER_HOST {host}: no address"))?;
        let stream = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("Docker at {host}: {e}"))?;
        stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        Box::new(stream)
    } else {
        return Err(format!("unsupported DOCKER_HOST {host}"));
    };
    stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n").map_err(|e| format!("Docker ping: {e}"))?;
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    if reply.starts_with("HTTP/1.") && reply.contains(" 200 ") {
        Ok(())
    } else {
        Err("the Docker daemon did not answer /_ping".into())
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn start_container() -> TestServer {
    use testcontainers_modules::mongo::Mongo;
    use testcontainers_modules::testcontainers::runners::SyncRunner;
    use testcontainers_modules::testcontainers::ImageExt;
    // The blocking runner builds its own runtime; run it off any test's runtime thread.
    let uri = std::thread::spawn(|| {
        let container = Mongo::default().with_tag("7.0").start().unwrap_or_else(|e| panic!("MongoDB container: {e}"));
        let host = container.get_host().map(|h| h.to_string()).unwrap_or_else(|_| "127.0.0.1".into());
        let port = container.get_host_port_ipv4(27017).unwrap_or_else(|e| panic!("MongoDB container port: {e}"));
        // Kept for the life of the process; testcontainers' reaper removes it afterwards.
        std::mem::forget(container);
        format!("mongodb://{host}:{port}/?directConnection=true")
    })
    .join()
    .unwrap_or_else(|_| panic!("starting the MongoDB container panicked"));
    TestServer { uri, engine: Engine::MongoContainer, description: "testcontainers mongo:7.0".into() }
}

/// A stand-in server process. Dropping it kills the process.
pub struct StandIn {
    pub uri: String,
    pub port: u16,
    child: Child,
}

impl StandIn {
    /// Starts the stand-in on `port` (0 picks a free one) and waits until it accepts connections.
    pub fn spawn(port: u16) -> Result<StandIn, String> {
        let root = workspace_root();
        let script = root.join("tests/mongo-standin/standin.py");
        let python = std::env::var_os("MONGO_STANDIN_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
            let venv = root.join(".venv/bin/python");
            if venv.exists() {
                venv
            } else {
                PathBuf::from("python3")
            }
        });
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--exit-with-parent"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{} {}: {e}", python.display(), script.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                return Err(format!("the stand-in did not report LISTENING: {other:?} (is the venv set up? `make venv`)"));
            }
        };
        let uri = line.strip_prefix("LISTENING ").ok_or_else(|| format!("unexpected first line {line:?}"))?.trim().to_owned();
        let port = uri.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).ok_or("no port in the URI")?;
        Ok(StandIn { uri, port, child })
    }

    /// Stops the process and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A server a test stops, kills and starts again: a DocumentDB of its own when the suite runs on DocumentDB
/// (a real engine, with authentication, whose data survives a restart), else a stand-in (which restarts
/// empty).
pub enum Restartable {
    StandIn(StandIn),
    DocumentDb(DocumentDb),
}

impl Restartable {
    pub fn start() -> Restartable {
        match server().engine {
            Engine::DocumentDb => {
                let launcher = documentdb::launcher().unwrap_or_else(|e| panic!("{e:?}"));
                Restartable::DocumentDb(DocumentDb::start(&launcher).unwrap_or_else(|e| panic!("{e}")))
            }
            _ => Restartable::StandIn(StandIn::spawn(0).unwrap_or_else(|e| panic!("{e}"))),
        }
    }

    pub fn uri(&self) -> &str {
        match self {
            Restartable::StandIn(standin) => &standin.uri,
            Restartable::DocumentDb(documentdb) => &documentdb.uri,
        }
    }

    /// Whether the data survives [`Restartable::restart`].
    pub fn durable(&self) -> bool {
        matches!(self, Restartable::DocumentDb(_))
    }

    /// A clean stop.
    pub fn stop(&mut self) {
        match self {
            Restartable::StandIn(standin) => standin.kill(),
            Restartable::DocumentDb(documentdb) => documentdb.stop().unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// A crash: `kill -9`, nothing shut down cleanly.
    pub fn kill_hard(&mut self) {
        match self {
            Restartable::StandIn(standin) => standin.kill(),
            Restartable::DocumentDb(documentdb) => {
                documentdb.kill_hard().unwrap_or_else(|e| panic!("kill -9: {e}"));
            }
        }
    }

    /// Back on the same port; answers whether the data is still there.
    pub fn restart(&mut self) -> bool {
        match self {
            Restartable::StandIn(standin) => {
                *standin = StandIn::spawn(standin.port).unwrap_or_else(|e| panic!("{e}"));
                false
            }
            Restartable::DocumentDb(documentdb) => {
                documentdb.restart().unwrap_or_else(|e| panic!("{e}"));
                true
            }
        }
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The names of the commands a client sent, in order (driver command monitoring).
#[derive(Clone, Default, Debug)]
pub struct CommandLog(Arc<Mutex<Vec<SentCommand>>>);

/// A command's name and, once it succeeded, its reply.
type SentCommand = (String, Option<Document>);

impl CommandLog {
    /// Commands sent so far, without the connection handshake and monitoring chatter.
    pub fn names(&self) -> Vec<String> {
        self.0.lock().map(|v| v.iter().map(|(n, _)| n.clone()).collect()).unwrap_or_default()
    }

    /// Each reply of a command with this name.
    pub fn replies(&self, name: &str) -> Vec<Document> {
        self.0.lock().map(|v| v.iter().filter(|(n, _)| n == name).filter_map(|(_, r)| r.clone()).collect()).unwrap_or_default()
    }

    pub fn clear(&self) {
        if let Ok(mut v) = self.0.lock() {
            v.clear();
        }
    }
}

const HANDSHAKE: [&str; 6] = ["hello", "isMaster", "ismaster", "buildInfo", "endSessions", "ping"];

/// A database of its own for one test.
pub struct TestDb {
    pub client: Client,
    pub cache: TicketCache,
    pub commands: CommandLog,
    pub database: String,
}

static NEXT_DB: AtomicU64 = AtomicU64::new(0);

/// Every test database's name starts with this (DocumentDB slots drop leftovers by it).
pub const TEST_DATABASE_PREFIX: &str = "t_";

/// A unique database name for this test process.
pub fn unique_database(prefix: &str) -> String {
    format!("{TEST_DATABASE_PREFIX}{prefix}_{}_{}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::Relaxed))
}

impl TestDb {
    /// A fresh database on the test server, with the default cache configuration and indexes in place.
    pub async fn new(prefix: &str) -> TestDb {
        TestDb::with_config(prefix, CacheConfig::default()).await
    }

    pub async fn with_config(prefix: &str, mut config: CacheConfig) -> TestDb {
        config.database = unique_database(prefix);
        let commands = CommandLog::default();
        let client = monitored_client(&server().uri, &commands).await;
        let cache = TicketCache::new(&client, config.clone());
        cache.ensure_indexes().await.unwrap_or_else(|e| panic!("ensure_indexes: {e:?}"));
        commands.clear();
        TestDb { client, cache, commands, database: config.database }
    }

    /// Inserts documents exactly as given (legacy fixtures), bypassing the cache.
    pub async fn insert_raw(&self, documents: &[Document]) {
        self.cache.collection().insert_many(documents.to_vec()).await.unwrap_or_else(|e| panic!("insert fixtures: {e}"));
    }

    /// Stores several documents of one user, as legacy damage left them where the unique `user_id` index
    /// tells number types apart (DocumentDB): e.g. one with a double `user_id`, one with an int64. Engines
    /// whose unique index compares numbers by value (MongoDB, the stand-in) refuse the second document, so
    /// there the index is dropped first: nothing else can make such a state on them. A writer environment
    /// checks the index once; tests that write through the handlers make that check before calling this.
    pub async fn insert_duplicates(&self, documents: &[Document]) {
        let collection = self.cache.collection();
        if let Err(refused) = collection.insert_many(documents.to_vec()).await {
            let duplicate_key = matches!(refused.kind.as_ref(), domain::mongodb::error::ErrorKind::InsertMany(failure)
                if failure.write_errors.iter().flatten().all(|e| e.code == 11000));
            assert!(duplicate_key, "insert duplicates: {refused}");
            collection.drop_index("user_id_1").await.unwrap_or_else(|e| panic!("drop the unique index: {e}"));
            let ids: Vec<Bson> = documents.iter().filter_map(|d| d.get("_id").cloned()).collect();
            collection.delete_many(domain::mongodb::bson::doc! { "_id": { "$in": ids } }).await.unwrap_or_else(|e| panic!("{e}"));
            collection.insert_many(documents.to_vec()).await.unwrap_or_else(|e| panic!("insert duplicates: {e}"));
        }
    }

    /// The stored document with this `_id`.
    pub async fn raw_by_id(&self, id: &Bson) -> Option<Document> {
        self.cache.collection().find_one(domain::mongodb::bson::doc! { "_id": id }).await.unwrap_or_else(|e| panic!("raw read: {e}"))
    }

    /// The stored document for a user, exactly as MongoDB returns it (all fields, including logs): of several,
    /// the one every read and write takes (the smallest `_id`).
    pub async fn raw(&self, user_id: i64) -> Option<Document> {
        self.cache
            .collection()
            .find_one(domain::mongodb::bson::doc! { "user_id": user_id })
            .sort(domain::mongodb::bson::doc! { "_id": 1 })
            .await
            .unwrap_or_else(|e| panic!("raw read: {e}"))
    }

    /// The stored document's BSON bytes, for byte-for-byte comparisons.
    pub async fn raw_bytes(&self, user_id: i64) -> Option<Vec<u8>> {
        self.raw(user_id).await.map(|d| {
            let mut bytes = Vec::new();
            d.to_writer(&mut bytes).unwrap_or_else(|e| panic!("encode: {e}"));
            bytes
        })
    }
}

/// A client on the test server that records every command it sends (and each reply).
pub async fn monitored_client(uri: &str, log: &CommandLog) -> Client {
    let mut options = ClientOptions::parse(uri).await.unwrap_or_else(|e| panic!("bad test URI: {e}"));
    options.server_selection_timeout = Some(Duration::from_secs(10));
    let sink = log.0.clone();
    let replies = log.0.clone();
    options.command_event_handler = Some(EventHandler::callback(move |event: CommandEvent| match event {
        CommandEvent::Started(started) if !HANDSHAKE.contains(&started.command_name.as_str()) => {
            if let Ok(mut v) = sink.lock() {
                v.push((started.command_name.clone(), None));
            }
        }
        CommandEvent::Succeeded(done) if !HANDSHAKE.contains(&done.command_name.as_str()) => {
            if let Ok(mut v) = replies.lock() {
                if let Some(slot) = v.iter_mut().rev().find(|(n, r)| n == &done.command_name && r.is_none()) {
                    slot.1 = Some(done.reply.clone());
                }
            }
        }
        _ => {}
    }));
    Client::with_options(options).unwrap_or_else(|e| panic!("client: {e}"))
}

/// Reads an Extended JSON fixture file (an array of documents) from `tests/fixtures/`.
pub fn fixture(name: &str) -> Vec<Document> {
    let path = workspace_root().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let values: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    values
        .into_iter()
        .map(|v| match Bson::try_from(v) {
            Ok(Bson::Document(d)) => d,
            other => panic!("{}: not a document: {other:?}", path.display()),
        })
        .collect()
}

/// How a test request is authenticated, as API Gateway would present it.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// A JWT authorizer context with these claims.
    Jwt(serde_json::Value),
    /// IAM (SigV4) authorization.
    Iam,
}

impl Auth {
    /// A reader's token for `user_id`, in the default claim.
    pub fn user(user_id: i64) -> Auth {
        Auth::Jwt(serde_json::json!({ "sub": "abc", "custom:user_id": user_id.to_string() }))
    }

    pub fn scope(scope: &str) -> Auth {
        Auth::Jwt(serde_json::json!({ "sub": "svc", "scope": scope }))
    }
}

/// An HTTP API (payload format 2.0) request, as API Gateway sends it. With `route_key` false it looks
/// like a function URL / `cargo lambda watch` event: no route key, no path parameters.
pub struct HttpEvent {
    pub method: &'static str,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub base64: bool,
    pub auth: Auth,
    pub route_key: bool,
}

impl HttpEvent {
    pub fn new(method: &'static str, path: impl Into<String>) -> HttpEvent {
        HttpEvent {
            method,
            path: path.into(),
            query: vec![],
            headers: vec![],
            body: None,
            base64: false,
            auth: Auth::None,
            route_key: true,
        }
    }
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.query.push((key.into(), value.into()));
        self
    }
    pub fn header(mut self, key: &str, value: &str) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }
    pub fn json(self, body: &serde_json::Value) -> Self {
        self.body(body.to_string())
    }
    /// The body sent base64-encoded (`isBase64Encoded: true`), as API Gateway does for binary media.
    pub fn base64_body(mut self, encoded: impl Into<String>) -> Self {
        self.body = Some(encoded.into());
        self.base64 = true;
        self
    }
    pub fn without_route_key(mut self) -> Self {
        self.route_key = false;
        self
    }

    /// The raw event JSON.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let routes = lambda_adapter::routes::table().expect("functions/routes.json is a route table").routes();
        let route = routes.iter().find(|r| r.method == self.method && template_matches(&r.path, &self.path));
        let mut headers: Map<String, Value> = self.headers.iter().map(|(k, v)| (k.to_lowercase(), json!(v))).collect();
        headers.entry("content-type").or_insert(json!("application/json"));
        // Percent-encoded, as a client sends it; the parameters map holds the decoded values.
        let encode = |text: &str| {
            text.bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect::<String>()
        };
        let raw_query = self.query.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&");
        let query: Map<String, Value> = self.query.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let mut context = json!({
            "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com", "domainPrefix": "api",
            "http": { "method": self.method, "path": self.path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "tests" },
            "requestId": "req-1", "routeKey": "$default", "stage": "$default", "time": "24/Nov/2026:12:00:00 +0000", "timeEpoch": 1795521600000_i64,
        });
        let mut event = json!({
            "version": "2.0", "routeKey": "$default", "rawPath": self.path, "rawQueryString": raw_query,
            "headers": headers, "isBase64Encoded": self.base64,
        });
        if !query.is_empty() {
            event["queryStringParameters"] = Value::Object(query);
        }
        if let (true, Some(route)) = (self.route_key, route) {
            let key = format!("{} {}", route.method, route.path);
            event["routeKey"] = json!(key);
            context["routeKey"] = json!(key);
            if let (true, Some(user)) = (route.path.contains("{user_id}"), self.path.trim_matches('/').split('/').nth(2)) {
                event["pathParameters"] = json!({ "user_id": user });
            }
        }
        match &self.auth {
            Auth::None => {}
            Auth::Jwt(claims) => context["authorizer"] = json!({ "jwt": { "claims": claims, "scopes": null } }),
            Auth::Iam => {
                context["authorizer"] = json!({ "iam": { "accessKey": "AKIA", "accountId": "123456789012", "callerId": "AROA:svc", "principalOrgId": null, "userArn": "arn:aws:sts::123456789012:assumed-role/svc/x", "userId": "AROA:svc" } })
            }
        }
        event["requestContext"] = context;
        if let Some(body) = &self.body {
            event["body"] = json!(body);
        }
        event
    }

    /// The event as the `lambda_http` request a handler receives.
    pub fn request(&self) -> lambda_http::Request {
        lambda_http::request::from_str(&self.to_json().to_string()).unwrap_or_else(|e| panic!("event does not parse: {e}"))
    }
}

fn template_matches(template: &str, path: &str) -> bool {
    let (a, b): (Vec<_>, Vec<_>) = (template.trim_matches('/').split('/').collect(), path.trim_matches('/').split('/').collect());
    a.len() == b.len() && a.iter().zip(&b).all(|(t, p)| t.starts_with('{') || t == p)
}

/// The function-side state over a test database, recording metrics in memory.
pub fn app_state(db: &TestDb, access: domain::AccessConfig) -> lambda_adapter::AppState {
    app_state_on(&db.client, db, access)
}

/// [`app_state`] on another client to the same server: e.g. one without command monitoring, which
/// turns every command and reply into a `Document` recursively, as deployed functions never do.
pub fn app_state_on(client: &Client, db: &TestDb, access: domain::AccessConfig) -> lambda_adapter::AppState {
    let settings = domain::Settings {
        uri: domain::UriSource::Direct(server().uri.clone()),
        cache: db.cache.config().clone(),
        access,
        metrics_namespace: "Test".into(),
    };
    lambda_adapter::AppState::new(client, settings, lambda_adapter::Metrics::memory("Test", "test"))
}

/// A response, read back for assertions.
pub struct Reply {
    pub status: u16,
    pub headers: lambda_http::http::HeaderMap,
    pub body: serde_json::Value,
    pub raw_body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn error_code(&self) -> Option<&str> {
        self.body.get("error")?.get("code")?.as_str()
    }
}

/// Sends one event through the real handler for `operation`.
pub async fn call(state: &lambda_adapter::AppState, operation: lambda_adapter::Operation, event: HttpEvent) -> Reply {
    let request = event.request();
    let response = match lambda_adapter::handlers::serve(state, operation, request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let raw_body = response.body().to_vec();
    let body =
        if raw_body.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&raw_body).unwrap_or(serde_json::Value::Null) };
    Reply { status, headers, body, raw_body }
}

pub use read_invariants::{strict_json, verified_payloads_match_their_hashes};
