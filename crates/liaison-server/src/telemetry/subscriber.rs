//! The process's tracing subscriber: log lines to stderr, and, when an OTLP endpoint is
//! configured, every span given an OpenTelemetry identity and exported over OTLP/HTTP.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::TelemetryConfig;

/// Keeps the span pipeline alive; dropping it flushes the spans not yet exported.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let provider = self.provider.clone();
        // The exporter's HTTP client blocks; keep it off the async runtime's threads.
        let _ = std::thread::spawn(move || provider.shutdown()).join();
    }
}

/// Installs the subscriber: `LIAISON_LOG` (an `EnvFilter`) overrides `default_filter`;
/// `json` writes JSON lines. Spans are exported when `telemetry.otlp_endpoint` is set.
pub fn install_subscriber(
    default_filter: &str,
    json: bool,
    telemetry: &TelemetryConfig,
) -> Result<TelemetryGuard, String> {
    let filter =
        EnvFilter::try_from_env("LIAISON_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let exporting = telemetry.otlp_endpoint.is_some();
    let telemetry = telemetry.clone();
    // The blocking HTTP client of the exporter must be built off the async runtime.
    let provider = std::thread::spawn(move || tracer_provider(&telemetry))
        .join()
        .map_err(|_| "building the span exporter panicked".to_owned())??;
    let tracer = provider.tracer("liaison");
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = if json {
        logs.json().boxed()
    } else {
        logs.boxed()
    };
    // Without an endpoint the spans have nowhere to go: the OpenTelemetry layer's work on
    // every span (its span data, each field kept as an attribute) would be thrown away, so
    // it is left out and `trace` draws the span ids the trace context needs.
    let export = exporting.then(|| tracing_opentelemetry::layer().with_tracer(tracer));
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(export)
        .try_init()
        .map_err(|e| format!("installing the tracing subscriber: {e}"))?;
    Ok(TelemetryGuard { provider })
}

fn tracer_provider(telemetry: &TelemetryConfig) -> Result<SdkTracerProvider, String> {
    let resource = Resource::builder()
        .with_service_name(telemetry.service_name.clone())
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = &telemetry.otlp_endpoint else {
        return Ok(builder.build());
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint.clone())
        .build()
        .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
    Ok(builder.with_batch_exporter(exporter).build())
}
