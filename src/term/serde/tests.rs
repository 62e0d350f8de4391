use super::{from_term, from_term_ref, to_term, Deserializer, Error, ErrorKind};
use crate::term::{Atom, NativeRecord, OpaqueFun, Pid, Port, Reference, Term};
use bytes::Bytes;
use num_bigint::BigInt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

fn a(s: &str) -> Term {
    Term::atom(s)
}
fn b(s: &str) -> Term {
    Term::from(s)
}
fn t(items: Vec<Term>) -> Term {
    Term::Tuple(items)
}
fn l(items: Vec<Term>) -> Term {
    Term::List(items)
}
fn m(entries: Vec<(Term, Term)>) -> Term {
    Term::Map(entries)
}
fn i(n: i64) -> Term {
    Term::Int(n)
}
fn nil() -> Term {
    a("nil")
}

/// `value` serializes to `term`, and `term` deserializes (owned and
/// borrowed) back to `value`.
#[track_caller]
fn round_trip<T>(value: T, term: Term)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    assert_eq!(to_term(&value).unwrap(), term, "serializing {value:?}");
    let by_ref: T = from_term_ref(&term).unwrap();
    assert_eq!(by_ref, value, "deserializing by reference {term:?}");
    let owned: T = from_term(term.clone()).unwrap();
    assert_eq!(owned, value, "deserializing owned {term:?}");
}

#[track_caller]
fn de_err<T: DeserializeOwned + Debug>(term: Term) -> Error {
    let by_ref = from_term_ref::<T>(&term).expect_err("expected an error");
    let owned = from_term::<T>(term).expect_err("expected an error");
    assert_eq!(by_ref.to_string(), owned.to_string(), "owned and borrowed errors differ");
    by_ref
}

fn pid() -> Pid {
    Pid { node: Atom::new("a@host"), id: 85, serial: 0, creation: 1_700_000_000 }
}
fn reference() -> Reference {
    Reference { node: Atom::new("a@host"), creation: 3, ids: smallvec::smallvec![1, 2, 3] }
}
fn port() -> Port {
    Port { node: Atom::new("a@host"), id: 1 << 40, creation: 3 }
}

// ---- scalars ----------------------------------------------------------

#[test]
fn booleans_are_atoms() {
    round_trip(true, a("true"));
    round_trip(false, a("false"));
    let e = de_err::<bool>(i(1));
    assert_eq!(e.to_string(), "expected a boolean (true or false), found integer 1");
}

#[test]
fn integers() {
    round_trip(-5i8, i(-5));
    round_trip(300i16, i(300));
    round_trip(-70_000i32, i(-70_000));
    round_trip(i64::MIN, i(i64::MIN));
    round_trip(255u8, i(255));
    round_trip(65_535u16, i(65_535));
    round_trip(u32::MAX, i(u32::MAX as i64));
    round_trip(i64::MAX as u64, i(i64::MAX));
    round_trip(u64::MAX, Term::Big(BigInt::from(u64::MAX)));
    round_trip(5i128, i(5));
    round_trip(i128::MIN, Term::Big(BigInt::from(i128::MIN)));
    round_trip(u128::MAX, Term::Big(BigInt::from(u128::MAX)));
}

#[test]
fn integer_range_errors_name_the_range() {
    let e = de_err::<u8>(i(300));
    assert_eq!(e.to_string(), "expected an integer in u8 range (0..=255), found integer 300");
    assert!(matches!(e.kind(), ErrorKind::Mismatch { .. }));
    let e = de_err::<u64>(i(-1));
    assert_eq!(e.to_string(), "expected an integer in u64 range (0..=18446744073709551615), found integer -1");
    let e = de_err::<i64>(Term::Big(BigInt::from(u64::MAX)));
    assert!(e.to_string().contains("i64 range"), "{e}");
    let e = de_err::<i32>(b("12"));
    assert_eq!(e.to_string(), "expected an integer, found binary \"12\"");
}

#[test]
fn floats() {
    round_trip(1.5f64, Term::Float(1.5));
    round_trip(-0.25f32, Term::Float(-0.25));
    assert_eq!(from_term::<f64>(i(3)).unwrap(), 3.0);
    assert_eq!(from_term::<f32>(i(-3)).unwrap(), -3.0);
    assert_eq!(from_term::<f64>(Term::Big(BigInt::from(u64::MAX))).unwrap(), u64::MAX as f64);
    let e = de_err::<f32>(Term::Float(1e300));
    assert!(e.to_string().starts_with("expected a float in f32 range"), "{e}");
    let e = de_err::<f64>(a("x"));
    assert_eq!(e.to_string(), "expected a float, found atom :x");
}

