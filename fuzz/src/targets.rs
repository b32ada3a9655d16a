//! The targets: palisade's parsers of untrusted input (`Retry-After`, the
//! deadline headers, the trace headers, the TOML configuration) and its sliding
//! windows against a naive model.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade::config::{Registry, RegistryConfig};
use palisade_classify::parse_retry_after_at;
use palisade_context::header;
use palisade_context::trace::{self, B3Header};

use crate::Target;

#[path = "../../crates/palisade-window/tests/model/mod.rs"]
mod model;

/// Every target, in the order the runner runs them.
pub const ALL: &[Target] = &[
    Target {
        name: "retry_after",
        run: retry_after,
        seeds: &[
            b"120",
            b" 0 ",
            b"99999999999999999999",
            b"Sun, 06 Nov 1994 08:50:07 GMT",
            b"Sunday, 06-Nov-94 08:49:37 GMT",
            b"Sun Nov  6 08:49:37 1994",
            b"Fri, 31 Dec 9999 23:59:59 GMT",
        ],
        dictionary: &[
            b"GMT", b"Mon, ", b"Sunday, ", b"Feb", b"Nov", b" 1994", b"-94", b"08:49:37",
            b"29", b"\t", b"+", b"1.5",
        ],
    },
    Target {
        name: "grpc_timeout",
        run: grpc_timeout,
        seeds: &[b"1S", b"100m", b"99999999H", b"5u", b" 7n ", b"123456789M"],
        dictionary: &[b"H", b"M", b"S", b"m", b"u", b"n", b"99999999", b"00000001"],
    },
    Target {
        name: "millis_header",
        run: millis_header,
        seeds: &[b"250", b"0", b"18446744073709551615", b"99999999999999999999", b" 12 "],
        dictionary: &[b"18446744073709551615", b"3600000", b"+", b"-", b" "],
    },
    Target {
        name: "traceparent",
        run: traceparent,
        seeds: &[
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ],
        dictionary: &[
            b"00-", b"-01", b"00000000000000000000000000000000", b"0000000000000000", b"-",
            b"4bf92f3577b34da6", b"A",
        ],
    },
    Target {
        name: "tracestate",
        run: tracestate,
        seeds: &[
            b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
            b"a@b=1, c=2 ,d=3",
            b"tenant@vendor=x",
            b"",
        ],
        dictionary: &[b",", b"=", b"@", b" ", b"\t", b"rojo", b"a-b_c*d/e", b"=="],
    },
    Target {
        name: "b3",
        run: b3,
        seeds: &[
            b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
            b"e457b5a2e4d86bd1-e457b5a2e4d86bd1-d",
            b"0",
            b"d",
            b"x-b3-traceid:80f198ee56343ba864fe8b2a57d3eff7\nx-b3-spanid:e457b5a2e4d86bd1\nx-b3-sampled:1",
            b"x-b3-flags:1",
        ],
        dictionary: &[
            b"-", b"\n", b":", b"x-b3-traceid:", b"x-b3-spanid:", b"x-b3-parentspanid:",
            b"x-b3-sampled:", b"x-b3-flags:", b"0000000000000000", b"true",
        ],
    },
    Target {
        name: "toml_config",
        run: toml_config,
        seeds: &[
            b"[pipelines.billing]\ntotal_timeout = \"2s\"\nattempt_timeout = \"300ms\"\n\
              [pipelines.billing.retry.backoff]\nkind = \"exponential\"\ninitial = \"50ms\"\n\
              max_attempts = 3\n[pipelines.billing.breaker]\nfailure_rate_threshold = 50.0\n\
              [pipelines.billing.bulkhead]\nmax_concurrent = 20\n",
            b"[pipelines.a]\n[pipelines.a.rate_limiter]\nrate = 100\nper = \"1s\"\n",
            b"[pipelines.a.bulkhead]\nmax_concurrent = 2\nmax_queue = 4\nmax_wait = \"1m30s\"\n",
            b"[pipelines.\" \"]\n",
        ],
        dictionary: &[
            b"[pipelines.", b"]\n", b" = ", b"\"", b"\n", b".retry", b".breaker", b".bulkhead",
            b".rate_limiter", b".backoff", b"total_timeout", b"attempt_timeout", b"kind",
            b"\"constant\"", b"\"linear\"", b"\"exponential\"", b"\"decorrelated\"", b"initial",
            b"max", b"max_attempts", b"max_elapsed", b"jitter", b"\"full\"", b"budget",
            b"retry_ratio", b"failure_rate_threshold", b"minimum_calls", b"open_duration",
            b"max_concurrent", b"max_queue", b"max_wait", b"rate", b"per", b"burst",
            b"\"0s\"", b"\"1ns\"", b"\"1.5s\"", b"\"25h\"", b"\"1m30s\"", b"18446744073709551615",
            b"-1", b"1e309", b"nan", b"inf", b"true",
        ],
    },
    Target {
        name: "time_window",
        run: time_window,
        seeds: &[&[3, 10, 1, 0, 1, 2, 0, 3, 5, 2, 1, 4, 0, 3], &[]],
        dictionary: &[&[0], &[1], &[2], &[3], &[255]],
    },
    Target {
        name: "count_window",
        run: count_window,
        seeds: &[&[7, 0, 1, 2, 0, 3, 5, 2, 1, 4, 0, 3], &[]],
        dictionary: &[&[0], &[1], &[2], &[3], &[255]],
    },
];

