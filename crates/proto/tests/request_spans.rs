//! Per-request tracing spans (feature `request-spans`): every handler call
//! runs inside a `fastwire.request` span carrying its id, name, value length
//! and whether it was deferred. Run with
//! `cargo test -p fastwire-proto --features request-spans --test request_spans`
//! (CI does); without the feature this file is empty, as the spans are.
#![cfg(feature = "request-spans")]

use std::sync::{Arc, Mutex};

use fastwire_proto::codec::encode_request;
use fastwire_proto::driver::{Connection, Flow};
use fastwire_proto::{Limits, Request, ResponseWriter, ServerConfig, ServerConn};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Every `fastwire.request` span's fields, as text, and whether a handler
/// ran inside it.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Vec<(String, String)>>>>);

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

impl<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        if attrs.metadata().name() == "fastwire.request" {
            let mut fields = Vec::new();
            attrs.record(&mut Fields(&mut fields));
            self.0.lock().unwrap().push(fields);
        }
    }
    fn on_record(&self, _id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        // Only one span is open at a time here: the last one is being recorded.
        if let Some(last) = self.0.lock().unwrap().last_mut() {
            values.record(&mut Fields(last));
        }
    }
}

fn field<'a>(span: &'a [(String, String)], name: &str) -> &'a str {
    span.iter().rev().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
}

#[test]
fn every_handler_call_runs_in_a_span_with_its_request() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let inside = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&inside);
    let handler = move |req: Request<'_>, resp: &mut ResponseWriter<'_>| {
        // The handler's own events are inside the request's span.
        seen.lock().unwrap().push(tracing::Span::current().metadata().map(|m| m.name()));
        if req.name == b"later" {
            drop(resp.defer());
        } else {
            resp.extend_from_slice(b"ok");
        }
    };
    let mut input = vec![0, 1, 0];
    let mut buf = bytes::BytesMut::new();
    encode_request(&mut buf, 7, b"echo", b"hello", &Limits::default()).unwrap();
    encode_request(&mut buf, 8, b"la\xffter", b"", &Limits::default()).unwrap();
    encode_request(&mut buf, 9, b"later", b"xy", &Limits::default()).unwrap();
    input.extend_from_slice(&buf);
    let mut conn = ServerConn::new(&ServerConfig::default());
    conn.set_peer_addr(Some("127.0.0.1:4000".parse().unwrap()));
    tracing::subscriber::with_default(subscriber, || {
        conn.received(&input);
        assert_eq!(conn.process(&handler), Ok(Flow::NeedInput));
    });
    let spans = spans.0.lock().unwrap();
    assert_eq!(spans.len(), 3, "one span per request");
    assert_eq!(field(&spans[0], "id"), "7");
    assert_eq!(field(&spans[0], "name"), "echo");
    assert_eq!(field(&spans[0], "len"), "5");
    assert_eq!(field(&spans[0], "peer"), "Some(127.0.0.1:4000)");
    assert_eq!(field(&spans[0], "deferred"), "false");
    assert_eq!(field(&spans[1], "name"), "la\u{FFFD}ter", "invalid UTF-8 is replaced, not an error");
    assert_eq!(field(&spans[2], "deferred"), "true");
    assert_eq!(*inside.lock().unwrap(), vec![Some("fastwire.request"); 3]);
}
