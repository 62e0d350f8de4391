//! Codec vectors taken from OTP 25's `term_to_binary` (expression in the
//! comment above each), plus hand-made inputs for tags OTP 25 only reads.

use super::*;
use bytes::Bytes;
use num_bigint::BigInt;
use smallvec::smallvec;

fn nonode() -> Atom {
    Atom::new("nonode@nohost")
}

fn int(i: i64) -> Term {
    Term::Int(i)
}

/// `bytes` is OTP 25's default `term_to_binary` output for `term`: it must
/// decode to `term` (copying and zero-copy) and `encode_latin1_atoms` must
/// reproduce it bit for bit.
#[track_caller]
fn otp25(bytes: &[u8], term: Term) {
    assert_eq!(decode(bytes).unwrap(), term);
    assert_eq!(decode_bytes(&Bytes::copy_from_slice(bytes)).unwrap(), term);
    assert_eq!(encode_latin1_atoms(&term), bytes, "encode_latin1_atoms({term:?})");
    assert_eq!(decode(&encode(&term)).unwrap(), term, "encode round trip");
}

/// `bytes` is an input OTP reads but does not write; it decodes to `term`.
#[track_caller]
fn reads(bytes: &[u8], term: Term) {
    assert_eq!(decode(bytes).unwrap(), term);
    assert_eq!(decode(&encode(&term)).unwrap(), term);
}

#[test]
fn integers() {
    // term_to_binary(42)
    otp25(&[131, 97, 42], int(42));
    // term_to_binary(-1)
    otp25(&[131, 98, 255, 255, 255, 255], int(-1));
    // term_to_binary(2147483647)
    otp25(&[131, 98, 127, 255, 255, 255], int(2147483647));
    // term_to_binary(-2147483648)
    otp25(&[131, 98, 128, 0, 0, 0], int(-2147483648));
    // term_to_binary(1 bsl 40)
    otp25(&[131, 110, 6, 0, 0, 0, 0, 0, 0, 1], int(1 << 40));
    // term_to_binary(-(1 bsl 40))
    otp25(&[131, 110, 6, 1, 0, 0, 0, 0, 0, 1], int(-(1 << 40)));
    // term_to_binary(-(1 bsl 63))
    otp25(&[131, 110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 128], int(i64::MIN));
    // term_to_binary(1 bsl 63)
    otp25(
        &[131, 110, 8, 0, 0, 0, 0, 0, 0, 0, 0, 128],
        Term::Big(BigInt::from(1u64 << 63)),
    );
    // term_to_binary(1 bsl 64)
    otp25(&[131, 110, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], Term::Big(BigInt::from(1u8) << 64usize));
    // term_to_binary(-(1 bsl 64))
    otp25(&[131, 110, 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1], Term::Big(-(BigInt::from(1u8) << 64usize)));
}

#[test]
fn large_big() {
    // term_to_binary(1 bsl 2100): LARGE_BIG_EXT, 263 digit bytes.
    let mut bytes = vec![131, 111, 0, 0, 1, 7, 0];
    bytes.extend(std::iter::repeat_n(0, 262));
    bytes.push(16);
    otp25(&bytes, Term::Big(BigInt::from(1u8) << 2100usize));
}

#[test]
fn non_minimal_bigs_normalise() {
    // binary_to_term(<<131,110,0,0>>) =:= 0
    reads(&[131, 110, 0, 0], int(0));
    // binary_to_term(<<131,110,1,2,5>>) =:= -5 (any non-zero sign is minus)
    reads(&[131, 110, 1, 2, 5], int(-5));
    reads(&[131, 110, 10, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0], int(7));
}

