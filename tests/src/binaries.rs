//! The function binaries for tests that run them as processes: debug builds (quick), or the release
//! bootstraps `make build` ships (`cargo lambda build --release`: fat LTO, minutes to build from scratch).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use crate::workspace_root;

pub const FUNCTIONS: [&str; 4] = ["get-tickets", "update-tickets", "push-log", "ttl-sweeper"];

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // cargo-lambda and zig come from the venv (`make venv`); put it first, as the Makefile does.
    let venv = workspace_root().join(".venv/bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Ok(path) = std::env::join_paths(std::iter::once(venv).chain(std::env::split_paths(&path))) {
        command.env("PATH", path);
    }
    // Cargo gives a test process the variables it sets for a crate (CARGO_PKG_NAME, CARGO_MANIFEST_DIR,
    // OUT_DIR, ...). Some dependencies' build scripts rerun when those change, so inherited they would make
    // this build differ from `make build`'s and relink everything.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_crates =
            ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_", "CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
                || name == "CARGO_RUSTC_CURRENT_DIR"
                || name == "OUT_DIR";
        if set_for_crates {
            command.env_remove(name.as_ref());
        }
    }
    command.current_dir(workspace_root());
    command
}

/// A debug build of one function binary; the four are built once per test process.
pub fn debug_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let mut command = cargo();
        command.args(["build", "--quiet"]);
        for f in FUNCTIONS {
            command.args(["--bin", f]);
        }
        let status = command.status().map_err(|e| format!("cargo build: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build failed: {status}"));
        }
        Ok(target_dir().join("debug"))
    });
    match dir {
        Ok(dir) => dir.join(name),
        Err(e) => panic!("{e}"),
    }
}

/// A directory holding `<function>/bootstrap` for each function, release-built as `make build` does.
///
/// `cargo lambda build --release` brings `target/lambda/` up to date: a no-op after `make build`, because it
/// builds the same four binaries (another selection unifies dependency features differently and relinks
/// everything, minutes with fat LTO). Without cargo-lambda, `cargo build --release` builds the same code
/// with the same profile. `FLEET_BOOTSTRAPS` names another directory of that layout instead (to compare
/// builds).
pub fn release_bootstraps() -> PathBuf {
    let functions = FUNCTIONS;
    if let Some(dir) = std::env::var_os("FLEET_BOOTSTRAPS") {
        eprintln!("[harness] release bootstraps from FLEET_BOOTSTRAPS={}", Path::new(&dir).display());
        return PathBuf::from(dir);
    }
    let cargo_lambda = workspace_root().join(".venv/bin/cargo-lambda").exists()
        || Command::new("cargo-lambda").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    let args: &[&str] = if cargo_lambda { &["lambda", "build", "--release", "--locked"] } else { &["build", "--release", "--locked"] };
    let started = Instant::now();
    let mut command = cargo();
    command.args(args);
    for f in functions {
        command.args(["--bin", f]);
    }
    let status = command.status().unwrap_or_else(|e| panic!("cargo {}: {e}", args.join(" ")));
    assert!(status.success(), "cargo {} failed: {status}", args.join(" "));
    eprintln!("[harness] release bootstraps up to date (cargo {}) in {:.1} s", args.join(" "), started.elapsed().as_secs_f64());
    if cargo_lambda {
        return target_dir().join("lambda");
    }
    // `cargo build` names each binary after its function; give them the bootstrap layout.
    let layout = target_dir().join("release-bootstraps");
    for f in functions {
        let into = layout.join(f);
        std::fs::create_dir_all(&into).unwrap_or_else(|e| panic!("{}: {e}", into.display()));
        std::fs::copy(target_dir().join("release").join(f), into.join("bootstrap")).unwrap_or_else(|e| panic!("copy {f}: {e}"));
    }
    layout
}
