//! The time-based window against the naive model, on operations decoded from the
//! fuzzer's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/model/mod.rs"]
mod model;

fuzz_target!(|data: &[u8]| {
    let mut decoder = model::Decoder::new(data);
    let Some(config) = decoder.time_config() else {
        return;
    };
    let ops = decoder.ops();
    if let Err(e) = model::check_time(config.clone(), &ops) {
        panic!("{e}\nconfig: {config:?}");
    }
});
