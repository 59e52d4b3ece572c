//! A local Lambda Runtime API (the HTTP interface a `bootstrap` polls for events), so the real function
//! binaries can be started and invoked end to end without AWS, and their cold start timed.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::{oneshot, Notify};

#[derive(Default)]
struct Shared {
    queue: VecDeque<(String, String)>,
    waiting: HashMap<String, oneshot::Sender<Result<String, String>>>,
    /// When the function first asked for an event (its cold start is over).
    first_poll: Option<Instant>,
    init_error: Option<String>,
}

/// One runtime API server for one function process.
#[derive(Clone)]
pub struct RuntimeApi {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    arrived: Arc<Notify>,
    polled: Arc<Notify>,
    /// Each invocation's time until its deadline (`Lambda-Runtime-Deadline-Ms`), in milliseconds.
    deadline_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl RuntimeApi {
    /// Starts listening on a free loopback port, on the current tokio runtime.
    pub async fn start() -> std::io::Result<RuntimeApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api = RuntimeApi {
            addr: listener.local_addr()?,
            shared: Arc::default(),
            arrived: Arc::default(),
            polled: Arc::default(),
            deadline_ms: Arc::new(30_000.into()),
        };
        let server = api.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let api = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(api.route(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(api)
    }

    /// Gives each invocation from now on `timeout` until its deadline (the function's configured timeout;
    /// 30 s unless set).
    pub fn set_deadline(&self, timeout: Duration) {
        self.deadline_ms.store(timeout.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// When the function first polled for an event.
    pub fn first_poll(&self) -> Option<Instant> {
        self.shared.lock().ok().and_then(|s| s.first_poll)
    }

    /// Waits until the function polls for its first event, or `timeout`.
    pub async fn wait_for_first_poll(&self, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.polled.notified();
            if let Some(at) = self.first_poll() {
                return Some(at);
            }
            if let Some(err) = self.shared.lock().ok().and_then(|s| s.init_error.clone()) {
                panic!("function reported an init error: {err}");
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), notified).await;
        }
    }

    /// Sends one event and waits for the function's response (Ok) or reported error (Err).
    pub async fn invoke(&self, event: &serde_json::Value, timeout: Duration) -> Result<serde_json::Value, String> {
        let body = self.invoke_text(event.to_string(), timeout).await?;
        serde_json::from_str(&body).map_err(|e| format!("response is not JSON: {e}: {body}"))
    }

    /// [`RuntimeApi::invoke`] of an event already serialized, answering the response's text unparsed: a
    /// benchmark times only the invocation, not its own JSON work on either side of it.
    pub async fn invoke_text(&self, event: String, timeout: Duration) -> Result<String, String> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = format!("req-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        {
            let mut shared = self.shared.lock().map_err(|_| "poisoned")?;
            shared.waiting.insert(id.clone(), tx);
            shared.queue.push_back((id, event));
        }
        self.arrived.notify_waiters();
        self.arrived.notify_one();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the runtime API dropped the invocation".into()),
            Err(_) => Err(format!("no response within {timeout:?}")),
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let text = String::from_utf8_lossy(&body).into_owned();
        if path == "/2018-06-01/runtime/invocation/next" {
            return self.next_event().await;
        }
        if path == "/2018-06-01/runtime/init/error" {
            if let Ok(mut s) = self.shared.lock() {
                s.init_error = Some(text);
            }
            self.polled.notify_waiters();
            return reply(202, "{}".into(), None);
        }
        let parts: Vec<&str> = path.trim_start_matches("/2018-06-01/runtime/invocation/").split('/').collect();
        if let [id, outcome @ ("response" | "error")] = parts.as_slice() {
            let sender = self.shared.lock().ok().and_then(|mut s| s.waiting.remove(*id));
            if let Some(sender) = sender {
                let _ = sender.send(if *outcome == "response" { Ok(text) } else { Err(text) });
            }
            return reply(202, "{}".into(), None);
        }
        reply(404, "{}".into(), None)
    }

    async fn next_event(&self) -> Response<Full<Bytes>> {
        if let Ok(mut s) = self.shared.lock() {
            s.first_poll.get_or_insert_with(Instant::now);
        }
        self.polled.notify_waiters();
        loop {
            let notified = self.arrived.notified();
            if let Some((id, event)) = self.shared.lock().ok().and_then(|mut s| s.queue.pop_front()) {
                let deadline = self.deadline_ms.load(std::sync::atomic::Ordering::Relaxed);
                return reply(200, event, Some((id, deadline)));
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    }
}

fn reply(status: u16, body: String, invocation: Option<(String, u64)>) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(status).header("content-type", "application/json");
    if let Some((id, deadline_ms)) = invocation {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let deadline = now + u128::from(deadline_ms);
        builder = builder
            .header("lambda-runtime-aws-request-id", id)
            .header("lambda-runtime-deadline-ms", deadline.to_string())
            .header("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:local")
            .header("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000");
    }
    builder.body(Full::new(Bytes::from(body))).unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// The environment a Lambda execution environment gives a `bootstrap`.
pub fn lambda_env(function: &str, runtime_api: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api),
        ("AWS_LAMBDA_FUNCTION_NAME", function),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/local"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "local"),
        ("AWS_REGION", "us-east-1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