#[test]
fn non_finite_floats_are_rejected() {
    for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let e = to_term(&x).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Unsupported(_)), "{e}");
        assert!(e.to_string().contains("the BEAM has no NaN or infinity"), "{e}");
    }
    #[derive(Serialize)]
    struct S {
        ratio: f32,
    }
    let e = to_term(&S { ratio: f32::NAN }).unwrap_err();
    assert!(e.to_string().ends_with("for field `ratio`"), "{e}");
}

#[test]
fn strings_and_chars_are_binaries() {
    round_trip("héllo".to_string(), b("héllo"));
    round_trip(String::new(), b(""));
    round_trip('é', b("é"));
    assert_eq!(to_term("x").unwrap(), b("x"));
    let text = b("abc");
    let borrowed: &str = from_term_ref(&text).unwrap();
    assert_eq!(borrowed, "abc");
    let atom = a("abc");
    assert!(from_term_ref::<&str>(&atom).is_err(), "&str refuses atoms, like String");
    assert_eq!(from_term::<char>(i('a' as i64)).unwrap(), 'a');
    let e = de_err::<char>(b("ab"));
    assert_eq!(e.to_string(), "expected a one-character binary, found binary \"ab\"");
}

#[test]
fn strings_accept_charlists_but_not_atoms() {
    let charlist = l("hé".chars().map(|c| i(c as i64)).collect());
    assert_eq!(from_term::<String>(charlist).unwrap(), "hé");
    assert_eq!(from_term::<String>(l(vec![])).unwrap(), "");
    let e = de_err::<String>(a("ann"));
    assert_eq!(e.to_string(), "expected a UTF-8 binary (string), found atom :ann");
    let e = de_err::<String>(Term::Binary(Bytes::from_static(&[0xff, 0])));
    assert_eq!(e.to_string(), "expected a UTF-8 binary (string), found binary <<255, 0>>");
    let e = de_err::<String>(l(vec![i(-1)]));
    assert_eq!(e.to_string(), "expected a UTF-8 binary (string), found list [-1]");
}

#[test]
fn bytes_are_binaries_and_vec_u8_is_a_list() {
    round_trip(serde_bytes::ByteBuf::from(vec![1, 2, 255]), Term::Binary(Bytes::from_static(&[1, 2, 255])));
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Blob {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        plain: Vec<u8>,
    }
    round_trip(
        Blob { data: vec![0, 1], plain: vec![7] },
        m(vec![(a("data"), Term::Binary(Bytes::from_static(&[0, 1]))), (a("plain"), l(vec![i(7)]))]),
    );
    let term = Term::Binary(Bytes::from_static(b"raw"));
    let borrowed: &[u8] = serde_bytes::deserialize(Deserializer::from_ref(&term)).unwrap();
    assert_eq!(borrowed, b"raw");
    // A list of bytes is accepted where bytes are expected.
    let buf: serde_bytes::ByteBuf = from_term(l(vec![i(1), i(2)])).unwrap();
    assert_eq!(buf.as_ref(), &[1, 2]);
}

// ---- unit, option, newtype, tuples --------------------------------------

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Marker;

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Meters(f64);

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Point(i32, i32);

#[test]
fn unit_and_unit_struct_are_nil() {
    round_trip((), nil());
    round_trip(Marker, nil());
    let e = de_err::<()>(l(vec![]));
    assert_eq!(e.to_string(), "expected nil, found list []");
}

#[test]
fn options() {
    round_trip(None::<i32>, nil());
    round_trip(Some(5), i(5));
    round_trip(Some("x".to_string()), b("x"));
    // Documented ambiguity: Some(nil) reads back as None.
    assert_eq!(to_term(&Some(())).unwrap(), nil());
    assert_eq!(from_term::<Option<()>>(nil()).unwrap(), None);
}

#[test]
fn newtype_struct_is_its_inner_value() {
    round_trip(Meters(2.5), Term::Float(2.5));
}

#[test]
fn tuples_tuple_structs_and_arrays_are_tuples() {
    round_trip((1, "a".to_string(), true), t(vec![i(1), b("a"), a("true")]));
    round_trip(Point(1, -2), t(vec![i(1), i(-2)]));
    round_trip([1u8, 2, 3], t(vec![i(1), i(2), i(3)]));
    let e = de_err::<(i32, i32)>(t(vec![i(1)]));
    assert_eq!(e.to_string(), "expected a tuple of 2 elements, found tuple {1}");
    let e = de_err::<Point>(l(vec![i(1), i(2)]));
    assert_eq!(e.to_string(), "expected a tuple of 2 elements, found list [1, 2]");
}

#[test]
fn sequences_are_lists() {
    round_trip(vec![1, 2, 3], l(vec![i(1), i(2), i(3)]));
    round_trip(Vec::<String>::new(), l(vec![]));
    round_trip(vec![vec!["a".to_string()]], l(vec![l(vec![b("a")])]));
    let e = de_err::<Vec<i32>>(t(vec![i(1)]));
    assert_eq!(e.to_string(), "expected a list, found tuple {1}");
    let e = de_err::<Vec<String>>(l(vec![b("a"), i(2)]));
    assert_eq!(e.to_string(), "expected a UTF-8 binary (string) for field `[1]`, found integer 2");
}

