#![no_main]
// Any TFTP packet (requests with options, ACK, DATA, ERROR).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = oa_pxe::tftp::parse(data);
});
