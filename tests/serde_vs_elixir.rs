//! The serde mapping checked against real Elixir: what Rust serializes must
//! be `===` to the literal an Elixir programmer would write, and what Elixir
//! sends must deserialize into the Rust types.
//!
//! Needs `elixir` on PATH; without it these tests fail (they never skip),
//! because a green run must mean the mapping was checked.

use erlnode::term::serde::{from_term, to_term};
use erlnode::term::{decode, encode, Atom, Pid, Reference, Term};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Status {
    Open,
    Frozen,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Event {
    Opened,
    Deposit(i64),
    Transfer(String, i64),
    Closed { reason: String },
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Owner {
    name: String,
    age: u32,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Account {
    name: String,
    balance: i64,
    status: Status,
    last: Event,
    tags: Vec<String>,
    parent: Option<Box<Account>>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Profile {
    #[serde(rename = "__struct__")]
    module: Atom,
    name: String,
}

/// Sent by Elixir with a pid, a reference and an arbitrary payload.
#[derive(Serialize, Deserialize, Debug)]
struct Call {
    from: Pid,
    ref_: Reference,
    payload: Term,
    owner: Owner,
    events: Vec<Event>,
    nick: String,
    big: u64,
    ratio: f64,
}

fn account() -> Account {
    Account {
        name: "ann".into(),
        balance: 10,
        status: Status::Open,
        last: Event::Deposit(5),
        tags: vec!["a".into()],
        parent: None,
    }
}

/// Runs an Elixir script with arguments and returns its standard output.
fn run_elixir(dir: &Path, script: &str, args: &[&Path]) -> String {
    let path = dir.join("check.exs");
    std::fs::write(&path, script).expect("write script");
    let out = match Command::new("elixir").arg(&path).args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`elixir` is not on PATH. This test checks the serde mapping against real \
             Elixir and does not skip: install Elixir (e.g. `apt-get install elixir`)."
        ),
        Err(e) => panic!("could not run elixir: {e}"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "elixir failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn encode_checked(term: &Term) -> Vec<u8> {
    let bytes = encode(term);
    assert!(
        bytes.len() > 1,
        "erlnode::term::encode produced {bytes:?} for {term:?}: is the ETF encoder still a stub?"
    );
    bytes
}

fn decode_checked(bytes: &[u8], what: &str) -> Term {
    decode(bytes).unwrap_or_else(|e| {
        panic!("erlnode::term::decode failed on {what} from Elixir ({e}): is the ETF decoder still a stub?")
    })
}

/// Every line `OK name`, one per expected case.
fn assert_all_ok(stdout: &str, cases: usize) {
    let bad: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("OK ")).collect();
    assert!(bad.is_empty(), "Elixir disagreed:\n{}", bad.join("\n"));
    let ok = stdout.lines().filter(|l| l.starts_with("OK ")).count();
    assert_eq!(ok, cases, "expected {cases} OK lines, got:\n{stdout}");
}

const COMPARE: &str = r#"
[dir] = System.argv()
for {name, expected} <- cases do
  got =
    try do
      {:ok, :erlang.binary_to_term(File.read!(Path.join(dir, name <> ".bin")))}
    rescue
      e -> {:error, Exception.message(e)}
    end
  case got do
    {:ok, ^expected} -> IO.puts("OK #{name}")
    {:ok, other} -> IO.puts("MISMATCH #{name}: got #{inspect(other)}, expected #{inspect(expected)}")
    {:error, msg} -> IO.puts("MISMATCH #{name}: binary_to_term failed: #{msg}")
  end
end
"#;

#[test]
fn rust_values_equal_elixir_literals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = account();
    child.name = "kid".into();
    child.status = Status::Frozen;
    child.last = Event::Closed { reason: "done".into() };
    child.tags = vec![];
    child.parent = Some(Box::new(account()));
    let mut map = BTreeMap::new();
    map.insert("k".to_string(), 1);
    map.insert("é".to_string(), -2);

    let cases: Vec<(&str, Term, &str)> = vec![
        (
            "account",
            to_term(&account()).unwrap(),
            r#"%{name: "ann", balance: 10, status: :open, last: {:deposit, 5}, tags: ["a"], parent: nil}"#,
        ),
        (
            "nested",
            to_term(&child).unwrap(),
            r#"%{name: "kid", balance: 10, status: :frozen, last: {:closed, %{reason: "done"}}, tags: [],
                 parent: %{name: "ann", balance: 10, status: :open, last: {:deposit, 5}, tags: ["a"], parent: nil}}"#,
        ),
        (
            "events",
            to_term(&vec![Event::Opened, Event::Deposit(-3), Event::Transfer("bob".into(), 7)]).unwrap(),
            r#"[:opened, {:deposit, -3}, {:transfer, "bob", 7}]"#,
        ),
        ("string_map", to_term(&map).unwrap(), r#"%{"k" => 1, "é" => -2}"#),
        (
            "scalars",
            to_term(&(true, None::<i32>, (), 'é', 1.5f64, u64::MAX, i128::MIN, vec![1u8, 2])).unwrap(),
            r#"{true, nil, nil, "é", 1.5, 18446744073709551615, -170141183460469231731687303715884105728, [1, 2]}"#,
        ),
        (
            "bytes",
            to_term(&serde_bytes::ByteBuf::from(vec![0u8, 1, 255])).unwrap(),
            r#"<<0, 1, 255>>"#,
        ),
        (
            "elixir_struct",
            to_term(&Profile { module: Atom::new("Elixir.MyApp.Profile"), name: "ann".into() }).unwrap(),
            r#"%{__struct__: MyApp.Profile, name: "ann"}"#,
        ),
    ];

    let mut script = String::from("cases = [\n");
    for (name, term, literal) in &cases {
        std::fs::write(dir.path().join(format!("{name}.bin")), encode_checked(term)).unwrap();
        script.push_str(&format!("  {{\"{name}\", {literal}}},\n"));
    }
    script.push_str("]\n");
    script.push_str(COMPARE);
    let stdout = run_elixir(dir.path(), &script, &[dir.path()]);
    assert_all_ok(&stdout, cases.len());
}

#[test]
fn elixir_terms_deserialize_into_rust() {
    let dir = tempfile::tempdir().expect("tempdir");
    let produce = r#"
[dir] = System.argv()
write = fn name, term -> File.write!(Path.join(dir, name <> ".bin"), :erlang.term_to_binary(term)) end
write.("account", %{name: "ann", balance: 10, status: :open, last: {:deposit, 5}, tags: ["a"], parent: nil})
# Phoenix-style binary keys, an Elixir struct key, an extra key, a charlist name.
write.("params", %{"__struct__" => :ignored, "name" => 'ann', "balance" => -7, "status" => "frozen",
                   "last" => {:transfer, "bob", 7}, "tags" => [], "extra" => 1,
                   "parent" => %{__struct__: Acc, name: "p", balance: 0, status: :open, last: :opened, tags: ["x"], parent: nil}})
write.("call", %{from: self(), ref_: make_ref(), payload: {:reply, [1, 2.5, "x", :y], %{1 => <<1::3>>}},
                 owner: %{name: "o", age: 3}, events: [:opened, {:closed, %{reason: "r"}}],
                 nick: 'nick', big: 18446744073709551615, ratio: 2})
IO.puts("WROTE")
"#;
    let out = run_elixir(dir.path(), produce, &[dir.path()]);
    assert!(out.contains("WROTE"), "{out}");
    let read = |name: &str| {
        let bytes = std::fs::read(dir.path().join(format!("{name}.bin"))).unwrap();
        decode_checked(&bytes, name)
    };

    let acc: Account = from_term(read("account")).unwrap();
    assert_eq!(acc, account());

    let params: Account = from_term(read("params")).unwrap();
    assert_eq!(params.name, "ann");
    assert_eq!(params.balance, -7);
    assert_eq!(params.status, Status::Frozen);
    assert_eq!(params.last, Event::Transfer("bob".into(), 7));
    let parent = params.parent.expect("parent");
    assert_eq!(parent.last, Event::Opened);
    assert_eq!(parent.tags, vec!["x".to_string()]);

    let call_term = read("call");
    let call: Call = from_term(call_term.clone()).unwrap();
    assert_eq!(call.owner, Owner { name: "o".into(), age: 3 });
    assert_eq!(call.events, vec![Event::Opened, Event::Closed { reason: "r".into() }]);
    assert_eq!(call.nick, "nick");
    assert_eq!(call.big, u64::MAX);
    assert_eq!(call.ratio, 2.0);
    assert_eq!(call.from.node.as_str(), "nonode@nohost");
    assert!(matches!(call.payload, Term::Tuple(_)));

    // Serialized again, the call must be the very term Elixir sent: pid,
    // reference and payload pass through untouched.
    std::fs::write(dir.path().join("again.bin"), encode_checked(&to_term(&call).unwrap())).unwrap();
    let compare = r#"
[dir] = System.argv()
read = fn name -> :erlang.binary_to_term(File.read!(Path.join(dir, name <> ".bin"))) end
sent = read.("call")
# Fields Rust normalises on the way back: charlist -> binary, 2 -> 2.0.
expected = %{sent | nick: "nick", ratio: 2.0}
case read.("again") do
  ^expected -> IO.puts("OK call")
  other -> IO.puts("MISMATCH call: got #{inspect(other)}, expected #{inspect(expected)}")
end
"#;
    let stdout = run_elixir(dir.path(), compare, &[dir.path()]);
    assert_all_ok(&stdout, 1);
}
