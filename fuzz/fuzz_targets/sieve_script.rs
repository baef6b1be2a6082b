//! Sieve: any bytes as a script (up to the first NUL) either fail to
//! parse with an error, or run on the rest as a message within every
//! bound, keeping the message when the run fails.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/upstream.rs"]
mod upstream;

fuzz_target!(|data: &[u8]| {
    upstream::let_the_known_upstream_assertion_unwind();
    stratus_sieve::fuzz::exercise(data);
});
