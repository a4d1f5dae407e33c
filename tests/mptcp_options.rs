//! MPTCP option codec: every subtype, both directions.
//!
//! - Byte layouts as the Linux kernel writes them (`shared/WIRE.md`) parse to the expected
//!   representation and are emitted back byte for byte.
//! - `parse(emit(x)) == x` for every representation (property tests).
//! - Any byte string parses to a value or a typed error, never a panic; whatever parses is
//!   emitted with the length it was read with and parses again to the same value.
//! - Every wrong length of every subtype is rejected with that subtype's own error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mptcp_stack::seq::{Dsn, Ssn};
use mptcp_stack::wire::mptcp::field;
use mptcp_stack::wire::{
    AddAddrRepr, AddrIdList, CapableFlags, CapableKeys, CapableRepr, DsnField, DssMapping, DssRepr,
    Error, JoinRepr, MptcpRepr, OpaqueOption, Subtype, TcpRstReason, TcpRstRepr,
};
use proptest::prelude::*;

fn emit(repr: &MptcpRepr) -> Vec<u8> {
    let mut buf = [0u8; 40];
    let n = repr.emit(&mut buf).expect("emit");
    assert_eq!(n, repr.buffer_len());
    assert_eq!(buf[1] as usize, n, "length byte");
    buf[..n].to_vec()
}

/// Bytes as Linux writes them, the representation they mean, and back again.
fn assert_canonical(bytes: &[u8], expected: MptcpRepr) {
    let parsed = MptcpRepr::parse_bytes(bytes).expect("canonical bytes parse");
    assert_eq!(parsed, expected);
    assert_eq!(emit(&parsed), bytes, "re-emitted bytes differ");
}

const KEY_A: u64 = 3421148325360939111;
const KEY_B: u64 = 5635572232819622505;