#[test]
#[allow(clippy::approx_constant)] // 3.14 is the literal given to erl.
fn floats() {
    // term_to_binary(3.14)
    otp25(&[131, 70, 64, 9, 30, 184, 81, 235, 133, 31], Term::Float(3.14));
    // term_to_binary(-0.0)
    let neg = decode(&[131, 70, 128, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    assert!(matches!(neg, Term::Float(f) if f == 0.0 && f.is_sign_negative()));
    assert_eq!(encode(&neg), [131, 70, 128, 0, 0, 0, 0, 0, 0, 0]);
    // term_to_binary(1.5, [{minor_version,0}])
    let mut old = vec![131, 99];
    old.extend_from_slice(b"1.50000000000000000000e+00");
    old.extend_from_slice(&[0; 5]);
    reads(&old, Term::Float(1.5));
}

#[test]
fn bad_floats() {
    // NaN and infinity: binary_to_term raises badarg.
    assert!(decode(&[131, 70, 127, 248, 0, 0, 0, 0, 0, 0]).is_err());
    assert!(decode(&[131, 70, 127, 240, 0, 0, 0, 0, 0, 0]).is_err());
    for text in [&b"1.5x"[..], b" 1.5", b"inf", b"nan", b""] {
        let mut v = vec![131, 99];
        v.extend_from_slice(text);
        v.resize(33, 0);
        assert!(decode(&v).is_err(), "{:?}", String::from_utf8_lossy(text));
    }
}

#[test]
fn atoms() {
    // term_to_binary(ok)
    otp25(&[131, 100, 0, 2, 111, 107], Term::atom("ok"));
    // term_to_binary('café'): latin-1 on the wire, UTF-8 in Rust.
    otp25(&[131, 100, 0, 4, 99, 97, 102, 233], Term::atom("café"));
    // term_to_binary('日本')
    otp25(&[131, 119, 6, 230, 151, 165, 230, 156, 172], Term::atom("日本"));
    // term_to_binary(ok, [{minor_version,2}])
    assert_eq!(encode(&Term::atom("ok")), [131, 119, 2, 111, 107]);
    assert_eq!(encode(&Term::atom("café")), [131, 119, 5, 99, 97, 102, 195, 169]);
    // binary_to_term(<<131,115,2,$o,$k>>) =:= ok
    reads(&[131, 115, 2, 111, 107], Term::atom("ok"));
    // term_to_binary(list_to_atom(lists:duplicate(100, 16#65E5))): 300 bytes
    let long = "日".repeat(100);
    let mut bytes = vec![131, 118, 1, 44];
    bytes.extend_from_slice(long.as_bytes());
    otp25(&bytes, Term::atom(&long));
}

#[test]
fn bad_atoms() {
    // 256 latin-1 characters: badarg.
    let mut v = vec![131, 100, 1, 0];
    v.extend(std::iter::repeat_n(b'a', 256));
    assert!(decode(&v).is_err());
    v[2..4].copy_from_slice(&[0, 255]);
    v.pop();
    assert!(decode(&v).is_ok());
    // 256 characters of UTF-8.
    let mut v = vec![131, 118, 2, 0];
    v.extend(std::iter::repeat_n(b'a', 512));
    assert!(decode(&v).is_err());
    // Invalid UTF-8: badarg.
    assert!(decode(&[131, 119, 1, 255]).is_err());
    assert!(decode(&[131, 118, 0, 2, 0xc3, 0x28]).is_err());
}

#[test]
fn atom_cache_refs() {
    let cache = [Atom::new("a"), Atom::new("node@host")];
    let lim = DecodeLimits::default();
    let (t, n) = decode_with_cache(&[131, 104, 2, 82, 0, 82, 1], &cache, &lim).unwrap();
    assert_eq!(t, Term::tuple([Term::atom("a"), Term::atom("node@host")]));
    assert_eq!(n, 7);
    let (t, _) = decode_with_cache(&[88, 82, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3], &cache, &lim)
        .unwrap();
    assert_eq!(t, Term::Pid(Pid { node: cache[1].clone(), id: 1, serial: 2, creation: 3 }));
    assert_eq!(
        decode_with_cache(&[82, 2], &cache, &lim),
        Err(DecodeError::BadAtomCacheRef(2))
    );
    // Without a cache every reference is out of range.
    assert_eq!(decode(&[131, 82, 0]), Err(DecodeError::BadAtomCacheRef(0)));
}

#[test]
fn containers() {
    // term_to_binary({1,a})
    otp25(&[131, 104, 2, 97, 1, 100, 0, 1, 97], Term::tuple([int(1), Term::atom("a")]));
    // term_to_binary({})
    otp25(&[131, 104, 0], Term::tuple([]));
    // term_to_binary(#{a => 1})
    otp25(&[131, 116, 0, 0, 0, 1, 100, 0, 1, 97, 97, 1], Term::Map(vec![(Term::atom("a"), int(1))]));
    // term_to_binary(#{})
    otp25(&[131, 116, 0, 0, 0, 0], Term::Map(vec![]));
    // term_to_binary([])
    otp25(&[131, 106], Term::nil());
    // term_to_binary("abc")
    otp25(&[131, 107, 0, 3, 97, 98, 99], Term::list([int(97), int(98), int(99)]));
    // term_to_binary([1,2,300])
    otp25(
        &[131, 108, 0, 0, 0, 3, 97, 1, 97, 2, 98, 0, 0, 1, 44, 106],
        Term::list([int(1), int(2), int(300)]),
    );
    // term_to_binary([a|b])
    otp25(
        &[131, 108, 0, 0, 0, 1, 100, 0, 1, 97, 100, 0, 1, 98],
        Term::ImproperList(vec![Term::atom("a")], Box::new(Term::atom("b"))),
    );
    // term_to_binary([1|[2|3]])
    otp25(
        &[131, 108, 0, 0, 0, 2, 97, 1, 97, 2, 97, 3],
        Term::ImproperList(vec![int(1), int(2)], Box::new(int(3))),
    );
    // term_to_binary({[], [[]], ""})
    otp25(
        &[131, 104, 3, 106, 108, 0, 0, 0, 1, 106, 106, 106],
        Term::tuple([Term::nil(), Term::list([Term::nil()]), Term::nil()]),
    );
    // term_to_binary(erlang:make_tuple(256, 0))
    let mut big = vec![131, 105, 0, 0, 1, 0];
    for _ in 0..256 {
        big.extend_from_slice(&[97, 0]);
    }
    otp25(&big, Term::tuple(vec![int(0); 256]));
    // term_to_binary(lists:duplicate(65536, 1)): too long for STRING_EXT.
    let mut long = vec![131, 108, 0, 1, 0, 0];
    for _ in 0..65536 {
        long.extend_from_slice(&[97, 1]);
    }
    long.push(106);
    otp25(&long, Term::list(vec![int(1); 65536]));
}

#[test]
fn odd_list_shapes_normalise() {
    // binary_to_term(<<131,108,0,0,0,0,106>>) =:= []
    reads(&[131, 108, 0, 0, 0, 0, 106], Term::nil());
    // binary_to_term(<<131,108,0,0,0,0,97,5>>) =:= 5
    reads(&[131, 108, 0, 0, 0, 0, 97, 5], int(5));
    // binary_to_term(<<131,108,0,0,0,1,97,1,108,0,0,0,1,97,2,106>>) =:= [1,2]
    reads(&[131, 108, 0, 0, 0, 1, 97, 1, 108, 0, 0, 0, 1, 97, 2, 106], Term::list([int(1), int(2)]));
    // binary_to_term(<<131,108,0,0,0,1,97,1,107,0,2,3,4>>) =:= [1,3,4]
    reads(&[131, 108, 0, 0, 0, 1, 97, 1, 107, 0, 2, 3, 4], Term::list([int(1), int(3), int(4)]));
    // An improper list whose tail is a tuple.
    reads(
        &[131, 108, 0, 0, 0, 1, 97, 1, 104, 1, 97, 2],
        Term::ImproperList(vec![int(1)], Box::new(Term::tuple([int(2)]))),
    );
}

#[test]
fn duplicate_map_keys_are_rejected() {
    // binary_to_term(<<131,116,0,0,0,2,97,1,97,1,97,1,97,2>>): badarg
    assert!(decode(&[131, 116, 0, 0, 0, 2, 97, 1, 97, 1, 97, 1, 97, 2]).is_err());
    // Same check above the pairwise threshold, with nested keys.
    let mut entries: Vec<(Term, Term)> =
        (0..40).map(|i| (Term::tuple([int(i), Term::list([int(i)])]), int(i))).collect();
    assert_eq!(decode(&encode(&Term::Map(entries.clone()))).unwrap(), Term::Map(entries.clone()));
    entries.push((Term::tuple([int(7), Term::list([int(7)])]), int(0)));
    assert!(decode(&encode(&Term::Map(entries))).is_err());
}

#[test]
fn zero_floats_of_both_signs_are_two_map_keys() {
    // OTP 27: term_to_binary(#{0.0 => a, -0.0 => b}) has two keys.
    let m = |k2: f64| Term::Map(vec![(Term::Float(0.0), Term::atom("a")), (Term::Float(k2), Term::atom("b"))]);
    assert_eq!(decode(&encode(&m(-0.0))).unwrap(), m(-0.0));
    assert!(decode(&encode(&m(0.0))).is_err());
    // The same inside keys, above the pairwise threshold.
    let mut entries: Vec<(Term, Term)> = (0..40).map(|i| (Term::tuple([int(i)]), int(i))).collect();
    entries.push((Term::tuple([Term::Float(0.0)]), int(1)));
    entries.push((Term::tuple([Term::Float(-0.0)]), int(2)));
    assert!(decode(&encode(&Term::Map(entries.clone()))).is_ok());
    entries.push((Term::tuple([Term::Float(-0.0)]), int(3)));
    assert!(decode(&encode(&Term::Map(entries))).is_err());
}

#[test]
fn binaries() {
    // term_to_binary(<<1,2,3>>)
    otp25(&[131, 109, 0, 0, 0, 3, 1, 2, 3], Term::binary(vec![1, 2, 3]));
    // term_to_binary(<<>>)
    otp25(&[131, 109, 0, 0, 0, 0], Term::binary(vec![]));
    // term_to_binary(<<1:3>>)
    otp25(&[131, 77, 0, 0, 0, 1, 3, 32], Term::BitBinary { bytes: Bytes::from_static(&[32]), bits: 3 });
    // term_to_binary(<<255,7:4>>)
    otp25(
        &[131, 77, 0, 0, 0, 2, 4, 255, 112],
        Term::BitBinary { bytes: Bytes::from_static(&[255, 112]), bits: 4 },
    );
    // binary_to_term(<<131,77,0,0,0,1,3,255>>) =:= <<7:3>>: unused bits ignored.
    reads(&[131, 77, 0, 0, 0, 1, 3, 255], Term::BitBinary { bytes: Bytes::from_static(&[224]), bits: 3 });
    // bits == 8 is a plain binary.
    reads(&[131, 77, 0, 0, 0, 1, 8, 9], Term::binary(vec![9]));
    // Empty, 0 bits, 9 bits: badarg.
    assert!(decode(&[131, 77, 0, 0, 0, 0, 3]).is_err());
    assert!(decode(&[131, 77, 0, 0, 0, 0, 8]).is_err());
    assert!(decode(&[131, 77, 0, 0, 0, 1, 0, 255]).is_err());
    assert!(decode(&[131, 77, 0, 0, 0, 1, 9, 255]).is_err());
}

#[test]
fn zero_copy_binaries_share_the_input() {
    let mut v = vec![131, 109, 0, 0, 4, 0];
    v.extend(std::iter::repeat_n(7, 1024));
    let buf = Bytes::from(v);
    let Term::Binary(b) = decode_bytes(&buf).unwrap() else { panic!("not a binary") };
    assert_eq!(b.len(), 1024);
    assert_eq!(b.as_ptr(), buf[6..].as_ptr());
}

#[test]
fn pids_ports_refs() {
    // term_to_binary(list_to_pid("<0.80.0>"))
    let mut pid = vec![131, 88, 100, 0, 13];
    pid.extend_from_slice(b"nonode@nohost");
    pid.extend_from_slice(&[0, 0, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0]);
    otp25(&pid, Term::Pid(Pid { node: nonode(), id: 80, serial: 0, creation: 0 }));
    // term_to_binary(list_to_port("#Port<0.5>"))
    let mut port = vec![131, 89, 100, 0, 13];
    port.extend_from_slice(b"nonode@nohost");
    port.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0, 0]);
    otp25(&port, Term::Port(Port { node: nonode(), id: 5, creation: 0 }));
    // term_to_binary(list_to_ref("#Ref<0.1.2.3>"))
    let mut r = vec![131, 90, 0, 3, 100, 0, 13];
    r.extend_from_slice(b"nonode@nohost");
    r.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1]);
    otp25(&r, Term::Ref(Reference { node: nonode(), creation: 0, ids: smallvec![3, 2, 1] }));

    let a = Atom::new("a@b");
    // term_to_binary(binary_to_term(<<131,120,100,0,3,97,64,98,0,0,0,1,0,0,0,0,0,0,0,7>>))
    otp25(
        &[131, 120, 100, 0, 3, 97, 64, 98, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7],
        Term::Port(Port { node: a.clone(), id: 1 << 32, creation: 7 }),
    );
    // Same with id 16#10000000: OTP 25 already uses V4_PORT_EXT above 28 bits.
    otp25(
        &[131, 120, 100, 0, 3, 97, 64, 98, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 7],
        Term::Port(Port { node: a.clone(), id: 0x1000_0000, creation: 7 }),
    );
    // ... and NEW_PORT_EXT at 16#fffffff.
    otp25(
        &[131, 89, 100, 0, 3, 97, 64, 98, 15, 255, 255, 255, 0, 0, 0, 7],
        Term::Port(Port { node: a.clone(), id: 0x0fff_ffff, creation: 7 }),
    );
    // term_to_binary(binary_to_term(<<131,103,100,0,3,97,64,98,0,0,0,1,0,0,0,2,3>>))
    //   = <<131,88,100,0,3,97,64,98,0,0,0,1,0,0,0,2,0,0,0,3>>
    let p = Term::Pid(Pid { node: a.clone(), id: 1, serial: 2, creation: 3 });
    reads(&[131, 103, 100, 0, 3, 97, 64, 98, 0, 0, 0, 1, 0, 0, 0, 2, 3], p.clone());
    otp25(&[131, 88, 100, 0, 3, 97, 64, 98, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3], p);
    // term_to_binary(binary_to_term(<<131,102,100,0,3,97,64,98,0,0,0,9,3>>))
    //   = <<131,89,100,0,3,97,64,98,0,0,0,9,0,0,0,3>>
    let port = Term::Port(Port { node: a.clone(), id: 9, creation: 3 });
    reads(&[131, 102, 100, 0, 3, 97, 64, 98, 0, 0, 0, 9, 3], port.clone());
    otp25(&[131, 89, 100, 0, 3, 97, 64, 98, 0, 0, 0, 9, 0, 0, 0, 3], port);
    // term_to_binary(binary_to_term(<<131,101,100,0,3,97,64,98,0,0,0,9,3>>))
    //   = <<131,90,0,1,100,0,3,97,64,98,0,0,0,3,0,0,0,9>>
    let r = Term::Ref(Reference { node: a.clone(), creation: 3, ids: smallvec![9] });
    reads(&[131, 101, 100, 0, 3, 97, 64, 98, 0, 0, 0, 9, 3], r.clone());
    otp25(&[131, 90, 0, 1, 100, 0, 3, 97, 64, 98, 0, 0, 0, 3, 0, 0, 0, 9], r);
    // term_to_binary(binary_to_term(<<131,114,0,2,100,0,3,97,64,98,3,0,0,0,9,0,0,0,8>>))
    //   = <<131,90,0,2,100,0,3,97,64,98,0,0,0,3,0,0,0,9,0,0,0,8>>
    let r = Term::Ref(Reference { node: a.clone(), creation: 3, ids: smallvec![9, 8] });
    reads(&[131, 114, 0, 2, 100, 0, 3, 97, 64, 98, 3, 0, 0, 0, 9, 0, 0, 0, 8], r.clone());
    otp25(&[131, 90, 0, 2, 100, 0, 3, 97, 64, 98, 0, 0, 0, 3, 0, 0, 0, 9, 0, 0, 0, 8], r);
    // Refs carry 0..=5 ids (binary_to_term accepts 0 and 5, refuses 6).
    reads(&[131, 90, 0, 0, 100, 0, 3, 97, 64, 98, 0, 0, 0, 1], Term::Ref(Reference { node: a.clone(), creation: 1, ids: smallvec![] }));
    let mut six = vec![131, 90, 0, 6, 100, 0, 3, 97, 64, 98, 0, 0, 0, 1];
    six.extend_from_slice(&[0; 24]);
    assert!(decode(&six).is_err());
    // A node that is not an atom: badarg.
    assert!(decode(&[131, 88, 97, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]).is_err());
}

