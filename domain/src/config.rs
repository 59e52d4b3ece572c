//! All configuration, read from the environment in one place, with defaults for everything but the URI.

use std::fmt;
use std::time::Duration;

/// Every environment variable the service reads. `infra/` tests check the template sets each one.
pub mod env {
    pub const MONGODB_URI: &str = "MONGODB_URI";
    pub const MONGODB_URI_SECRET_ARN: &str = "MONGODB_URI_SECRET_ARN";
    pub const MONGODB_DATABASE: &str = "MONGODB_DATABASE";
    pub const MONGODB_COLLECTION: &str = "MONGODB_COLLECTION";
    pub const MONGODB_TIMEOUT_MS: &str = "MONGODB_TIMEOUT_MS";
    pub const MONGODB_FIRST_CONNECT_MS: &str = "MONGODB_FIRST_CONNECT_MS";
    pub const WRITER_INDEX_POLICY: &str = "WRITER_INDEX_POLICY";
    pub const CACHE_TTL_SECONDS: &str = "CACHE_TTL_SECONDS";
    pub const CACHE_EXPIRE_AFTER_SECONDS: &str = "CACHE_EXPIRE_AFTER_SECONDS";
    pub const LOG_CAP: &str = "LOG_CAP";
    pub const LOG_RETENTION_SECONDS: &str = "LOG_RETENTION_SECONDS";
    pub const SWEEP_MAX_DOCUMENTS: &str = "SWEEP_MAX_DOCUMENTS";
    pub const AUDIT_MAX_DOCUMENTS: &str = "AUDIT_MAX_DOCUMENTS";
    pub const REMEMBERED_PAYLOAD_BYTES: &str = "REMEMBERED_PAYLOAD_BYTES";
    pub const MERGE_MAX_DOCUMENTS: &str = "MERGE_MAX_DOCUMENTS";
    pub const USER_ID_CLAIM: &str = "USER_ID_CLAIM";
    pub const ADMIN_SCOPE: &str = "ADMIN_SCOPE";
    pub const WRITE_SCOPE: &str = "WRITE_SCOPE";
    pub const METRICS_NAMESPACE: &str = "METRICS_NAMESPACE";
    /// Local development only; the deployed template never sets it.
    pub const AUTH_MODE: &str = "AUTH_MODE";
}

/// The largest accepted `LOG_CAP`: with every other limit at its maximum a document stays below 16 MiB.
pub const MAX_LOG_CAP: u64 = 500;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("set {} or {}", env::MONGODB_URI, env::MONGODB_URI_SECRET_ARN)]
    MissingUri,
    #[error("{var}: {reason}")]
    Invalid { var: &'static str, reason: String },
}

/// Where the MongoDB connection string comes from. `Debug` never prints the URI (it holds credentials).
#[derive(Clone, PartialEq, Eq)]
pub enum UriSource {
    Direct(String),
    SecretArn(String),
}

impl fmt::Debug for UriSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriSource::Direct(_) => f.write_str("Direct(<redacted>)"),
            UriSource::SecretArn(arn) => f.debug_tuple("SecretArn").field(arn).finish(),
        }
    }
}

/// What a writer environment does when the unique `user_id` index is missing. It never writes without it:
/// without the index, concurrent first writes of one user create several documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriterIndexPolicy {
    /// Create the index (one `createIndexes`), then write.
    #[default]
    Create,
    /// Refuse writes (503) until someone creates it: for databases whose indexes are managed elsewhere, or
    /// whose application user may not create indexes.
    Require,
}

impl WriterIndexPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            WriterIndexPolicy::Create => "create",
            WriterIndexPolicy::Require => "require",
        }
    }
}

