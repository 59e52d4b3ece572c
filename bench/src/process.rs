//! A bootstrap (a release function binary, a no-op, or the Node peer) as one Lambda execution environment:
//! its own process behind its own local Runtime API, started cold and invoked one event at a time.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_tests::runtime_api::{lambda_env, RuntimeApi};
use serde_json::Value;

/// How long one invocation may take before the benchmark gives up on it.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Bootstrap {
    name: String,
    api: RuntimeApi,
    child: Child,
    /// Each `DbLatency` the process reported on stdout (its EMF metric lines), in order.
    db_latency: Arc<Mutex<Vec<Duration>>>,
}

impl Bootstrap {
    /// Starts `command` with the environment Lambda gives a bootstrap and waits for its first poll of the
    /// Runtime API: returns the environment and its cold init (process start → first `next` poll).
    pub async fn start(name: &str, mut command: Command) -> (Bootstrap, Duration) {
        let api = RuntimeApi::start().await.expect("runtime api");
        command.envs(lambda_env(name, &api.endpoint())).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let started = Instant::now();
        let mut child = command.spawn().unwrap_or_else(|e| panic!("{name}: {e}"));
        let db_latency = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            let (sink, name) = (db_latency.clone(), name.to_owned());
            // Drains stdout (a full pipe would block the function), keeps the database time each request
            // reported (one EMF line with `DbLatency`, in milliseconds, per get, update and push), and
            // passes the function's warnings and errors on to stderr.
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let Ok(value) = serde_json::from_str::<Value>(&line) else { continue };
                    if let Some(ms) = value.get("DbLatency").and_then(Value::as_f64) {
                        if let Ok(mut sink) = sink.lock() {
                            sink.push(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
                        }
                    } else if matches!(value.get("level").and_then(Value::as_str), Some("WARN" | "ERROR")) {
                        eprintln!("[{name}] {line}");
                    }
                }
            });
        }
        let polled = api.wait_for_first_poll(Duration::from_secs(60)).await;
        let Some(polled) = polled else {
            let _ = child.kill();
            panic!("{name} did not poll for an event within 60 s");
        };
        (Bootstrap { name: name.to_owned(), api, child, db_latency }, polled.duration_since(started))
    }

    /// Sends one event and waits for the answer; returns it and the time from sending the event to
    /// receiving the answer (serializing the event and parsing the answer are not timed), or why no answer
    /// came (an error reported to the Runtime API, a timeout).
    pub async fn invoke(&self, event: &Value) -> Result<(Value, Duration), String> {
        let event = event.to_string();
        let started = Instant::now();
        let answer = self.api.invoke_text(event, INVOKE_TIMEOUT).await;
        let took = started.elapsed();
        let answer = answer.map_err(|e| format!("{}: {}", self.name, shorten(&e)))?;
        let response =
            serde_json::from_str(&answer).map_err(|e| format!("{}: the answer is not JSON ({e}): {}", self.name, shorten(&answer)))?;
        Ok((response, took))
    }

    /// [`Bootstrap::invoke`] of an HTTP event: the time to a 2xx answer, or what came instead.
    pub async fn invoke_http(&self, event: &Value) -> Result<Duration, String> {
        let (response, took) = self.invoke(event).await?;
        let status = response["statusCode"].as_u64().unwrap_or(0);
        if (200..300).contains(&status) {
            Ok(took)
        } else {
            Err(format!("{}: status {status}: {}", self.name, shorten(&response["body"].to_string())))
        }
    }

    /// How many `DbLatency` values the process has reported so far.
    pub fn db_latency_count(&self) -> usize {
        self.db_latency.lock().map_or(0, |v| v.len())
    }

    /// The `DbLatency` values reported after the first `from`, once `count` of them are in (stdout is read
    /// on another thread, so the last lines may still be on their way); fewer if they never arrive.
    pub async fn db_latencies(&self, from: usize, count: usize) -> Vec<Duration> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.db_latency_count() < from + count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.db_latency.lock().map(|v| v.iter().skip(from).take(count).copied().collect()).unwrap_or_default()
    }

    /// Peak resident set size so far (VmHWM), in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// At most 300 characters of a message, for reports.
pub fn shorten(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