// fn:mk(7) where `mk(Y) -> fun(X) -> X + Y end.`, term_to_binary(F).
const CLOSURE: [u8; 74] = [
    131, 112, 0, 0, 0, 72, 1, 193, 102, 107, 161, 168, 233, 245, 215, 202, 166, 129, 121, 102, 114,
    60, 221, 0, 0, 0, 0, 0, 0, 0, 1, 100, 0, 2, 102, 110, 97, 0, 98, 6, 11, 51, 93, 88, 100, 0, 13,
    110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0,
    0, 97, 7,
];
// The same with [{minor_version,2}].
const CLOSURE_UTF8: [u8; 72] = [
    131, 112, 0, 0, 0, 70, 1, 193, 102, 107, 161, 168, 233, 245, 215, 202, 166, 129, 121, 102, 114,
    60, 221, 0, 0, 0, 0, 0, 0, 0, 1, 119, 2, 102, 110, 97, 0, 98, 6, 11, 51, 93, 88, 119, 13, 110,
    111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0,
    97, 7,
];
// fn:mk2(fn:mk(7)) where `mk2(F) -> fun() -> {F, "s", <<1:3>>} end.`,
// term_to_binary(G, [{minor_version,2}]): a closure over a closure.
const NESTED_UTF8: [u8; 141] = [
    131, 112, 0, 0, 0, 139, 0, 193, 102, 107, 161, 168, 233, 245, 215, 202, 166, 129, 121, 102,
    114, 60, 221, 0, 0, 0, 1, 0, 0, 0, 1, 119, 2, 102, 110, 97, 1, 98, 6, 11, 51, 93, 88, 119, 13,
    110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0,
    0, 0, 112, 0, 0, 0, 70, 1, 193, 102, 107, 161, 168, 233, 245, 215, 202, 166, 129, 121, 102,
    114, 60, 221, 0, 0, 0, 0, 0, 0, 0, 1, 119, 2, 102, 110, 97, 0, 98, 6, 11, 51, 93, 88, 119, 13,
    110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0,
    0, 0, 97, 7,
];

