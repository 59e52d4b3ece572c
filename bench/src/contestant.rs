//! Who answers an operation in the benchmark (a release bootstrap of this project, the Node peer, or a
//! no-op floor), how its events look, and its cold and warm figures through the Runtime API harness.

use std::process::Command;
use std::time::Duration;

use integration_tests::{Auth, HttpEvent};
use serde_json::{json, Value};

use crate::data::{log_entry, twenty_passes};
use crate::peer::{Peer, PeerRole};
use crate::process::Bootstrap;

/// What is invoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `GET /v1/users/{id}/tickets`.
    Get,
    /// `PUT /v1/users/{id}/tickets` with 20 + 20 passes.
    Put,
    /// `POST /v1/users/{id}/logs`.
    Post,
    /// Any event, to a bootstrap that answers at once.
    Noop,
    /// A scheduled sweep.
    Sweep,
}

impl Op {
    /// The `i`-th event of this operation on `user`, as API Gateway (or the scheduler) sends it.
    pub fn event(self, user: i64, i: usize) -> Value {
        let path = format!("/v1/users/{user}/tickets");
        match self {
            Op::Get | Op::Noop => HttpEvent::new("GET", path).auth(Auth::user(user)).to_json(),
            Op::Put => HttpEvent::new("PUT", path).auth(Auth::Iam).json(&twenty_passes(None)).to_json(),
            Op::Post => HttpEvent::new("POST", format!("/v1/users/{user}/logs")).auth(Auth::Iam).json(&log_entry("passes", i)).to_json(),
            Op::Sweep => json!({ "source": "aws.scheduler" }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "GET",
            Op::Put => "PUT",
            Op::Post => "POST",
            Op::Noop => "no-op",
            Op::Sweep => "sweep",
        }
    }
}

/// The process that answers.
#[derive(Clone, Copy)]
pub enum Runner<'a> {
    /// A release binary of this workspace.
    Rust(&'static str),
    Node(&'a Peer, PeerRole),
}

/// The database a contestant talks to.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub uri: &'a str,
    pub database: &'a str,
}

pub struct Contestant<'a> {
    pub label: String,
    pub op: Op,
    pub user: i64,
    pub runner: Runner<'a>,
}

/// Cold starts: each a new process, its init (start → first poll), then its first invocation.
pub struct Cold {
    pub init: Vec<Duration>,
    pub first_invoke: Vec<Duration>,
}

/// One warm environment's invocations, each end to end through the Runtime API, with the database time
/// the function reported for the same invocation (`DbLatency`; empty for bootstraps that report none).
pub struct Warm {
    pub e2e: Vec<Duration>,
    pub db: Vec<Duration>,
    pub rss_mb: f64,
}

impl Contestant<'_> {
    fn command(&self, target: Target) -> Command {
        match self.runner {
            Runner::Rust(binary) => {
                let mut command = Command::new(crate::release_binary(binary));
                command.env("MONGODB_URI", target.uri).env("MONGODB_DATABASE", target.database).env("RUST_LOG", "warn");
                command
            }
            Runner::Node(peer, role) => peer.command(role, target.uri, target.database),
        }
    }

    fn name(&self) -> &str {
        match self.runner {
            Runner::Rust(binary) => binary,
            Runner::Node(..) => "node-peer",
        }
    }

    pub fn is_rust(&self) -> bool {
        matches!(self.runner, Runner::Rust(_))
    }

    async fn invoke(&self, bootstrap: &Bootstrap, i: usize) -> Duration {
        let event = self.op.event(self.user, i);
        match self.op {
            // A sweep answers with its summary, not an HTTP response.
            Op::Sweep => bootstrap.invoke(&event).await.1,
            _ => bootstrap.invoke_http(&event).await,
        }
    }

    pub async fn cold(&self, target: Target<'_>, runs: usize) -> Cold {
        let mut cold = Cold { init: Vec::with_capacity(runs), first_invoke: Vec::with_capacity(runs) };
        for i in 0..runs {
            let (bootstrap, init) = Bootstrap::start(self.name(), self.command(target)).await;
            cold.init.push(init);
            cold.first_invoke.push(self.invoke(&bootstrap, i).await);
        }
        cold
    }

    /// `invocations` measured after `warm_up` unmeasured ones, in one environment.
    pub async fn warm(&self, target: Target<'_>, warm_up: usize, invocations: usize) -> Warm {
        let (bootstrap, _) = Bootstrap::start(self.name(), self.command(target)).await;
        for i in 0..warm_up {
            self.invoke(&bootstrap, i).await;
        }
        let reported_before = bootstrap.db_latency_count();
        let mut e2e = Vec::with_capacity(invocations);
        for i in 0..invocations {
            e2e.push(self.invoke(&bootstrap, warm_up + i).await);
        }
        let db = if self.is_rust() && self.op != Op::Noop {
            let db = bootstrap.db_latencies(reported_before, invocations).await;
            assert_eq!(db.len(), invocations, "{}: one DbLatency per invocation expected", self.label);
            db
        } else {
            Vec::new()
        };
        Warm { e2e, db, rss_mb: bootstrap.peak_rss_mb() }
    }
}
