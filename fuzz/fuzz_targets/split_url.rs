//! Request targets as tiny_http hands them over, split into a path and
//! percent-decoded query pairs.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = edgecron::api::split_url(url);
    // Decoding never makes text longer.
    assert!(path.len() <= url.len());
    for (key, value) in &query {
        assert!(key.len() + value.len() <= url.len());
    }
});