/// Replaces every SMALL_ATOM_UTF8 occurrence of `name` with a cache ref,
/// leaving Size fields stale, as they would be compared with what we emit.
pub(super) fn with_cache_refs(bytes: &[u8], names: &[&str]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (i, name) in names.iter().enumerate() {
        let mut pat = vec![119, name.len() as u8];
        pat.extend_from_slice(name.as_bytes());
        let mut j = 0;
        while j + pat.len() <= out.len() {
            if out[j..j + pat.len()] == pat[..] {
                out.splice(j..j + pat.len(), [82, i as u8]);
            }
            j += 1;
        }
    }
    out
}

#[test]
fn funs_are_kept_verbatim() {
    let t = decode(&CLOSURE).unwrap();
    assert_eq!(t, Term::Fun(OpaqueFun(Bytes::copy_from_slice(&CLOSURE[1..]))));
    assert_eq!(encode_latin1_atoms(&t), CLOSURE);
    assert_eq!(encode(&t), CLOSURE);
    let t = decode(&NESTED_UTF8).unwrap();
    assert_eq!(encode(&t), NESTED_UTF8);
    // term_to_binary(fun lists:map/2)
    let export = [131, 113, 100, 0, 5, 108, 105, 115, 116, 115, 100, 0, 3, 109, 97, 112, 97, 2];
    otp25(&export, Term::Fun(OpaqueFun(Bytes::copy_from_slice(&export[1..]))));
    let Term::Fun(f) = decode(&export).unwrap() else { panic!() };
    assert_eq!(f.as_export(), Some((Atom::new("lists"), Atom::new("map"), 2)));
    // term_to_binary(fun lists:map/2, [{minor_version,2}])
    let built = OpaqueFun::export(&Atom::new("lists"), &Atom::new("map"), 2);
    assert_eq!(built.as_bytes(), [113, 119, 5, 108, 105, 115, 116, 115, 119, 3, 109, 97, 112, 97, 2]);
    // binary_to_term accepts INTEGER_EXT arity (<<131,113,100,0,1,$m,100,0,1,$f,98,0,0,0,1>>)
    assert!(decode(&[131, 113, 100, 0, 1, 109, 100, 0, 1, 102, 98, 0, 0, 0, 1]).is_ok());
    // ... but not an atom.
    assert!(decode(&[131, 113, 100, 0, 1, 109, 100, 0, 1, 102, 100, 0, 1, 102]).is_err());
}

