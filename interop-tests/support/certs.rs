//! Certificates for TLS distribution tests (interop-tests/tls.rs,
//! benches/tls_throughput.rs), made with the `openssl` CLI in a temp dir
//! (under the OTP root's `/tmp` in a matrix run, so chroot nodes can read
//! them), removed when [`Certs`] is dropped.

use super::{BeamNode, BeamNodeBuilder};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA, a node certificate it signed (for 127.0.0.1), and a rogue CA
/// with a certificate of its own, plus the option files.
pub struct Certs {
    _dir: tempfile::TempDir,
    /// Option files with host paths (for erlnode).
    pub good_host: PathBuf,
    /// Option files naming the files as the BEAM nodes see them (host
    /// paths of the option files themselves).
    pub good_beam: PathBuf,
    /// A node whose certificate the good CA did not sign; it trusts both
    /// CAs, so that the refusal is erlnode's own verification at work.
    pub rogue_beam: PathBuf,
    pub rogue_host: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl CLI runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", &format!("{name}.key"),
            "-out", &format!("{name}.pem"), "-days", "2", "-subj", &format!("/CN=erlnode test {name}"),
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

fn make_cert(dir: &Path, name: &str, ca: &str) {
    openssl(
        dir,
        &[
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", &format!("{name}.key"), "-out",
            &format!("{name}.csr"), "-subj", "/CN=127.0.0.1",
        ],
    );
    // OTP checks the host as a DNS id ("127.0.0.1"), rustls as an IP
    // address: the certificate carries both.
    std::fs::write(
        dir.join(format!("{name}.ext")),
        "subjectAltName=IP:127.0.0.1,DNS:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509", "-req", "-in", &format!("{name}.csr"), "-CA", &format!("{ca}.pem"), "-CAkey", &format!("{ca}.key"),
            "-CAcreateserial", "-out", &format!("{name}.pem"), "-days", "2", "-extfile", &format!("{name}.ext"),
        ],
    );
}

fn optfile(dir: &Path, file: &str, seen_as: &Path, cert: &str, cacert: &str) -> PathBuf {
    let p = |f: &str| seen_as.join(f).display().to_string();
    let side = format!(
        "[{{certfile, \"{}\"}}, {{keyfile, \"{}\"}}, {{cacertfile, \"{}\"}}, {{verify, verify_peer}}",
        p(&format!("{cert}.pem")),
        p(&format!("{cert}.key")),
        p(&format!("{cacert}.pem"))
    );
    let text = format!("%% made by interop-tests/tls.rs\n[{{server, {side}, {{fail_if_no_peer_cert, true}}]}},\n {{client, {side}]}}].\n");
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}

impl Certs {
    pub fn new() -> Certs {
        let root = super::otp::suite_root();
        let dir = match root {
            Some(r) => tempfile::Builder::new().prefix("erlnode-tls").tempdir_in(r.join("tmp")).expect("a temp dir in the OTP root's /tmp"),
            None => tempfile::Builder::new().prefix("erlnode-tls").tempdir().unwrap(),
        };
        let d = dir.path();
        make_ca(d, "ca");
        make_cert(d, "node", "ca");
        make_ca(d, "rogue_ca");
        make_cert(d, "rogue", "rogue_ca");
        let both = [std::fs::read_to_string(d.join("ca.pem")).unwrap(), std::fs::read_to_string(d.join("rogue_ca.pem")).unwrap()].concat();
        std::fs::write(d.join("both_cas.pem"), both).unwrap();
        let beam_dir = match root {
            Some(r) => super::otp::inside(r, d),
            None => d.to_path_buf(),
        };
        Certs {
            good_host: optfile(d, "good_host.conf", d, "node", "ca"),
            good_beam: optfile(d, "good_beam.conf", &beam_dir, "node", "ca"),
            rogue_host: optfile(d, "rogue_host.conf", d, "rogue", "both_cas"),
            rogue_beam: optfile(d, "rogue_beam.conf", &beam_dir, "rogue", "both_cas"),
            _dir: dir,
        }
    }
}

/// A BEAM node with TLS distribution; `optfile` is a host path (in a
/// matrix run the node is given it as the chroot sees it).
pub fn tls_beam_builder(prefix: &str, cookie: &str, epmd: u16, optfile: &Path) -> BeamNodeBuilder {
    let optfile = match super::otp::suite_root() {
        Some(r) => super::otp::inside(r, optfile),
        None => optfile.to_path_buf(),
    };
    BeamNode::builder()
        .prefix(prefix)
        .cookie(cookie)
        .epmd_port(epmd)
        .arg("-proto_dist")
        .arg("inet_tls")
        .arg("-ssl_dist_optfile")
        .arg(&optfile.display().to_string())
}
