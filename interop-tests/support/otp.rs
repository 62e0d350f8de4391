//! Which Erlang/OTP release the interop suite runs against.
//!
//! By default BEAM nodes are the host's (`erl` on `PATH`, OTP 25 on
//! Debian bookworm). With `ERLNODE_TEST_OTP_ROOT=DIR` (set by `make
//! test-otp OTP=27`), every node is started inside that Debian root with
//! `chroot`, so the whole suite runs against the root's release. A chroot
//! shares the host's network, so such nodes reach erlnode and host nodes
//! over loopback; they see only files inside the root, which is why
//! `scripts/otp-stage.sh` copies the Elixir library into the root and
//! compiles it there with that root's Elixir (the "stage").
//!
//! Roots live in `ERLNODE_OTP_CACHE` (default `/var/cache/erlnode/otp`),
//! made by `scripts/otp-root.sh`. A test that needs a second release next
//! to the suite's (a mixed-release cluster) asks [`root_for`].

use md5::{Digest, Md5};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Debian suite that carries an OTP release.
fn suite_of(release: u32) -> &'static str {
    match release {
        27 => "trixie",
        29 => "sid",
        r => panic!("no Debian root known for OTP {r} (scripts/otp-root.sh knows 27 and 29)"),
    }
}

fn check_root(root: &Path) -> PathBuf {
    assert!(
        root.join(".erlnode-root-complete").exists(),
        "{} is not a complete OTP root: run `make test` or `make test-otp OTP=<release>` \
         (scripts/otp-root.sh makes it)",
        root.display()
    );
    root.to_path_buf()
}

/// The root every BEAM node of this run starts in, if the run is a
/// matrix run (`ERLNODE_TEST_OTP_ROOT`).
pub fn suite_root() -> Option<&'static Path> {
    static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
    ROOT.get_or_init(|| {
        std::env::var_os("ERLNODE_TEST_OTP_ROOT").filter(|v| !v.is_empty()).map(|v| check_root(Path::new(&v)))
    })
    .as_deref()
}

/// The root of OTP `release`, which must already exist (`make test`
/// makes the OTP 27 one before the Rust tests run).
pub fn root_for(release: u32) -> PathBuf {
    let cache = std::env::var_os("ERLNODE_OTP_CACHE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/cache/erlnode/otp"));
    check_root(&cache.join(suite_of(release)))
}

/// This checkout's stage inside `root` (see `scripts/otp-stage.sh`: the
/// folder is named after the md5 of the checkout's path).
pub fn stage_in(root: &Path) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).canonicalize().expect("checkout path");
    let digest = Md5::digest(repo.as_os_str().as_encoded_bytes());
    let id: String = super::hex_encode(&digest).chars().take(12).collect();
    root.join("erlnode-stage").join(id)
}

/// The compiled Elixir library (`erlnode_ex`) for nodes started in
/// `root` (None: the host's, compiled by `make test` before the Rust
/// tests).
pub fn erlnode_ex_ebin_in(root: Option<&Path>) -> PathBuf {
    let p = match root {
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("erlang/_build/test/lib/erlnode_ex/ebin"),
        Some(r) => stage_in(r).join("erlang/_build/test/lib/erlnode_ex/ebin"),
    };
    assert!(
        p.join("Elixir.Erlnode.Migratable.beam").exists(),
        "{} is missing: run `make test` (it compiles erlang/ for every release of the matrix first)",
        p.display()
    );
    p
}

/// The Elixir library for this run's nodes.
pub fn erlnode_ex_ebin() -> PathBuf {
    erlnode_ex_ebin_in(suite_root())
}

/// `path` as a node inside `root` sees it. Panics when it is outside the
/// root: a chroot node cannot read it.
pub fn inside(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix(root) {
        Ok(rel) => Path::new("/").join(rel),
        Err(_) => panic!(
            "{} is outside the OTP root {}: nodes started there cannot read it (put it in the stage, scripts/otp-stage.sh)",
            path.display(),
            root.display()
        ),
    }
}

/// Major OTP release of nodes started in `root` (None: the host's).
pub fn release_in(root: Option<&Path>) -> u32 {
    let mut cmd = match root {
        None => std::process::Command::new("erl"),
        Some(r) => {
            let mut c = std::process::Command::new("chroot");
            c.arg(r).args(["env", "HOME=/tmp", "erl"]);
            c
        }
    };
    let out = cmd
        .args(["-noshell", "-eval", "io:put_chars(erlang:system_info(otp_release)), halt()."])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run erl (root {root:?}): {e}"));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("erl (root {root:?}) printed no release: {out:?}"))
}

/// Major OTP release this run's nodes use.
pub fn release() -> u32 {
    static R: OnceLock<u32> = OnceLock::new();
    *R.get_or_init(|| release_in(suite_root()))
}

/// The `ebin` folders of Elixir's applications inside `root` (as host
/// paths).
pub fn elixir_ebin_dirs_in(root: &Path) -> Vec<PathBuf> {
    let lib = root.join("usr/lib/elixir/lib");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&lib)
        .unwrap_or_else(|e| panic!("{}: {e} (is elixir in the root?)", lib.display()))
        .filter_map(|e| Some(e.ok()?.path().join("ebin")))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.iter().any(|d| d.join("elixir.app").exists()), "no elixir.app under {}", lib.display());
    dirs
}