// ---- structs -------------------------------------------------------------

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
struct Person {
    name: String,
    age: u32,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Account {
    owner: Person,
    balance: i64,
    tags: Vec<String>,
    parent: Option<Box<Account>>,
}

fn person_term() -> Term {
    m(vec![(a("name"), b("x")), (a("age"), i(3))])
}

#[test]
fn structs_are_maps_with_atom_keys() {
    round_trip(Person { name: "x".into(), age: 3 }, person_term());
}

#[test]
fn structs_accept_binary_keys_and_ignore_unknown_and_struct_keys() {
    let term = m(vec![
        (a("__struct__"), a("Elixir.MyApp.Person")),
        (b("name"), b("x")),
        (a("extra"), l(vec![])),
        (i(7), i(7)),
        (t(vec![a("x")]), i(1)),
        (a("age"), i(3)),
    ]);
    let p: Person = from_term(term).unwrap();
    assert_eq!(p, Person { name: "x".into(), age: 3 });
}

#[test]
fn struct_errors() {
    let e = de_err::<Person>(m(vec![(a("name"), b("x"))]));
    assert_eq!(e.to_string(), "missing field `age`");
    assert_eq!(e.kind(), &ErrorKind::MissingField("age"));
    let e = de_err::<Person>(i(5));
    assert_eq!(e.to_string(), "expected a map (struct Person), found integer 5");
    let e = de_err::<Person>(m(vec![(a("name"), b("x")), (b("name"), b("y")), (a("age"), i(1))]));
    assert_eq!(e.to_string(), "duplicate field `name`");

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Strict {
        a: i32,
    }
    let e = de_err::<Strict>(m(vec![(a("a"), i(1)), (a("b"), i(2))]));
    assert_eq!(e.to_string(), "unknown field `b`, expected `a`");
    // The __struct__ key is dropped even for strict structs.
    let ok: Strict = from_term(m(vec![(a("__struct__"), a("Elixir.S")), (a("a"), i(1))])).unwrap();
    assert_eq!(ok.a, 1);
}

#[test]
fn struct_defaults_and_options() {
    #[derive(Deserialize, Debug, PartialEq)]
    struct Opts {
        #[serde(default)]
        count: u32,
        label: Option<String>,
    }
    let o: Opts = from_term(m(vec![])).unwrap();
    assert_eq!(o, Opts { count: 0, label: None });
    let o: Opts = from_term(m(vec![(a("label"), nil())])).unwrap();
    assert_eq!(o.label, None);
}

#[test]
fn struct_may_keep_the_struct_key() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Elixirish {
        #[serde(rename = "__struct__")]
        module: Atom,
        name: String,
    }
    let v = Elixirish { module: Atom::new("Elixir.MyApp.User"), name: "ann".into() };
    round_trip(v, m(vec![(a("__struct__"), a("Elixir.MyApp.User")), (a("name"), b("ann"))]));
}

#[test]
fn nested_structs_and_error_paths() {
    let acc = Account {
        owner: Person { name: "ann".into(), age: 30 },
        balance: 10,
        tags: vec!["a".into()],
        parent: Some(Box::new(Account {
            owner: Person { name: "bob".into(), age: 50 },
            balance: -1,
            tags: vec![],
            parent: None,
        })),
    };
    let parent = m(vec![
        (a("owner"), m(vec![(a("name"), b("bob")), (a("age"), i(50))])),
        (a("balance"), i(-1)),
        (a("tags"), l(vec![])),
        (a("parent"), nil()),
    ]);
    let term = m(vec![
        (a("owner"), m(vec![(a("name"), b("ann")), (a("age"), i(30))])),
        (a("balance"), i(10)),
        (a("tags"), l(vec![b("a")])),
        (a("parent"), parent),
    ]);
    round_trip(acc, term);

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Outer {
        account: Account,
    }
    let bad = m(vec![(
        a("account"),
        m(vec![
            (a("owner"), i(5)),
            (a("balance"), i(1)),
            (a("tags"), l(vec![])),
            (a("parent"), nil()),
        ]),
    )]);
    let e = de_err::<Outer>(bad);
    assert_eq!(e.to_string(), "expected a map (struct Person) for field `account.owner`, found integer 5");
    assert_eq!(e.path(), "account.owner");

    let bad = m(vec![(
        a("account"),
        m(vec![
            (a("owner"), m(vec![(a("name"), i(5)), (a("age"), i(1))])),
            (a("balance"), i(1)),
            (a("tags"), l(vec![b("ok"), a("bad")])),
            (a("parent"), nil()),
        ]),
    )]);
    let e = de_err::<Outer>(bad.clone());
    assert_eq!(e.to_string(), "expected a UTF-8 binary (string) for field `account.owner.name`, found integer 5");

    let bad = m(vec![(
        a("account"),
        m(vec![(a("owner"), m(vec![(a("age"), i(1))])), (a("balance"), i(1))]),
    )]);
    let e = de_err::<Outer>(bad);
    assert_eq!(e.to_string(), "missing field `account.owner.name`");
}

