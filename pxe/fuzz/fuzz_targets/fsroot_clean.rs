#![no_main]
// Request paths: a cleaned path never climbs out (no `..`, never absolute).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(p) = oa_pxe::fsroot::Root::clean(s) {
            assert!(p.components().all(|c| matches!(c, std::path::Component::Normal(_))));
        }
    }
});
