//! Process metrics in the Prometheus model: counted where things happen
//! (the gateway's sessions, the stages, the stores) and rendered by the
//! gateway at `/metrics`. One registry per process; on AWS the Lambda
//! stages count in their own processes, which nobody scrapes (their
//! figures are in CloudWatch), so `/metrics` of a gateway there covers the
//! gateway and the queue depths.
//!
//! Label values are bounded: roles, stages, results and reasons from fixed
//! lists; never an address, a domain or a message id.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    pub role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    /// `mx` or `submission`.
    pub role: &'static str,
    /// `accepted`, `refused` (5xx) or `deferred` (4xx).
    pub result: &'static str,
    /// Why, when not accepted: `spam`, `virus`, `dmarc`, `sieve`,
    /// `sender`, `size`, `syntax`, `loop`, `unavailable`; `none` when
    /// accepted.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    /// `imap`, `pop3`, `smtp`, `managesieve`.
    pub protocol: &'static str,
    /// `ok` or `failed`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: &'static str,
    /// `ok`, `retry` (a temporary failure: the job comes back) or `failed`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub stage: &'static str,
    /// `visible`, `in_flight`, `delayed`, `dead`.
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabel {
    /// `deliver`, `junk`, `quarantine`, `reject`.
    pub action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// `local` or `aws`.
    pub backend: &'static str,
    /// `blob`, `archive` or `index`.
    pub store: &'static str,
    pub op: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Connections accepted, by listener role.
    pub sessions: Family<RoleLabel, Counter>,
    /// Connections open now, by listener role.
    pub sessions_open: Family<RoleLabel, Gauge>,
    /// Messages at the end of DATA/BDAT, by outcome.
    pub smtp_messages: Family<MessageLabels, Counter>,
    pub logins: Family<LoginLabels, Counter>,
    /// Local deliveries, per recipient: `delivered` or `failed`.
    pub deliveries: Family<ResultLabel, Counter>,
    /// Outbound delivery attempts, per recipient: `delivered`,
    /// `deferred` or `failed`.
    pub outbound: Family<ResultLabel, Counter>,
    pub spam_verdicts: Family<VerdictLabel, Counter>,
    pub stage_jobs: Family<StageLabels, Counter>,
    pub stage_seconds: Histograms<StageLabel>,
    /// Set when `/metrics` is read.
    pub queue_depth: Family<QueueLabels, Gauge>,
    /// How long the oldest ready job has waited, in seconds, where the
    /// backend can tell (the embedded one; CloudWatch has SQS's); set
    /// when `/metrics` is read.
    pub queue_oldest: Family<StageLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub store_seconds: Histograms<StoreLabels>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn stage_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn store_histogram() -> Histogram {
    // 0.1 ms to about 3.3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("stratus");
        let m = Metrics {
            registry: Registry::default(),
            sessions: Family::default(),
            sessions_open: Family::default(),
            smtp_messages: Family::default(),
            logins: Family::default(),
            deliveries: Family::default(),
            outbound: Family::default(),
            spam_verdicts: Family::default(),
            stage_jobs: Family::default(),
            stage_seconds: Family::new_with_constructor(stage_histogram),
            queue_depth: Family::default(),
            queue_oldest: Family::default(),
            store_seconds: Family::new_with_constructor(store_histogram),
        };
        registry.register(
            "sessions",
            "Connections accepted, by listener role",
            m.sessions.clone(),
        );
        registry.register(
            "sessions_open",
            "Connections open now, by listener role",
            m.sessions_open.clone(),
        );
        registry.register(
            "smtp_messages",
            "Messages at the end of DATA or BDAT: accepted, refused (5xx) or deferred (4xx), and why",
            m.smtp_messages.clone(),
        );
        registry.register(
            "logins",
            "Password checks, by protocol and result",
            m.logins.clone(),
        );
        registry.register(
            "deliveries",
            "Deliveries to local mailboxes, per recipient",
            m.deliveries.clone(),
        );
        registry.register(
            "outbound_attempts",
            "Outbound delivery attempts, per recipient",
            m.outbound.clone(),
        );
        registry.register(
            "spam_verdicts",
            "Spam verdicts on mail from outside, by action",
            m.spam_verdicts.clone(),
        );
        registry.register(
            "stage_jobs",
            "Pipeline jobs handled in this process, by stage and result",
            m.stage_jobs.clone(),
        );
        registry.register_with_unit(
            "stage_duration",
            "Time a pipeline stage took for one job",
            Unit::Seconds,
            m.stage_seconds.clone(),
        );
        registry.register(
            "queue_depth",
            "Jobs in each stage's queue, by state",
            m.queue_depth.clone(),
        );
        registry.register_with_unit(
            "queue_oldest_ready_age",
            "How long the oldest ready job of each stage's queue has waited",
            Unit::Seconds,
            m.queue_oldest.clone(),
        );
        registry.register_with_unit(
            "store_operation_duration",
            "Time a blob store or index operation took, by backend",
            Unit::Seconds,
            m.store_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text exposition (which Prometheus reads).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn smtp_message(&self, role: &'static str, result: &'static str, reason: &'static str) {
        self.smtp_messages
            .get_or_create(&MessageLabels {
                role,
                result,
                reason,
            })
            .inc();
    }

    pub fn login(&self, protocol: &'static str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.logins
            .get_or_create(&LoginLabels { protocol, result })
            .inc();
    }

    pub fn stage_job(&self, stage: &'static str, result: &'static str, took: Duration) {
        self.stage_jobs
            .get_or_create(&StageLabels { stage, result })
            .inc();
        self.stage_seconds
            .get_or_create(&StageLabel { stage })
            .observe(took.as_secs_f64());
    }

    pub fn store_op(
        &self,
        backend: &'static str,
        store: &'static str,
        op: &'static str,
        took: Duration,
    ) {
        self.store_seconds
            .get_or_create(&StoreLabels { backend, store, op })
            .observe(took.as_secs_f64());
    }
}

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_with_prometheus_names() {
        let m = Metrics::new();
        m.smtp_message("mx", "refused", "spam");
        m.smtp_message("mx", "refused", "spam");
        m.login("imap", false);
        m.stage_job("deliver", "ok", Duration::from_millis(3));
        let text = m.render();
        for line in [
            "# TYPE stratus_smtp_messages counter",
            "stratus_smtp_messages_total{role=\"mx\",result=\"refused\",reason=\"spam\"} 2",
            "stratus_logins_total{protocol=\"imap\",result=\"failed\"} 1",
            "# UNIT stratus_stage_duration_seconds seconds",
            "stratus_stage_duration_seconds_count{stage=\"deliver\"} 1",
            "stratus_stage_jobs_total{stage=\"deliver\",result=\"ok\"} 1",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }
}