/// The class of a result: 0 for `Ok`, else a hash of the error's message after
/// its last quote (which ends the quoted input), without digits: the reason, not
/// the input or where in it.
fn class<T, E: std::fmt::Display>(result: &Result<T, E>) -> u64 {
    match result {
        Ok(_) => 0,
        Err(e) => {
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            let message = e.to_string();
            let reason = message.rsplit('"').next().unwrap_or_default();
            for b in reason.bytes().filter(|b| !b.is_ascii_digit()) {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            hash | 1
        }
    }
}

/// A bound chosen by the input's first byte, so clamping is fuzzed at many
/// sizes; the rest of the input is the value.
fn split_max(data: &[u8], unit: Duration) -> (Duration, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) => (unit * u32::from(b).pow(2).max(1), rest),
        None => (unit, data),
    }
}

/// `Retry-After`: a result is whole seconds within the bound, and the same value
/// written back in either form (seconds, HTTP date) reads the same.
fn retry_after(data: &[u8]) -> u64 {
    let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
    let (max, value) = split_max(data, Duration::from_secs(60));
    let result = parse_retry_after_at(value, now, max);
    if let Ok(d) = result {
        assert!(d <= max, "{d:?} beyond the bound {max:?}");
        assert_eq!(d.subsec_nanos(), 0, "not whole seconds: {d:?}");
        let secs = d.as_secs().to_string();
        assert_eq!(
            parse_retry_after_at(secs.as_bytes(), now, max),
            Ok(d),
            "seconds written back"
        );
        let date = httpdate::fmt_http_date(now + d);
        assert_eq!(
            parse_retry_after_at(date.as_bytes(), now, max),
            Ok(d),
            "date written back: {date}"
        );
        let padded = [b" \t", value, b"\t "].concat();
        assert_eq!(parse_retry_after_at(&padded, now, max), Ok(d), "padded");
    }
    // A date in the past is no wait at all.
    let past = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1));
    assert_eq!(
        parse_retry_after_at(past.as_bytes(), now, max),
        Ok(Duration::ZERO)
    );
    class(&result)
}

/// A duration from the first 12 bytes: seconds (scaled down so that every range
/// of the header is reached) and nanoseconds.
fn duration_of(data: &[u8]) -> Duration {
    let mut bytes = [0u8; 12];
    let n = data.len().min(12);
    bytes[..n].copy_from_slice(&data[..n]);
    let secs = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
    let nanos = u32::from_le_bytes(bytes[8..].try_into().unwrap_or_default());
    Duration::new(secs >> (secs % 64), nanos % 1_000_000_000)
}

