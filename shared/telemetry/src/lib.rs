//! One telemetry set-up for every Herald process: structured `tracing` logs,
//! OpenTelemetry traces when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and a
//! Prometheus registry rendered at `/metrics`.

use std::sync::OnceLock;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub mod catalog;
pub mod propagation;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Keeps the trace exporter alive; dropping it flushes pending spans.
pub struct TelemetryGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs logging (`RUST_LOG`, default `info`; `HERALD_LOG_FORMAT=json` for
/// JSON lines), the OTLP exporter if configured, and the metrics recorder.
/// Safe to call more than once in one process (tests): later calls only
/// return a guard.
pub fn init(service: &'static str) -> anyhow::Result<TelemetryGuard> {
    install_metrics();
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("HERALD_LOG_FORMAT").is_ok_and(|v| v == "json");
    let fmt_layer = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_filter(filter())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_filter(filter())
            .boxed()
    };

    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    let mut provider = None;
    let otel_layer = match endpoint {
        Some(_) => {
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
                .context("Failed to build the OTLP span exporter")?;
            let tracer_provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(service)
                        .build(),
                )
                .build();
            let tracer = tracer_provider.tracer(service);
            opentelemetry::global::set_tracer_provider(tracer_provider.clone());
            provider = Some(tracer_provider);
            Some(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(filter()),
            )
        }
        None => None,
    };
    // A second init in the same process (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init();
    Ok(TelemetryGuard { provider })
}

/// Installs the process-wide Prometheus recorder once.
pub fn install_metrics() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let mut builder = PrometheusBuilder::new();
        for m in catalog::METRICS {
            let (name, buckets) = match *m {
                catalog::Metric::Seconds(name, _) => (name, catalog::SECONDS_BUCKETS),
                catalog::Metric::Count(name, _) => (name, catalog::COUNT_BUCKETS),
                _ => continue,
            };
            builder = builder
                .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
                .expect("non-empty buckets");
        }
        // The worker's pacing wait is seconds too.
        builder = builder
            .set_buckets_for_metric(
                Matcher::Full("herald_worker_pacing_wait_seconds".to_owned()),
                catalog::SECONDS_BUCKETS,
            )
            .expect("non-empty buckets");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); then
        // this handle renders an empty registry, which is harmless.
        if metrics::set_global_recorder(recorder).is_ok() {
            catalog::describe();
        }
        handle
    })
}

/// The Prometheus text exposition of every metric this process recorded.
pub fn render_metrics() -> String {
    install_metrics().render()
}