/// Size limits that keep every document far below MongoDB's 16 MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_passes: usize,
    pub max_pass_uuid_chars: usize,
    pub max_status_chars: usize,
    pub max_payload_bytes: usize,
    pub max_payload_depth: usize,
    pub max_log_errors: usize,
    pub max_log_entry_bytes: usize,
    pub max_log_id_chars: usize,
    /// How far ahead of the server clock a client timestamp may be. A timestamp far in the future
    /// would make every later (correct) write look stale.
    pub max_clock_skew: Duration,
    /// Largest request body accepted (both arrays full, with room for JSON whitespace).
    pub max_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_passes: 100,
            max_pass_uuid_chars: 128,
            max_status_chars: 64,
            max_payload_bytes: 16 * 1024,
            max_payload_depth: 16,
            max_log_errors: 50,
            max_log_entry_bytes: 8 * 1024,
            max_log_id_chars: 128,
            max_clock_skew: Duration::from_secs(300),
            max_request_bytes: 4 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Upper bound of a document's size under these limits (generous per-field overhead included).
    pub fn max_document_bytes(&self, log_cap: usize) -> usize {
        let pass = self.max_payload_bytes + 4 * self.max_pass_uuid_chars + self.max_status_chars + 512;
        let entry = self.max_log_entry_bytes + self.max_log_id_chars + 128;
        2 * self.max_passes * pass + 2 * log_cap * entry + 1024
    }
}

/// What the cache needs to know, beyond a connected client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub database: String,
    pub collection: String,
    /// After this long since its `timestamp` a document is served as stale.
    pub fresh_ttl: Duration,
    /// After this long since its last write a document is deleted (`expires_at`).
    pub expire_after: Duration,
    /// Newest entries kept per log array.
    pub log_cap: u32,
    /// Log entries older than this are trimmed by the sweeper.
    pub log_retention: Duration,
    /// Documents one sweep may touch, so that a scheduled run always finishes.
    pub sweep_max_documents: u32,
    /// Documents one consistency audit re-verifies, so that a scheduled run always finishes.
    pub audit_max_documents: u32,
    /// Documents one run of the duplicate merge examines, so that a run always finishes.
    pub merge_max_documents: u32,
    /// Upper bound for one database operation, so a slow server ends in an error, not a hung invocation.
    pub operation_timeout: Duration,
    /// Upper bound for an execution environment's first contact: TCP, handshake, SCRAM authentication and
    /// (for writers) the index check. A cold fleet authenticating at once keeps a healthy engine busy for
    /// seconds, so this is sized against the function timeout (10 s: this, then one operation, then the
    /// reply), not against an outage: a database that is down still fails in the 2 s server selection.
    pub first_connect_timeout: Duration,
    pub writer_index_policy: WriterIndexPolicy,
    /// Bytes of payload work kept for reuse by identical content, per generation (two are kept), for
    /// reads (verified payloads) and for writes (converted payloads) each; 0 redoes all of it every time.
    /// See `verified.rs`.
    pub remembered_payload_bytes: usize,
    pub limits: Limits,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            database: "cache".into(),
            collection: "bytemark_tickets_cache".into(),
            fresh_ttl: Duration::from_secs(3600),
            expire_after: Duration::from_secs(30 * 24 * 3600),
            log_cap: 100,
            log_retention: Duration::from_secs(7 * 24 * 3600),
            sweep_max_documents: 1000,
            audit_max_documents: 1000,
            merge_max_documents: 1000,
            operation_timeout: Duration::from_millis(3000),
            first_connect_timeout: Duration::from_millis(6000),
            writer_index_policy: WriterIndexPolicy::Create,
            remembered_payload_bytes: 4 << 20,
            limits: Limits::default(),
        }
    }
}

/// Who may read and write whose data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessConfig {
    pub user_id_claim: String,
    pub admin_scope: String,
    pub write_scope: String,
    /// `AUTH_MODE=local`: identity from `x-local-user-id` / `x-local-scope` headers. Never deployed.
    pub local_auth: bool,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            user_id_claim: "custom:user_id".into(),
            admin_scope: "tickets/admin".into(),
            write_scope: "tickets/write".into(),
            local_auth: false,
        }
    }
}

/// The whole configuration of one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub uri: UriSource,
    pub cache: CacheConfig,
    pub access: AccessConfig,
    pub metrics_namespace: String,
}

