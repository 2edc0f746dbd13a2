//! The first packet of a connection: length prefix, code, parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tenantpool::protocol::fuzzing::startup_packet(data));
