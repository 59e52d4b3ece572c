//! The sweeper function: on its schedule, ensure indexes, run one bounded sweep, report; with a `task`, the
//! consistency audit or the duplicate merge; at deployment, the stack's custom resource that creates the
//! indexes (`custom_resource.rs`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use domain::mongodb::bson::DateTime;
use domain::{AuditReport, ErrorQuery, ErrorReport, MergeReport, SweepReport};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use crate::custom_resource::{self, CustomResourceError};
use crate::metrics::Metric;
use crate::startup::{self, StartupError};
use crate::AppState;

/// The sweeper's start-up, retried on the next event when it fails: a deployment's custom resource must be
/// answered even then (with the reason), and a transient failure (reading the secret) must not stick to
/// the environment.
#[derive(Default)]
pub struct Started {
    state: tokio::sync::OnceCell<AppState>,
}

impl Started {
    /// Starts up now, at init, as every function does; a failure is logged and tried again later.
    pub async fn init() -> Started {
        let started = Started::default();
        if let Err(e) = started.get().await {
            tracing::error!(error = %e, "start-up failed; retried on the next event");
        }
        started
    }

    async fn get(&self) -> Result<&AppState, StartupError> {
        self.state.get_or_try_init(|| startup::init("ttl-sweeper")).await
    }
}

/// What an invocation returns: a sweep's or an audit's summary, or the answer sent to CloudFormation.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum SweeperOutput {
    Sweep(SweepSummary),
    Audit(AuditSummary),
    Merge(MergeSummary),
    Deployment(custom_resource::Response),
}

/// What one duplicate merge run did; returned to the invoker and logged.
#[derive(Debug, Serialize)]
pub struct MergeSummary {
    pub task: &'static str,
    #[serde(flatten)]
    pub report: MergeReport,
    pub total_ms: u64,
}

