//! The task body decoder behind `POST /tasks` and `PUT`/`PATCH
//! /tasks/{id}`: any bytes must give a patch or an error message.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(message) = edgecron::api::routes::decode_task(data) {
        assert!(!message.is_empty());
    }
});
