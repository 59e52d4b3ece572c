//! `make bench` support: the benchmark user's data, the engine the benchmark runs on, the bootstraps it
//! starts (this project's release binaries and the Node/Mongoose peer) under the project's Lambda Runtime
//! API harness (`integration_tests::runtime_api`), and the statistics it reports.

pub mod contestant;
pub mod data;
pub mod engine;
pub mod floors;
pub mod interleave;
pub mod peer;
pub mod process;
pub mod stats;
pub mod sweep;

use std::path::PathBuf;

use integration_tests::workspace_root;

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `target/` in the workspace).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

/// A release binary of this workspace (`cargo build --release --bins`, which `make bench` runs first).
pub fn release_binary(name: &str) -> PathBuf {
    let path = target_dir().join("release").join(name);
    assert!(path.exists(), "{} missing: run `cargo build --release --bins` first (make bench does)", path.display());
    path
}
