//! Every request body goes through `api::json::parse` first; it must
//! answer Ok or Err for any text, never panic or overflow the stack.

#![no_main]

use edgecron::api::json::{self, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(value) = json::parse(text) {
        let _ = value.kind();
        if let Value::Str(s) = &value {
            // A parsed string quotes back into a document that parses to it.
            assert_eq!(json::parse(&json::quote(s)), Ok(value.clone()));
        }
    }
});
