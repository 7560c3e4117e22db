//! W3C trace context across the broker.
//!
//! A submission continues the trace its sender started: the `traceparent` of the HTTP
//! request (or of the AMQP message's headers), else the CloudEvent's own `traceparent`
//! attribute. The broker's span for the submission is a child of it; that span's
//! traceparent is stored with the message, and each delivery's relay span is a child of it
//! and is what the AMQP `traceparent` header of the delivery names. So an agency that
//! traces its request finds the broker's spans and the delivery in its own trace.
//!
//! Spans are given their parent before they are first entered: OpenTelemetry fixes a
//! span's parent when it starts. Span identities come from OpenTelemetry when its layer is installed
//! ([`install_subscriber`] does when an OTLP endpoint is configured); where it is not (no
//! endpoint, or a library caller with its own subscriber), the span ids are drawn here, so
//! that the trace id still travels and each hop still names a span of its own.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: &str = "traceparent";

/// The propagator's view of the one header it reads here: every submission and every
/// delivery passes through, so no map is built for it.
struct Incoming<'a>(&'a str);

impl Extractor for Incoming<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// The header the propagator writes; `tracestate` (always empty here) is dropped.
#[derive(Default)]
struct Outgoing(Option<String>);

impl Injector for Outgoing {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

/// The span context a well-formed W3C `traceparent` names; `None` for anything else.
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let cx = TraceContextPropagator::new().extract(&Incoming(traceparent));
    let span = cx.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// The `traceparent` naming `span`.
pub fn format(span: &SpanContext) -> String {
    let mut written = Outgoing::default();
    TraceContextPropagator::new().inject_context(
        &Context::new().with_remote_span_context(span.clone()),
        &mut written,
    );
    written.0.unwrap_or_default()
}

/// Makes `span` — created, not yet entered — the child of `parent` when that is a
/// well-formed traceparent (otherwise it stays the child of the span it was created in, or
/// starts a trace of its own), and returns the traceparent that names `span`.
pub fn start_child(span: &tracing::Span, parent: Option<&str>) -> String {
    let parent = parent.and_then(parse);
    if let Some(parent) = &parent {
        // Fails only when no OpenTelemetry layer records this span; handled below.
        let _ = span.set_parent(Context::new().with_remote_span_context(parent.clone()));
    }
    let own = span.context().span().span_context().clone();
    let own = if own.is_valid() {
        own
    } else {
        let ids = RandomIdGenerator::default();
        let trace_id = parent
            .as_ref()
            .map_or_else(|| ids.new_trace_id(), SpanContext::trace_id);
        SpanContext::new(
            trace_id,
            ids.new_span_id(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        )
    };
    span.record("trace.id", own.trace_id().to_string());
    format(&own)
}

/// The trace id a traceparent names, for logs and tests.
pub fn trace_id(traceparent: &str) -> Option<TraceId> {
    parse(traceparent).map(|s| s.trace_id())
}

/// The span id a traceparent names.
pub fn span_id(traceparent: &str) -> Option<SpanId> {
    parse(traceparent).map(|s| s.span_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_w3c_traceparent() {
        let span = parse(PARENT).expect("valid traceparent");
        assert_eq!(
            span.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(span.span_id().to_string(), "00f067aa0ba902b7");
        assert_eq!(format(&span), PARENT);
    }

    #[test]
    fn refuses_malformed_traceparents() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_names_a_span_of_its_own() {
        let span = tracing::info_span!("test", trace.id = tracing::field::Empty);
        let child = start_child(&span, Some(PARENT));
        assert_eq!(trace_id(&child), trace_id(PARENT));
        assert_ne!(span_id(&child), span_id(PARENT));
        assert!(span_id(&child).is_some());
    }

    #[test]
    fn without_a_parent_a_new_trace_starts() {
        let span = tracing::info_span!("test", trace.id = tracing::field::Empty);
        let own = start_child(&span, Some("garbage"));
        let other = start_child(&span, None);
        assert!(trace_id(&own).is_some());
        assert_ne!(trace_id(&own), trace_id(&other));
    }
}