impl Settings {
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let seconds = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            get(name).map_or(Ok(default), |v| parse_positive(name, &v).map(Duration::from_secs))
        };
        let uri = match (get(env::MONGODB_URI), get(env::MONGODB_URI_SECRET_ARN)) {
            (_, Some(arn)) => UriSource::SecretArn(arn),
            (Some(uri), None) => UriSource::Direct(uri),
            (None, None) => return Err(ConfigError::MissingUri),
        };
        let defaults = CacheConfig::default();
        let cache = CacheConfig {
            database: get(env::MONGODB_DATABASE).unwrap_or(defaults.database),
            collection: get(env::MONGODB_COLLECTION).unwrap_or(defaults.collection),
            fresh_ttl: seconds(env::CACHE_TTL_SECONDS, defaults.fresh_ttl)?,
            expire_after: seconds(env::CACHE_EXPIRE_AFTER_SECONDS, defaults.expire_after)?,
            log_cap: get(env::LOG_CAP).map_or(Ok(defaults.log_cap), |v| parse_bounded(env::LOG_CAP, &v, MAX_LOG_CAP))?,
            log_retention: seconds(env::LOG_RETENTION_SECONDS, defaults.log_retention)?,
            sweep_max_documents: get(env::SWEEP_MAX_DOCUMENTS)
                .map_or(Ok(defaults.sweep_max_documents), |v| parse_bounded(env::SWEEP_MAX_DOCUMENTS, &v, 100_000))?,
            audit_max_documents: get(env::AUDIT_MAX_DOCUMENTS)
                .map_or(Ok(defaults.audit_max_documents), |v| parse_bounded(env::AUDIT_MAX_DOCUMENTS, &v, 100_000))?,
            merge_max_documents: get(env::MERGE_MAX_DOCUMENTS)
                .map_or(Ok(defaults.merge_max_documents), |v| parse_bounded(env::MERGE_MAX_DOCUMENTS, &v, 100_000))?,
            operation_timeout: get(env::MONGODB_TIMEOUT_MS)
                .map_or(Ok(defaults.operation_timeout), |v| parse_positive(env::MONGODB_TIMEOUT_MS, &v).map(Duration::from_millis))?,
            first_connect_timeout: get(env::MONGODB_FIRST_CONNECT_MS).map_or(Ok(defaults.first_connect_timeout), |v| {
                parse_positive(env::MONGODB_FIRST_CONNECT_MS, &v).map(Duration::from_millis)
            })?,
            writer_index_policy: match get(env::WRITER_INDEX_POLICY).as_deref() {
                None | Some("create") => WriterIndexPolicy::Create,
                Some("require") => WriterIndexPolicy::Require,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        var: env::WRITER_INDEX_POLICY,
                        reason: format!("unknown policy {other:?} (\"create\" or \"require\")"),
                    })
                }
            },
            remembered_payload_bytes: get(env::REMEMBERED_PAYLOAD_BYTES)
                .map_or(Ok(defaults.remembered_payload_bytes), |v| parse_memory(env::REMEMBERED_PAYLOAD_BYTES, &v))?,
            limits: Limits::default(),
        };
        let access_defaults = AccessConfig::default();
        let access = AccessConfig {
            user_id_claim: get(env::USER_ID_CLAIM).unwrap_or(access_defaults.user_id_claim),
            admin_scope: get(env::ADMIN_SCOPE).unwrap_or(access_defaults.admin_scope),
            write_scope: get(env::WRITE_SCOPE).unwrap_or(access_defaults.write_scope),
            local_auth: match get(env::AUTH_MODE).as_deref() {
                None => false,
                Some("local") => true,
                Some(other) => {
                    return Err(ConfigError::Invalid { var: env::AUTH_MODE, reason: format!("unknown mode {other:?} (only \"local\")") })
                }
            },
        };
        Ok(Settings { uri, cache, access, metrics_namespace: get(env::METRICS_NAMESPACE).unwrap_or_else(|| "BytemarkTicketsCache".into()) })
    }
}

