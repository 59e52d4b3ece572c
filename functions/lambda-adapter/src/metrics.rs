//! CloudWatch Embedded Metric Format: one JSON line per request on stdout, turned into metrics by
//! CloudWatch Logs with no API call on the request path.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    CacheHit,
    CacheStale,
    CacheMiss,
    IntegrityMismatch,
    IntegrityUnverifiable,
    DegradedRead,
    ResponseTooLarge,
    StaleWriteRejected,
    LogPushed,
    LogDuplicate,
    SweptDocuments,
    TrimmedLogs,
    DbLatency,
    /// Write attempts repeated after a conflict with concurrent writes or a lost reply.
    WriteRetries,
    /// Documents the consistency audit re-verified (with `IntegrityMismatch` and `AuditFindings`).
    AuditedDocuments,
    AuditFindings,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::CacheHit => "CacheHit",
            Metric::CacheStale => "CacheStale",
            Metric::CacheMiss => "CacheMiss",
            Metric::IntegrityMismatch => "IntegrityMismatch",
            Metric::IntegrityUnverifiable => "IntegrityUnverifiable",
            Metric::DegradedRead => "DegradedRead",
            Metric::ResponseTooLarge => "ResponseTooLarge",
            Metric::StaleWriteRejected => "StaleWriteRejected",
            Metric::LogPushed => "LogPushed",
            Metric::LogDuplicate => "LogDuplicate",
            Metric::SweptDocuments => "SweptDocuments",
            Metric::TrimmedLogs => "TrimmedLogs",
            Metric::DbLatency => "DbLatency",
            Metric::WriteRetries => "WriteRetries",
            Metric::AuditedDocuments => "AuditedDocuments",
            Metric::AuditFindings => "AuditFindings",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Metric::DbLatency => "Milliseconds",
            _ => "Count",
        }
    }
}

/// Where metric lines go: stdout in Lambda, memory in tests.
#[derive(Debug, Clone)]
enum Sink {
    Stdout,
    Memory(Arc<Mutex<Vec<Value>>>),
}

#[derive(Debug, Clone)]
pub struct Metrics {
    namespace: String,
    function: String,
    sink: Sink,
}

impl Metrics {
    pub fn stdout(namespace: &str, function: &str) -> Metrics {
        Metrics { namespace: namespace.into(), function: function.into(), sink: Sink::Stdout }
    }

    /// A recorder for tests: every emitted line is kept and returned by [`Metrics::recorded`].
    pub fn memory(namespace: &str, function: &str) -> Metrics {
        Metrics { namespace: namespace.into(), function: function.into(), sink: Sink::Memory(Arc::default()) }
    }

    /// The function these metrics are for (also the `function` field of every log line).
    pub fn function(&self) -> &str {
        &self.function
    }

    pub fn recorded(&self) -> Vec<Value> {
        match &self.sink {
            Sink::Memory(lines) => lines.lock().map(|l| l.clone()).unwrap_or_default(),
            Sink::Stdout => Vec::new(),
        }
    }

    /// Sum of one metric over everything recorded (tests).
    pub fn total(&self, metric: Metric) -> f64 {
        self.recorded().iter().filter_map(|line| line.get(metric.name()).and_then(Value::as_f64)).sum()
    }

    /// Emits one EMF document holding every value given; zero values are sent too, so dashboards see rates.
    pub fn emit(&self, values: &[(Metric, f64)]) {
        if values.is_empty() {
            return;
        }
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let definitions: Vec<Value> = values.iter().map(|(m, _)| json!({ "Name": m.name(), "Unit": m.unit() })).collect();
        let mut line = Map::new();
        line.insert(
            "_aws".into(),
            json!({ "Timestamp": timestamp, "CloudWatchMetrics": [{ "Namespace": self.namespace, "Dimensions": [["function"]], "Metrics": definitions }] }),
        );
        line.insert("function".into(), json!(self.function));
        for (metric, value) in values {
            line.insert(metric.name().into(), json!(value));
        }
        let line = Value::Object(line);
        match &self.sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = serde_json::to_writer(&mut out, &line);
                let _ = out.write_all(b"\n");
            }
            Sink::Memory(lines) => {
                if let Ok(mut lines) = lines.lock() {
                    lines.push(line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_embedded_metric_format() {
        let metrics = Metrics::memory("NS", "get-tickets");
        metrics.emit(&[(Metric::CacheHit, 1.0), (Metric::DbLatency, 2.5)]);
        let line = &metrics.recorded()[0];
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "NS");
        assert_eq!(directive["Dimensions"], json!([["function"]]));
        assert_eq!(directive["Metrics"][1], json!({ "Name": "DbLatency", "Unit": "Milliseconds" }));
        assert_eq!(line["function"], "get-tickets");
        assert_eq!(line["CacheHit"], 1.0);
        assert!(line["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
        assert_eq!(metrics.total(Metric::CacheHit), 1.0);
    }
}