// ---- enums ---------------------------------------------------------------

#[derive(Serialize, Deserialize, PartialEq, Debug)]
enum Color {
    Red,
    Green,
}

#[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
#[serde(rename_all = "snake_case")]
enum Event {
    Opened,
    Deposit(i64),
    Transfer(String, i64),
    Closed { reason: String, at: u64 },
    BigThing(Person),
}

#[test]
fn unit_variants_use_the_serde_name() {
    round_trip(Color::Red, a("Red"));
    round_trip(Event::Opened, a("opened"));
    let e = de_err::<Color>(a("red"));
    assert_eq!(e.to_string(), "unknown variant `red`, expected one of `Red`, `Green`");
    assert!(matches!(e.kind(), ErrorKind::UnknownVariant { .. }));
}

#[test]
fn enums_of_all_four_kinds() {
    round_trip(Event::Deposit(5), t(vec![a("deposit"), i(5)]));
    round_trip(Event::Transfer("bob".into(), 7), t(vec![a("transfer"), b("bob"), i(7)]));
    round_trip(
        Event::Closed { reason: "done".into(), at: 9 },
        t(vec![a("closed"), m(vec![(a("reason"), b("done")), (a("at"), i(9))])]),
    );
    round_trip(Event::BigThing(Person { name: "x".into(), age: 3 }), t(vec![a("big_thing"), person_term()]));
}

#[test]
fn enums_accept_binary_tags_and_one_tuples() {
    assert_eq!(from_term::<Event>(b("opened")).unwrap(), Event::Opened);
    assert_eq!(from_term::<Event>(t(vec![a("opened")])).unwrap(), Event::Opened);
    assert_eq!(from_term::<Event>(t(vec![b("deposit"), i(1)])).unwrap(), Event::Deposit(1));
}

#[test]
fn enum_shape_errors() {
    let e = de_err::<Event>(a("deposit"));
    assert_eq!(e.to_string(), "expected a tuple {:deposit, value}, found atom :deposit");
    let e = de_err::<Event>(t(vec![a("opened"), i(1)]));
    assert_eq!(e.to_string(), "expected atom :opened (unit variant), found tuple of 2 elements tagged :opened");
    let e = de_err::<Event>(t(vec![a("transfer"), b("bob")]));
    assert_eq!(e.to_string(), "expected a tuple {:transfer, _, _}, found tuple of 2 elements tagged :transfer");
    let e = de_err::<Event>(t(vec![a("closed"), i(1)]));
    assert_eq!(e.to_string(), "expected a map (struct variant) for field `closed`, found integer 1");
    let e = de_err::<Event>(t(vec![a("transfer"), b("bob"), b("x")]));
    assert_eq!(e.to_string(), "expected an integer for field `transfer[1]`, found binary \"x\"");
    let e = de_err::<Event>(i(3));
    assert_eq!(e.to_string(), "expected an atom or a tagged tuple (enum Event), found integer 3");
    let e = de_err::<Event>(t(vec![i(1), i(2)]));
    assert!(e.to_string().starts_with("expected an atom or a tagged tuple"), "{e}");
    let e = de_err::<Event>(t(vec![]));
    assert!(e.to_string().starts_with("expected an atom or a tagged tuple"), "{e}");

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Holder {
        events: Vec<Event>,
    }
    let e = de_err::<Holder>(m(vec![(a("events"), l(vec![a("opened"), a("nope")]))]));
    assert_eq!(
        e.to_string(),
        "unknown variant `nope` for field `events[1]`, expected one of `opened`, `deposit`, `transfer`, `closed`, `big_thing`"
    );
}

#[test]
fn internally_and_adjacently_tagged_enums() {
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Msg {
        Ping { seq: u32 },
        Stop,
    }
    round_trip(Msg::Ping { seq: 1 }, m(vec![(a("type"), b("ping")), (a("seq"), i(1))]));
    round_trip(Msg::Stop, m(vec![(a("type"), b("stop"))]));
    // Elixir senders may use an atom for the tag.
    assert_eq!(from_term::<Msg>(m(vec![(a("type"), a("stop"))])).unwrap(), Msg::Stop);

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    #[serde(tag = "t", content = "c")]
    enum Adj {
        Num(i32),
    }
    // serde writes an adjacent tag as a unit variant, so it is an atom.
    round_trip(Adj::Num(4), m(vec![(a("t"), a("Num")), (a("c"), i(4))]));
    assert_eq!(from_term::<Adj>(m(vec![(a("t"), b("Num")), (a("c"), i(4))])).unwrap(), Adj::Num(4));
}

