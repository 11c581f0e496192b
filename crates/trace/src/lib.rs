//! Trace context across process boundaries, as W3C `traceparent` strings
//! (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`).
//!
//! Spans are `tracing` spans; when the binary exports traces (OTLP, see
//! docs/operations.md "Traces") a `tracing-opentelemetry` layer gives each one an
//! OpenTelemetry span context. These helpers read that context as a `traceparent`
//! (stored with an execution, sent as a header on hook calls and webhook deliveries,
//! kept with a queue message) and make a span continue a `traceparent` read back (an
//! incoming request's header, a stored execution's context).
//!
//! Without the layer (no exporter configured, tests) spans have no OpenTelemetry
//! context: [`traceparent`] returns `None` and [`continue_from`] does nothing, so
//! nothing is stored or sent.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header (and queue message attribute) carrying a trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of `span`, or `None` when it has no valid trace context (no
/// exporter layer installed, or a disabled span).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| format(&sc))
}

/// The `traceparent` of the current span.
pub fn traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// Makes `span` a child of the remote span `traceparent` names, so it joins that trace.
/// Does nothing for a malformed value (a caller's bad header never fails a request)
/// or a span without a trace context. Call it before the span is first entered.
pub fn continue_from(span: &tracing::Span, traceparent: &str) {
    if let Some(sc) = parse(traceparent) {
        if !span.is_disabled() {
            span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
        }
    }
}

/// Adds to `span` a link to the current span (when both have a trace context): for a
/// span continuing another trace, such as a received queue message's, that names the
/// span it happened in (the receive request's).
pub fn link_to_current(span: &tracing::Span) {
    let current = tracing::Span::current();
    if span.is_disabled() || current.is_disabled() {
        return;
    }
    let sc = current.context().span().span_context().clone();
    if sc.is_valid() {
        span.add_link(sc);
    }
}

fn format(sc: &SpanContext) -> String {
    format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8())
}

/// Parses a version-00 `traceparent` (lowercase hex, non-zero ids), as the W3C Trace
/// Context recommendation specifies; anything else is `None`.
pub fn parse(value: &str) -> Option<SpanContext> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let [version, trace, span, flags] = parts.as_slice() else {
        return None;
    };
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if *version != "00" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?);
    let sc = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    sc.is_valid().then_some(sc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parse_accepts_w3c_values_and_rejects_the_rest() {
        let sc = parse(PARENT).expect("valid");
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn without_a_layer_nothing_is_carried() {
        let span = tracing::info_span!("x");
        continue_from(&span, PARENT);
        assert_eq!(traceparent_of(&span), None);
    }

    #[test]
    fn a_span_continues_a_traceparent_and_its_children_share_the_trace() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("t"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request");
            continue_from(&span, PARENT);
            let own = traceparent_of(&span).expect("a context");
            assert!(own.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{own}");
            assert!(!own.contains("00f067aa0ba902b7"), "the span has its own id: {own}");
            let _g = span.enter();
            assert_eq!(traceparent().as_deref(), Some(own.as_str()), "the current span's");
            let child = traceparent_of(&tracing::info_span!("step")).expect("a context");
            assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{child}");
            assert_ne!(child, own);
            // A root span starts a trace of its own.
            let other = tracing::info_span!(parent: None, "other");
            assert!(!traceparent_of(&other).expect("a context").contains("4bf92f3577b34da6a3ce929d0e0e4736"));
        });
    }
}
