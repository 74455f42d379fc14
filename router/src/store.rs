//! The router's data directory: the cluster secret and the hashes of the API keys.
//!
//! Two small JSON files, both created mode 0600:
//! - `cluster.json`: the join token (which carries the cluster secret);
//! - `keys.json`: every API key's id, name and Argon2id PHC hash, never the key itself.
//!
//! Routers are otherwise stateless, so a second router needs exactly these two files (a copy of
//! the directory, or a Kubernetes Secret mounted as one).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use auxot_common::secret::ClusterSecret;
use serde::{Deserialize, Serialize};

use crate::keys::{self, NewKey, StoredKey};

const CLUSTER_FILE: &str = "cluster.json";
const KEYS_FILE: &str = "keys.json";

#[derive(Debug, Serialize, Deserialize)]
struct ClusterFile {
    /// The worker join token; it carries the 32-byte cluster secret.
    join_token: String,
    created_at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeysFile {
    keys: Vec<StoredKey>,
}

/// What `setup` prints once.
pub struct SetupOutput {
    pub api_key: String,
    pub join_token: String,
    pub cluster_id: String,
}

/// The loaded data directory.
#[derive(Debug)]
pub struct ClusterData {
    pub secret: ClusterSecret,
    pub keys: Vec<StoredKey>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `contents` to a new file readable only by its owner; fails if it exists.
fn write_private_new(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// Replaces a private file atomically (write to a temporary file, then rename).
fn replace_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    write_private_new(&tmp, contents)?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Creates a new cluster in `dir`. Refuses to touch a directory that already holds one.
pub fn setup(dir: &Path, key_name: &str) -> anyhow::Result<SetupOutput> {
    let cluster_path = dir.join(CLUSTER_FILE);
    if cluster_path.exists() || dir.join(KEYS_FILE).exists() {
        bail!(
            "{} already holds a cluster; refusing to overwrite it (remove the directory to start over)",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let secret = ClusterSecret::generate().map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let NewKey { key, stored } = keys::generate(key_name)?;
    let cluster = ClusterFile {
        join_token: secret.join_token(),
        created_at: now(),
    };
    write_private_new(&cluster_path, &serde_json::to_vec_pretty(&cluster)?)?;
    let keys_file = KeysFile { keys: vec![stored] };
    write_private_new(
        &dir.join(KEYS_FILE),
        &serde_json::to_vec_pretty(&keys_file)?,
    )?;
    Ok(SetupOutput {
        api_key: key,
        join_token: cluster.join_token,
        cluster_id: secret.cluster_id(),
    })
}

/// Reads the cluster secret and the key hashes.
pub fn load(dir: &Path) -> anyhow::Result<ClusterData> {
    let cluster_path = dir.join(CLUSTER_FILE);
    if !cluster_path.exists() {
        bail!(
            "{} holds no cluster; create one with `auxot-router setup --data-dir {}`",
            dir.display(),
            dir.display()
        );
    }
    let cluster: ClusterFile = serde_json::from_slice(
        &std::fs::read(&cluster_path)
            .with_context(|| format!("reading {}", cluster_path.display()))?,
    )
    .with_context(|| format!("parsing {}", cluster_path.display()))?;
    let secret = ClusterSecret::from_join_token(&cluster.join_token)
        .with_context(|| format!("the join token in {}", cluster_path.display()))?;
    let keys = load_keys(dir)?;
    Ok(ClusterData { secret, keys })
}

fn keys_path(dir: &Path) -> PathBuf {
    dir.join(KEYS_FILE)
}

fn load_keys(dir: &Path) -> anyhow::Result<Vec<StoredKey>> {
    let path = keys_path(dir);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let file: KeysFile = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    Ok(file.keys)
}

/// Adds a key; returns the raw key, to be shown once.
pub fn add_key(dir: &Path, name: &str) -> anyhow::Result<String> {
    load(dir)?;
    let mut keys = load_keys(dir)?;
    let NewKey { key, stored } = keys::generate(name)?;
    keys.push(stored);
    replace_private(
        &keys_path(dir),
        &serde_json::to_vec_pretty(&KeysFile { keys })?,
    )?;
    Ok(key)
}

/// Lists stored keys (ids and names; the hashes stay in the file).
pub fn list_keys(dir: &Path) -> anyhow::Result<Vec<StoredKey>> {
    load(dir)?;
    load_keys(dir)
}

/// Removes the key with this id; false when there was none.
pub fn revoke_key(dir: &Path, id: &str) -> anyhow::Result<bool> {
    load(dir)?;
    let mut keys = load_keys(dir)?;
    let before = keys.len();
    keys.retain(|k| k.id != id);
    if keys.len() == before {
        return Ok(false);
    }
    replace_private(
        &keys_path(dir),
        &serde_json::to_vec_pretty(&KeysFile { keys })?,
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_creates_private_files_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let out = setup(&data_dir, "default").expect("setup");
        assert!(out.api_key.starts_with("rtr_"));
        assert!(out.join_token.starts_with("jtk_"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for file in [CLUSTER_FILE, KEYS_FILE] {
                let mode = std::fs::metadata(data_dir.join(file))
                    .expect("meta")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{file}");
            }
        }
        let keys_text = std::fs::read_to_string(data_dir.join(KEYS_FILE)).expect("read");
        assert!(
            !keys_text.contains(&out.api_key),
            "the raw key must not be stored"
        );
        assert!(keys_text.contains("$argon2id$"));
        let err = setup(&data_dir, "default")
            .err()
            .expect("second setup must fail");
        assert!(err.to_string().contains("refusing to overwrite"));
        let data = load(&data_dir).expect("load");
        assert_eq!(data.secret.join_token(), out.join_token);
        assert_eq!(data.keys.len(), 1);
    }

    #[test]
    fn keys_can_be_added_and_revoked() {
        let dir = tempfile::tempdir().expect("tempdir");
        setup(dir.path(), "first").expect("setup");
        let key = add_key(dir.path(), "second").expect("add");
        let listed = list_keys(dir.path()).expect("list");
        assert_eq!(listed.len(), 2);
        let id = keys::key_id(&key).expect("id").to_string();
        assert!(revoke_key(dir.path(), &id).expect("revoke"));
        assert!(!revoke_key(dir.path(), &id).expect("revoke again"));
        assert_eq!(list_keys(dir.path()).expect("list").len(), 1);
    }

    #[test]
    fn loading_an_empty_directory_says_how_to_set_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load(dir.path()).expect_err("no cluster");
        assert!(err.to_string().contains("auxot-router setup"));
    }
}
