//! The database the benchmark runs on: `MONGODB_URI` when set, else DocumentDB through its launcher (the
//! tests' `integration_tests::documentdb`, on a free slot of `DOCUMENTDB_PORTS`), else the project's
//! stand-in. The stand-in is also started on its own, for the comparison rows.

use std::io::Write;

use integration_tests::documentdb::{self, DocumentDb, LauncherError};
use integration_tests::StandIn;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Uri,
    DocumentDb,
    StandIn,
}

/// A server the benchmark talks to; dropping it stops what was started for it.
pub struct Engine {
    pub uri: String,
    pub kind: EngineKind,
    /// For the report, without credentials.
    pub description: String,
    /// Held for as long as the engine is in use: dropping it stops the server.
    _documentdb: Option<DocumentDb>,
    _standin: Option<StandIn>,
}

impl Engine {
    /// The engine the figures are measured on, announced on stderr.
    pub fn primary() -> Engine {
        let engine = match std::env::var("MONGODB_URI").ok().filter(|u| !u.trim().is_empty()) {
            Some(uri) => {
                Engine { uri, kind: EngineKind::Uri, description: "the server at MONGODB_URI".into(), _documentdb: None, _standin: None }
            }
            None => match documentdb::launcher() {
                Ok(launcher) => {
                    // A launcher that is there but cannot start is a broken host: measuring the stand-in instead
                    // would report figures of another engine under this one's name.
                    let server = DocumentDb::start(&launcher).unwrap_or_else(|e| panic!("DocumentDB: {e}"));
                    Engine {
                        uri: server.uri.clone(),
                        kind: EngineKind::DocumentDb,
                        description: format!("DocumentDB on loopback (port {}, launcher {})", server.port, launcher.display()),
                        _documentdb: Some(server),
                        _standin: None,
                    }
                }
                Err(LauncherError::Configured(reason)) => panic!("{reason}"),
                Err(LauncherError::NotHere(reason)) => {
                    note(&format!("{reason}; measuring on the stand-in"));
                    Engine::standin()
                }
            },
        };
        note(&format!("database: {}", engine.description));
        engine
    }

    /// The project's stand-in (mongomock behind the wire protocol), on a free port.
    pub fn standin() -> Engine {
        let server = StandIn::spawn(0).unwrap_or_else(|e| panic!("stand-in: {e}"));
        Engine {
            uri: server.uri.clone(),
            kind: EngineKind::StandIn,
            description: "the MongoDB stand-in on loopback (mongomock in Python, one lock per command)".into(),
            _documentdb: None,
            _standin: Some(server),
        }
    }

    /// A short name for tables.
    pub fn name(&self) -> &'static str {
        match self.kind {
            EngineKind::Uri => "MONGODB_URI",
            EngineKind::DocumentDb => "DocumentDB",
            EngineKind::StandIn => "stand-in",
        }
    }
}

pub fn note(message: &str) {
    let _ = writeln!(std::io::stderr(), "[bench] {message}");
}
