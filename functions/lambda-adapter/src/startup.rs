//! Start-up, once per execution environment: logging, the route table, configuration, the MongoDB URI
//! (directly or from Secrets Manager) and one `mongodb::Client` reused by every invocation. The client connects lazily and
//! start-up never waits for the database: the first contact runs in the background (`readiness.rs`).

use std::time::Duration;

use domain::mongodb::options::ClientOptions;
use domain::{ConfigError, ConnectionError, MongoConnection, Settings, UriSource};

use crate::metrics::Metrics;
use crate::routes::{self, RouteTable, RouteTableError};
use crate::AppState;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Routes(#[from] RouteTableError),
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("reading the MongoDB URI from Secrets Manager: {0}")]
    Secret(String),
    // The driver's message can quote the URI (and its password): only the kind of problem is kept.
    #[error("the MongoDB connection string is not usable: {0}")]
    Connection(&'static str),
}

/// JSON logs for CloudWatch, at the level in `RUST_LOG` or `AWS_LAMBDA_LOG_LEVEL` (default info).
pub fn init_tracing() {
    let _ = tracing::subscriber::set_global_default(json_subscriber(std::io::stdout));
}

/// The production log format (one JSON object per line, with the Lambda request span's fields), written
/// to `writer`; tests capture it to check what reaches the logs.
pub fn json_subscriber<W>(writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    // A level, not per-module directives: that needs no regex engine in the bootstrap.
    let level = ["RUST_LOG", "AWS_LAMBDA_LOG_LEVEL"]
        .iter()
        .find_map(|var| std::env::var(var).ok()?.trim().parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_writer(writer)
        .finish()
}

/// Everything a function needs, from the environment.
pub async fn init(function: &str) -> Result<AppState, StartupError> {
    init_with(function, routes::table()).await
}

/// [`init`] with the route table the handlers resolve requests against (the compiled one in
/// production). A table that cannot be served stops start-up first: every request would be a 404.
async fn init_with(function: &str, routes: Result<&RouteTable, RouteTableError>) -> Result<AppState, StartupError> {
    init_tracing();
    keep_freed_memory();
    routes?;
    let settings = Settings::from_env()?;
    let uri = match &settings.uri {
        UriSource::Direct(uri) => uri.clone(),
        UriSource::SecretArn(arn) => uri_from_secret(arn).await?,
    };
    let client = connect(&uri, function, settings.cache.operation_timeout).await?;
    tracing::info!(function, database = %settings.cache.database, collection = %settings.cache.collection, "initialized");
    let metrics = Metrics::stdout(&settings.metrics_namespace, function);
    Ok(AppState::new(&client, settings, metrics))
}

/// Keeps the memory a request freed for the next request. By default glibc gives a freed heap top over
/// 128 KiB, and every block it mapped for a large allocation, back to the kernel at once, so each write
/// command (tens to hundreds of KiB, grown by `realloc`) faulted the same pages in again on every
/// request: ~130 page faults per PUT (bench `handlers`; bench/README.md, "Handler-only, HEAD against `3a8ef3e`"). A warm
/// environment keeps its peak heap instead, which the 6 MB request and response limits bound.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets glibc's allocator parameters, under the allocator's own lock. A refused
    // value (it returns 0) leaves glibc's default, which is correct, only slower.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
}

/// A client tuned for Lambda: a small pool (one invocation at a time per environment), short server
/// selection and connect timeouts so an unreachable database fails fast, and an app name for server logs.
/// Values given in the URI win. These bound reaching the server, which a busy server still answers at
/// once; authenticating a cold environment's first connection can take seconds while a whole fleet does
/// the same, and has its own budget (`MONGODB_FIRST_CONNECT_MS`, `readiness.rs`).
///
/// The client is replaced when it gets stuck (`domain::connection`): the driver does not bound a new
/// connection's handshake, and a peer that goes silent there would wedge the environment for good.
pub async fn connect(uri: &str, function: &str, operation_timeout: Duration) -> Result<MongoConnection, StartupError> {
    let mut options = ClientOptions::parse(uri).await.map_err(|e| StartupError::Connection(connection_problem(&e)))?;
    options.app_name.get_or_insert_with(|| format!("bytemark-tickets-cache/{function}"));
    options.max_pool_size.get_or_insert(4);
    options.min_pool_size.get_or_insert(0);
    options.max_idle_time.get_or_insert(Duration::from_secs(60));
    let fail_fast = operation_timeout.min(Duration::from_secs(2));
    options.server_selection_timeout.get_or_insert(fail_fast);
    options.connect_timeout.get_or_insert(fail_fast);
    MongoConnection::replaceable(options, operation_timeout).map_err(|e| match e {
        ConnectionError::Driver(e) => StartupError::Connection(connection_problem(&e)),
        ConnectionError::Runtime(_) => StartupError::Connection("the driver's runtime could not be started"),
    })
}