#[test]
fn funs_inside_terms_end_where_they_should() {
    let mut v = vec![131, 104, 3];
    v.extend_from_slice(&CLOSURE[1..]);
    v.extend_from_slice(&NESTED_UTF8[1..]);
    v.extend_from_slice(&[97, 5]);
    let t = decode(&v).unwrap();
    let items = t.as_tuple().unwrap();
    assert_eq!(items[2], int(5));
    assert_eq!(encode_latin1_atoms(&t), v);
}

#[test]
fn funs_with_cache_refs_are_rewritten() {
    let cache = [Atom::new("fn"), Atom::new("nonode@nohost")];
    let lim = DecodeLimits::default();
    for utf8 in [&CLOSURE_UTF8[..], &NESTED_UTF8[..]] {
        let refs = with_cache_refs(utf8, &["fn", "nonode@nohost"]);
        assert!(refs.len() < utf8.len());
        let (t, used) = decode_with_cache(&refs, &cache, &lim).unwrap();
        assert_eq!(used, refs.len());
        // Atoms written out as SMALL_ATOM_UTF8 and Size fields recomputed
        // give exactly what term_to_binary(F, [{minor_version,2}]) wrote.
        assert_eq!(t, Term::Fun(OpaqueFun(Bytes::copy_from_slice(&utf8[1..]))));
        // Zero-copy decoding rewrites the same way.
        let (t2, _) = decode_bytes_with_cache(&Bytes::from(refs.clone()), &cache, &lim).unwrap();
        assert_eq!(t2, t);
        // A cache that is too short is an error, not a guess.
        assert!(decode_with_cache(&refs, &cache[..1], &lim).is_err());
    }
}