/// `grpc-timeout`: a decoded value is within the bound; an encoded one is at
/// most 8 digits and a unit, decodes to no less than was encoded (encoding
/// rounds up), and encodes again to itself.
fn grpc_timeout(data: &[u8]) -> u64 {
    let (max, value) = split_max(data, Duration::from_secs(1));
    let text = String::from_utf8_lossy(value);
    let result = header::decode_grpc_timeout_with_max(&text, max);
    if let Ok(d) = result {
        assert!(d <= max, "{d:?} beyond the bound {max:?}");
        // Encoding rounds up to its unit; decoding clamps to the bound again.
        let encoded = header::encode_grpc_timeout(d);
        let again = header::decode_grpc_timeout_with_max(&encoded, max)
            .unwrap_or_else(|e| panic!("{encoded} does not decode: {e}"));
        assert!(again >= d, "{encoded} reads {again:?}, less than {d:?}");
    }
    let d = duration_of(value);
    let encoded = header::encode_grpc_timeout(d);
    assert!(
        encoded.len() <= 9
            && encoded[..encoded.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_digit()),
        "{encoded}"
    );
    let decoded = header::decode_grpc_timeout_with_max(&encoded, Duration::MAX)
        .unwrap_or_else(|e| panic!("{encoded} does not decode: {e}"));
    let cap = Duration::from_secs(99_999_999 * 3600);
    assert!(
        decoded >= d.min(cap),
        "{encoded} reads {decoded:?}, less than {d:?}"
    );
    assert_eq!(header::encode_grpc_timeout(decoded), encoded, "re-encoded");
    class(&result)
}

/// The milliseconds header: a decoded value is whole milliseconds within the
/// bound and encodes back to a value that decodes to itself; an encoded value
/// decodes to no less than was encoded, and less than a millisecond more.
fn millis_header(data: &[u8]) -> u64 {
    let (max, value) = split_max(data, Duration::from_millis(1));
    let text = String::from_utf8_lossy(value);
    let result = header::decode_millis_with_max(&text, max);
    if let Ok(d) = result {
        assert!(d <= max, "{d:?} beyond the bound {max:?}");
        if d < max {
            assert_eq!(
                d.subsec_nanos() % 1_000_000,
                0,
                "not whole milliseconds: {d:?}"
            );
            let encoded = header::encode_millis(d);
            assert_eq!(
                header::decode_millis_with_max(&encoded, max),
                Ok(d),
                "{encoded}"
            );
        }
    }
    let d = duration_of(value).min(Duration::from_secs(1 << 40));
    let encoded = header::encode_millis(d);
    let decoded = header::decode_millis_with_max(&encoded, Duration::MAX)
        .unwrap_or_else(|e| panic!("{encoded} does not decode: {e}"));
    assert!(
        decoded >= d && decoded - d < Duration::from_millis(1),
        "{encoded} reads {decoded:?} for {d:?}"
    );
    class(&result)
}

/// `traceparent`: a decoded context encodes to a version-00 header of 55
/// characters that decodes to the same context.
fn traceparent(data: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(data);
    let result = trace::decode_traceparent(&text);
    if let Ok(ctx) = &result {
        let encoded = trace::encode_traceparent(ctx);
        assert_eq!(encoded.len(), 55, "{encoded}");
        assert!(encoded.starts_with("00-"), "{encoded}");
        let again = trace::decode_traceparent(&encoded)
            .unwrap_or_else(|e| panic!("{encoded} does not decode: {e}"));
        assert_eq!(
            (again.trace_id(), again.span_id(), again.flags()),
            (ctx.trace_id(), ctx.span_id(), ctx.flags()),
            "{encoded}"
        );
    }
    class(&result)
}

