//! serde bridge between Rust types and Erlang terms.
//!
//! The mapping is chosen so that what a Rust node sends looks like what
//! Elixir code would have written by hand, and what Elixir code sends
//! deserializes without ceremony.
//!
//! | Rust                                   | term (Elixir syntax)                 |
//! |----------------------------------------|--------------------------------------|
//! | `bool`                                 | `true` / `false`                     |
//! | `i8`..`i64`, `u8`..`u32`               | integer                              |
//! | `u64`, `i128`, `u128`                  | integer (big integer when large)     |
//! | `f32`, `f64`                           | float (NaN and infinity are errors)  |
//! | `String`, `&str`, `char`               | UTF-8 binary `"ann"`                 |
//! | bytes (`serde_bytes::ByteBuf`, ...)    | binary `<<1, 2>>`                    |
//! | [`Binary`](crate::term::Binary)        | binary, shared both ways (no copy)   |
//! | `Vec<T>`, `HashSet<T>`, ... (incl. `Vec<u8>`) | list `[1, 2]`                 |
//! | `(A, B)`, `[T; N]`, tuple struct       | tuple `{a, b}`                       |
//! | `()`, unit struct, `None`              | `nil`                                |
//! | `Some(x)`, newtype struct `N(x)`       | `x`                                  |
//! | struct `S { a, b }`                    | map with atom keys `%{a: .., b: ..}` |
//! | `HashMap`, `BTreeMap`                  | map; `String` keys become binaries `%{"k" => v}` |
//! | unit variant `E::Red`                  | atom `:Red` (see naming below)       |
//! | newtype variant `E::V(x)`              | `{:V, x}`                            |
//! | tuple variant `E::V(a, b)`             | `{:V, a, b}`                         |
//! | struct variant `E::V { a, b }`         | `{:V, %{a: .., b: ..}}`              |
//! | [`Term`], [`Pid`], [`Reference`], [`Port`], [`Atom`] | themselves, unchanged  |
//!
//! # Naming
//!
//! Struct keys and enum tags are the names serde reports, after any
//! `rename`/`rename_all`: a variant `Red` becomes the atom `:Red`
//! (`Elixir`-style module-like atom), not `:red`. To get the lowercase atoms
//! Elixir code uses, say so:
//!
//! ```
//! use erlnode::term::{Term, serde::{to_term, from_term}};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! #[serde(rename_all = "snake_case")]
//! enum Event {
//!     Opened,                    // :opened
//!     Deposit(i64),              // {:deposit, 5}
//!     Transfer(String, i64),     // {:transfer, "bob", 5}
//!     Closed { reason: String }, // {:closed, %{reason: "done"}}
//! }
//!
//! assert_eq!(to_term(&Event::Opened).unwrap(), Term::atom("opened"));
//! assert_eq!(
//!     to_term(&Event::Deposit(5)).unwrap(),
//!     Term::tuple(vec![Term::atom("deposit"), Term::Int(5)])
//! );
//! let back: Event = from_term(Term::atom("opened")).unwrap();
//! assert_eq!(back, Event::Opened);
//! ```
//!
//! # Leniency when deserializing
//!
//! * Structs accept atom *or* binary keys (`%{"name" => ..}` as sent by
//!   Phoenix params), ignore unknown keys (unless
//!   `#[serde(deny_unknown_fields)]`) and ignore the `__struct__` key of an
//!   Elixir struct unless the Rust struct has a field of that name. A field
//!   given both as atom and binary key is a duplicate-field error.
//! * Enums accept a binary as well as an atom for the tag, and `{:tag}` for a
//!   unit variant.
//! * Strings accept charlists (`'abc'` in Elixir, `"abc"` in Erlang) as well
//!   as UTF-8 binaries; atoms are *not* accepted as strings, except as map
//!   keys: `%{name: 1}` reads into a `HashMap<String, _>` (and is written
//!   back as `%{"name" => 1}`).
//! * `char` accepts a one-character binary or an integer code point (`?a`).
//! * Floats accept integers. Bytes accept a list of integers.
//! * `None` is `nil` only; Erlang's `undefined` is an ordinary atom.
//!
//! # Things to know
//!
//! * `Option<T>` where `T` itself can be `nil` (`Option<()>`,
//!   `Option<Option<T>>`, `Option<Term>`) cannot tell `Some(nil)` from
//!   `None`: both are `nil`, and come back as `None`.
//! * To send an Elixir struct, add a field
//!   `#[serde(rename = "__struct__")] module: Atom` holding e.g.
//!   `Atom::new("Elixir.MyApp.Account")`.
//! * `#[serde(flatten)]` makes serde serialize the struct as a map with
//!   string keys, so such structs become maps with *binary* keys; they still
//!   deserialize from either key form. Inside flattened or `untagged`
//!   containers serde buffers values, which loses some distinctions: enum
//!   fields there accept only unit variants, and `Term` fields see atoms as
//!   binaries.
//! * The serializer reports `is_human_readable() == true`, so e.g.
//!   `std::net::IpAddr` becomes a binary `"127.0.0.1"`.
//! * Maps keep the order serde gives; keys are made unique, last one wins.
//! * Deserialization refuses terms nested deeper than
//!   [`DEFAULT_DEPTH_LIMIT`] levels of lists, tuples and maps rather than
//!   risk the stack ([`Deserializer::with_depth_limit`] changes it).
//! * [`from_term`] consumes the term and moves pass-through subterms;
//!   [`from_term_ref`] borrows it, so targets may hold `&str`/`&[u8]`.
//! * serde writes the tag of an internally tagged enum
//!   (`#[serde(tag = "type")]`) as a string, so it is a binary
//!   (`%{type: "ping"}`); the tag of an adjacently tagged one is an atom.
//!   Either reads back from an atom or a binary.
//!
//! # Pass-through types with other formats
//!
//! `Term`, `Pid`, `Reference`, `Port` and `Atom` also implement
//! `Serialize`/`Deserialize` for other formats (e.g. `serde_json` for
//! logging): an atom is a string; a pid, port or reference a struct of its
//! fields (`{"node": .., "id": .., "serial": .., "creation": ..}` for a pid),
//! which reads back; a `Term` takes its natural, lossy shape (atoms as
//! strings except `true`/`false`/`nil`, binaries as strings, tuples as
//! arrays).
//!
//! [`Term`]: crate::term::Term
//! [`Pid`]: crate::term::Pid
//! [`Reference`]: crate::term::Reference
//! [`Port`]: crate::term::Port
//! [`Atom`]: crate::term::Atom

mod access;
mod de;
mod deepclone;
mod error;
mod foreign;
mod mapbuild;
mod passthrough;
pub mod render;
mod ser;

#[cfg(test)]
mod tests;

pub use de::{from_term, from_term_ref, Deserializer, DEFAULT_DEPTH_LIMIT};
pub use error::{Error, ErrorKind};
pub use ser::{to_term, Serializer};

/// [`Error`] under a name that does not clash with other error types when
/// re-exported from [`crate::term`].
pub type SerdeError = Error;
