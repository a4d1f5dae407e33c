//! A TCP option block (at most 40 bytes) from arbitrary bytes: the lenient parser never panics,
//! and a block that fits in 40 bytes round-trips: everything but the `skipped` counter survives
//! emit + parse, and the re-parse skips nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mptcp_stack::wire::TcpOptions;

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(40)];
    let mut opts = TcpOptions::parse(data);
    let len = opts.buffer_len();
    if len > 40 {
        assert!(
            opts.emit(&mut [0u8; 64]).is_err(),
            "emit of {len} bytes of options succeeded"
        );
        return;
    }

    let mut buf = [0u8; 40];
    let n = opts
        .emit(&mut buf)
        .expect("emit of options that fit failed");
    assert_eq!(n, len, "emit wrote {n} bytes, buffer_len says {len}");
    assert_eq!(n % 4, 0, "option block of {n} bytes is not 4-byte aligned");

    let mut reparsed = TcpOptions::parse(&buf[..n]);
    assert_eq!(
        reparsed.skipped,
        0,
        "re-parse skipped options in {:02x?}",
        &buf[..n]
    );
    opts.skipped = 0;
    reparsed.skipped = 0;
    assert_eq!(
        reparsed,
        opts,
        "parse(emit(x)) != x; emitted {:02x?}",
        &buf[..n]
    );
});
