//! The duration grammar: what it reads, what it refuses, and that nothing panics.

use std::time::Duration;

use palisade_clock::duration::{self, MAX, parse};
use proptest::prelude::*;

fn ok(text: &str) -> Duration {
    parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

#[test]
fn every_unit_and_spelling() {
    assert_eq!(ok("7ns"), Duration::from_nanos(7));
    assert_eq!(ok("3us"), Duration::from_micros(3));
    assert_eq!(ok("3µs"), Duration::from_micros(3));
    assert_eq!(ok("250ms"), Duration::from_millis(250));
    assert_eq!(ok("5s"), Duration::from_secs(5));
    assert_eq!(ok("2m"), Duration::from_secs(120));
    assert_eq!(ok("2min"), Duration::from_secs(120));
    assert_eq!(ok("1h"), Duration::from_secs(3600));
    assert_eq!(ok("0s"), Duration::ZERO);
}

#[test]
fn fractions_compounds_and_whitespace() {
    assert_eq!(ok("1.5s"), Duration::from_millis(1500));
    assert_eq!(ok("0.25s"), Duration::from_millis(250));
    assert_eq!(ok(".5s"), Duration::from_millis(500));
    assert_eq!(ok("5.s"), Duration::from_secs(5));
    assert_eq!(ok("1.5h"), Duration::from_secs(5400));
    assert_eq!(ok("0.1m"), Duration::from_secs(6));
    assert_eq!(ok("1m30s"), Duration::from_secs(90));
    assert_eq!(ok("1h2m3.5s"), Duration::from_millis(3_723_500));
    assert_eq!(ok("1h 30min"), Duration::from_secs(5400));
    assert_eq!(ok("1s500ms"), Duration::from_millis(1500));
    assert_eq!(ok("1h1m1s1ms1us1ns"), Duration::new(3661, 1_001_001));
    assert_eq!(ok(" 2 s "), Duration::from_secs(2));
    assert_eq!(ok("\t10 µs\n"), Duration::from_micros(10));
    assert_eq!(ok("1 m 30 s"), Duration::from_secs(90));
    assert_eq!(ok("0005s"), Duration::from_secs(5));
}

#[test]
fn sub_nanosecond_fractions_round_halves_up() {
    assert_eq!(ok("0.4ns"), Duration::ZERO);
    assert_eq!(ok("0.5ns"), Duration::from_nanos(1));
    assert_eq!(ok("1.5ns"), Duration::from_nanos(2));
    assert_eq!(ok("1.0000000004s"), Duration::from_secs(1));
    assert_eq!(ok("1.0000000005s"), Duration::from_nanos(1_000_000_001));
    assert_eq!(ok("0.0000000000001h"), Duration::ZERO); // 0.36 ns
    assert_eq!(ok("0.00000000000015h"), Duration::from_nanos(1)); // 0.54 ns
    // Every digit counts, however many there are.
    let long = format!("0.{}5ns", "4".repeat(500));
    assert_eq!(ok(&long), Duration::ZERO);
    let long = format!("0.4{}s", "9".repeat(500));
    assert_eq!(ok(&long), Duration::from_millis(500));
}

#[test]
fn the_longest_duration() {
    assert_eq!(ok("18446744073709551615ns"), MAX);
    assert_eq!(ok(&duration::format(MAX)), MAX);
    assert!(parse("18446744073709551616ns").unwrap_err().is_overflow());
    assert!(parse("5124095h34m33.709551616s").unwrap_err().is_overflow());
    assert_eq!(ok("5124095h34m33.709551615s"), MAX);
    assert!(parse("99999999999999999999h").unwrap_err().is_overflow());
    assert!(parse("18446744073709551615h").unwrap_err().is_overflow());
    assert!(
        parse(&format!("{}s", "9".repeat(400)))
            .unwrap_err()
            .is_overflow()
    );
}

#[test]
fn refusals_say_what_is_wrong() {
    let cases = [
        ("", "empty"),
        ("   ", "empty"),
        ("-1s", "negative"),
        ("1m -30s", "negative"),
        ("5", "a number without a unit"),
        ("1h30", "a number without a unit"),
        ("ms", "unexpected \"m\""),
        ("s", "unexpected \"s\""),
        (".s", "unexpected \".\""),
        ("+1s", "unexpected \"+\""),
        ("1.2.3s", "unexpected \".\""),
        ("1e3s", "unknown unit \"e\""),
        ("nan s", "unexpected \"n\""),
        ("inf", "unexpected \"i\""),
        ("1d", "unknown unit \"d\""),
        ("5 sec", "unknown unit \"sec\""),
        ("1S", "unknown unit \"S\""),
        ("10 parsecs", "unknown unit \"parsecs\""),
        ("1μs", "unknown unit \"μs\""), // a Greek mu, not the micro sign
        ("30s1m", "unit \"m\" after a unit no larger than it"),
        ("1s1s", "unit \"s\" after"),
        ("1m1min", "unit \"min\" after"),
        ("1s,5ms", "unexpected \",\""),
    ];
    for (text, what) in cases {
        let e = parse(text).expect_err(text);
        assert_eq!(e.input(), text);
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("invalid duration {text:?}: {what}")),
            "{text:?}: {shown}"
        );
        assert!(
            shown.ends_with(r#"as in "250ms", "1.5s" or "1m30s""#),
            "{text:?}: {shown}"
        );
    }
    assert!(parse("-1s").unwrap_err().is_negative());
    assert!(parse("5").unwrap_err().is_missing_unit());
    assert!(parse("5 sec").unwrap_err().is_unknown_unit());
    assert!(!parse("5 sec").unwrap_err().is_overflow());
}