fn be(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

#[test]
fn mp_capable_syn_v1_is_four_bytes_with_the_hmac_flag() {
    assert_canonical(
        &[30, 4, 0x01, 0x01],
        MptcpRepr::Capable(CapableRepr {
            version: 1,
            flags: CapableFlags(CapableFlags::HMAC_SHA256),
            keys: CapableKeys::None,
        }),
    );
    // With checksums required (A) and no join to the initial address (C).
    let parsed = MptcpRepr::parse_bytes(&[30, 4, 0x01, 0xa1]).unwrap();
    let MptcpRepr::Capable(c) = parsed else {
        panic!("{parsed:?}")
    };
    assert!(c.flags.checksum() && c.flags.no_join_to_initial() && c.flags.hmac_sha256());
    assert!(!c.flags.extensibility());
    assert_eq!(c.flags, CapableFlags::v1(true, true));
}

#[test]
fn mp_capable_synack_ack_and_data_carry_keys_length_and_checksum() {
    let mut synack = vec![30, 12, 0x01, 0x01];
    synack.extend_from_slice(&be(KEY_B));
    assert_canonical(
        &synack,
        MptcpRepr::Capable(CapableRepr {
            version: 1,
            flags: CapableFlags(0x01),
            keys: CapableKeys::Sender { sender_key: KEY_B },
        }),
    );

    let mut ack = vec![30, 20, 0x01, 0x01];
    ack.extend_from_slice(&be(KEY_A));
    ack.extend_from_slice(&be(KEY_B));
    assert_canonical(
        &ack,
        MptcpRepr::Capable(CapableRepr {
            version: 1,
            flags: CapableFlags(0x01),
            keys: CapableKeys::Both {
                sender_key: KEY_A,
                receiver_key: KEY_B,
            },
        }),
    );

    let mut data = ack.clone();
    data[1] = 22;
    data.extend_from_slice(&1000u16.to_be_bytes());
    assert_canonical(
        &data,
        MptcpRepr::Capable(CapableRepr {
            version: 1,
            flags: CapableFlags(0x01),
            keys: CapableKeys::WithData {
                sender_key: KEY_A,
                receiver_key: KEY_B,
                data_len: 1000,
                checksum: None,
            },
        }),
    );

    let mut data_csum = data.clone();
    data_csum[1] = 24;
    data_csum[3] = 0x81;
    data_csum.extend_from_slice(&0xbeefu16.to_be_bytes());
    assert_canonical(
        &data_csum,
        MptcpRepr::Capable(CapableRepr {
            version: 1,
            flags: CapableFlags(0x81),
            keys: CapableKeys::WithData {
                sender_key: KEY_A,
                receiver_key: KEY_B,
                data_len: 1000,
                checksum: Some(0xbeef),
            },
        }),
    );
}

#[test]
fn mp_join_syn_synack_and_ack() {
    let mut syn = vec![30, 12, 0x11, 2];
    syn.extend_from_slice(&3930164145u32.to_be_bytes());
    syn.extend_from_slice(&3707908260u32.to_be_bytes());
    assert_canonical(
        &syn,
        MptcpRepr::Join(JoinRepr::Syn {
            backup: true,
            addr_id: 2,
            token: 3930164145,
            nonce: 3707908260,
        }),
    );

    let mut synack = vec![30, 16, 0x10, 0];
    synack.extend_from_slice(&be(1539013516496958394));
    synack.extend_from_slice(&2797959415u32.to_be_bytes());
    assert_canonical(
        &synack,
        MptcpRepr::Join(JoinRepr::SynAck {
            backup: false,
            addr_id: 0,
            hmac: 1539013516496958394,
            nonce: 2797959415,
        }),
    );

    let hmac: [u8; 20] = core::array::from_fn(|i| i as u8 + 1);
    let mut ack = vec![30, 24, 0x10, 0];
    ack.extend_from_slice(&hmac);
    assert_canonical(&ack, MptcpRepr::Join(JoinRepr::Ack { hmac }));
}

#[test]
fn dss_as_linux_sends_it_4_byte_ack_8_byte_dsn() {
    // Flags 0x0d: A (ack present), M (mapping), m (8-byte DSN). Length 4+4+8+4+2 = 22; Linux
    // pads it with two NOPs in the TCP header.
    let mut b = vec![30, 22, 0x20, 0x0d];
    b.extend_from_slice(&0x1122_3344u32.to_be_bytes());
    b.extend_from_slice(&be(0x0102_0304_0506_0708));
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(&1428u16.to_be_bytes());
    assert_canonical(
        &b,
        MptcpRepr::Dss(DssRepr {
            data_ack: Some(DsnField::Short(0x1122_3344)),
            mapping: Some(DssMapping {
                dsn: DsnField::Long(0x0102_0304_0506_0708),
                ssn: Ssn(1),
                data_len: 1428,
                checksum: None,
            }),
            data_fin: false,
        }),
    );
    // The same with a checksum: two bytes more, told apart by the length alone.
    let mut c = b.clone();
    c[1] = 24;
    c.extend_from_slice(&0x1234u16.to_be_bytes());
    let MptcpRepr::Dss(d) = MptcpRepr::parse_bytes(&c).unwrap() else {
        panic!()
    };
    assert_eq!(d.mapping.unwrap().checksum, Some(0x1234));
    assert_eq!(emit(&MptcpRepr::Dss(d)), c);
}

#[test]
fn dss_ack_only_data_fin_and_64_bit_ack() {
    // A pure DATA_ACK, 8 bytes.
    let mut b = vec![30, 12, 0x20, 0x03];
    b.extend_from_slice(&be(u64::MAX - 7));
    assert_canonical(
        &b,
        MptcpRepr::Dss(DssRepr {
            data_ack: Some(DsnField::Long(u64::MAX - 7)),
            mapping: None,
            data_fin: false,
        }),
    );
    // DATA_FIN with no data: subflow sequence 0, length 1, 4-byte DSN.
    let mut f = vec![30, 18, 0x20, 0x15];
    f.extend_from_slice(&7u32.to_be_bytes());
    f.extend_from_slice(&0x8000_0000u32.to_be_bytes());
    f.extend_from_slice(&0u32.to_be_bytes());
    f.extend_from_slice(&1u16.to_be_bytes());
    assert_canonical(
        &f,
        MptcpRepr::Dss(DssRepr {
            data_ack: Some(DsnField::Short(7)),
            mapping: Some(DssMapping {
                dsn: DsnField::Short(0x8000_0000),
                ssn: Ssn(0),
                data_len: 1,
                checksum: None,
            }),
            data_fin: true,
        }),
    );
    // The smallest DSS: flags only.
    assert_canonical(&[30, 4, 0x20, 0x00], MptcpRepr::Dss(DssRepr::default()));
}

#[test]
fn dss_32_bit_fields_expand_against_a_reference() {
    let field = DsnField::Short(5);
    assert_eq!(field.expand(Dsn(0x1_ffff_fff0)), Dsn(0x2_0000_0005));
    assert_eq!(DsnField::Long(9).expand(Dsn(1 << 40)), Dsn(9));
}

#[test]
fn add_addr_ipv4_and_ipv6_with_and_without_port_and_the_echo() {
    let v4 = Ipv4Addr::new(198, 18, 2, 2);
    let hmac = 41622275684094792u64;
    let mut b = vec![30, 16, 0x30, 1, 198, 18, 2, 2];
    b.extend_from_slice(&be(hmac));
    assert_canonical(
        &b,
        MptcpRepr::AddAddr(AddAddrRepr {
            addr_id: 1,
            addr: IpAddr::V4(v4),
            port: None,
            hmac: Some(hmac),
        }),
    );
    let mut p = vec![30, 18, 0x30, 1, 198, 18, 2, 2, 0x1f, 0x90];
    p.extend_from_slice(&be(hmac));
    assert_canonical(
        &p,
        MptcpRepr::AddAddr(AddAddrRepr {
            addr_id: 1,
            addr: IpAddr::V4(v4),
            port: Some(8080),
            hmac: Some(hmac),
        }),
    );
    let echo = [30, 8, 0x31, 1, 198, 18, 2, 2];
    let parsed = MptcpRepr::parse_bytes(&echo).unwrap();
    let MptcpRepr::AddAddr(a) = parsed else {
        panic!()
    };
    assert!(a.is_echo());
    assert_eq!(emit(&parsed), echo);
    let echo_port = [30, 10, 0x31, 1, 198, 18, 2, 2, 0, 80];
    assert_eq!(
        emit(&MptcpRepr::parse_bytes(&echo_port).unwrap()),
        echo_port
    );

    let v6: Ipv6Addr = "2001:db8:2::2".parse().unwrap();
    for (len, echo, port) in [
        (28, false, None),
        (30, false, Some(443)),
        (20, true, None),
        (22, true, Some(1)),
    ] {
        let repr = MptcpRepr::AddAddr(AddAddrRepr {
            addr_id: 9,
            addr: IpAddr::V6(v6),
            port,
            hmac: (!echo).then_some(hmac),
        });
        let bytes = emit(&repr);
        assert_eq!(bytes.len(), len);
        assert_eq!(bytes[2], 0x30 | u8::from(echo));
        assert_eq!(&bytes[4..20], &v6.octets());
        assert_eq!(MptcpRepr::parse_bytes(&bytes).unwrap(), repr);
    }
}

#[test]
fn remove_addr_prio_fail_fastclose_and_tcprst() {
    assert_canonical(
        &[30, 5, 0x40, 3, 7],
        MptcpRepr::RemoveAddr(AddrIdList::new(&[3, 7]).unwrap()),
    );
    assert_canonical(&[30, 3, 0x51], MptcpRepr::Prio { backup: true });
    assert_canonical(&[30, 3, 0x50], MptcpRepr::Prio { backup: false });
    let mut fail = vec![30, 12, 0x60, 0];
    fail.extend_from_slice(&be(0xdead_beef_0000_0001));
    assert_canonical(
        &fail,
        MptcpRepr::Fail {
            dsn: Dsn(0xdead_beef_0000_0001),
        },
    );
    let mut fc = vec![30, 12, 0x70, 0];
    fc.extend_from_slice(&be(KEY_A));
    assert_canonical(
        &fc,
        MptcpRepr::FastClose {
            receiver_key: KEY_A,
        },
    );
    let rst = [30, 4, 0x81, 6];
    assert_canonical(
        &rst,
        MptcpRepr::TcpRst(TcpRstRepr {
            flags: 0x1,
            reason: TcpRstReason::MIDDLEBOX,
        }),
    );
    let MptcpRepr::TcpRst(r) = MptcpRepr::parse_bytes(&rst).unwrap() else {
        panic!()
    };
    assert!(r.transient());
    // Reason codes without a name survive untouched.
    assert_canonical(
        &[30, 4, 0x80, 0xee],
        MptcpRepr::TcpRst(TcpRstRepr {
            flags: 0,
            reason: TcpRstReason(0xee),
        }),
    );
}

#[test]
fn experimental_and_unassigned_subtypes_are_kept_opaque() {
    for bytes in [
        vec![30, 3, 0xf0],
        vec![30, 6, 0x9a, 1, 2, 3],
        vec![30, 5, 0xe5, 0xff, 0x00],
    ] {
        let parsed = MptcpRepr::parse_bytes(&bytes).unwrap();
        assert!(matches!(parsed, MptcpRepr::Opaque(_)));
        assert_eq!(emit(&parsed), bytes);
    }
    assert_eq!(
        MptcpRepr::parse_bytes(&[30, 3, 0xf0]).unwrap().subtype(),
        Subtype::Experimental
    );
    // An opaque option may not pose as an assigned subtype.
    assert_eq!(
        OpaqueOption::new(&[0x20, 0]),
        Err(Error::OpaqueAssignedSubtype(2))
    );
}

/// The lengths each subtype accepts, and the error it gives for any other.
fn valid_lengths(subtype: u8, nibble: u8, flags: u8) -> Vec<usize> {
    match subtype {
        0x0 => vec![4, 12, 20, 22, 24],
        0x1 => vec![12, 16, 24],
        0x2 => {
            let mut base = 4;
            if flags & 0x01 != 0 {
                base += if flags & 0x02 != 0 { 8 } else { 4 };
            }
            if flags & 0x04 != 0 {
                base += if flags & 0x08 != 0 { 8 } else { 4 } + 6;
                vec![base, base + 2]
            } else {
                vec![base]
            }
        }
        0x3 if nibble & 1 == 1 => vec![8, 10, 20, 22],
        0x3 => vec![16, 18, 28, 30],
        0x4 => (4..=40).collect(),
        0x5 => vec![3],
        0x6 | 0x7 => vec![12],
        0x8 => vec![4],
        _ => (3..=40).collect(),
    }
}

#[test]
fn every_wrong_length_of_every_subtype_is_a_typed_error() {
    let mut tried = 0;
    for subtype in 0u8..16 {
        for nibble in [0u8, 1] {
            for flags in [0x00u8, 0x01, 0x03, 0x04, 0x05, 0x0d, 0x0f, 0x1f, 0xff] {
                let valid = valid_lengths(subtype, nibble, flags);
                for len in 0usize..=48 {
                    let mut bytes = vec![0xa5u8; len.max(3)];
                    bytes[0] = 30;
                    bytes[1] = len as u8;
                    bytes[2] = (subtype << 4) | nibble;
                    if bytes.len() > 3 {
                        bytes[3] = flags;
                    }
                    // A REMOVE_ADDR needs an id; its fourth byte is one.
                    let result = MptcpRepr::parse_bytes(&bytes);
                    tried += 1;
                    if len < 3 {
                        assert_eq!(result, Err(Error::OptionLengthTooShort(len as u8)));
                    } else if len > 40 {
                        assert_eq!(result, Err(Error::OptionLengthTooLong(len as u8)));
                    } else if valid.contains(&len) {
                        let repr = result.unwrap_or_else(|e| {
                            panic!("subtype {subtype:#x} len {len} flags {flags:#x}: {e}")
                        });
                        assert_eq!(repr.buffer_len(), len);
                    } else {
                        let err = result.expect_err("wrong length must not parse");
                        let expected_kind = match subtype {
                            0x0 => matches!(err, Error::CapableLength(_)),
                            0x1 => matches!(err, Error::JoinLength(_)),
                            0x2 => matches!(err, Error::DssLength { .. }),
                            0x3 => matches!(err, Error::AddAddrLength { .. }),
                            0x4 => matches!(err, Error::RemoveAddrEmpty),
                            0x5 => matches!(err, Error::PrioLength(_)),
                            0x6 => matches!(err, Error::FailLength(_)),
                            0x7 => matches!(err, Error::FastCloseLength(_)),
                            0x8 => matches!(err, Error::TcpRstLength(_)),
                            _ => false,
                        };
                        assert!(expected_kind, "subtype {subtype:#x} len {len}: {err:?}");
                    }
                }
            }
        }
    }
    assert!(tried > 10_000);
}

#[test]
fn truncated_buffers_and_foreign_kinds_are_rejected() {
    assert_eq!(MptcpRepr::parse_bytes(&[]), Err(Error::Truncated));
    assert_eq!(MptcpRepr::parse_bytes(&[30, 12]), Err(Error::Truncated));
    assert_eq!(
        MptcpRepr::parse_bytes(&[30, 12, 0x10, 0, 0]),
        Err(Error::Truncated)
    );
    assert_eq!(
        MptcpRepr::parse_bytes(&[2, 4, 5, 0xb4]),
        Err(Error::NotMptcp(2))
    );
    let mut small = [0u8; 11];
    let join = MptcpRepr::Join(JoinRepr::Syn {
        backup: false,
        addr_id: 0,
        token: 1,
        nonce: 2,
    });
    assert_eq!(
        join.emit(&mut small),
        Err(Error::BufferTooSmall {
            needed: 12,
            available: 11
        })
    );
    assert_eq!(AddrIdList::new(&[]), Err(Error::RemoveAddrEmpty));
    assert_eq!(AddrIdList::new(&[0; 38]), Err(Error::RemoveAddrTooMany(38)));
}

// ---- property tests -------------------------------------------------------------------------

fn dsn_field() -> impl Strategy<Value = DsnField> {
    prop_oneof![
        any::<u32>().prop_map(DsnField::Short),
        any::<u64>().prop_map(DsnField::Long)
    ]
}

fn ip_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ]
}

