//! Who answers an operation in the benchmark (a release bootstrap of this project, the Node peer, or a
//! no-op floor), how its events look, and its cold starts through the Runtime API harness.

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

    /// A new execution environment for this contestant, and its cold init.
    pub async fn start(&self, target: Target<'_>) -> (Bootstrap, Duration) {
        Bootstrap::start(self.name(), self.command(target)).await
    }

    /// Sends this contestant's `i`-th event; returns the time to its answer, or what went wrong.
    pub async fn invoke(&self, bootstrap: &Bootstrap, i: usize) -> Result<Duration, String> {
        let event = self.op.event(self.user, i);
        match self.op {
            // A sweep answers with its summary, not an HTTP response.
            Op::Sweep => bootstrap.invoke(&event).await.map(|(_, took)| took),
            _ => bootstrap.invoke_http(&event).await,
        }
    }

    /// One cold start: a new environment's init, then its first invocation.
    pub async fn cold_start(&self, target: Target<'_>, i: usize) -> (Duration, Result<Duration, String>) {
        let (bootstrap, init) = self.start(target).await;
        (init, self.invoke(&bootstrap, i).await)
    }
}