#[test]
fn untagged_enums_work_through_buffering() {
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    #[serde(untagged)]
    enum Either {
        Num(i64),
        Text(String),
        Who { owner: Pid },
        Pair(i64, i64),
    }
    round_trip(Either::Num(3), i(3));
    round_trip(Either::Text("x".into()), b("x"));
    round_trip(Either::Who { owner: pid() }, m(vec![(a("owner"), Term::Pid(pid()))]));
    round_trip(Either::Pair(1, 2), t(vec![i(1), i(2)]));
}

#[test]
fn flatten_serializes_binary_keys_and_reads_either() {
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Inner {
        x: i32,
    }
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Outer {
        name: String,
        #[serde(flatten)]
        inner: Inner,
    }
    let v = Outer { name: "n".into(), inner: Inner { x: 1 } };
    let term = to_term(&v).unwrap();
    assert_eq!(term, m(vec![(b("name"), b("n")), (b("x"), i(1))]));
    assert_eq!(from_term::<Outer>(term).unwrap(), v);
    let atom_keys = m(vec![(a("name"), b("n")), (a("x"), i(1))]);
    assert_eq!(from_term::<Outer>(atom_keys).unwrap(), v);
}

// ---- maps ------------------------------------------------------------------

#[test]
fn maps_with_string_keys_have_binary_keys() {
    let mut hm = HashMap::new();
    hm.insert("k".to_string(), 1i64);
    round_trip(hm, m(vec![(b("k"), i(1))]));

    let mut bt = BTreeMap::new();
    bt.insert("a".to_string(), vec![1]);
    bt.insert("b".to_string(), vec![]);
    round_trip(bt, m(vec![(b("a"), l(vec![i(1)])), (b("b"), l(vec![]))]));

    let mut ints = BTreeMap::new();
    ints.insert(1u8, true);
    round_trip(ints, m(vec![(i(1), a("true"))]));

    let mut by_atom = BTreeMap::new();
    by_atom.insert(Atom::new("ok"), 1);
    round_trip(by_atom, m(vec![(a("ok"), i(1))]));

    let mut by_variant = BTreeMap::new();
    by_variant.insert(ColorKey::Red, 1);
    round_trip(by_variant, m(vec![(a("Red"), i(1))]));
}

#[test]
fn map_keys_accept_atoms_as_strings() {
    let hm: HashMap<String, i64> = from_term(m(vec![(a("k"), i(1)), (b("j"), i(2))])).unwrap();
    assert_eq!(hm.get("k"), Some(&1));
    assert_eq!(hm.get("j"), Some(&2));
    let term = m(vec![(a("k"), i(1))]);
    let borrowed: BTreeMap<&str, i64> = from_term_ref(&term).unwrap();
    assert_eq!(borrowed.get("k"), Some(&1));
    // Only the key itself: values stay strict.
    let e = de_err::<HashMap<String, String>>(m(vec![(a("k"), a("v"))]));
    assert_eq!(e.to_string(), "expected a UTF-8 binary (string) for field `[:k]`, found atom :v");
}

#[derive(Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum ColorKey {
    Red,
}

#[test]
fn map_errors_name_the_key() {
    let e = de_err::<HashMap<String, i64>>(m(vec![(b("k"), b("v"))]));
    assert_eq!(e.to_string(), "expected an integer for field `[\"k\"]`, found binary \"v\"");
    let e = de_err::<HashMap<String, i64>>(m(vec![(i(1), i(1))]));
    assert_eq!(e.to_string(), "expected a UTF-8 binary (string) for field `[1]`, found integer 1");
    let e = de_err::<HashMap<String, i64>>(l(vec![]));
    assert_eq!(e.to_string(), "expected a map, found list []");
}

#[test]
fn serialized_maps_have_unique_keys() {
    struct Dupes(usize);
    impl Serialize for Dupes {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = s.serialize_map(None)?;
            for round in 0..2 {
                for k in 0..self.0 {
                    map.serialize_entry(&format!("k{k}"), &round)?;
                }
                map.serialize_entry(&(1, 2), &round)?;
            }
            map.end()
        }
    }
    for n in [3, 40] {
        let Term::Map(entries) = to_term(&Dupes(n)).unwrap() else { panic!("not a map") };
        assert_eq!(entries.len(), n + 1);
        assert!(entries.iter().all(|(_, v)| *v == i(1)), "last value wins");
        assert_eq!(entries[0].0, b("k0"), "first position kept");
    }
}

// ---- pass-through ------------------------------------------------------

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Envelope {
    from: Pid,
    reply_to: Option<Pid>,
    ref_: Reference,
    port: Port,
    kind: Atom,
    payload: Term,
    extras: Vec<Term>,
}