fn capable() -> impl Strategy<Value = MptcpRepr> {
    let keys = prop_oneof![
        Just(CapableKeys::None),
        any::<u64>().prop_map(|sender_key| CapableKeys::Sender { sender_key }),
        (any::<u64>(), any::<u64>()).prop_map(|(sender_key, receiver_key)| CapableKeys::Both {
            sender_key,
            receiver_key
        }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u16>(),
            any::<Option<u16>>()
        )
            .prop_map(|(sender_key, receiver_key, data_len, checksum)| {
                CapableKeys::WithData {
                    sender_key,
                    receiver_key,
                    data_len,
                    checksum,
                }
            }),
    ];
    (0u8..16, any::<u8>(), keys).prop_map(|(version, flags, keys)| {
        MptcpRepr::Capable(CapableRepr {
            version,
            flags: CapableFlags(flags),
            keys,
        })
    })
}

fn join() -> impl Strategy<Value = MptcpRepr> {
    prop_oneof![
        (any::<bool>(), any::<u8>(), any::<u32>(), any::<u32>()).prop_map(
            |(backup, addr_id, token, nonce)| JoinRepr::Syn {
                backup,
                addr_id,
                token,
                nonce
            }
        ),
        (any::<bool>(), any::<u8>(), any::<u64>(), any::<u32>()).prop_map(
            |(backup, addr_id, hmac, nonce)| JoinRepr::SynAck {
                backup,
                addr_id,
                hmac,
                nonce
            }
        ),
        any::<[u8; 20]>().prop_map(|hmac| JoinRepr::Ack { hmac }),
    ]
    .prop_map(MptcpRepr::Join)
}

