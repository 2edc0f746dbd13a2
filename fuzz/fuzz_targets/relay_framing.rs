//! Message framing on both relay directions, fed in irregular pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tenantpool::protocol::fuzzing::relay_framing(data));
