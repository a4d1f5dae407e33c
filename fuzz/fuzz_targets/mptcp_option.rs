//! One MPTCP option from arbitrary bytes: parse never panics, and whatever parses round-trips:
//! `parse(emit(x)) == x`, emit is deterministic and writes exactly `buffer_len()` bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mptcp_stack::wire::MptcpRepr;

fuzz_target!(|data: &[u8]| {
    let Ok(repr) = MptcpRepr::parse_bytes(data) else {
        return;
    };
    let len = repr.buffer_len();
    assert!(len <= 40, "buffer_len {len} over 40 for {repr:?}");

    let mut buf = [0u8; 40];
    let n = repr.emit(&mut buf).expect("emit of a parsed option failed");
    assert_eq!(
        n, len,
        "emit wrote {n} bytes, buffer_len says {len}: {repr:?}"
    );
    assert_eq!(buf[0], 30, "emitted kind is not 30");
    assert_eq!(
        buf[1] as usize, n,
        "emitted length field disagrees with bytes written"
    );

    let reparsed = MptcpRepr::parse_bytes(&buf[..n]).expect("emitted option does not parse");
    assert_eq!(
        reparsed,
        repr,
        "parse(emit(x)) != x; emitted {:02x?}",
        &buf[..n]
    );

    let mut again = [0u8; 40];
    let m = reparsed.emit(&mut again).expect("second emit failed");
    assert_eq!(&again[..m], &buf[..n], "emit(parse(emit(x))) != emit(x)");
});
