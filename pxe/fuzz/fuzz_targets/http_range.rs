#![no_main]
// Range headers against file sizes: the result must lie inside the file.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap());
    if let Ok(h) = std::str::from_utf8(&data[8..]) {
        if let oa_pxe::http::Range::Part(a, b) = oa_pxe::http::parse_range(Some(h), size) {
            assert!(a <= b && b < size);
        }
    }
});