#[test]
fn pass_through_types_cross_unchanged() {
    let payload = t(vec![
        a("weird"),
        Term::ImproperList(vec![i(1)], Box::new(i(2))),
        Term::BitBinary { bytes: Bytes::from_static(&[0xf0]), bits: 4 },
        Term::Fun(OpaqueFun(Bytes::from_static(&[113, 1, 2]))),
        m(vec![(t(vec![i(1)]), Term::Float(0.5))]),
        Term::Pid(pid()),
    ]);
    let env = Envelope {
        from: pid(),
        reply_to: Some(pid()),
        ref_: reference(),
        port: port(),
        kind: Atom::new("call"),
        payload: payload.clone(),
        extras: vec![a("x"), Term::Big(BigInt::from(u128::MAX))],
    };
    let term = m(vec![
        (a("from"), Term::Pid(pid())),
        (a("reply_to"), Term::Pid(pid())),
        (a("ref_"), Term::Ref(reference())),
        (a("port"), Term::Port(port())),
        (a("kind"), a("call")),
        (a("payload"), payload),
        (a("extras"), l(vec![a("x"), Term::Big(BigInt::from(u128::MAX))])),
    ]);
    round_trip(env, term);
}

/// `#people:person{name = <<"ann">>, age = 30}`, exported.
fn person_record() -> Term {
    let fields = vec![(Atom::new("name"), b("ann")), (Atom::new("age"), i(30))];
    NativeRecord::new(Atom::new("people"), Atom::new("person"), true, fields).unwrap().into()
}

/// Decision: a native record deserializes like a map of its fields (atom
/// keys), so Rust structs read Erlang records as they read Elixir structs;
/// the module and name are not checked. `Term` fields take it unchanged.
#[test]
fn native_records_read_as_maps_of_their_fields() {
    let rec = person_record();
    let want = Person { name: "ann".into(), age: 30 };
    assert_eq!(from_term_ref::<Person>(&rec).unwrap(), want);
    assert_eq!(from_term::<Person>(rec.clone()).unwrap(), want);
    let as_map: HashMap<String, Term> = from_term_ref(&rec).unwrap();
    assert_eq!(as_map.get("name"), Some(&b("ann")));
    assert_eq!(as_map.get("age"), Some(&i(30)));
    // Pass-through keeps the record, not a map.
    assert_eq!(from_term_ref::<Term>(&rec).unwrap(), rec);
    assert_eq!(to_term(&rec).unwrap(), rec);
    round_trip(t(vec![a("ok"), rec.clone()]), t(vec![a("ok"), rec.clone()]));
    // Serializing a Rust struct still gives a map: erlnode never invents
    // records.
    assert_eq!(to_term(&want).unwrap(), m(vec![(a("name"), b("ann")), (a("age"), i(30))]));
    let e = de_err::<i32>(rec);
    assert_eq!(
        e.to_string(),
        "expected an integer, found native record #people:person{name = \"ann\", age = 30}"
    );
}

#[test]
fn pass_through_at_top_level() {
    let term = t(vec![a("ok"), Term::Pid(pid())]);
    round_trip(term.clone(), term);
    round_trip(pid(), Term::Pid(pid()));
    round_trip(Atom::new("hello world"), a("hello world"));
    round_trip(reference(), Term::Ref(reference()));
}

#[test]
fn pass_through_mismatches_are_clear() {
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Call {
        from: Pid,
    }
    let e = de_err::<Call>(m(vec![(a("from"), i(5))]));
    assert_eq!(e.to_string(), "expected a pid for field `from`, found integer 5");
    let e = de_err::<Atom>(b("x"));
    assert_eq!(e.to_string(), "expected an atom, found binary \"x\"");
    let e = de_err::<Reference>(Term::Pid(pid()));
    assert_eq!(e.to_string(), "expected a reference, found pid #PID<a@host.85.0>");
    assert_eq!(from_term::<Option<Pid>>(nil()).unwrap(), None);
}

#[test]
fn pass_through_with_serde_value_deserializers() {
    // Another format handing over a string gets an atom.
    use serde::de::IntoDeserializer;
    let d: serde::de::value::StrDeserializer<serde::de::value::Error> = "ok".into_deserializer();
    assert_eq!(Atom::deserialize(d).unwrap(), Atom::new("ok"));
    let d: serde::de::value::I64Deserializer<serde::de::value::Error> = 5i64.into_deserializer();
    assert_eq!(Term::deserialize(d).unwrap(), i(5));
}