/// `tracestate`: decoding is idempotent (the kept members decode to themselves),
/// and each kept member's value is found by its key.
fn tracestate(data: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(data);
    let result = trace::decode_tracestate(&text);
    if let Ok(state) = &result {
        let again = trace::decode_tracestate(state.as_str())
            .unwrap_or_else(|e| panic!("{state} does not decode: {e}"));
        assert_eq!(again.as_str(), state.as_str());
        assert_eq!(state.is_empty(), state.as_str().is_empty());
        for member in state.as_str().split(',').filter(|m| !m.is_empty()) {
            let (key, value) = member
                .split_once('=')
                .unwrap_or_else(|| panic!("member without '=': {member:?}"));
            assert!(state.get(key).is_some(), "{key} not found in {state}");
            let _ = value;
        }
    }
    class(&result)
}

/// B3, single and multiple headers: a decoded trace encodes (in both forms) to
/// headers that decode to the same trace; the input also read as `name:value`
/// lines for the multiple-header form.
fn b3(data: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(data);
    let single = trace::decode_b3(&text);
    if let Ok(B3Header::Trace(ctx)) = &single {
        check_b3_round_trip(ctx);
    }
    let headers: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .collect();
    let multi = trace::decode_b3_multi(headers.iter().copied());
    if let Ok(Some(B3Header::Trace(ctx))) = &multi {
        check_b3_round_trip(ctx);
    }
    class(&single) ^ class(&multi).rotate_left(1)
}

fn check_b3_round_trip(ctx: &trace::TraceContext) {
    let ids = (ctx.trace_id(), ctx.span_id(), ctx.flags());
    let encoded = trace::encode_b3(ctx);
    match trace::decode_b3(&encoded) {
        Ok(B3Header::Trace(again)) => assert_eq!(
            (again.trace_id(), again.span_id(), again.flags()),
            ids,
            "{encoded}"
        ),
        other => panic!("{encoded} decodes to {other:?}"),
    }
    let multi = trace::encode_b3_multi(ctx);
    match trace::decode_b3_multi(multi.iter().map(|(n, v)| (*n, v.as_str()))) {
        Ok(Some(B3Header::Trace(again))) => assert_eq!(
            (again.trace_id(), again.span_id(), again.flags()),
            ids,
            "{multi:?}"
        ),
        other => panic!("{multi:?} decodes to {other:?}"),
    }
}

/// The TOML configuration: reading never panics, and what validates builds: a
/// configuration that [`RegistryConfig::validate`] accepts makes a registry, and
/// one it refuses is refused by the registry with the same field.
fn toml_config(data: &[u8]) -> u64 {
    let Ok(text) = std::str::from_utf8(data) else {
        return 1;
    };
    let config = RegistryConfig::from_toml(text);
    let Ok(config) = config else {
        return class(&config);
    };
    let validated = config.validate();
    let built = Registry::new(config.clone());
    match (&validated, &built) {
        (Ok(()), Ok(registry)) => {
            assert_eq!(
                registry.config(),
                config,
                "the registry keeps its configuration"
            );
        }
        (Err(v), Err(b)) => assert_eq!(v.field(), b.field(), "{v} / {b}"),
        (Ok(()), Err(e)) => panic!("validated, but the registry refused it: {e}"),
        (Err(e), Ok(_)) => panic!("refused by validate ({e}), but the registry was built"),
    }
    class(&validated).rotate_left(2) | 2
}

fn time_window(data: &[u8]) -> u64 {
    let mut decoder = model::Decoder::new(data);
    let Some(config) = decoder.time_config() else {
        return 1;
    };
    let ops = decoder.ops();
    if let Err(e) = model::check_time(config.clone(), &ops) {
        panic!("{e}\nconfig: {config:?}");
    }
    // The class: how many operations, in powers of two.
    u64::from(usize::BITS - ops.len().leading_zeros())
}

fn count_window(data: &[u8]) -> u64 {
    let mut decoder = model::Decoder::new(data);
    let Some(config) = decoder.count_config() else {
        return 1;
    };
    let ops = decoder.ops();
    if let Err(e) = model::check_count(config.clone(), &ops) {
        panic!("{e}\nconfig: {config:?}");
    }
    u64::from(usize::BITS - ops.len().leading_zeros())
}