/// What one audit run found; returned to the invoker and logged. It changes no cached document.
#[derive(Debug, Serialize)]
pub struct AuditSummary {
    pub task: &'static str,
    #[serde(flatten)]
    pub report: AuditReport,
    pub total_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SweeperError {
    #[error(transparent)]
    Sweep(#[from] SweepError),
    #[error(transparent)]
    CustomResource(#[from] CustomResourceError),
    #[error("the function could not start: {0}")]
    Startup(String),
}

/// One event: a custom resource request from CloudFormation, or a schedule's.
pub async fn handle(started: &Started, event: LambdaEvent<Value>) -> Result<SweeperOutput, SweeperError> {
    let state = started.get().await;
    if custom_resource::is_request(&event.payload) {
        let state = state.as_ref().map(|s| *s);
        return Ok(SweeperOutput::Deployment(custom_resource::handle(state, event).await?));
    }
    let state = state.map_err(|e| SweeperError::Startup(e.to_string()))?;
    match task_of(&event.payload) {
        Some(AUDIT_TASK) => Ok(SweeperOutput::Audit(audit(state).await?)),
        Some(MERGE_TASK) => Ok(SweeperOutput::Merge(merge_duplicates(state, time_left(event.context.deadline)).await?)),
        _ => Ok(SweeperOutput::Sweep(sweep(state, event).await?)),
    }
}

/// The schedule's input that asks for the consistency audit instead of a sweep.
pub const AUDIT_TASK: &str = "audit";
/// The input (`{"task": "merge_duplicates"}`) that asks for the duplicate merge instead of a sweep.
pub const MERGE_TASK: &str = "merge_duplicates";

/// The invocation's time left before `deadline` (Lambda's, in ms since the epoch; none known: 0).
fn time_left(deadline_ms: u64) -> Option<Duration> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
    (deadline_ms > 0).then(|| Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
}

/// How long one merge run may go on: its share of the invocation's time left, leaving room for the user
/// being merged when it ends (each of its writes may take the operation timeout, retries included) and
/// for the reply; at most [`MERGE_MAX_DURATION`].
fn merge_duration(time_left: Option<Duration>, operation_timeout: Duration) -> Duration {
    let reserve = operation_timeout * 4;
    time_left.map_or(MERGE_MAX_DURATION, |left| left.saturating_sub(reserve).min(MERGE_MAX_DURATION))
}

/// Bounds a merge run in time as `MERGE_MAX_DOCUMENTS` bounds it in documents.
const MERGE_MAX_DURATION: Duration = Duration::from_secs(120);

/// One bounded duplicate merge (`MERGE_MAX_DOCUMENTS` documents examined, and the time left): each user
/// with several documents left with the one reads and writes take, holding what the others held.
pub async fn merge_duplicates(state: &AppState, time_left: Option<Duration>) -> Result<MergeSummary, SweepError> {
    let span = tracing::info_span!("handler", function = state.metrics.function(), task = MERGE_TASK);
    async {
        let started = Instant::now();
        let config = state.cache.config();
        let retries_before = state.cache.write_retries();
        let within = merge_duration(time_left, config.operation_timeout);
        let report = state.cache.merge_duplicates(config.merge_max_documents, within).await?;
        state.metrics.emit(&[
            (Metric::DuplicatedUsers, report.duplicated_users as f64),
            (Metric::MergedDuplicates, report.deleted_documents as f64),
            (Metric::WriteRetries, state.cache.write_retries().saturating_sub(retries_before) as f64),
        ]);
        if report.changed_meanwhile > 0 || report.unmergeable > 0 {
            tracing::warn!(
                changed_meanwhile = report.changed_meanwhile,
                unmergeable = report.unmergeable,
                "some duplicated users were left for a later run"
            );
        }
        let summary = MergeSummary { task: MERGE_TASK, report, total_ms: started.elapsed().as_millis() as u64 };
        tracing::info!(summary = %serde_json::to_string(&summary).unwrap_or_default(), "duplicate merge finished");
        Ok(summary)
    }
    .instrument(span)
    .await
}

fn task_of(event: &Value) -> Option<&str> {
    event.get("task").and_then(Value::as_str)
}

/// One bounded consistency audit (`AUDIT_MAX_DOCUMENTS` documents): reports, never changes data.
pub async fn audit(state: &AppState) -> Result<AuditSummary, SweepError> {
    let span = tracing::info_span!("handler", function = state.metrics.function(), task = AUDIT_TASK);
    async {
        let started = Instant::now();
        let report = state.cache.audit(state.cache.config().audit_max_documents, DateTime::now()).await?;
        state.metrics.emit(&[
            (Metric::AuditedDocuments, report.audited_documents as f64),
            (Metric::IntegrityMismatch, report.integrity_mismatches as f64),
            (Metric::AuditFindings, report.findings as f64),
        ]);
        if report.findings > 0 {
            tracing::warn!(findings = report.findings, by_kind = ?report.findings_by_kind, "the audit found stored documents that are not as written");
        }
        let summary = AuditSummary { task: AUDIT_TASK, report, total_ms: started.elapsed().as_millis() as u64 };
        tracing::info!(summary = %serde_json::to_string(&summary).unwrap_or_default(), "audit finished");
        Ok(summary)
    }
    .instrument(span)
    .await
}

/// Which kind of schedule invoked the sweeper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Classic EventBridge rule: `{"source": "aws.events", "detail-type": "Scheduled Event", ...}`.
    ScheduledEvent,
    /// EventBridge Scheduler: the target input the template configures (or an empty object).
    Scheduler,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("the sweeper expects a scheduled event (a JSON object), got {0}")]
    UnexpectedEvent(&'static str),
    #[error(transparent)]
    Cache(#[from] domain::CacheError),
}

/// What one scheduled run did; returned to the invoker and logged.
#[derive(Debug, Serialize)]
pub struct SweepSummary {
    pub trigger: Trigger,
    #[serde(flatten)]
    pub report: SweepReport,
    /// Whether indexes were verified; an index problem is reported, and the sweep still runs.
    pub indexes_ok: bool,
    pub errors_last_hour: Option<ErrorReport>,
    pub total_ms: u64,
}

pub fn trigger_of(event: &Value) -> Result<Trigger, SweepError> {
    let Some(object) = event.as_object() else {
        return Err(SweepError::UnexpectedEvent(match event {
            Value::Null => "null",
            Value::Array(_) => "an array",
            _ => "a scalar",
        }));
    };
    let classic = object.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event");
    Ok(if classic { Trigger::ScheduledEvent } else { Trigger::Scheduler })
}

pub async fn sweep(state: &AppState, event: LambdaEvent<Value>) -> Result<SweepSummary, SweepError> {
    let span = tracing::info_span!("handler", function = state.metrics.function());
    run_sweep(state, event).instrument(span).await
}

async fn run_sweep(state: &AppState, event: LambdaEvent<Value>) -> Result<SweepSummary, SweepError> {
    let started = Instant::now();
    let trigger = trigger_of(&event.payload)?;
    let indexes_ok = match state.cache.ensure_indexes().await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "ensuring indexes failed");
            false
        }
    };
    let now = DateTime::now();
    let retries_before = state.cache.write_retries();
    let report = state.cache.sweep(now).await?;
    let retries = state.cache.write_retries().saturating_sub(retries_before);
    // Monitoring only: a failure here must not fail the sweep.
    let last_hour = ErrorQuery::new(DateTime::from_millis(now.timestamp_millis() - 3_600_000), now, None, None);
    let errors_last_hour = match last_hour {
        Ok(query) => state.cache.error_report(&query).await.map_err(|e| tracing::warn!(error = %e, "error report failed")).ok(),
        Err(_) => None,
    };
    state.metrics.emit(&[
        (Metric::SweptDocuments, report.deleted_documents as f64),
        (Metric::TrimmedLogs, report.trimmed_log_entries as f64),
        (Metric::WriteRetries, retries as f64),
    ]);
    let summary = SweepSummary { trigger, report, indexes_ok, errors_last_hour, total_ms: started.elapsed().as_millis() as u64 };
    tracing::info!(summary = %serde_json::to_string(&summary).unwrap_or_default(), "sweep finished");
    Ok(summary)
}

