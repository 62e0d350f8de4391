//! Cloning a term without recursion.
//!
//! Borrowed pass-through fields must clone their subterm. The derived
//! `Clone` recurses once per nesting level, and the decoder accepts terms
//! 10 000 levels deep, which overflows a 2 MiB thread stack in debug
//! builds. An explicit stack keeps the bridge safe for any decodable term.

use crate::term::{Atom, NativeRecord, Term};

enum Frame<'a> {
    List { rest: std::slice::Iter<'a, Term>, out: Vec<Term> },
    Tuple { rest: std::slice::Iter<'a, Term>, out: Vec<Term> },
    Improper { rest: std::slice::Iter<'a, Term>, tail: &'a Term, out: Vec<Term>, in_tail: bool },
    Map { rest: std::slice::Iter<'a, (Term, Term)>, out: Vec<(Term, Term)>, key: Option<Term>, value: Option<&'a Term> },
    Record { rec: &'a NativeRecord, rest: std::slice::Iter<'a, (Atom, Term)>, out: Vec<(Atom, Term)> },
}

/// `term.clone()`, using heap instead of stack for nesting.
pub(crate) fn clone_term(term: &Term) -> Term {
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut next: Option<&Term> = Some(term);
    loop {
        // Descend into `next`, or produce it directly if it is a leaf.
        let mut done = match next.take() {
            Some(t) => match t {
                Term::List(items) => {
                    stack.push(Frame::List { rest: items.iter(), out: Vec::with_capacity(items.len()) });
                    None
                }
                Term::Tuple(items) => {
                    stack.push(Frame::Tuple { rest: items.iter(), out: Vec::with_capacity(items.len()) });
                    None
                }
                Term::ImproperList(items, tail) => {
                    stack.push(Frame::Improper {
                        rest: items.iter(),
                        tail,
                        out: Vec::with_capacity(items.len()),
                        in_tail: false,
                    });
                    None
                }
                Term::Map(entries) => {
                    stack.push(Frame::Map {
                        rest: entries.iter(),
                        out: Vec::with_capacity(entries.len()),
                        key: None,
                        value: None,
                    });
                    None
                }
                Term::Record(r) => {
                    stack.push(Frame::Record { rec: r, rest: r.fields().iter(), out: Vec::with_capacity(r.fields().len()) });
                    None
                }
                leaf => Some(leaf.clone()),
            },
            None => None,
        };
        // Hand finished values to their parents until one needs more input.
        loop {
            let Some(frame) = stack.last_mut() else {
                return done.unwrap_or_else(|| Term::List(Vec::new()));
            };
            match frame {
                Frame::List { rest, out } | Frame::Tuple { rest, out } => {
                    if let Some(v) = done.take() {
                        out.push(v);
                    }
                    if let Some(t) = rest.next() {
                        next = Some(t);
                        break;
                    }
                }
                Frame::Improper { rest, tail, out, in_tail } => {
                    if *in_tail {
                        let tail_value = done.take().unwrap_or_else(|| Term::List(Vec::new()));
                        let items = std::mem::take(out);
                        stack.pop();
                        done = Some(Term::ImproperList(items, Box::new(tail_value)));
                        continue;
                    }
                    if let Some(v) = done.take() {
                        out.push(v);
                    }
                    if let Some(t) = rest.next() {
                        next = Some(t);
                    } else {
                        *in_tail = true;
                        next = Some(*tail);
                    }
                    break;
                }
                Frame::Record { rest, out, rec } => {
                    if let Some(v) = done.take() {
                        // Names are pushed as their values finish.
                        let name = rec.fields()[out.len()].0.clone();
                        out.push((name, v));
                    }
                    if let Some((_, t)) = rest.next() {
                        next = Some(t);
                        break;
                    }
                }
                Frame::Map { rest, out, key, value } => {
                    if let Some(v) = done.take() {
                        match key.take() {
                            // `v` is the value for the pending key.
                            Some(k) => out.push((k, v)),
                            // `v` is a key; its value comes next.
                            None => {
                                *key = Some(v);
                                next = value.take();
                                break;
                            }
                        }
                    }
                    if let Some((k, v)) = rest.next() {
                        *value = Some(v);
                        next = Some(k);
                        break;
                    }
                }
            }
            // The frame is exhausted: build it and pass it up.
            done = Some(match stack.pop() {
                Some(Frame::List { out, .. }) => Term::List(out),
                Some(Frame::Tuple { out, .. }) => Term::Tuple(out),
                Some(Frame::Map { out, .. }) => Term::Map(out),
                Some(Frame::Record { rec, out, .. }) => Term::Record(Box::new(NativeRecord::from_parts(
                    rec.module().clone(),
                    rec.name().clone(),
                    rec.is_exported(),
                    out,
                ))),
                Some(Frame::Improper { out, .. }) => Term::ImproperList(out, Box::new(Term::List(Vec::new()))),
                None => Term::List(Vec::new()),
            });
        }
    }
}