#[test]
fn compressed() {
    // term_to_binary(binary:copy(<<"ab">>, 50), [compressed])
    let z = [
        131, 80, 0, 0, 0, 105, 120, 156, 203, 101, 96, 96, 72, 73, 76, 162, 61, 4, 0, 216, 57, 38,
        232,
    ];
    let want = Term::binary(b"ab".repeat(50));
    assert_eq!(decode(&z).unwrap(), want);
    assert_eq!(decode_bytes(&Bytes::copy_from_slice(&z)).unwrap(), want);
    let (_, used) = decode_with_cache(&[&z[..], &[1, 2, 3]].concat(), &[], &Default::default()).unwrap();
    assert_eq!(used, z.len());
    // Declared size off by one either way: badarg.
    let mut small = z;
    small[5] = 104;
    assert!(decode(&small).is_err());
    let mut large = z;
    large[5] = 106;
    assert!(decode(&large).is_err());
    // Over the limit: refused before inflating.
    let lim = DecodeLimits { max_uncompressed: 100, ..Default::default() };
    assert_eq!(
        decode_with_cache(&z, &[], &lim),
        Err(DecodeError::TooLarge { declared: 105, limit: 100 })
    );
    // Truncated stream.
    assert!(decode(&z[..z.len() - 3]).is_err());
    // Compressed is only allowed at the top.
    let mut nested = vec![131, 104, 1];
    nested.extend_from_slice(&z[1..]);
    assert!(decode(&nested).is_err());
}

