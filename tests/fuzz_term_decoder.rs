//! Property tests: the decoder never panics on hostile input, and every
//! canonical `Term` survives encode -> decode unchanged. Case counts are
//! bounded so the file runs in a few seconds in debug builds.

use bytes::Bytes;
use erlnode::term::{
    decode, decode_bytes, decode_bytes_with_cache, decode_with_cache, encode, encode_latin1_atoms,
    Atom, DecodeLimits, NativeRecord, OpaqueFun, Pid, Port, Reference, Term,
};
use num_bigint::BigInt;
use proptest::prelude::*;
use std::io::Write;

/// Tag bytes, so random input gets past the first byte often.
const TAGS: &[u8] = &[
    67, 70, 77, 80, 82, 88, 89, 90, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109,
    110, 111, 112, 113, 114, 115, 116, 118, 119, 120, 131, 0, 1, 255,
];

fn cache() -> Vec<Atom> {
    vec![Atom::new("a"), Atom::new("node@host"), Atom::new("日本")]
}

fn small_limits() -> DecodeLimits {
    DecodeLimits { max_depth: 64, max_uncompressed: 1 << 16 }
}

/// Runs every decoder entry point; they may fail but must not panic, and
/// the copying and zero-copy paths must agree.
fn decode_all_ways(input: &[u8]) {
    let cache = cache();
    let copied = decode(input);
    let shared = decode_bytes(&Bytes::copy_from_slice(input));
    assert_eq!(copied, shared);
    for limits in [DecodeLimits::default(), small_limits()] {
        let a = decode_with_cache(input, &cache, &limits);
        let b = decode_bytes_with_cache(&Bytes::copy_from_slice(input), &cache, &limits);
        assert_eq!(a, b);
        if let Ok((_, used)) = a {
            assert!(used <= input.len());
        }
    }
}

fn biased_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![3 => prop::sample::select(TAGS), 2 => any::<u8>(), 1 => Just(0u8)],
        0..max,
    )
}

fn atom() -> impl Strategy<Value = Atom> {
    prop_oneof![
        "[a-z_@.]{0,12}".prop_map(|s| Atom::new(&s)),
        "[\\u{0}-\\u{ff}]{0,20}".prop_map(|s| Atom::new(&s)),
        any::<String>().prop_map(|s| Atom::new(&s.chars().take(255).collect::<String>())),
    ]
}

fn big() -> impl Strategy<Value = BigInt> {
    (any::<bool>(), prop::collection::vec(any::<u8>(), 9..40)).prop_map(|(neg, mut mag)| {
        // At least 2^64 in magnitude, so never within i64.
        if let Some(last) = mag.last_mut() {
            *last |= 1;
        }
        let sign = if neg { num_bigint::Sign::Minus } else { num_bigint::Sign::Plus };
        BigInt::from_bytes_le(sign, &mag)
    })
}

fn leaf() -> impl Strategy<Value = Term> {
    prop_oneof![
        any::<i64>().prop_map(Term::Int),
        (0i64..=255).prop_map(Term::Int),
        big().prop_map(Term::Big),
        any::<f64>().prop_filter("BEAM floats are finite", |f| f.is_finite()).prop_map(Term::Float),
        atom().prop_map(Term::Atom),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|v| Term::Binary(v.into())),
        (prop::collection::vec(any::<u8>(), 1..10), 1u8..=7).prop_map(|(mut v, bits)| {
            if let Some(l) = v.last_mut() {
                *l &= 0xffu8 << (8 - bits);
            }
            Term::BitBinary { bytes: v.into(), bits }
        }),
        (atom(), any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(node, id, serial, creation)| Term::Pid(Pid { node, id, serial, creation })),
        (atom(), any::<u64>(), any::<u32>())
            .prop_map(|(node, id, creation)| Term::Port(Port { node, id, creation })),
        (atom(), any::<u32>(), prop::collection::vec(any::<u32>(), 0..=5)).prop_map(
            |(node, creation, ids)| Term::Ref(Reference { node, creation, ids: ids.into() })
        ),
        (atom(), atom(), any::<u8>())
            .prop_map(|(m, f, a)| Term::Fun(OpaqueFun::export(&m, &f, a))),
    ]
}

