//! Property tests of the deadline header codecs: untrusted input never panics,
//! and what is written reads back as at least the time that was left.

use std::time::Duration;

use palisade_context::header::{
    MAX_HEADER_TIMEOUT, decode_grpc_timeout, decode_grpc_timeout_bytes_with_max,
    decode_grpc_timeout_with_max, decode_millis, decode_millis_bytes_with_max,
    decode_millis_with_max, encode_grpc_timeout, encode_millis,
};
use proptest::prelude::*;

proptest! {
    #[test]
    fn no_input_makes_a_decoder_panic(value in any::<String>(), max in any::<u64>()) {
        let max = Duration::from_nanos(max);
        let decoded = [
            decode_grpc_timeout(&value),
            decode_millis(&value),
            decode_grpc_timeout_with_max(&value, max),
            decode_millis_with_max(&value, max),
        ];
        for d in decoded.into_iter().flatten() {
            prop_assert!(d <= max.max(MAX_HEADER_TIMEOUT));
        }
    }

    #[test]
    fn near_valid_input_never_panics(digits in "[0-9 +-]{0,24}", unit in "[HMSmun xµ]?") {
        let value = format!("{digits}{unit}");
        let _ = decode_grpc_timeout(&value);
        let _ = decode_millis(&value);
    }

    #[test]
    fn a_written_grpc_timeout_reads_back_at_least_as_long(nanos in 0u64..=3_600_000_000_000) {
        let left = Duration::from_nanos(nanos);
        let read = decode_grpc_timeout(&encode_grpc_timeout(left)).unwrap();
        prop_assert!(read >= left, "{left:?} read back as {read:?}");
        // Rounded up by at most one unit of the encoding, the finest whose value
        // fits in 8 digits: a coarser unit is only taken for a value of at least
        // 10^5 of it, so the error is at most a part in 10^5.
        prop_assert!(read - left <= left / 100_000 + Duration::from_nanos(1));
    }

    #[test]
    fn a_written_millis_value_reads_back_rounded_up_to_the_millisecond(
        nanos in 0u64..=3_600_000_000_000,
    ) {
        let left = Duration::from_nanos(nanos);
        let read = decode_millis(&encode_millis(left)).unwrap();
        prop_assert!(read >= left);
        prop_assert!(read - left < Duration::from_millis(1));
    }
}

proptest! {
    /// The byte decoders never panic, and on the text a header value can hold
    /// (visible ASCII, spaces and tabs) they decide as the text decoders do.
    #[test]
    fn byte_decoders_never_panic_and_agree_with_text(
        value in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            "[ \t]{0,2}[0-9]{0,24}[HMSmun]?[ \t]{0,2}".prop_map(String::into_bytes),
            "[ -~\t]{0,30}".prop_map(String::into_bytes),
        ],
        max in any::<u64>(),
    ) {
        let max = Duration::from_nanos(max);
        let grpc = decode_grpc_timeout_bytes_with_max(&value, max);
        let millis = decode_millis_bytes_with_max(&value, max);
        if value.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)) {
            let text = std::str::from_utf8(&value).unwrap();
            prop_assert_eq!(grpc.ok(), decode_grpc_timeout_with_max(text, max).ok());
            prop_assert_eq!(millis.ok(), decode_millis_with_max(text, max).ok());
        }
    }
}
