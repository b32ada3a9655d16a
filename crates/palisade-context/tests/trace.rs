//! Properties of the trace header codecs: no input makes a decoder panic, every
//! decoded value stays within its documented limits, and what the encoders write
//! decodes back to the same value.

use palisade_context::trace::{
    self, B3Header, RequestId, SpanId, TraceContext, TraceFlags, TraceId, TraceState,
};
use proptest::prelude::*;

fn trace_id() -> impl Strategy<Value = TraceId> {
    (1..=u128::MAX).prop_map(|v| TraceId::from_bytes(v.to_be_bytes()).unwrap())
}

fn span_id() -> impl Strategy<Value = SpanId> {
    (1..=u64::MAX).prop_map(|v| SpanId::from_bytes(v.to_be_bytes()).unwrap())
}

fn flags() -> impl Strategy<Value = TraceFlags> {
    prop_oneof![
        Just(TraceFlags::NOT_SAMPLED),
        Just(TraceFlags::SAMPLED),
        Just(TraceFlags::DEBUG),
    ]
}

fn context() -> impl Strategy<Value = TraceContext> {
    (trace_id(), span_id(), flags()).prop_map(|(t, s, f)| TraceContext::new(t, s, f))
}

/// A valid tracestate list member.
fn member() -> impl Strategy<Value = (String, String)> {
    (
        "[a-z0-9][a-z0-9_*/@-]{0,20}",
        "[ -+\\--<>-~]{0,20}[!-+\\--<>-~]",
    )
}

/// Text that looks like the headers, to reach past the first checks, and
/// anything at all.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(any::<u8>(), 0..80)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        "[0-9a-fA-F-]{0,70}",
        "[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}[-.0-9a-z]{0,5}",
        "[0-9a-f]{16,32}-[0-9a-f]{16}(-[01d]{0,2}(-[0-9a-f]{0,17})?)?",
        "([ \t]*[a-zA-Z0-9_*/@ -]{0,6}=?[ -~]{0,6}[ \t]*,){0,40}",
    ]
}

fn b3_header() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![
            Just("X-B3-TraceId".to_owned()),
            Just("x-b3-spanid".to_owned()),
            Just("X-B3-PARENTSPANID".to_owned()),
            Just("x-b3-Sampled".to_owned()),
            Just("X-B3-Flags".to_owned()),
            any::<String>(),
        ],
        prop_oneof![header_text(), "[01]|true|false|[0-9a-f]{16}|[0-9a-f]{32}"],
    )
}

/// `name` with each ASCII letter's case chosen by `mask`.
fn recase(name: &str, mask: u64) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if (mask >> (i % 64)) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