fn connection_problem(err: &domain::mongodb::error::Error) -> &'static str {
    use domain::mongodb::error::ErrorKind;
    match err.kind.as_ref() {
        ErrorKind::InvalidArgument { .. } => "invalid connection string",
        ErrorKind::DnsResolve { .. } => "DNS lookup failed (mongodb+srv)",
        ErrorKind::Authentication { .. } => "authentication settings are invalid",
        _ => "client could not be created",
    }
}

/// Reads the URI from a Secrets Manager secret: either the URI itself, or JSON with a `uri` (or
/// `MONGODB_URI`) field. Endpoint overrides (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`) are
/// honoured by aws-config, so emulators work.
pub async fn uri_from_secret(arn: &str) -> Result<String, StartupError> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(aws_https_client())
        .timeout_config(secrets_timeouts())
        .load()
        .await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let secret = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| StartupError::Secret(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()))?;
    let text = secret.secret_string().ok_or_else(|| StartupError::Secret("the secret has no string value".into()))?;
    parse_secret(text)
}

/// Bounds for the cold-start secret read: the SDK bounds connecting by default but not a reply that never
/// comes. Two attempts of 2 s each, 5 s in all, inside Lambda's 10 s init phase; a failed init is retried
/// by the next invocation.
fn secrets_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build()
}

/// The AWS SDK's HTTPS client on rustls with ring (see the workspace Cargo.toml for why).
pub fn aws_https_client() -> aws_sdk_secretsmanager::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

fn parse_secret(text: &str) -> Result<String, StartupError> {
    let text = text.trim();
    if text.starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|_| StartupError::Secret("the secret is JSON but not an object".into()))?;
        ["uri", "MONGODB_URI", "connectionString"]
            .iter()
            .find_map(|key| value.get(key).and_then(|v| v.as_str()))
            .map(str::to_owned)
            .ok_or_else(|| StartupError::Secret("the secret JSON has no `uri` field".into()))
    } else if text.starts_with("mongodb://") || text.starts_with("mongodb+srv://") {
        Ok(text.to_owned())
    } else {
        Err(StartupError::Secret("the secret is neither a mongodb:// URI nor JSON with a `uri` field".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hold_a_uri_or_json_with_one() {
        assert_eq!(parse_secret(" mongodb://u:p@h/ ").unwrap(), "mongodb://u:p@h/");
        assert_eq!(parse_secret(r#"{"uri": "mongodb+srv://c.example"}"#).unwrap(), "mongodb+srv://c.example");
        for bad in ["", "postgres://x", r#"{"url": "mongodb://h"}"#, "{not json"] {
            let err = parse_secret(bad).unwrap_err().to_string();
            assert!(!err.contains("mongodb://h"), "{err}");
        }
    }

    #[tokio::test]
    async fn start_up_stops_on_a_route_table_that_cannot_be_served() {
        let broken = RouteTable::parse(r#"{"routes": [}"#);
        let err = init_with("get-tickets", broken.as_ref().map_err(Clone::clone)).await.unwrap_err();
        assert!(matches!(err, StartupError::Routes(RouteTableError::Malformed(_))), "{err:?}");
        assert!(err.to_string().starts_with("functions/routes.json is not a route table"), "{err}");
    }

    #[tokio::test]
    async fn bad_uris_fail_without_echoing_credentials() {
        let err = connect("mongodb://user:hunter2@/bad", "t", Duration::from_secs(1)).await.unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
