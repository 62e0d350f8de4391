//! Distribution capability flags, bit for bit as OTP 25's `dist.hrl`
//! defines them (kernel-8.5.3/include/dist.hrl). Secondary sources get
//! several of these wrong (see docs/design.md); the test below pins each
//! value to the number in that header.

pub const PUBLISHED: u64 = 0x01;
pub const ATOM_CACHE: u64 = 0x02;
pub const EXTENDED_REFERENCES: u64 = 0x04;
pub const DIST_MONITOR: u64 = 0x08;
pub const FUN_TAGS: u64 = 0x10;
pub const DIST_MONITOR_NAME: u64 = 0x20;
pub const HIDDEN_ATOM_CACHE: u64 = 0x40;
pub const NEW_FUN_TAGS: u64 = 0x80;
pub const EXTENDED_PIDS_PORTS: u64 = 0x100;
pub const EXPORT_PTR_TAG: u64 = 0x200;
pub const BIT_BINARIES: u64 = 0x400;
pub const NEW_FLOATS: u64 = 0x800;
pub const UNICODE_IO: u64 = 0x1000;
pub const DIST_HDR_ATOM_CACHE: u64 = 0x2000;
pub const SMALL_ATOM_TAGS: u64 = 0x4000;
pub const UTF8_ATOMS: u64 = 0x10000;
pub const MAP_TAG: u64 = 0x20000;
pub const BIG_CREATION: u64 = 0x40000;
pub const SEND_SENDER: u64 = 0x80000;
pub const BIG_SEQTRACE_LABELS: u64 = 0x100000;
pub const EXIT_PAYLOAD: u64 = 0x400000;
pub const FRAGMENTS: u64 = 0x0080_0000;
pub const HANDSHAKE_23: u64 = 0x0100_0000;
pub const UNLINK_ID: u64 = 0x0200_0000;
pub const MANDATORY_25_DIGEST: u64 = 0x0400_0000;
pub const SPAWN: u64 = 1 << 32;
pub const NAME_ME: u64 = 2 << 32;
pub const V4_NC: u64 = 4 << 32;
pub const ALIAS: u64 = 8 << 32;

/// DFLAG_NATIVE_RECORDS (OTP 29 `dist.hrl`: `16#40 bsl 32`): "supports
/// native record terms encoded with RECORD_EXT". erlnode advertises it:
/// `Term::Record` decodes and re-encodes RECORD_EXT byte-exactly, and
/// erlnode-to-erlnode links carry records only because both sides say so.
///
/// What the bit decides is what goes **out**. An OTP 29 node sends
/// RECORD_EXT to every peer and accepts it from every peer, flag or not
/// (verified on 29.1.2). A peer without the flag (OTP 25 to 28) cannot
/// decode one: it logs "corrupted external term" and drops the whole link
/// (measured on 25.2.3 with a node monitor; an earlier note here said the
/// link stayed up, which a reconnecting `net_adm:ping` had hidden), so
/// every other message in flight on it is lost. erlnode therefore refuses
/// a message holding a record for such a peer, and only that message: the
/// encoder meets the record anyway, so the check costs nothing on other
/// messages (`connection::outbox::Unencodable`, `SendError::Unencodable`
/// for the sends that return errors, a warning for the others). Exit and
/// monitor signals are resent with their records as classic record
/// tuples instead (`term::records_as_tuples`): they must arrive.
pub const NATIVE_RECORDS: u64 = 0x40 << 32;

/// The flags OTP 25 refuses to connect without (`MANDATORY_DFLAGS_25`).
pub const MANDATORY_25: u64 = EXTENDED_REFERENCES
    | FUN_TAGS
    | EXTENDED_PIDS_PORTS
    | NEW_FUN_TAGS
    | EXPORT_PTR_TAG
    | BIT_BINARIES
    | NEW_FLOATS
    | UTF8_ATOMS
    | MAP_TAG
    | BIG_CREATION
    | HANDSHAKE_23;