/// A `Binary` field crosses the bridge as the same bytes, both ways; on
/// the wire it is what a `serde_bytes` vector gives.
#[test]
fn binary_fields_are_shared_not_copied() {
    use crate::term::Binary;
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Blob {
        data: Binary,
        n: u32,
    }
    #[derive(Serialize)]
    struct AsVec {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        n: u32,
    }
    let blob = Blob { data: Binary::from(vec![7u8; 100_000]), n: 1 };
    let term = to_term(&blob).unwrap();
    let Term::Map(entries) = &term else { panic!("{term:?}") };
    let Some((_, Term::Binary(inner))) = entries.iter().find(|(k, _)| *k == a("data")) else { panic!("{term:?}") };
    assert_eq!(inner.as_ptr(), blob.data.as_ptr(), "serialized without a copy");
    assert_eq!(term, to_term(&AsVec { data: vec![7u8; 100_000], n: 1 }).unwrap(), "the same term as a serde_bytes vector");

    // Decoded from a received message, the field is a slice of it.
    let wire = Bytes::from(crate::term::encode(&term));
    let received = crate::term::decode_bytes(&wire).unwrap();
    let back: Blob = from_term(received.clone()).unwrap();
    assert_eq!(back, blob);
    let within = wire.as_ptr() as usize..wire.as_ptr() as usize + wire.len();
    assert!(within.contains(&(back.data.as_ptr() as usize)), "taken from the message, not copied");
    // By reference too (the clone of a binary term shares its bytes).
    let by_ref: Blob = from_term_ref(&received).unwrap();
    assert!(within.contains(&(by_ref.data.as_ptr() as usize)));
    // detached() copies, and no longer points into the message.
    assert!(!within.contains(&(back.data.detached().as_ptr() as usize)));

    let e = de_err::<Blob>(m(vec![(a("data"), l(vec![i(1)])), (a("n"), i(1))]));
    assert_eq!(e.to_string(), "expected a binary for field `data`, found list [1]");
    // Through serde's buffered replay (an untagged enum), and from other
    // formats: plain bytes.
    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(untagged)]
    enum Either {
        Blob(Binary),
        Count(i64),
    }
    assert_eq!(from_term::<Either>(b("xyz")).unwrap(), Either::Blob(Binary::from(&b"xyz"[..])));
    assert_eq!(from_term::<Either>(i(3)).unwrap(), Either::Count(3));
    use serde::de::IntoDeserializer;
    let d: serde::de::value::BytesDeserializer<serde::de::value::Error> = (&b"ab"[..]).into_deserializer();
    assert_eq!(Binary::deserialize(d).unwrap(), Binary::from(&b"ab"[..]));
    assert_eq!(format!("{:?}", Binary::from(vec![1u8; 40])), "Binary(40 bytes: [01, 01, 01, 01, 01, 01, 01, 01, 01, 01, 01, 01, 01, 01, 01, 01] ..)");
}

// ---- robustness ------------------------------------------------------------

#[derive(Deserialize, Debug)]
#[allow(dead_code)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}

#[test]
fn deep_terms_stop_at_the_depth_limit() {
    let mut term = a("Leaf");
    for _ in 0..100_000 {
        term = t(vec![a("Node"), term]);
    }
    let e = from_term_ref::<Tree>(&term).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::TooDeep { limit: 256 }), "{e}");
    assert!(e.to_string().starts_with("term nested deeper than 256 levels for field `Node.Node"), "{e}");
    let shallow = {
        let mut t0 = a("Leaf");
        for _ in 0..100 {
            t0 = t(vec![a("Node"), t0]);
        }
        t0
    };
    assert!(from_term_ref::<Tree>(&shallow).is_ok());
    let limited = Deserializer::from_ref(&shallow).with_depth_limit(10);
    assert!(Tree::deserialize(limited).is_err());
    // Take the deep term apart iteratively: its recursive drop is not ours
    // to test.
    while let Term::Tuple(mut items) = term {
        term = items.pop().unwrap();
    }
}

#[test]
fn deep_pass_through_terms_do_not_overflow_the_stack() {
    // As deep as the decoder accepts; the derived Clone would overflow a
    // test thread's stack here in debug builds.
    let mut term = a("x");
    for _ in 0..10_000 {
        term = m(vec![(a("k"), l(vec![t(vec![term])]))]);
    }
    let copy: Term = from_term_ref(&term).unwrap();
    let again = to_term(&copy).unwrap();
    for v in [term, copy, again] {
        let mut cur = v;
        let mut depth = 0;
        loop {
            cur = match cur {
                Term::Map(mut e) => e.pop().unwrap().1,
                Term::List(mut e) | Term::Tuple(mut e) => e.pop().unwrap(),
                leaf => {
                    assert_eq!(leaf, a("x"));
                    break;
                }
            };
            depth += 1;
        }
        assert_eq!(depth, 30_000);
    }
}

