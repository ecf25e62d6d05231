#![no_main]
// A DHCP request: parse and classify must never panic, whatever the bytes.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok((m, mac, _)) = oa_pxe::dhcp::parse(data) {
        let _ = oa_pxe::dhcp::classify(&m, mac);
    }
});
