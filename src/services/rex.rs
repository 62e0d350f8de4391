//! `rex`, the rpc server every BEAM node runs. erlnode runs no BEAM code,
//! so it answers honestly: its feature list, and `{badrpc, _}` for the
//! legacy call forms (allow-listed MFAs excepted, see `services::erpc`).

use crate::node::{gen_call_parts, NodeInner};
use crate::term::{Pid, Term};
use std::sync::Arc;

impl NodeInner {
    pub(crate) fn rex(self: &Arc<Self>, from: &Pid, msg: Term) {
        if let Some((call_from, request)) = gen_call_parts(&msg) {
            let reply = self.rex_call(request);
            self.reply(call_from, reply);
            return;
        }
        match msg.as_tuple() {
            // rpc's nodes observer asks each new peer whether it serves erpc.
            Some([Term::Pid(p), req]) if req.is_atom("features_request") => {
                let reply = Term::tuple([Term::atom("features_reply"), Term::Atom(self.name.clone()), Term::list([Term::atom("erpc")])]);
                self.send(None, p, reply);
            }
            // The hidden-node form: {From, {call, M, F, A, GL}}, answered {rex, Reply}.
            Some([Term::Pid(p), req @ Term::Tuple(_)]) => {
                let reply = self.rex_call(req);
                self.send(None, p, Term::tuple([Term::atom("rex"), reply]));
            }
            _ => tracing::debug!(%from, ?msg, "rex: unexpected message dropped"),
        }
    }

    fn rex_call(self: &Arc<Self>, request: &Term) -> Term {
        match request.as_tuple() {
            Some([call, m, f, a, _]) | Some([call, m, f, a]) if call.is_atom("call") => {
                match (m.as_atom(), f.as_atom(), a) {
                    (Some(m), Some(f), Term::List(args)) => match self.run_allowed(m, f, args) {
                        Some(Ok(v)) => v,
                        Some(Err(e)) => Term::tuple([Term::atom("badrpc"), Term::tuple([Term::atom("EXIT"), e])]),
                        None => Term::tuple([Term::atom("badrpc"), Term::atom("notsup")]),
                    },
                    _ => Term::tuple([Term::atom("badrpc"), Term::atom("badarg")]),
                }
            }
            _ => {
                tracing::debug!(?request, "rex: unsupported call");
                Term::tuple([Term::atom("badrpc"), Term::atom("notsup")])
            }
        }
    }
}
