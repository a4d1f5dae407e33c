//! A whole IPv4/IPv6 packet from arbitrary bytes: parse never panics, and a TCP segment whose
//! options fit in 40 bytes survives emit + parse (addresses, hop limit, ports, sequence numbers,
//! flags, window, urgent pointer, payload and options except the `skipped` counter).
//!
//! Under `cfg(fuzzing)` smoltcp's checksum verifications (IPv4 header and TCP) always pass, so
//! the fuzzer is not stopped by checksums.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mptcp_stack::wire::{Error, IpSegment};

fuzz_target!(|data: &[u8]| {
    let Ok(seg) = IpSegment::parse(data) else {
        return;
    };
    if seg.tcp.options.buffer_len() > 40 {
        return;
    }

    let mut buf = vec![0u8; seg.buffer_len()];
    let n = match seg.emit(&mut buf) {
        Ok(n) => n,
        // Options can grow with padding; a jumbo-sized input could then exceed the IP length.
        Err(Error::PacketTooLong(_)) => return,
        Err(e) => panic!("emit of a parsed segment failed: {e:?}"),
    };
    assert_eq!(
        n,
        buf.len(),
        "emit wrote {n} bytes, buffer_len says {}",
        buf.len()
    );

    let re = IpSegment::parse(&buf).expect("emitted packet does not parse");
    assert_eq!(re.src, seg.src);
    assert_eq!(re.dst, seg.dst);
    assert_eq!(re.hop_limit, seg.hop_limit);
    assert_eq!(re.tcp.src_port, seg.tcp.src_port);
    assert_eq!(re.tcp.dst_port, seg.tcp.dst_port);
    assert_eq!(re.tcp.seq, seg.tcp.seq);
    assert_eq!(re.tcp.ack, seg.tcp.ack);
    assert_eq!(re.tcp.flags, seg.tcp.flags);
    assert_eq!(re.tcp.window, seg.tcp.window);
    assert_eq!(re.tcp.urgent, seg.tcp.urgent);
    assert_eq!(re.tcp.payload, seg.tcp.payload);
    assert_eq!(re.tcp.options.skipped, 0, "re-parse skipped options");
    let (mut a, mut b) = (re.tcp.options, seg.tcp.options);
    a.skipped = 0;
    b.skipped = 0;
    assert_eq!(a, b, "options differ after emit + parse");
});
