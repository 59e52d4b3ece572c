//! The Node 20 + Mongoose 8 peer (`../shared/peer`, the service this project replaces) for the side-by-side
//! rows: copied into `target/bench-peer/` (the shared folder is read-only) and installed there with
//! `npm ci` from the npm registry, once per lock file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use integration_tests::workspace_root;

/// An installed copy of the peer.
pub struct Peer {
    pub dir: PathBuf,
    pub node_version: String,
}

/// The peer's modes and scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// `bootstrap.js`, `MODE=lean`: a projection without the logs and `lean()` (the best Node would do).
    Lean,
    /// `bootstrap.js`, `MODE=seed`: Mongoose as the seed uses it (hydrated documents).
    Seed,
    /// `noop.js`: answers at once, no database (the harness-plus-Node floor).
    Noop,
}

impl Peer {
    /// Copies and installs the peer, or says why it cannot be used here.
    pub fn prepare() -> Result<Peer, String> {
        let source = std::env::var_os("BENCH_PEER_SOURCE").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("../shared/peer"));
        let source = source.canonicalize().map_err(|_| format!("no peer at {} (BENCH_PEER_SOURCE)", source.display()))?;
        let node_version = version("node")?;
        let major = node_version.trim_start_matches('v').split('.').next().and_then(|m| m.parse::<u32>().ok()).unwrap_or(0);
        if major < 18 {
            return Err(format!("node {node_version} is too old: the peer's runtime loop needs fetch (Node ≥ 18; it was written for 20)"));
        }
        version("npm")?;

        let dir = crate::target_dir().join("bench-peer");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let entries = std::fs::read_dir(&source).map_err(|e| format!("{}: {e}", source.display()))?;
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                let into = dir.join(entry.file_name());
                std::fs::copy(entry.path(), &into).map_err(|e| format!("copy to {}: {e}", into.display()))?;
            }
        }
        // `npm ci` wipes and reinstalls node_modules: only when the lock file changed since the last install.
        let lock = std::fs::read(dir.join("package-lock.json")).map_err(|e| format!("the peer has no package-lock.json: {e}"))?;
        let stamp = dir.join("node_modules/.bench-installed-lock");
        if std::fs::read(&stamp).ok().as_deref() != Some(lock.as_slice()) {
            eprintln!("[bench] npm ci in {}", dir.display());
            let output = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("npm ci: {e}"))?;
            if !output.status.success() {
                return Err(format!("npm ci failed ({}): {}", output.status, tail(&output)));
            }
            std::fs::write(&stamp, &lock).map_err(|e| format!("{}: {e}", stamp.display()))?;
        }
        let check = Command::new("node").args(["-e", "require('mongoose')"]).current_dir(&dir).output();
        match check {
            Ok(output) if output.status.success() => {}
            Ok(output) => return Err(format!("mongoose does not load: {}", tail(&output))),
            Err(e) => return Err(format!("node: {e}")),
        }
        Ok(Peer { dir, node_version })
    }

    /// The command that starts the peer in `role` against `uri`, database `database`.
    pub fn command(&self, role: PeerRole, uri: &str, database: &str) -> Command {
        let (script, mode) = match role {
            PeerRole::Lean => ("bootstrap.js", "lean"),
            PeerRole::Seed => ("bootstrap.js", "seed"),
            PeerRole::Noop => ("noop.js", ""),
        };
        let mut command = Command::new("node");
        command.arg(self.dir.join(script)).current_dir(&self.dir).env("MONGODB_URI", uri).env("MONGODB_DB", database);
        // Mongoose warns on every start that the model's `errors` path is reserved; it changes nothing here.
        command.env("NODE_NO_WARNINGS", "1");
        if !mode.is_empty() {
            command.env("MODE", mode);
        }
        command
    }

    /// The installed mongoose version, for the report.
    pub fn mongoose_version(&self) -> String {
        let package = self.dir.join("node_modules/mongoose/package.json");
        read_version(&package).unwrap_or_else(|| "?".into())
    }
}

fn version(tool: &str) -> Result<String, String> {
    let output = Command::new(tool).arg("--version").stdin(Stdio::null()).output().map_err(|e| format!("{tool} is not available: {e}"))?;
    if !output.status.success() {
        return Err(format!("`{tool} --version` failed: {}", tail(&output)));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn read_version(package_json: &Path) -> Option<String> {
    let text = std::fs::read_to_string(package_json).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(value.get("version")?.as_str()?.to_owned())
}

/// The last lines a failed command printed, for the skip reason.
fn tail(output: &Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" / ")
}