#[test]
fn format_writes_the_largest_exact_unit() {
    for (d, text) in [
        (Duration::ZERO, "0s"),
        (Duration::from_secs(120), "120s"),
        (Duration::from_secs(86_400), "86400s"),
        (Duration::from_millis(1500), "1500ms"),
        (Duration::from_micros(1500), "1500us"),
        (Duration::from_nanos(7), "7ns"),
        (Duration::new(1, 1), "1000000001ns"),
    ] {
        assert_eq!(duration::format(d), text);
        assert_eq!(ok(text), d);
    }
}

/// One component as text and its exact value, in nanoseconds, rounded halves up.
fn component() -> impl Strategy<Value = (usize, String, u128)> {
    let units: [(&str, u128); 8] = [
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("min", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    let rank = [0, 1, 1, 2, 3, 4, 4, 5];
    (
        0..units.len(),
        0u64..100_000,
        proptest::option::of("[0-9]{0,15}"),
        " {0,2}",
    )
        .prop_map(move |(i, whole, fraction, space)| {
            let (unit, size) = units[i];
            let (text, value) = match fraction {
                None => (format!("{whole}{space}{unit}"), u128::from(whole) * size),
                Some(f) => {
                    let den = 10u128.pow(f.len() as u32);
                    let f_value: u128 = if f.is_empty() { 0 } else { f.parse().unwrap() };
                    let num = (u128::from(whole) * den + f_value) * size;
                    (format!("{whole}.{f}{space}{unit}"), (num + den / 2) / den)
                }
            };
            (rank[i], text, value)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn near_misses_never_panic(text in "[0-9 .µμsmnuhi+\\-eS]{0,40}") {
        if let Ok(d) = parse(&text) {
            prop_assert!(d <= MAX);
        }
    }

    #[test]
    fn format_then_parse_is_the_same_duration(nanos in any::<u64>()) {
        let d = Duration::from_nanos(nanos);
        prop_assert_eq!(parse(&duration::format(d)), Ok(d));
    }

    #[test]
    fn whole_units_round_trip(n in 0u64..1_000_000, unit in 0usize..4) {
        let d = [Duration::from_nanos(n), Duration::from_micros(n), Duration::from_millis(n), Duration::from_secs(n)][unit];
        prop_assert_eq!(parse(&duration::format(d)), Ok(d));
    }

    #[test]
    fn compound_forms_add_their_components(parts in proptest::collection::vec(component(), 1..6), gap in " {0,2}") {
        // Keep the components in decreasing order of unit, each unit once.
        let mut parts = parts;
        parts.sort_by_key(|p| std::cmp::Reverse(p.0));
        parts.dedup_by_key(|p| p.0);
        let text: Vec<&str> = parts.iter().map(|p| p.1.as_str()).collect();
        let text = text.join(&gap);
        let want: u128 = parts.iter().map(|p| p.2).sum();
        let got = parse(&text);
        if want <= u128::from(u64::MAX) {
            prop_assert_eq!(got, Ok(Duration::from_nanos(want as u64)), "{}", text);
        } else {
            prop_assert!(got.unwrap_err().is_overflow());
        }
    }
}

#[cfg(feature = "serde")]
mod serde_modules {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(with = "duration::serde")]
        every: Duration,
        #[serde(with = "duration::serde_opt", default)]
        maybe: Option<Duration>,
    }

    fn toml_every(value: &str) -> Result<Duration, String> {
        toml::from_str::<Config>(&format!("every = {value}"))
            .map(|c| c.every)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn text_integers_and_tables() {
        assert_eq!(toml_every("\"1.5s\""), Ok(Duration::from_millis(1500)));
        assert_eq!(toml_every("\"2min\""), Ok(Duration::from_secs(120)));
        assert_eq!(toml_every("\"1m30s\""), Ok(Duration::from_secs(90)));
        assert_eq!(toml_every("250"), Ok(Duration::from_millis(250)));
        assert_eq!(toml_every("0"), Ok(Duration::ZERO));
        assert_eq!(
            toml_every("{ secs = 2, nanos = 5 }"),
            Ok(Duration::new(2, 5))
        );
        let c: Config = serde_json::from_str(r#"{"every": 250, "maybe": "1m30s"}"#).unwrap();
        assert_eq!(c.every, Duration::from_millis(250));
        assert_eq!(c.maybe, Some(Duration::from_secs(90)));
        let c: Config =
            serde_json::from_str(r#"{"every": {"secs": 1, "nanos": 0}, "maybe": null}"#).unwrap();
        assert_eq!(
            c,
            Config {
                every: Duration::from_secs(1),
                maybe: None
            }
        );
        let c: Config = serde_json::from_str(r#"{"every": "1s", "maybe": 7}"#).unwrap();
        assert_eq!(c.maybe, Some(Duration::from_millis(7)));
    }

    #[test]
    fn refusals_name_the_value() {
        let e = toml_every("-5").unwrap_err();
        assert!(e.contains("invalid duration -5: negative"), "{e}");
        let e = toml_every("1.5").unwrap_err();
        assert!(e.contains("invalid duration 1.5: a number without a unit is milliseconds and must be an integer"), "{e}");
        assert!(
            e.contains("expected an integer of milliseconds, or text"),
            "{e}"
        );
        let e = toml_every("\"5 sec\"").unwrap_err();
        assert!(
            e.contains("invalid duration \"5 sec\": unknown unit \"sec\""),
            "{e}"
        );
        let e = toml_every("true").unwrap_err();
        assert!(e.contains("an integer of milliseconds"), "{e}");
        let e = toml_every("{ secs = 2, nanos = 1000000000 }").unwrap_err();
        assert!(e.contains("`nanos` must be below 1000000000"), "{e}");
        let e = toml_every("{ secs = 2 }").unwrap_err();
        assert!(e.contains("nanos"), "{e}");
        let e = toml_every("{ secs = 2, nanos = 0, extra = 1 }").unwrap_err();
        assert!(e.contains("extra"), "{e}");
        let e = toml_every("{ secs = 18446744073, nanos = 709551616 }").unwrap_err();
        assert!(e.contains("longer than"), "{e}");
        toml_every("{ secs = 18446744073, nanos = 709551615 }").unwrap();
        let e = serde_json::from_str::<Config>(r#"{"every": 18446744073710}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("invalid duration 18446744073710: longer than"),
            "{e}"
        );
        serde_json::from_str::<Config>(r#"{"every": 18446744073709}"#).unwrap();
    }

    #[test]
    fn writes_format_text() {
        let c = Config {
            every: Duration::from_millis(1500),
            maybe: Some(Duration::from_secs(90)),
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"every":"1500ms","maybe":"90s"}"#
        );
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), c);
        let c = Config {
            every: Duration::ZERO,
            maybe: None,
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"every":"0s","maybe":null}"#
        );
        let text = toml::to_string(&c).unwrap();
        assert_eq!(text.trim(), "every = \"0s\"");
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), c);
    }

    proptest! {
        #[test]
        fn serde_round_trips(nanos in any::<u64>(), some in any::<bool>()) {
            let d = Duration::from_nanos(nanos);
            let c = Config { every: d, maybe: some.then_some(d) };
            let json = serde_json::to_string(&c).unwrap();
            prop_assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), c);
        }
    }
}