/// Terms in the normal form the decoder produces: no list-valued improper
/// tails, no duplicate map keys, no Big within i64.
fn term() -> impl Strategy<Value = Term> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Term::List),
            prop::collection::vec(inner.clone(), 0..8).prop_map(Term::Tuple),
            (prop::collection::vec(inner.clone(), 1..5), inner.clone()).prop_map(|(items, tail)| {
                match tail {
                    Term::List(_) | Term::ImproperList(..) => Term::List(items),
                    tail => Term::ImproperList(items, Box::new(tail)),
                }
            }),
            prop::collection::vec((inner.clone(), inner.clone()), 0..6).prop_map(|pairs| {
                let mut unique: Vec<(Term, Term)> = Vec::new();
                for (k, v) in pairs {
                    if !unique.iter().any(|(u, _)| *u == k) {
                        unique.push((k, v));
                    }
                }
                Term::Map(unique)
            }),
            prop::collection::vec(0i64..=255, 1..20)
                .prop_map(|v| Term::List(v.into_iter().map(Term::Int).collect())),
            // Native records (OTP 29); field names made unique.
            (atom(), atom(), any::<bool>(), prop::collection::vec((atom(), inner), 0..5))
                .prop_map(|(module, name, exported, fields)| {
                    let mut unique: Vec<(Atom, Term)> = Vec::new();
                    for (k, v) in fields {
                        if !unique.iter().any(|(u, _)| *u == k) {
                            unique.push((k, v));
                        }
                    }
                    let r = NativeRecord::new(module, name, exported, unique);
                    Term::from(r.expect("unique field names"))
                }),
        ]
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn mutate(mut v: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let n = v.len().max(1);
        match *m {
            Mutation::Flip(i, b) => {
                if let Some(x) = v.get_mut(i % n) {
                    *x ^= b;
                }
            }
            Mutation::Set(i, b) => {
                if let Some(x) = v.get_mut(i % n) {
                    *x = b;
                }
            }
            Mutation::Truncate(i) => v.truncate(i % n),
            Mutation::Insert(i, b) => v.insert(i % (v.len() + 1), b),
            Mutation::Remove(i) => {
                if !v.is_empty() {
                    v.remove(i % v.len());
                }
            }
        }
    }
    v
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![prop::sample::select(TAGS), any::<u8>()];
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), byte).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

/// `term_to_binary(T, [compressed])` framing around an encoding.
fn compressed(encoded: &[u8]) -> Vec<u8> {
    let body = &encoded[1..];
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(body).unwrap();
    let mut out = vec![131, 80];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&z.finish().unwrap());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(mut input in biased_bytes(96), versioned in any::<bool>()) {
        if versioned {
            input.insert(0, 131);
        }
        decode_all_ways(&input);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_encodings_never_panic(
        t in term(),
        muts in prop::collection::vec(mutation(), 1..4),
        zip in any::<bool>(),
    ) {
        let valid = if zip { compressed(&encode(&t)) } else { encode(&t) };
        decode_all_ways(&mutate(valid, &muts));
    }

    #[test]
    fn round_trip(t in term()) {
        let bytes = encode(&t);
        prop_assert_eq!(&decode(&bytes).unwrap(), &t);
        prop_assert_eq!(&decode_bytes(&Bytes::from(bytes.clone())).unwrap(), &t);
        prop_assert_eq!(&decode(&encode_latin1_atoms(&t)).unwrap(), &t);
        prop_assert_eq!(&decode(&compressed(&bytes)).unwrap(), &t);
        // A term's encoding is self-delimiting: no strict prefix decodes.
        if bytes.len() <= 2048 {
            for n in 0..bytes.len() {
                prop_assert!(decode(&bytes[..n]).is_err());
            }
        }
    }
}