#[test]
fn decode_framing() {
    assert_eq!(decode(&[97, 1]), Err(DecodeError::MissingVersion));
    assert_eq!(decode(&[]), Err(DecodeError::MissingVersion));
    assert_eq!(decode(&[131, 97, 1, 0]), Err(DecodeError::TrailingBytes(1)));
    assert_eq!(decode(&[131]), Err(DecodeError::Truncated));
    assert_eq!(decode(&[131, 1]), Err(DecodeError::UnknownTag(1)));
    let lim = DecodeLimits::default();
    assert_eq!(decode_with_cache(&[97, 1, 97, 2], &[], &lim), Ok((int(1), 2)));
    assert_eq!(decode_with_cache(&[131, 97, 1, 97, 2], &[], &lim), Ok((int(1), 3)));
}

#[test]
fn forged_lengths_do_not_allocate() {
    for v in [
        &[131, 108, 255, 255, 255, 255, 97][..],
        &[131, 105, 255, 255, 255, 255],
        &[131, 116, 255, 255, 255, 255, 97, 1],
        &[131, 109, 255, 255, 255, 255, 1],
        &[131, 111, 255, 255, 255, 255, 0, 1],
        &[131, 80, 15, 255, 255, 255, 120, 156],
    ] {
        assert!(decode(v).is_err());
    }
    // Nested containers each within the remaining bytes, but not together:
    // caught when the inner one opens, before it reserves anything.
    let mut v = vec![131, 108, 0, 0, 3, 132, 108, 0, 0, 3, 132];
    v.extend(std::iter::repeat_n([97, 1], 495).flatten());
    assert_eq!(v.len(), 1001);
    assert_eq!(decode(&v), Err(DecodeError::Truncated));
}

fn nested_lists(depth: usize) -> Vec<u8> {
    let mut v = vec![131];
    for _ in 0..depth {
        v.extend_from_slice(&[108, 0, 0, 0, 1]);
    }
    v.extend(std::iter::repeat_n(106, depth + 1));
    v
}

