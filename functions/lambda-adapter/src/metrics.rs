//! CloudWatch Embedded Metric Format: one JSON line per request on stdout, turned into metrics by
//! CloudWatch Logs with no API call on the request path.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use serde_json::Value;

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
    /// Users the duplicate merge found with more than one document, and the documents it folded away.
    DuplicatedUsers,
    MergedDuplicates,
    /// The environment replaced its MongoDB client because it was stuck (`domain::connection`).
    MongoClientReplaced,
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
            Metric::DuplicatedUsers => "DuplicatedUsers",
            Metric::MergedDuplicates => "MergedDuplicates",
            Metric::MongoClientReplaced => "MongoClientReplaced",
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
    Memory(Arc<Mutex<Vec<Vec<u8>>>>),
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
            Sink::Memory(lines) => {
                let lines = lines.lock().map(|l| l.clone()).unwrap_or_default();
                lines.iter().filter_map(|line| serde_json::from_slice(line).ok()).collect()
            }
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
        let mut line = Vec::with_capacity(256);
        // Serialized straight from the values: no `Value` tree per line (`make bench`, handler-only rows).
        if serde_json::to_writer(&mut line, &Line { metrics: self, timestamp, values }).is_err() {
            return;
        }
        match &self.sink {
            Sink::Stdout => {
                line.push(b'\n');
                let _ = std::io::stdout().lock().write_all(&line);
            }
            Sink::Memory(lines) => {
                if let Ok(mut lines) = lines.lock() {
                    lines.push(line);
                }
            }
        }
    }
}

/// One EMF line: the directive naming the metrics, the `function` dimension, then each value.
struct Line<'a> {
    metrics: &'a Metrics,
    timestamp: u64,
    values: &'a [(Metric, f64)],
}

impl Serialize for Line<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let directive = Directive {
            timestamp: self.timestamp,
            cloud_watch_metrics: [MetricDirective {
                namespace: &self.metrics.namespace,
                dimensions: [["function"]],
                metrics: Definitions(self.values),
            }],
        };
        let mut line = serializer.serialize_map(Some(2 + self.values.len()))?;
        line.serialize_entry("_aws", &directive)?;
        line.serialize_entry("function", &self.metrics.function)?;
        for (metric, value) in self.values {
            line.serialize_entry(metric.name(), value)?;
        }
        line.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    timestamp: u64,
    cloud_watch_metrics: [MetricDirective<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDirective<'a> {
    namespace: &'a str,
    dimensions: [[&'static str; 1]; 1],
    metrics: Definitions<'a>,
}

/// `[{ "Name": …, "Unit": … }, …]`, one per value.
struct Definitions<'a>(&'a [(Metric, f64)]);

impl Serialize for Definitions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Definition {
            name: &'static str,
            unit: &'static str,
        }
        let mut definitions = serializer.serialize_seq(Some(self.0.len()))?;
        for (metric, _) in self.0 {
            definitions.serialize_element(&Definition { name: metric.name(), unit: metric.unit() })?;
        }
        definitions.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
        let timestamp = line["_aws"]["Timestamp"].clone();
        assert_eq!(
            *line,
            json!({
                "_aws": { "Timestamp": timestamp, "CloudWatchMetrics": [{
                    "Namespace": "NS",
                    "Dimensions": [["function"]],
                    "Metrics": [{ "Name": "CacheHit", "Unit": "Count" }, { "Name": "DbLatency", "Unit": "Milliseconds" }],
                }] },
                "function": "get-tickets",
                "CacheHit": 1.0,
                "DbLatency": 2.5,
            }),
            "the whole line, nothing more"
        );
        assert_eq!(line["CacheHit"], 1.0);
        assert!(line["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
        assert_eq!(metrics.total(Metric::CacheHit), 1.0);
    }
}
