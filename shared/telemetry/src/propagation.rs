//! W3C trace context carried inside the job envelope, so one message can be
//! followed from the enqueue call to the provider's send.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct MapInjector<'a>(&'a mut HashMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct MapExtractor<'a>(&'a HashMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The current span's context as `traceparent`/`tracestate` entries (empty
/// when tracing export is off).
pub fn inject_current() -> HashMap<String, String> {
    let mut map = HashMap::new();
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut MapInjector(&mut map))
    });
    map
}

/// Makes `span` a child of the context carried in `carrier`. Call it before
/// `span` is first entered: a started span, one the filters dropped, or any
/// span while tracing export is off stays where it is.
pub fn set_parent(span: &tracing::Span, carrier: &HashMap<String, String>) {
    if carrier.is_empty() {
        return;
    }
    let context =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&MapExtractor(carrier)));
    // The refusals above are not errors of the message being handled.
    let _ = span.set_parent(context);
}
