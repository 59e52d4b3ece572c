//! DocumentDB for tests: one server per test process, started through the launcher of the prebuilt
//! DocumentDB and stopped when the process ends.
//!
//! - Launcher: `DOCUMENTDB_LAUNCHER`, else `<workspace>/../shared/documentdb/documentdb` when it exists.
//! - Ports come in slots of two (the gateway on PORT, PostgreSQL on PORT+1), from `DOCUMENTDB_PORTS`
//!   (`FIRST-LAST`, default 10300-10339). A slot is held through a lock file for as long as its server
//!   runs, so parallel test processes (cargo runs test binaries one after another, but people and CI
//!   jobs run several `cargo test` at once) never share or stop each other's server.
//! - A Rust test process has no exit hook: `documentdb_session.sh` watches a pipe from this process and
//!   stops the server when the pipe closes, which happens whenever and however the process ends.
//! - A slot keeps its data folder between processes (a fresh folder costs an initdb, ~6 s per process);
//!   the test databases earlier processes left in it are dropped alongside the tests.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::time::Duration;

use domain::mongodb::Client;

use crate::{workspace_root, TEST_DATABASE_PREFIX};

const SESSION_SCRIPT: &str = include_str!("documentdb_session.sh");
const DEFAULT_PORTS: (u16, u16) = (10300, 10339);

/// Why no launcher can be used.
#[derive(Debug)]
pub enum LauncherError {
    /// `DOCUMENTDB_LAUNCHER` names something that is not there: a mistake to report, not to work around.
    Configured(String),
    /// The default launcher is not on this host.
    NotHere(String),
}

/// The DocumentDB launcher to use.
pub fn launcher() -> Result<PathBuf, LauncherError> {
    match std::env::var_os("DOCUMENTDB_LAUNCHER").filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            if path.is_file() {
                Ok(path)
            } else {
                Err(LauncherError::Configured(format!("DOCUMENTDB_LAUNCHER={} is not a file", path.display())))
            }
        }
        None => {
            let path = workspace_root().join("../shared/documentdb/documentdb");
            match path.canonicalize() {
                Ok(path) if path.is_file() => Ok(path),
                _ => Err(LauncherError::NotHere(format!("no DocumentDB launcher at {} (DOCUMENTDB_LAUNCHER)", path.display()))),
            }
        }
    }
}

/// A running DocumentDB on a port slot of its own. Dropping it stops the server (in the background).
pub struct DocumentDb {
    pub uri: String,
    pub port: u16,
    launcher: PathBuf,
    /// Our end of the session script's stdin: closing it tells the script to stop the server.
    _session: ChildStdin,
}

impl DocumentDb {
    /// Starts a server on the first free slot of `DOCUMENTDB_PORTS`.
    pub fn start(launcher: &Path) -> Result<DocumentDb, String> {
        let (first, last) = port_range()?;
        let locks = std::env::temp_dir().join("documentdb-test-slots");
        for port in (first..last).step_by(2) {
            let lock = locks.join(format!("{port}.lock"));
            let mut session = Command::new("bash")
                .arg("-c")
                .arg(SESSION_SCRIPT)
                .arg("documentdb-session")
                .arg(launcher)
                .arg(port.to_string())
                .arg(&lock)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                // Its own process group: a Ctrl-C in the terminal ends the tests, and the session then
                // still stops the server instead of dying with them.
                .process_group(0)
                .spawn()
                .map_err(|e| format!("bash: {e}"))?;
            let (Some(stdin), Some(stdout)) = (session.stdin.take(), session.stdout.take()) else {
                return Err("the session script has no pipes".into());
            };
            let mut answer = String::new();
            let _ = BufReader::new(stdout).read_line(&mut answer);
            match answer.trim_end().split_once(' ') {
                Some(("URI", uri)) => {
                    // The session runs until this process ends; it is never waited for.
                    let server = DocumentDb { uri: uri.to_owned(), port, launcher: launcher.to_owned(), _session: stdin };
                    drop_leftover_databases(&server.uri);
                    return Ok(server);
                }
                None if answer.trim_end() == "BUSY" => {
                    let _ = session.wait();
                }
                _ => {
                    let _ = session.wait();
                    return Err(format!("DocumentDB did not start on port {port}: {}", answer.trim()));
                }
            }
        }
        Err(format!("no free DocumentDB port slot in {first}-{last} (DOCUMENTDB_PORTS; each slot is PORT and PORT+1)"))
    }

