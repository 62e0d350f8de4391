//! Short Elixir-syntax renderings of terms for error messages.
//!
//! Error messages must stay readable when the offending term is a 10 MB
//! binary or a 10 000-deep list, so rendering works against a character
//! budget and stops descending once it is spent; the depth of recursion is
//! therefore bounded by the budget, whatever the term.

use crate::term::{Atom, Term};
use std::fmt::Write;

/// Characters of rendering kept before cutting with `...`.
const BUDGET: usize = 60;

/// "integer 5", "atom :open", "binary \"ann\"", "map %{name: \"ann\", ...}".
pub(crate) fn describe(term: &Term) -> String {
    format!("{} {}", kind(term), short(term))
}

thread_local! {
    /// The budget of the rendering under way (rendering is synchronous).
    static LIMIT: std::cell::Cell<usize> = const { std::cell::Cell::new(BUDGET) };
}

/// The term's Elixir syntax, cut to a readable length.
pub(crate) fn short(term: &Term) -> String {
    elixir(term, BUDGET)
}

/// The term's Elixir syntax (`{:ok, "ann", %{n: 1}}`), cut with `...`
/// after about `budget` characters, so that a huge term costs no more
/// than its first `budget` characters. For logs and terminal output.
pub fn elixir(term: &Term, budget: usize) -> String {
    let saved = LIMIT.with(|l| l.replace(budget));
    let mut out = String::new();
    write_term(term, &mut out);
    LIMIT.with(|l| l.set(saved));
    if out.len() > budget {
        let mut cut = budget;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// The name of the term's type, as an Elixir programmer would say it.
pub(crate) fn kind(term: &Term) -> &'static str {
    match term {
        Term::Atom(_) => "atom",
        Term::Int(_) | Term::Big(_) => "integer",
        Term::Float(_) => "float",
        Term::Binary(_) => "binary",
        Term::BitBinary { .. } => "bitstring",
        Term::List(_) => "list",
        Term::ImproperList(..) => "improper list",
        Term::Tuple(_) => "tuple",
        Term::Map(_) => "map",
        Term::Pid(_) => "pid",
        Term::Port(_) => "port",
        Term::Ref(_) => "reference",
        Term::Fun(_) => "fun",
        Term::Record(_) => "native record",
    }
}

fn full(out: &str) -> bool {
    out.len() > LIMIT.with(|l| l.get())
}

fn write_term(term: &Term, out: &mut String) {
    if full(out) {
        return;
    }
    match term {
        Term::Atom(a) => write_atom(a, out),
        Term::Int(i) => {
            let _ = write!(out, "{i}");
        }
        // Decimal conversion of a huge integer costs more than it tells.
        Term::Big(b) if b.bits() > 256 => {
            let _ = write!(out, "<{}-bit integer>", b.bits());
        }
        Term::Big(b) => {
            let _ = write!(out, "{b}");
        }
        Term::Float(x) => {
            let _ = write!(out, "{x:?}");
        }
        Term::Binary(b) => write_binary(b, None, out),
        Term::BitBinary { bytes, bits } => write_binary(bytes, Some(*bits), out),
        Term::List(items) => {
            out.push('[');
            write_items(items, out);
            out.push(']');
        }
        Term::ImproperList(items, tail) => {
            out.push('[');
            write_items(items, out);
            out.push_str(" | ");
            write_term(tail, out);
            out.push(']');
        }
        Term::Tuple(items) => {
            out.push('{');
            write_items(items, out);
            out.push('}');
        }
        Term::Map(entries) => {
            out.push_str("%{");
            for (i, (k, v)) in entries.iter().enumerate() {
                if full(out) {
                    break;
                }
                if i > 0 {
                    out.push_str(", ");
                }
                match k {
                    Term::Atom(a) if is_plain_atom(a.as_str()) => {
                        out.push_str(a.as_str());
                        out.push_str(": ");
                    }
                    _ => {
                        write_term(k, out);
                        out.push_str(" => ");
                    }
                }
                write_term(v, out);
            }
            out.push('}');
        }
        Term::Pid(p) => {
            let _ = write!(out, "#PID<{}.{}.{}>", p.node, p.id, p.serial);
        }
        Term::Port(p) => {
            let _ = write!(out, "#Port<{}.{}>", p.node, p.id);
        }
        Term::Ref(r) => {
            let _ = write!(out, "{r}");
        }
        Term::Fun(_) => out.push_str("#Function<...>"),
        // Elixir has no syntax for native records; the BEAM's shape, with
        // Elixir-syntax values: `#mymod:pt{x = 1, y = :two}`.
        Term::Record(r) => {
            let _ = write!(out, "#{}:{}{{", r.module(), r.name());
            for (i, (k, v)) in r.fields().iter().enumerate() {
                if full(out) {
                    break;
                }
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{k} = ");
                write_term(v, out);
            }
            out.push('}');
        }
    }
}

fn write_items(items: &[Term], out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        if full(out) {
            break;
        }
        if i > 0 {
            out.push_str(", ");
        }
        write_term(item, out);
    }
}

fn write_atom(a: &Atom, out: &mut String) {
    let s = a.as_str();
    if matches!(s, "nil" | "true" | "false") {
        out.push_str(s);
    } else if let Some(module) = s.strip_prefix("Elixir.") {
        out.push_str(module);
    } else if is_plain_atom(s) {
        out.push(':');
        out.push_str(s);
    } else {
        out.push_str(":\"");
        push_escaped(s, out);
        out.push('"');
    }
}

/// Atoms Elixir prints without quotes: `:ok`, `:is_valid?`, `:save!`.
fn is_plain_atom(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else { return false };
    if !(first.is_ascii_lowercase() || first == '_') {
        return false;
    }
    let body = s.trim_end_matches(['?', '!']);
    body.len() + 1 >= s.len() && body.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@')
}

fn write_binary(bytes: &[u8], bits: Option<u8>, out: &mut String) {
    if bits.is_none() {
        if let Ok(s) = std::str::from_utf8(bytes) {
            if s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t') {
                out.push('"');
                push_escaped(s, out);
                out.push('"');
                return;
            }
        }
    }
    out.push_str("<<");
    let last = bytes.len().saturating_sub(1);
    for (i, b) in bytes.iter().enumerate() {
        if full(out) {
            break;
        }
        if i > 0 {
            out.push_str(", ");
        }
        match bits {
            Some(n) if i == last => {
                let _ = write!(out, "{}::size({n})", b >> (8 - n.clamp(1, 8)));
            }
            _ => {
                let _ = write!(out, "{b}");
            }
        }
    }
    out.push_str(">>");
}

fn push_escaped(s: &str, out: &mut String) {
    for c in s.chars() {
        if full(out) {
            return;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{{{:X}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}