/// What erlnode advertises: only what is implemented. SPAWN is included
/// because every SPAWN_REQUEST is answered with a SPAWN_REPLY (an error
/// unless the MFA is allow-listed); advertising it without answering would
/// hang `erpc` callers and, through `global`, registration cluster-wide.
pub const ERLNODE_DEFAULT: u64 = PUBLISHED
    | MANDATORY_25
    | MANDATORY_25_DIGEST
    | DIST_MONITOR
    | DIST_MONITOR_NAME
    | DIST_HDR_ATOM_CACHE
    | SMALL_ATOM_TAGS
    | UNICODE_IO
    | SEND_SENDER
    | BIG_SEQTRACE_LABELS
    | EXIT_PAYLOAD
    | FRAGMENTS
    | UNLINK_ID
    | SPAWN
    | V4_NC
    | ALIAS
    | NATIVE_RECORDS;

/// Flags a peer must offer for erlnode to talk to it: OTP 25's mandatory
/// set. A peer may send only the digest bit in their place.
pub fn missing_mandatory(peer: u64) -> u64 {
    if peer & MANDATORY_25_DIGEST != 0 {
        0
    } else {
        MANDATORY_25 & !peer
    }
}

/// Names the set bits, for log lines that explain a refused peer.
pub fn describe(flags: u64) -> String {
    const NAMES: &[(u64, &str)] = &[
        (PUBLISHED, "PUBLISHED"),
        (ATOM_CACHE, "ATOM_CACHE"),
        (EXTENDED_REFERENCES, "EXTENDED_REFERENCES"),
        (DIST_MONITOR, "DIST_MONITOR"),
        (FUN_TAGS, "FUN_TAGS"),
        (DIST_MONITOR_NAME, "DIST_MONITOR_NAME"),
        (HIDDEN_ATOM_CACHE, "HIDDEN_ATOM_CACHE"),
        (NEW_FUN_TAGS, "NEW_FUN_TAGS"),
        (EXTENDED_PIDS_PORTS, "EXTENDED_PIDS_PORTS"),
        (EXPORT_PTR_TAG, "EXPORT_PTR_TAG"),
        (BIT_BINARIES, "BIT_BINARIES"),
        (NEW_FLOATS, "NEW_FLOATS"),
        (UNICODE_IO, "UNICODE_IO"),
        (DIST_HDR_ATOM_CACHE, "DIST_HDR_ATOM_CACHE"),
        (SMALL_ATOM_TAGS, "SMALL_ATOM_TAGS"),
        (UTF8_ATOMS, "UTF8_ATOMS"),
        (MAP_TAG, "MAP_TAG"),
        (BIG_CREATION, "BIG_CREATION"),
        (SEND_SENDER, "SEND_SENDER"),
        (BIG_SEQTRACE_LABELS, "BIG_SEQTRACE_LABELS"),
        (EXIT_PAYLOAD, "EXIT_PAYLOAD"),
        (FRAGMENTS, "FRAGMENTS"),
        (HANDSHAKE_23, "HANDSHAKE_23"),
        (UNLINK_ID, "UNLINK_ID"),
        (MANDATORY_25_DIGEST, "MANDATORY_25_DIGEST"),
        (SPAWN, "SPAWN"),
        (NAME_ME, "NAME_ME"),
        (V4_NC, "V4_NC"),
        (ALIAS, "ALIAS"),
        (NATIVE_RECORDS, "NATIVE_RECORDS"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    names.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values copied from OTP 25.2.3 kernel/include/dist.hrl.
    #[test]
    fn values_match_dist_hrl() {
        assert_eq!(PUBLISHED, 0x01);
        assert_eq!(DIST_HDR_ATOM_CACHE, 0x2000);
        assert_eq!(UTF8_ATOMS, 0x10000);
        assert_eq!(FRAGMENTS, 0x00800000);
        assert_eq!(HANDSHAKE_23, 0x01000000);
        assert_eq!(UNLINK_ID, 0x02000000);
        assert_eq!(MANDATORY_25_DIGEST, 0x04000000);
        assert_eq!(SPAWN, 0x01 << 32);
        assert_eq!(NAME_ME, 0x02 << 32);
        assert_eq!(V4_NC, 0x04 << 32);
        assert_eq!(ALIAS, 0x08 << 32);
        assert_eq!(MANDATORY_25, 0x0107_0F94);
        // OTP 29 dist.hrl: -define(DFLAG_NATIVE_RECORDS, (16#40 bsl 32)).
        assert_eq!(NATIVE_RECORDS, 1 << 38);
    }

    /// See the decision at [`NATIVE_RECORDS`].
    #[test]
    fn native_records_advertised() {
        assert_eq!(ERLNODE_DEFAULT & NATIVE_RECORDS, NATIVE_RECORDS);
        assert_eq!(describe(NATIVE_RECORDS | ALIAS), "ALIAS|NATIVE_RECORDS");
    }

    #[test]
    fn dist_hrl_on_this_machine_agrees() {
        // When OTP's header is installed, parse it and compare every flag.
        let path = std::fs::read_dir("/usr/lib/erlang/lib")
            .ok()
            .and_then(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path().join("include/dist.hrl"))
                    .find(|p| p.exists())
            });
        let Some(path) = path else {
            panic!("OTP's kernel/include/dist.hrl not found: install erlang-dev (make test does)");
        };
        let text = std::fs::read_to_string(path).unwrap();
        let ours: &[(&str, u64)] = &[
            ("PUBLISHED", PUBLISHED),
            ("ATOM_CACHE", ATOM_CACHE),
            ("EXTENDED_REFERENCES", EXTENDED_REFERENCES),
            ("DIST_MONITOR", DIST_MONITOR),
            ("FUN_TAGS", FUN_TAGS),
            ("DIST_MONITOR_NAME", DIST_MONITOR_NAME),
            ("HIDDEN_ATOM_CACHE", HIDDEN_ATOM_CACHE),
            ("NEW_FUN_TAGS", NEW_FUN_TAGS),
            ("EXTENDED_PIDS_PORTS", EXTENDED_PIDS_PORTS),
            ("EXPORT_PTR_TAG", EXPORT_PTR_TAG),
            ("BIT_BINARIES", BIT_BINARIES),
            ("NEW_FLOATS", NEW_FLOATS),
            ("UNICODE_IO", UNICODE_IO),
            ("DIST_HDR_ATOM_CACHE", DIST_HDR_ATOM_CACHE),
            ("SMALL_ATOM_TAGS", SMALL_ATOM_TAGS),
            ("UTF8_ATOMS", UTF8_ATOMS),
            ("MAP_TAG", MAP_TAG),
            ("BIG_CREATION", BIG_CREATION),
            ("SEND_SENDER", SEND_SENDER),
            ("BIG_SEQTRACE_LABELS", BIG_SEQTRACE_LABELS),
            ("EXIT_PAYLOAD", EXIT_PAYLOAD),
            ("FRAGMENTS", FRAGMENTS),
            ("HANDSHAKE_23", HANDSHAKE_23),
            ("UNLINK_ID", UNLINK_ID),
            ("MANDATORY_25_DIGEST", MANDATORY_25_DIGEST),
            ("SPAWN", SPAWN),
            ("NAME_ME", NAME_ME),
            ("V4_NC", V4_NC),
            ("ALIAS", ALIAS),
        ];
        for (name, value) in ours {
            let needle = format!("-define(DFLAG_{name},");
            let line = text
                .lines()
                .find(|l| l.starts_with(&needle))
                .unwrap_or_else(|| panic!("{name} not in dist.hrl"));
            let def = line[needle.len()..].trim().trim_end_matches('.').trim_end_matches(')').trim();
            let parsed = if let Some(inner) = def.strip_prefix('(') {
                // "(16#01 bsl 32"
                let mut parts = inner.split_whitespace();
                let base = parse_hex(parts.next().unwrap());
                assert_eq!(parts.next(), Some("bsl"));
                base << parts.next().unwrap().parse::<u32>().unwrap()
            } else {
                parse_hex(def)
            };
            assert_eq!(parsed, *value, "DFLAG_{name}");
        }
    }

    fn parse_hex(s: &str) -> u64 {
        u64::from_str_radix(s.trim_start_matches("16#"), 16).unwrap()
    }
}