    /// Stops the server now and waits until it is down (the slot stays ours).
    pub fn stop(&self) -> Result<(), String> {
        self.launcher_command("stop")
    }

    /// Starts the server again after [`DocumentDb::stop`], with its data.
    pub fn restart(&self) -> Result<(), String> {
        self.launcher_command("start")
    }

    /// Kills the server as a crash would (`kill -9` of the gateway, the postmaster and its backends):
    /// nothing is shut down cleanly. [`DocumentDb::restart`] brings it back with its data.
    pub fn kill_hard(&self) -> Result<usize, String> {
        kill_hard(self.port)
    }

    /// Ends every backend connection the gateway has open to PostgreSQL (`pg_terminate_backend`), as an
    /// engine failing over or an operator ending sessions would; answers how many were ended.
    pub fn terminate_backends(&self) -> Result<usize, String> {
        terminate_backends(self.port)
    }

    fn launcher_command(&self, command: &str) -> Result<(), String> {
        let status = Command::new(&self.launcher)
            .args([command, &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .status()
            .map_err(|e| format!("{}: {e}", self.launcher.display()))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("documentdb {command} {}: {status}", self.port))
        }
    }
}

fn port_range() -> Result<(u16, u16), String> {
    let Some(text) = std::env::var("DOCUMENTDB_PORTS").ok().filter(|v| !v.trim().is_empty()) else {
        return Ok(DEFAULT_PORTS);
    };
    let parsed = text.trim().split_once('-').and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)));
    match parsed {
        Some((first, last)) if first < last => Ok((first, last)),
        _ => Err(format!("DOCUMENTDB_PORTS={text:?}: expected FIRST-LAST with at least two ports")),
    }
}

/// Drops the test databases that earlier processes left on this slot's server. The list is taken before
/// any test of this process has a database; the drops (~85 ms each) run alongside the tests.
fn drop_leftover_databases(uri: &str) {
    let uri = uri.to_owned();
    let (listed, wait_listed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async move {
            let leftovers = match Client::with_uri_str(&uri).await {
                Ok(client) => client.list_database_names().await.map(|names| (client, names)),
                Err(e) => Err(e),
            };
            let _ = listed.send(());
            match leftovers {
                Ok((client, names)) => {
                    for name in names.iter().filter(|n| n.starts_with(TEST_DATABASE_PREFIX)) {
                        let _ = client.database(name).drop().await;
                    }
                }
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "[harness] could not list DocumentDB's databases: {e}");
                }
            }
        });
    });
    let _ = wait_listed.recv_timeout(Duration::from_secs(30));
}

/// [`DocumentDb::kill_hard`] of the server on `port` (the gateway's port; PostgreSQL is on the next).
pub fn kill_hard(port: u16) -> Result<usize, String> {
    let data = format!("/data-{port}/");
    let processes: Vec<(u32, u32, String)> = std::fs::read_dir("/proc")
        .map_err(|e| format!("/proc: {e}"))?
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The parent pid is the second field after the command's closing parenthesis.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid, String::from_utf8_lossy(&cmdline).replace('\0', " ")))
        })
        .collect();
    let servers: Vec<u32> = processes.iter().filter(|(_, _, cmd)| cmd.contains(&data)).map(|(pid, _, _)| *pid).collect();
    if servers.is_empty() {
        return Err(format!("no DocumentDB process of port {port}"));
    }
    let backends = processes.iter().filter(|(_, ppid, _)| servers.contains(ppid)).map(|(pid, _, _)| *pid);
    let victims: Vec<u32> = servers.iter().copied().chain(backends).collect();
    for pid in &victims {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    Ok(victims.len())
}

/// [`DocumentDb::terminate_backends`] of the server on `port`.
pub fn terminate_backends(port: u16) -> Result<usize, String> {
    let sql = "select count(pg_terminate_backend(pid)) from pg_stat_activity \
               where backend_type = 'client backend' and application_name like 'DocumentDBGateway%'";
    let output = Command::new("psql")
        .args(["-X", "-At", "-h", "127.0.0.1", "-p", &(port + 1).to_string(), "-U", "postgres", "-d", "postgres", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim().parse().map_err(|_| format!("psql answered {:?} {:?}", text.trim(), String::from_utf8_lossy(&output.stderr).trim()))
}
