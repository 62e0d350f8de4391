//! The atoms Phoenix.PubSub derives from a server's name, computed as
//! its PG2 adapter does, so that erlnode joins the very groups the
//! Elixir nodes broadcast to.

use crate::term::Atom;

/// The pg scope every Phoenix.PubSub server uses (started by the
/// phoenix_pubsub application).
pub const SCOPE: &str = "Elixir.Phoenix.PubSub";

/// The dispatcher Elixir's `broadcast/3` names by default.
pub const DEFAULT_DISPATCHER: &str = "Elixir.Phoenix.PubSub";

/// The server's atom: `MyApp.PubSub` as Elixir writes it is the atom
/// `Elixir.MyApp.PubSub`; a name that does not start with an upper-case
/// letter (`:my_pubsub`) or already has the prefix is taken as is.
pub fn server_atom(name: &str) -> Atom {
    if name.starts_with("Elixir.") || !name.starts_with(|c: char| c.is_ascii_uppercase()) {
        Atom::new(name)
    } else {
        Atom::new(&format!("Elixir.{name}"))
    }
}

/// `Module.concat(name, "Adapter")`.
pub fn adapter_name(server: &Atom) -> Atom {
    let s = server.as_str();
    let base = s.strip_prefix("Elixir.").unwrap_or(s);
    Atom::new(&format!("Elixir.{base}.Adapter"))
}

/// `PG2.groups/2`: the adapter name, then `:"#{adapter_name}_#{n}"` for
/// n = 2..pool_size (interpolation keeps the `Elixir.` prefix).
pub fn groups(adapter: &Atom, pool_size: usize) -> Vec<Atom> {
    std::iter::once(adapter.clone()).chain((2..=pool_size).map(|n| Atom::new(&format!("{}_{n}", adapter.as_str())))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_phoenix_pubsub_computes_them() {
        let s = server_atom("MyApp.PubSub");
        assert_eq!(s.as_str(), "Elixir.MyApp.PubSub");
        assert_eq!(server_atom("Elixir.MyApp.PubSub"), s);
        assert_eq!(server_atom("my_pubsub").as_str(), "my_pubsub");
        let a = adapter_name(&s);
        assert_eq!(a.as_str(), "Elixir.MyApp.PubSub.Adapter");
        let g: Vec<String> = groups(&a, 3).iter().map(|a| a.as_str().to_string()).collect();
        assert_eq!(g, ["Elixir.MyApp.PubSub.Adapter", "Elixir.MyApp.PubSub.Adapter_2", "Elixir.MyApp.PubSub.Adapter_3"]);
        assert_eq!(adapter_name(&server_atom("my_pubsub")).as_str(), "Elixir.my_pubsub.Adapter");
    }
}
