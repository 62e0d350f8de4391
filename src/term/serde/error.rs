//! The one error type of the bridge.
//!
//! Errors carry the path to the offending value so that a mismatch deep in a
//! message from an Elixir process can be found without printing the whole
//! term. The path is built on the way *out*: each container level prepends
//! its segment while the error propagates, so successful conversions pay
//! nothing for it.

use std::fmt::{self, Display};

/// Why a Rust value could not be turned into a term, or a term into a Rust
/// value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", Rendered(self))]
pub struct Error(Box<Inner>);

#[derive(Debug, Clone, PartialEq)]
struct Inner {
    kind: ErrorKind,
    /// Innermost segment first; reversed when displayed.
    path: Vec<Segment>,
}

/// What went wrong, without the location.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The term does not have the shape or range the Rust type needs.
    Mismatch { expected: String, found: String },
    /// A struct field was absent and has no `#[serde(default)]`.
    MissingField(&'static str),
    /// A key the struct does not know, with `#[serde(deny_unknown_fields)]`.
    UnknownField { field: String, expected: &'static [&'static str] },
    /// An enum tag that names no variant.
    UnknownVariant { variant: String, expected: &'static [&'static str] },
    /// The same field given twice, e.g. once as an atom key and once as a
    /// binary key.
    DuplicateField(&'static str),
    /// The term is nested deeper than the deserializer's limit.
    TooDeep { limit: usize },
    /// The Rust value has no Erlang representation (NaN, infinity).
    Unsupported(String),
    /// A message from a `Serialize`/`Deserialize` impl.
    Custom(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    Field(String),
    Index(usize),
    /// A map key, already rendered in Elixir syntax.
    Key(String),
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Error {
        Error(Box::new(Inner { kind, path: Vec::new() }))
    }

    pub(crate) fn mismatch(expected: impl Into<String>, found: impl Into<String>) -> Error {
        Error::new(ErrorKind::Mismatch { expected: expected.into(), found: found.into() })
    }

    pub(crate) fn at(mut self, segment: Segment) -> Error {
        self.0.path.push(segment);
        self
    }

    pub(crate) fn at_field(self, name: &str) -> Error {
        self.at(Segment::Field(name.to_owned()))
    }

    pub(crate) fn at_index(self, index: usize) -> Error {
        self.at(Segment::Index(index))
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.0.kind
    }

    /// The location of the offending value, e.g. `account.owner` or
    /// `items[2].name`; empty when it is the top-level value.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for seg in self.0.path.iter().rev() {
            match seg {
                Segment::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Segment::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
                Segment::Key(k) => {
                    out.push('[');
                    out.push_str(k);
                    out.push(']');
                }
            }
        }
        out
    }

    /// The path extended by a field name, for errors that name the field
    /// themselves (missing, unknown, duplicate).
    fn path_with(&self, field: &str) -> String {
        let p = self.path();
        if p.is_empty() {
            field.to_owned()
        } else {
            format!("{p}.{field}")
        }
    }
}

struct Rendered<'a>(&'a Error);

impl Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let err = self.0;
        let path = err.path();
        let loc = if path.is_empty() { String::new() } else { format!(" for field `{path}`") };
        match err.kind() {
            ErrorKind::Mismatch { expected, found } => {
                write!(f, "expected {expected}{loc}, found {found}")
            }
            ErrorKind::MissingField(field) => {
                write!(f, "missing field `{}`", err.path_with(field))
            }
            ErrorKind::UnknownField { field, expected } => {
                write!(f, "unknown field `{}`, {}", err.path_with(field), one_of(expected))
            }
            ErrorKind::UnknownVariant { variant, expected } => {
                write!(f, "unknown variant `{variant}`{loc}, {}", one_of(expected))
            }
            ErrorKind::DuplicateField(field) => {
                write!(f, "duplicate field `{}`", err.path_with(field))
            }
            ErrorKind::TooDeep { limit } => {
                write!(f, "term nested deeper than {limit} levels{loc}")
            }
            ErrorKind::Unsupported(msg) | ErrorKind::Custom(msg) => write!(f, "{msg}{loc}"),
        }
    }
}

fn one_of(names: &[&str]) -> String {
    match names {
        [] => "there are none".to_owned(),
        [one] => format!("expected `{one}`"),
        _ => {
            let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!("expected one of {}", list.join(", "))
        }
    }
}

impl serde::ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Error {
        Error::new(ErrorKind::Custom(msg.to_string()))
    }
}

impl serde::de::Error for Error {
    fn custom<T: Display>(msg: T) -> Error {
        Error::new(ErrorKind::Custom(msg.to_string()))
    }

    fn invalid_type(unexp: serde::de::Unexpected<'_>, exp: &dyn serde::de::Expected) -> Error {
        Error::mismatch(exp.to_string(), unexp.to_string())
    }

    fn invalid_value(unexp: serde::de::Unexpected<'_>, exp: &dyn serde::de::Expected) -> Error {
        Error::mismatch(exp.to_string(), unexp.to_string())
    }

    fn invalid_length(len: usize, exp: &dyn serde::de::Expected) -> Error {
        let found = if len == 1 { "1 element".to_owned() } else { format!("{len} elements") };
        Error::mismatch(exp.to_string(), found)
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Error {
        Error::new(ErrorKind::UnknownVariant { variant: variant.to_owned(), expected })
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Error {
        Error::new(ErrorKind::UnknownField { field: field.to_owned(), expected })
    }

    fn missing_field(field: &'static str) -> Error {
        Error::new(ErrorKind::MissingField(field))
    }

    fn duplicate_field(field: &'static str) -> Error {
        Error::new(ErrorKind::DuplicateField(field))
    }
}
