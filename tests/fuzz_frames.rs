//! Property test: arbitrary and mutated frames through the link's frame
//! decoder (distribution header, atom cache, fragment reassembly, control
//! and payload decoding) never panic, and every error is a clean `Err`.
//! Bounded so it runs in seconds in the suite.

use bytes::Bytes;
use erlnode::connection::atom_cache::AtomCache;
use erlnode::connection::fragments::Reassembler;
use erlnode::connection::header::{parse_frame, FramePart};
use erlnode::connection::{decode_message, LinkConfig};
use erlnode::control::Control;
use proptest::prelude::*;

/// Runs a sequence of frames through one link's receive pipeline.
fn feed(frames: Vec<Vec<u8>>) {
    let cfg = LinkConfig::default();
    let mut cache = AtomCache::default();
    let mut reasm = Reassembler::new(1 << 20, 8);
    for f in frames {
        let whole = match parse_frame(Bytes::from(f), &mut cache) {
            Ok(FramePart::Whole { atoms, body }) => Some((atoms, body)),
            Ok(FramePart::First { seq, fragment_id, atoms, body }) => reasm.first(seq, fragment_id, atoms, body).ok().flatten(),
            Ok(FramePart::Cont { seq, fragment_id, body }) => reasm.cont(seq, fragment_id, body).ok().flatten(),
            Err(_) => None,
        };
        if let Some((atoms, body)) = whole {
            if let Ok((ctl, payload)) = decode_message(&body, &atoms, &cfg.decode) {
                let _ = Control::from_terms(ctl, payload);
            }
        }
    }
}

/// A valid frame: header with two new atom-cache entries, then a SEND.
fn valid_frame() -> Vec<u8> {
    let mut f = vec![131, 68, 2, 0x88, 0x00, 1, 3];
    f.extend_from_slice(b"foo");
    f.extend_from_slice(&[2, 3]);
    f.extend_from_slice(b"bar");
    // control {2, '', Pid} with the pid's node as cache ref 0
    f.extend_from_slice(&[104, 3, 97, 2, 82, 1, 88, 82, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
    // payload: [foo | bar] with cache refs
    f.extend_from_slice(&[108, 0, 0, 0, 1, 82, 0, 82, 1]);
    f
}

#[test]
fn valid_frame_decodes() {
    let mut cache = AtomCache::default();
    let FramePart::Whole { atoms, body } = parse_frame(Bytes::from(valid_frame()), &mut cache).unwrap() else { panic!() };
    let (ctl, payload) = decode_message(&body, &atoms, &LinkConfig::default().decode).unwrap();
    let c = Control::from_terms(ctl, payload).unwrap();
    assert!(matches!(c, Control::Send { .. }), "{c:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frames_never_panic(frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..6)) {
        feed(frames);
    }

    #[test]
    fn frames_with_valid_headers_never_panic(tag in prop::sample::select(vec![68u8, 69, 70]), rest in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut f = vec![131, tag];
        f.extend(rest);
        feed(vec![f]);
    }

    #[test]
    fn mutated_valid_frames_never_panic(flips in prop::collection::vec((0usize..64, any::<u8>()), 1..6), cut in 0usize..64) {
        let mut f = valid_frame();
        for (i, b) in flips {
            let n = f.len();
            f[i % n] = b;
        }
        let keep = f.len().saturating_sub(cut % 8);
        f.truncate(keep);
        feed(vec![f.clone(), valid_frame(), f]);
    }
}
