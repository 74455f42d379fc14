//! `responses.key` in the data directory: the key routers seal Responses API conversations with
//! (see `dialect::responses::state`).
//!
//! 32 random bytes, hex, mode 0600, created by the first router that starts on the directory.
//! Every router of a cluster must hold the same one for `previous_response_id` to work through
//! any of them: copy the data directory (or mount it) after it exists, as with the rest of it.
//! Kept apart from the cluster secret so that rotating it only ends open conversation chains.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context as _};

use crate::dialect::responses::state::StateKey;

/// The file's name in the data directory.
pub const FILE: &str = "responses.key";

/// Reads the key, creating it first if the directory has none.
pub fn load_or_create(dir: &Path) -> anyhow::Result<StateKey> {
    let path = dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text).with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn parse(text: &str) -> anyhow::Result<StateKey> {
    let bytes = hex::decode(text.trim()).context("not hex")?;
    let Ok(bytes) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        bail!("expected 32 bytes of hex, found {}", bytes.len());
    };
    Ok(StateKey::new(&bytes))
}

fn create(path: &Path) -> anyhow::Result<StateKey> {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(hex::encode(bytes).as_bytes())?;
            file.sync_all()?;
            Ok(StateKey::new(&bytes))
        }
        // Another router on the same directory made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            parse(&text)
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::responses::state::Conversation;

    #[test]
    fn the_key_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let first = load_or_create(dir.path()).expect("created");
        let id = first
            .seal(&Conversation {
                messages: Vec::new(),
            })
            .expect("seal");
        let second = load_or_create(dir.path()).expect("read");
        assert!(second.open(&id).is_ok(), "the same key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(FILE))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(FILE), "abcd").expect("write");
        assert!(
            load_or_create(dir.path()).is_err(),
            "a short key is refused"
        );
    }
}