fn dss() -> impl Strategy<Value = MptcpRepr> {
    let mapping = (
        dsn_field(),
        any::<u32>(),
        any::<u16>(),
        any::<Option<u16>>(),
    )
        .prop_map(|(dsn, ssn, data_len, checksum)| DssMapping {
            dsn,
            ssn: Ssn(ssn),
            data_len,
            checksum,
        });
    (
        proptest::option::of(dsn_field()),
        proptest::option::of(mapping),
        any::<bool>(),
    )
        .prop_map(|(data_ack, mapping, data_fin)| {
            MptcpRepr::Dss(DssRepr {
                data_ack,
                mapping,
                data_fin,
            })
        })
}

fn signalling() -> impl Strategy<Value = MptcpRepr> {
    prop_oneof![
        (
            any::<u8>(),
            ip_addr(),
            any::<Option<u16>>(),
            any::<Option<u64>>()
        )
            .prop_map(
                |(addr_id, addr, port, hmac)| MptcpRepr::AddAddr(AddAddrRepr {
                    addr_id,
                    addr,
                    port,
                    hmac
                })
            ),
        proptest::collection::vec(any::<u8>(), 1..=AddrIdList::CAPACITY)
            .prop_map(|ids| MptcpRepr::RemoveAddr(AddrIdList::new(&ids).unwrap())),
        any::<bool>().prop_map(|backup| MptcpRepr::Prio { backup }),
        any::<u64>().prop_map(|d| MptcpRepr::Fail { dsn: Dsn(d) }),
        any::<u64>().prop_map(|receiver_key| MptcpRepr::FastClose { receiver_key }),
        (0u8..16, any::<u8>()).prop_map(|(flags, r)| MptcpRepr::TcpRst(TcpRstRepr {
            flags,
            reason: TcpRstReason(r)
        })),
        (
            9u8..16,
            proptest::collection::vec(any::<u8>(), 0..OpaqueOption::CAPACITY)
        )
            .prop_map(|(subtype, rest)| {
                let mut value = vec![subtype << 4];
                value.extend(rest);
                MptcpRepr::Opaque(OpaqueOption::new(&value).unwrap())
            }),
    ]
}

/// Any MPTCP option representation.
pub fn mptcp_repr() -> impl Strategy<Value = MptcpRepr> {
    prop_oneof![capable(), join(), dss(), signalling()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn parse_of_emit_is_identity(repr in mptcp_repr()) {
        let bytes = emit(&repr);
        prop_assert!(bytes.len() <= field::MAX_LEN);
        prop_assert_eq!(MptcpRepr::parse_bytes(&bytes), Ok(repr));
    }

    #[test]
    fn any_bytes_parse_or_fail_cleanly_and_what_parses_round_trips(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..48),
        force_kind in any::<bool>(),
        len in 0u8..44,
    ) {
        if force_kind && bytes.len() >= 2 {
            bytes[0] = 30;
            bytes[1] = len;
        }
        if let Ok(repr) = MptcpRepr::parse_bytes(&bytes) {
            let out = emit(&repr);
            prop_assert_eq!(out.len(), bytes[1] as usize);
            prop_assert_eq!(MptcpRepr::parse_bytes(&out), Ok(repr));
            // Only reserved bits may differ between the input and the canonical form.
            prop_assert_eq!(&out[..2], &bytes[..2]);
            prop_assert_eq!(out[2] >> 4, bytes[2] >> 4);
        }
    }
}