impl From<SweeperError> for lambda_runtime::Diagnostic {
    fn from(error: SweeperError) -> Self {
        match error {
            SweeperError::Sweep(e) => e.into(),
            SweeperError::CustomResource(e) => e.into(),
            SweeperError::Startup(_) => lambda_runtime::Diagnostic { error_type: "StartupFailed".into(), error_message: error.to_string() },
        }
    }
}

impl From<SweepError> for lambda_runtime::Diagnostic {
    fn from(error: SweepError) -> Self {
        let error_type = match &error {
            SweepError::UnexpectedEvent(_) => "UnexpectedEvent",
            SweepError::Cache(
                domain::CacheError::Unavailable(_) | domain::CacheError::Timeout(_) | domain::CacheError::Contended { .. },
            ) => "DatabaseUnavailable",
            SweepError::Cache(_) => "SweepFailed",
        };
        lambda_runtime::Diagnostic { error_type: error_type.into(), error_message: error.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_merge_leaves_room_for_the_user_it_is_merging_and_the_reply() {
        let timeout = Duration::from_secs(3);
        assert_eq!(merge_duration(Some(Duration::from_secs(300)), timeout), MERGE_MAX_DURATION);
        assert_eq!(merge_duration(Some(Duration::from_secs(60)), timeout), Duration::from_secs(48));
        assert_eq!(merge_duration(Some(Duration::from_secs(5)), timeout), Duration::ZERO);
        assert_eq!(merge_duration(None, timeout), MERGE_MAX_DURATION, "no deadline known (a test's context)");
        assert_eq!(time_left(0), None);
    }

    #[test]
    fn accepts_both_schedule_shapes() {
        let classic = json!({"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events", "time": "2026-11-24T12:00:00Z", "detail": {}});
        assert_eq!(trigger_of(&classic).unwrap(), Trigger::ScheduledEvent);
        let scheduler = json!({"source": "aws.scheduler", "scheduled_time": "2026-11-24T12:00:00Z"});
        assert_eq!(trigger_of(&scheduler).unwrap(), Trigger::Scheduler);
        assert_eq!(trigger_of(&json!({})).unwrap(), Trigger::Scheduler);
        assert!(trigger_of(&json!("go")).is_err());
        assert!(trigger_of(&Value::Null).is_err());
    }
}