#[test]
fn depth_is_limited() {
    assert_eq!(decode(&nested_lists(1_000_000)), Err(DecodeError::TooDeep(1_000)));
    let lim = DecodeLimits { max_depth: 3, ..Default::default() };
    assert!(decode_with_cache(&nested_lists(3), &[], &lim).is_ok());
    assert_eq!(decode_with_cache(&nested_lists(4), &[], &lim), Err(DecodeError::TooDeep(3)));
    // Tuples and maps count too.
    let mut v = vec![131];
    for _ in 0..2_000 {
        v.extend_from_slice(&[104, 1]);
    }
    v.push(106);
    assert_eq!(decode(&v), Err(DecodeError::TooDeep(1_000)));
    // A 1M-long chain of list tails is not nesting.
    let mut v = vec![131];
    for _ in 0..1_000_000 {
        v.extend_from_slice(&[108, 0, 0, 0, 1, 97, 1]);
    }
    v.push(106);
    assert_eq!(decode(&v).unwrap(), Term::list(vec![int(1); 1_000_000]));
}

#[test]
fn deep_terms_decode_and_encode_without_recursion() {
    let lim = DecodeLimits { max_depth: 100_000, ..Default::default() };
    let input = nested_lists(50_000);
    let (t, _) = decode_with_cache(&input, &[], &lim).unwrap();
    assert_eq!(encode(&t), input);
    // Term's derived Drop recurses and would overflow this thread's stack;
    // that is why the default depth limit is low.
    std::mem::forget(t);
}

#[test]
fn encoder_shapes() {
    // Integers at each boundary pick the tag term_to_binary picks.
    assert_eq!(encode(&int(255)), [131, 97, 255]);
    assert_eq!(encode(&int(256)), [131, 98, 0, 0, 1, 0]);
    assert_eq!(encode(&int(-2147483649)), [131, 110, 4, 1, 1, 0, 0, 128]);
    assert_eq!(encode(&int(i64::MAX)), [131, 110, 8, 0, 255, 255, 255, 255, 255, 255, 255, 127]);
    // A Big that fits is written as the integer it is.
    assert_eq!(encode(&Term::Big(BigInt::from(5))), [131, 97, 5]);
    // Unused bits of a bitstring go out as zero.
    let b = Term::BitBinary { bytes: Bytes::from_static(&[255]), bits: 3 };
    assert_eq!(encode(&b), [131, 77, 0, 0, 0, 1, 3, 224]);
    // An ImproperList with no items is just its tail.
    assert_eq!(encode(&Term::ImproperList(vec![], Box::new(int(1)))), [131, 97, 1]);
    // encode_into writes no version byte and appends.
    let mut out = vec![9];
    encode_into(&Term::nil(), &mut out);
    assert_eq!(out, [9, 106]);
}

#[test]
fn fits_within_bounds_the_encoding_and_stops_at_the_first_large_part() {
    let pid = Term::Pid(Pid { node: Atom::new("a@host"), id: 1, serial: 2, creation: 3 });
    let rf = Term::Ref(Reference { node: Atom::new("a@host"), creation: 3, ids: smallvec::smallvec![1, 2, 3] });
    let state = Term::Map(vec![
        (Term::atom("name"), Term::from("ann")),
        (Term::atom("data"), Term::binary(vec![0u8; 1000])),
        (Term::atom("tags"), Term::List(vec![int(1), Term::atom("x"), Term::tuple([int(2), Term::nil()])])),
        (Term::atom("who"), Term::List(vec![pid, rf, Term::Float(1.5), int(i64::MAX)])),
    ]);
    // The estimate is never below the real encoding (what the inline
    // handover limit relies on).
    let mut budget = 1 << 20;
    assert!(state.fits_within(&mut budget));
    assert!((1 << 20) - budget >= encode(&state).len() - 1, "estimate {} below encoding {}", (1 << 20) - budget, encode(&state).len());
    let improper = Term::ImproperList(vec![int(1), Term::atom("x")], Box::new(Term::from("tail")));
    let nested = Term::Map(vec![(Term::atom("m"), Term::Map(vec![(int(1), Term::List(vec![improper.clone()]))]))]);
    for part in [Term::List(vec![]), Term::List(vec![int(1)]), Term::tuple([]), Term::atom("abc"), improper, nested] {
        let mut b = 1000;
        assert!(part.fits_within(&mut b));
        assert!(1000 - b >= encode(&part).len() - 1, "{part:?}: estimate {} below {}", 1000 - b, encode(&part).len() - 1);
    }
    let mut small = 500;
    assert!(!state.fits_within(&mut small), "a 1000-byte binary does not fit in 500");
    // A large binary is one step: the rest of a huge term is not walked.
    let huge = Term::List(std::iter::once(Term::binary(vec![0u8; 70_000])).chain((0..1_000_000).map(int)).collect());
    let mut b = 64 * 1024;
    assert!(!huge.fits_within(&mut b));
}