fn parse_positive(var: &'static str, value: &str) -> Result<u64, ConfigError> {
    match value.parse::<u64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(ConfigError::Invalid { var, reason: format!("expected a positive integer, got {value:?}") }),
    }
}

/// A byte count for a per-environment memory: 0 (nothing remembered) up to 64 MiB.
fn parse_memory(var: &'static str, value: &str) -> Result<usize, ConfigError> {
    match value.parse::<usize>() {
        Ok(bytes) if bytes <= 64 << 20 => Ok(bytes),
        _ => Err(ConfigError::Invalid { var, reason: "a byte count from 0 to 67108864".into() }),
    }
}

fn parse_bounded(var: &'static str, value: &str, max: u64) -> Result<u32, ConfigError> {
    let v = parse_positive(var, value)?;
    if v > max {
        return Err(ConfigError::Invalid { var, reason: format!("at most {max}") });
    }
    Ok(v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_need_only_a_uri() {
        let s = settings(&[(env::MONGODB_URI, "mongodb://u:secret@h/")]).unwrap();
        assert_eq!(s.cache, CacheConfig::default());
        assert_eq!(s.cache.database, "cache");
        assert_eq!(s.cache.collection, "bytemark_tickets_cache");
        assert_eq!(s.cache.log_cap, 100);
        assert_eq!(s.access, AccessConfig::default());
        assert_eq!(s.metrics_namespace, "BytemarkTicketsCache");
        assert!(!format!("{s:?}").contains("secret"), "the URI must not be printed");
    }

    #[test]
    fn secret_arn_wins_and_values_are_checked() {
        let s = settings(&[(env::MONGODB_URI, "mongodb://h"), (env::MONGODB_URI_SECRET_ARN, "arn:x")]).unwrap();
        assert_eq!(s.uri, UriSource::SecretArn("arn:x".into()));
        assert_eq!(settings(&[]), Err(ConfigError::MissingUri));
        for (var, bad) in [
            (env::LOG_CAP, "0"),
            (env::LOG_CAP, "ten"),
            (env::CACHE_TTL_SECONDS, "-5"),
            (env::AUTH_MODE, "open"),
            (env::MONGODB_FIRST_CONNECT_MS, "0"),
            (env::WRITER_INDEX_POLICY, "never"),
            (env::REMEMBERED_PAYLOAD_BYTES, "-1"),
            (env::REMEMBERED_PAYLOAD_BYTES, "67108865"),
        ] {
            assert!(settings(&[(env::MONGODB_URI, "mongodb://h"), (var, bad)]).is_err(), "{var}={bad}");
        }
        let s = settings(&[(env::MONGODB_URI, "mongodb://h"), (env::AUTH_MODE, "local"), (env::LOG_CAP, "5")]).unwrap();
        assert!(s.access.local_auth);
        assert_eq!(s.cache.log_cap, 5);
        let s =
            settings(&[(env::MONGODB_URI, "mongodb://h"), (env::WRITER_INDEX_POLICY, "require"), (env::MONGODB_FIRST_CONNECT_MS, "4500")])
                .unwrap();
        assert_eq!(s.cache.writer_index_policy, WriterIndexPolicy::Require);
        assert_eq!(s.cache.first_connect_timeout, Duration::from_millis(4500));
        let s = settings(&[(env::MONGODB_URI, "mongodb://h"), (env::REMEMBERED_PAYLOAD_BYTES, "0")]).unwrap();
        assert_eq!(s.cache.remembered_payload_bytes, 0);
    }

    #[test]
    fn worst_case_document_is_far_below_16_mib() {
        let config = CacheConfig::default();
        let bytes = config.limits.max_document_bytes(config.log_cap as usize);
        assert!(bytes < 8 * 1024 * 1024, "{bytes} bytes");
        // And the bound holds at the largest log cap the configuration accepts.
        assert!(config.limits.max_document_bytes(MAX_LOG_CAP as usize) < 16 * 1024 * 1024);
    }
}
