//! The header/prefix parser on arbitrary bytes: never panics, bounded reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    if let Ok(header) = coffer::crypt15::read_header(&mut input) {
        assert_eq!(header.raw.len() + input.len(), data.len());
        assert_eq!(header.iv.len(), 16);
    }
    for field in coffer::internal::protobuf::fields(data) {
        let _ = field;
    }
});