#[test]
fn deep_clone_matches_clone() {
    let samples = vec![
        a("x"),
        l(vec![]),
        m(vec![]),
        Term::ImproperList(vec![i(1), l(vec![i(2)])], Box::new(t(vec![i(3), m(vec![(i(1), i(2))])]))),
        m(vec![(t(vec![l(vec![i(1)]), m(vec![(a("a"), b("b"))])]), l(vec![nil(), Term::Pid(pid())])), (i(2), m(vec![]))]),
        t(vec![l(vec![l(vec![l(vec![])])]), Term::ImproperList(vec![i(1)], Box::new(i(2))), Term::Float(1.0)]),
        person_record(),
        l(vec![person_record(), m(vec![(person_record(), t(vec![person_record()]))])]),
        NativeRecord::new(Atom::new("m"), Atom::new("e"), false, vec![]).unwrap().into(),
    ];
    for s in samples {
        assert_eq!(super::deepclone::clone_term(&s), s.clone());
    }
}

#[test]
fn long_terms_are_truncated_in_messages() {
    let huge = Term::Big(BigInt::from(7u8).pow(100_000));
    let e = de_err::<i32>(huge);
    assert!(e.to_string().contains("-bit integer>"), "{e}");
    let e = de_err::<i32>(Term::Binary(Bytes::from(vec![b'a'; 10_000])));
    assert!(e.to_string().len() < 120, "{e}");
    assert!(e.to_string().ends_with("..."), "{e}");
    let e = de_err::<i32>(l((0..10_000).map(i).collect()));
    assert!(e.to_string().len() < 120, "{e}");
}

/// Deterministic pseudo-random terms thrown at many target types: every
/// outcome must be `Ok` or `Err`, never a panic.
#[test]
fn arbitrary_terms_never_panic() {
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }
    fn gen(r: &mut Rng, depth: u32) -> Term {
        let names = ["opened", "deposit", "transfer", "closed", "name", "age", "nil", "true", "__struct__", "Red"];
        let leaf = depth == 0 || r.below(3) == 0;
        match if leaf { r.below(8) } else { 8 + r.below(4) } {
            0 => a(names[r.below(names.len() as u64) as usize]),
            1 => i(r.next() as i64 >> r.below(64)),
            2 => Term::Big(BigInt::from(r.next()) * BigInt::from(r.next()) * BigInt::from(r.next())),
            3 => Term::Float(f64::from_bits(r.next())),
            4 => Term::Binary(Bytes::from((0..r.below(6)).map(|_| r.next() as u8).collect::<Vec<_>>())),
            5 => b(names[r.below(names.len() as u64) as usize]),
            6 => Term::Pid(pid()),
            7 => match r.below(5) {
                0 => Term::Ref(reference()),
                1 => Term::Port(port()),
                2 => Term::BitBinary { bytes: Bytes::from_static(&[1]), bits: 3 },
                3 => person_record(),
                _ => Term::Fun(OpaqueFun(Bytes::from_static(&[113]))),
            },
            8 => l((0..r.below(4)).map(|_| gen(r, depth - 1)).collect()),
            9 => t((0..r.below(4)).map(|_| gen(r, depth - 1)).collect()),
            10 => m((0..r.below(4)).map(|_| (gen(r, depth - 1), gen(r, depth - 1))).collect()),
            _ => Term::ImproperList(vec![gen(r, depth - 1)], Box::new(gen(r, depth - 1))),
        }
    }
    fn all<'a>(term: &'a Term) {
        let _ = from_term_ref::<Event>(term);
        let _ = from_term_ref::<Account>(term);
        let _ = from_term_ref::<Person>(term);
        let _ = from_term_ref::<Envelope>(term);
        let _ = from_term_ref::<Vec<Option<Color>>>(term);
        let _ = from_term_ref::<HashMap<String, Vec<u8>>>(term);
        let _ = from_term_ref::<BTreeMap<i64, (f32, char)>>(term);
        let _ = from_term_ref::<(u8, i128, u128, String, bool)>(term);
        let _ = from_term_ref::<&'a str>(term);
        let _ = from_term_ref::<serde_bytes::ByteBuf>(term);
        let _ = from_term_ref::<Term>(term);
        let _ = from_term_ref::<Tree>(term);
        let _ = from_term::<Vec<Event>>(term.clone());
        let _ = from_term::<Option<Term>>(term.clone());
        if let Ok(v) = from_term_ref::<Term>(term) {
            let _ = to_term(&v);
        }
    }
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..5_000 {
        let term = gen(&mut r, 4);
        all(&term);
        all(&t(vec![a("deposit"), term.clone()]));
        all(&m(vec![(a("name"), term.clone()), (a("age"), term)]));
    }
}

#[test]
fn error_type_is_usable_as_std_error() {
    fn takes(_: &(dyn std::error::Error + Send + Sync + 'static)) {}
    let e = de_err::<u8>(i(-1));
    takes(&e);
    assert_eq!(e.path(), "");
}
