//! Execution environments of the real function bootstraps: each its own process behind its own Lambda
//! Runtime API, as a deployed fleet runs them. Shared by the fleet, network-fault and soak tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::runtime_api::{lambda_env, RuntimeApi};

/// Long enough for a cold, contended first request; a hung invocation still fails its test.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(30);

/// One execution environment: a bootstrap process behind its own runtime API; killed on drop.
pub struct Environment {
    pub function: String,
    pub api: RuntimeApi,
    pub child: Child,
    pub spawned: Instant,
    pub log: PathBuf,
}

/// One invocation's outcome: the HTTP status (599 when the invocation itself failed or timed out), the
/// parsed body, the `Retry-After` header and how long the invocation took.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<String>,
    pub took: Duration,
}

impl Environment {
    /// Starts `<bootstraps>/<function>/bootstrap` with the Lambda variables, `env`, and its stdout in `log`.
    pub async fn spawn(bootstraps: &Path, function: &str, env: &[(&str, String)], log: PathBuf) -> Environment {
        let api = RuntimeApi::start().await.unwrap_or_else(|e| panic!("runtime API: {e}"));
        Environment::spawn_on(api, bootstraps, function, env, log)
    }

    /// [`Environment::spawn`] behind a runtime API already listening (a fleet starts every API first, so
    /// that the processes start in the same instant).
    pub fn spawn_on(api: RuntimeApi, bootstraps: &Path, function: &str, env: &[(&str, String)], log: PathBuf) -> Environment {
        let stdout = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let child = Command::new(bootstraps.join(function).join("bootstrap"))
            .envs(lambda_env(function, &api.endpoint()))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{function}: {e}"));
        Environment { function: function.to_owned(), api, child, spawned: Instant::now(), log }
    }

    /// Sends one API Gateway event and waits for the answer.
    pub async fn call(&self, event: Value) -> Answer {
        let started = Instant::now();
        let result = self.api.invoke(&event, INVOKE_TIMEOUT).await;
        let took = started.elapsed();
        match result {
            Ok(response) => Answer {
                status: response["statusCode"].as_u64().unwrap_or(0) as u16,
                body: response["body"].as_str().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null),
                retry_after: header(&response, "retry-after"),
                took,
            },
            // An invocation error or a timeout is a failed request: counted with the 5xx.
            Err(error) => Answer { status: 599, body: json!({ "invocation_error": error }), retry_after: None, took },
        }
    }

    /// [`Environment::call`] as `(status, body, took)`.
    pub async fn invoke(&self, event: Value) -> (u16, Value, Duration) {
        let answer = self.call(event).await;
        (answer.status, answer.body, answer.took)
    }

    pub fn init_duration(&self) -> Option<Duration> {
        self.api.first_poll().map(|at| at.duration_since(self.spawned))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's resident memory, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status.lines().find_map(|line| line.strip_prefix("VmRSS:")?.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The process's established TCP connections to `port` on loopback.
    pub fn connections_to(&self, port: u16) -> usize {
        tcp_connections_of(self.pid(), port)
    }

    /// How many lines of the environment's stdout (logs and metrics) contain `text`.
    pub fn log_lines_with(&self, text: &str) -> usize {
        std::fs::read_to_string(&self.log).map_or(0, |log| log.lines().filter(|l| l.contains(text)).count())
    }

    /// The log lines at WARN or ERROR, for a failing test's report.
    pub fn complaints(&self, at_most: usize) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|l| l.contains("\"ERROR\"") || l.contains("\"WARN\"")).take(at_most).map(str::to_owned).collect()
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header(response: &Value, name: &str) -> Option<String> {
    let headers = response["headers"].as_object()?;
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_str()).map(str::to_owned)
}

/// Established TCP connections of process `pid` whose remote port is `port` (Linux `/proc`).
pub fn tcp_connections_of(pid: u32, port: u16) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    let inodes: std::collections::BTreeSet<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| Some(target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned()))
        .collect();
    let mut count = 0;
    for table in [format!("/proc/{pid}/net/tcp"), format!("/proc/{pid}/net/tcp6")] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) = (fields.get(2), fields.get(3), fields.get(9)) else { continue };
            let remote_port = remote.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if remote_port == Some(port) && *state == "01" && inodes.contains(*inode) {
                count += 1;
            }
        }
    }
    count
}

/// Status → count, printed as `200×14 409×6`.
#[derive(Default, Debug, Clone)]
pub struct Tally(pub BTreeMap<u16, usize>);

impl Tally {
    pub fn add(&mut self, status: u16) {
        *self.0.entry(status).or_default() += 1;
    }
    pub fn server_errors(&self) -> usize {
        self.0.iter().filter(|(s, _)| **s >= 500).map(|(_, n)| n).sum()
    }
    pub fn total(&self) -> usize {
        self.0.values().sum()
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        f.write_str(&parts.join(" "))
    }
}

pub fn millis(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The `p` quantile (0..=1) of an ascending list.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
}
