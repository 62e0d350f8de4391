//! Cookies and the challenge digest.

use md5::{Digest, Md5};
use std::path::PathBuf;

/// The digest both sides compute: MD5 of the cookie followed by the
/// challenge written as an unsigned decimal number (dist_util:gen_digest).
pub fn digest(challenge: u32, cookie: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(cookie.as_bytes());
    h.update(challenge.to_string().as_bytes());
    h.finalize().into()
}

/// Reads `~/.erlang.cookie` the way `erl` does: the first line, trailing
/// whitespace removed. `erl` creates the file when missing; so do we, so
/// that erlnode and an `erl` started later on the same account agree.
pub fn default_cookie() -> std::io::Result<String> {
    let path = cookie_path()?;
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s.lines().next().unwrap_or("").trim_end().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let cookie = random_cookie();
            write_cookie(&path, &cookie)?;
            tracing::info!(path = %path.display(), "created a new Erlang cookie file");
            Ok(cookie)
        }
        Err(e) => Err(e),
    }
}

fn cookie_path() -> std::io::Result<PathBuf> {
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".erlang.cookie"))
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "HOME is not set"))
}

/// Twenty upper-case letters, like `erl`'s own generated cookies.
pub fn random_cookie() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..20).map(|_| rng.gen_range(b'A'..=b'Z') as char).collect()
}

fn write_cookie(path: &std::path::Path, cookie: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o400);
    opts.open(path)?.write_all(cookie.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_erlang() {
        // erlang:md5(["monster" | integer_to_list(3210987654)])
        // computed by OTP 25.2.3
        let expected = [215, 230, 95, 84, 77, 72, 130, 208, 112, 174, 13, 40, 102, 166, 3, 37];
        assert_eq!(digest(3210987654, "monster"), expected);
    }
}
