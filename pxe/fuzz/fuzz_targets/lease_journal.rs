//! The leases journal loader on arbitrary bytes: never panics; what it accepts is consistent
//! (one MAC per address, no released records kept, the good length within the input).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = oa_pxe::dhcp::journal::parse(data) {
        assert!(r.good_len <= data.len());
        let mut ips = std::collections::HashSet::new();
        for l in r.table.by_mac.values() {
            assert!(l.expires != 0);
            assert!(ips.insert(l.ip), "two MACs hold {}", l.ip);
        }
        // The good prefix alone replays to the same table.
        if r.torn.is_some() {
            let again = oa_pxe::dhcp::journal::parse(&data[..r.good_len]).expect("the good prefix parses");
            assert_eq!(again.table.len(), r.table.len());
        }
    }
});