proptest! {
    #[test]
    fn decoders_never_panic(value in header_text()) {
        if let Ok(ctx) = trace::decode_traceparent(&value) {
            // What decodes, re-encodes to a version 00 value of the same context.
            let written = trace::encode_traceparent(&ctx);
            prop_assert_eq!(written.len(), 55);
            prop_assert_eq!(trace::decode_traceparent(&written).unwrap(), ctx);
        }
        if let Ok(state) = trace::decode_tracestate(&value) {
            prop_assert!(state.as_str().len() <= TraceState::MAX_LEN);
            let members = state.as_str().split(',').filter(|m| !m.is_empty()).count();
            prop_assert!(members <= TraceState::MAX_MEMBERS);
            prop_assert_eq!(state.is_empty(), state.as_str().is_empty());
            // Decoding is idempotent.
            prop_assert_eq!(trace::decode_tracestate(state.as_str()).unwrap(), state);
        }
        if let Ok(B3Header::Trace(ctx)) = trace::decode_b3(&value) {
            prop_assert_eq!(trace::decode_b3(&trace::encode_b3(&ctx)).unwrap(), B3Header::Trace(ctx));
        }
        if let Ok(id) = RequestId::parse(&value) {
            prop_assert!(!id.as_str().is_empty() && id.as_str().len() <= RequestId::MAX_LEN);
            prop_assert!(id.as_str().bytes().all(|b| b.is_ascii_graphic()));
            prop_assert_eq!(RequestId::parse(id.as_str()).unwrap(), id);
        }
    }

    #[test]
    fn b3_multi_never_panics(headers in proptest::collection::vec(b3_header(), 0..8)) {
        let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        if let Ok(Some(B3Header::Trace(ctx))) = trace::decode_b3_multi(pairs) {
            let written = trace::encode_b3_multi(&ctx);
            let pairs = written.iter().map(|(n, v)| (*n, v.as_str()));
            prop_assert_eq!(trace::decode_b3_multi(pairs).unwrap(), Some(B3Header::Trace(ctx)));
        }
    }

    #[test]
    fn traceparent_round_trips(
        trace_id in trace_id(),
        span_id in span_id(),
        byte in any::<u8>(),
    ) {
        let ctx = TraceContext::new(trace_id, span_id, TraceFlags::from_w3c(byte));
        let written = trace::encode_traceparent(&ctx);
        prop_assert_eq!(written.len(), 55);
        prop_assert!(written.starts_with("00-"));
        prop_assert_eq!(trace::decode_traceparent(&written).unwrap(), ctx);
    }

    #[test]
    fn b3_single_round_trips(ctx in context()) {
        let written = trace::encode_b3(&ctx);
        prop_assert_eq!(trace::decode_b3(&written).unwrap(), B3Header::Trace(ctx));
    }

    #[test]
    fn b3_multi_round_trips(
        ctx in context(),
        masks in any::<[u64; 3]>(),
        rotate in 0usize..5,
    ) {
        // Names in any case, among other headers, in any order.
        let written = trace::encode_b3_multi(&ctx);
        let mut headers: Vec<(String, String)> = written
            .iter()
            .zip(masks)
            .map(|((name, value), mask)| (recase(name, mask), value.clone()))
            .collect();
        headers.push(("content-type".into(), "text/plain".into()));
        headers.push(("traceparent".into(), "ignored".into()));
        headers.rotate_left(rotate);
        let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
        prop_assert_eq!(trace::decode_b3_multi(pairs).unwrap(), Some(B3Header::Trace(ctx)));
    }

    #[test]
    fn tracestate_round_trips(members in proptest::collection::vec(member(), 0..40)) {
        // Unique keys, as W3C requires.
        let mut seen = std::collections::HashSet::new();
        let members: Vec<String> = members
            .into_iter()
            .filter(|(k, _)| seen.insert(k.clone()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let value = members.join(",");
        let state = trace::decode_tracestate(&value).unwrap();
        if members.len() <= TraceState::MAX_MEMBERS && value.len() <= TraceState::MAX_LEN {
            prop_assert_eq!(state.as_str(), value.as_str());
        } else {
            // Truncated to a prefix of whole members (none is over 128 characters).
            prop_assert!(state.as_str().len() <= TraceState::MAX_LEN);
            let kept: Vec<&str> = state.as_str().split(',').collect();
            prop_assert!(kept.len() <= TraceState::MAX_MEMBERS);
            prop_assert_eq!(&kept[..], &members[..kept.len()]);
        }
        // Carried in a context and written out, it reads back the same.
        let ctx = TraceContext::new_root(TraceFlags::SAMPLED).with_state(state.clone());
        prop_assert_eq!(trace::decode_tracestate(ctx.child().state().as_str()).unwrap(), state);
    }

    #[test]
    fn request_id_round_trips(id in "[!-~]{1,128}") {
        let parsed = RequestId::parse(&id).unwrap();
        prop_assert_eq!(parsed.as_str(), id.as_str());
        // Its Display is the header value.
        let shown = format!("{parsed}");
        prop_assert_eq!(RequestId::parse(&shown).unwrap(), parsed);
    }

    #[test]
    fn request_id_refuses_what_is_not_visible_ascii(
        prefix in "[!-~]{1,10}",
        bad in prop_oneof!["[\\x00-\\x20\\x7f]", "[^\\x00-\\x7f]"],
        suffix in "[!-~]{1,10}",
    ) {
        let value = format!("{prefix}{bad}{suffix}");
        prop_assert!(RequestId::parse(&value).is_err(), "{:?}", value);
    }
}

#[test]
fn random_request_ids_parse_back() {
    for _ in 0..100 {
        let id = RequestId::new_random();
        assert_eq!(RequestId::parse(id.as_str()).unwrap(), id);
    }
}

/// Bytes that look like the headers (as text), and any bytes at all.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        header_text().prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..80),
    ]
}

proptest! {
    /// The byte decoders never panic, and on text they decide as the text
    /// decoders do.
    #[test]
    fn byte_decoders_never_panic_and_agree_with_text(value in header_bytes()) {
        let parent = trace::decode_traceparent_bytes(&value);
        let id = RequestId::parse_bytes(&value);
        if let Ok(text) = std::str::from_utf8(&value) {
            prop_assert_eq!(parent.ok(), trace::decode_traceparent(text).ok());
            prop_assert_eq!(id.ok(), RequestId::parse(text).ok());
        } else if let Ok(id) = id {
            prop_assert!(id.as_bytes().iter().all(u8::is_ascii_graphic));
        }
    }

    /// What `encode_traceparent_bytes` writes is `encode_traceparent`'s text
    /// and decodes back to the same context.
    #[test]
    fn traceparent_bytes_round_trip(ctx in context()) {
        let bytes = trace::encode_traceparent_bytes(&ctx);
        let text = trace::encode_traceparent(&ctx);
        prop_assert_eq!(&bytes[..], text.as_bytes());
        let back = trace::decode_traceparent_bytes(&bytes).unwrap();
        prop_assert_eq!(back.trace_id(), ctx.trace_id());
        prop_assert_eq!(back.span_id(), ctx.span_id());
    }

    /// A request id reads back as it was written, held in place or shared.
    #[test]
    fn request_ids_round_trip(id in "[!-~]{1,128}") {
        let parsed = RequestId::parse(&id).unwrap();
        prop_assert_eq!(parsed.as_str(), id.as_str());
        prop_assert_eq!(parsed.as_bytes(), id.as_bytes());
        prop_assert_eq!(&RequestId::parse_bytes(id.as_bytes()).unwrap(), &parsed);
        let shared: std::sync::Arc<str> = parsed.clone().into();
        prop_assert_eq!(&*shared, id.as_str());
    }
}
