//! The router's data directory: the cluster's authority and the hashes of its keys.
//!
//! Every file is created mode 0600 in a 0700 directory:
//! - `cluster.json`: the format version and the cluster id;
//! - `ca.pem` + `ca-key.pem`: the certificate authority routers sign node certificates with (the
//!   root, or an intermediate under an offline root: then `ca.pem` holds both certificates);
//! - `gossip.key`: the key that seals gossip datagrams (workers receive it when they enroll);
//! - `keys.json`: every API and admin key's id, name, scope and Argon2id hash, never the key;
//! - `records.json`: join tokens (SHA-256 of their secrets) and revocations, which routers also
//!   replicate to each other through gossip;
//! - `responses.key`: the key routers seal Responses API conversations with (32 bytes, hex; see
//!   `dialect::responses::state`). Every router of a cluster needs the same one for
//!   `previous_response_id` to work through any of them. Kept apart from the CA and the gossip
//!   key so that replacing it only ends open conversation chains.
//!
//! Routers are otherwise stateless: a second router needs a copy of this directory (or a
//! Kubernetes Secret mounted as one). Workers hold none of it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use auxot_common::join_token::JoinToken;
use auxot_common::mesh::gossip::GossipKey;
use auxot_common::pki::{CertificateAuthority, Role};
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::files::{read, read_text, replace_private, write_private_new};
use crate::keys::{self, KeyLimits, NewKey, Scope, StoredKey};
use crate::records::{now_millis, now_secs, Body, Record, RecordStore, TokenRecord};

const CLUSTER_FILE: &str = "cluster.json";
const CA_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca-key.pem";
const ROOT_KEY_FILE: &str = "root-key.pem";
const ROOT_FILE: &str = "root.pem";
const GOSSIP_KEY_FILE: &str = "gossip.key";
const KEYS_FILE: &str = "keys.json";
const RECORDS_FILE: &str = "records.json";
const RESPONSES_KEY_FILE: &str = "responses.key";
/// The format written by this version.
const FORMAT: u32 = 2;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, Serialize, Deserialize)]
struct ClusterFile {
    /// Absent in directories created before per-node certificates (they hold `join_token`).
    #[serde(default)]
    version: u32,
    #[serde(default)]
    cluster_id: String,
    created_at: u64,
    /// The shared secret of the old format; only read to recognise such a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    join_token: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KeysFile {
    keys: Vec<StoredKey>,
}

/// What `setup` (or `migrate`) prints once.
pub struct SetupOutput {
    /// `None` after a migration, which keeps the existing API keys.
    pub api_key: Option<String>,
    pub admin_key: String,
    pub join_token: String,
    pub cluster_id: String,
    /// Where the root CA's key was written when it is kept apart from the data directory.
    pub offline_root: Option<PathBuf>,
}

/// The loaded data directory.
pub struct ClusterData {
    pub cluster_id: String,
    pub ca: CertificateAuthority,
    pub gossip: GossipKey,
    pub keys: Vec<StoredKey>,
    pub records: RecordStore,
    /// The key of Responses API conversations (`responses.key`).
    pub responses_key: [u8; 32],
}

fn random<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    Ok(bytes)
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates `responses.key` unless the directory has one (a directory used by an earlier
/// version of this branch may); the existing key keeps open conversations working.
fn ensure_responses_key(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(RESPONSES_KEY_FILE);
    if path.exists() {
        return Ok(());
    }
    write_private_new(&path, hex::encode(random::<32>()?).as_bytes())
}

/// Reads `responses.key`, creating it in a directory set up before the file existed. A
/// directory where it cannot be created (a read-only mount) is an error that says what to do.
fn load_responses_key(dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = dir.join(RESPONSES_KEY_FILE);
    if !path.exists() {
        match ensure_responses_key(dir) {
            Ok(()) => tracing::warn!(
                path = %path.display(),
                "created the Responses API key this data directory lacked; copy it to every other router's data directory, or previous_response_id only works through this router"
            ),
            // Another router on the same directory made it first: read theirs.
            Err(_) if path.exists() => {}
            Err(err) => bail!(
                "{} has no {RESPONSES_KEY_FILE} (the data directory predates it) and it cannot be created there ({err:#}); create it once on a writable copy with `head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > {RESPONSES_KEY_FILE} && chmod 600 {RESPONSES_KEY_FILE}` and give every router the same file",
                dir.display()
            ),
        }
    }
    let text = read_text(&path)?;
    hex::decode(text.trim())
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .with_context(|| format!("{} is not 32 bytes of hex", path.display()))
}

/// A new join token record for `role`, and the token to print.
pub fn new_token(
    ca: &CertificateAuthority,
    role: Role,
    name: &str,
    ttl_secs: Option<u64>,
) -> anyhow::Result<(String, Record)> {
    let token = JoinToken::generate(ca.root_fingerprint())
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let now = now_secs();
    let record = Record {
        id: token.id.clone(),
        version: now_millis(),
        body: Body::Token(TokenRecord {
            role,
            name: name.to_string(),
            secret_sha256: token.secret_hash(),
            created_at: now,
            expires_at: ttl_secs.map(|ttl| now.saturating_add(ttl)),
            revoked_at: None,
        }),
    };
    Ok((token.to_string(), record))
}

/// Writes the authority files of a new cluster into `dir` and returns its first join token and
/// admin key. With `offline_root`, the root CA's key goes there and `dir` gets an intermediate.
fn write_authority(
    dir: &Path,
    offline_root: Option<&Path>,
    existing_keys: Vec<StoredKey>,
) -> anyhow::Result<(String, String, String)> {
    let cluster_id = format!("auxot-{}", hex::encode(random::<6>()?));
    let root = CertificateAuthority::generate_root(&cluster_id)?;
    let ca = match offline_root {
        Some(root_dir) => {
            create_private_dir(root_dir)?;
            let pem = root.to_pem();
            write_private_new(&root_dir.join(ROOT_FILE), pem.chain.as_bytes())?;
            write_private_new(&root_dir.join(ROOT_KEY_FILE), pem.key.as_bytes())?;
            CertificateAuthority::generate_intermediate(&root)?
        }
        None => root,
    };
    let pem = ca.to_pem();
    write_private_new(&dir.join(CA_FILE), pem.chain.as_bytes())?;
    write_private_new(&dir.join(CA_KEY_FILE), pem.key.as_bytes())?;
    write_private_new(
        &dir.join(GOSSIP_KEY_FILE),
        B64.encode(random::<32>()?).as_bytes(),
    )?;
    let NewKey {
        key: admin_key,
        stored: admin,
    } = keys::generate("admin", Scope::Admin)?;
    let mut keys = existing_keys;
    keys.push(admin);
    replace_private(
        &dir.join(KEYS_FILE),
        &serde_json::to_vec_pretty(&KeysFile { keys })?,
    )?;
    ensure_responses_key(dir)?;
    let (join_token, token) = new_token(&ca, Role::Worker, "first", None)?;
    write_private_new(&dir.join(RECORDS_FILE), &RecordStore::to_json(&[token])?)?;
    let cluster = ClusterFile {
        version: FORMAT,
        cluster_id: cluster_id.clone(),
        created_at: now_secs(),
        join_token: None,
    };
    replace_private(
        &dir.join(CLUSTER_FILE),
        &serde_json::to_vec_pretty(&cluster)?,
    )?;
    Ok((cluster_id, admin_key, join_token))
}

/// Creates a new cluster in `dir`: a certificate authority (under an offline root when
/// `offline_root` is given), the gossip key, the first API key, the first admin key and the
/// first join token. Refuses to touch a directory that already holds one.
pub fn setup(
    dir: &Path,
    key_name: &str,
    offline_root: Option<&Path>,
) -> anyhow::Result<SetupOutput> {
    if dir.join(CLUSTER_FILE).exists() || dir.join(KEYS_FILE).exists() {
        bail!(
            "{} already holds a cluster; refusing to overwrite it (remove the directory to start over)",
            dir.display()
        );
    }
    if let Some(root) = offline_root {
        if root.join(ROOT_KEY_FILE).exists() {
            bail!("{} already holds a root key", root.display());
        }
    }
    create_private_dir(dir)?;
    let NewKey { key, stored } = keys::generate(key_name, Scope::Api)?;
    let (cluster_id, admin_key, join_token) = write_authority(dir, offline_root, vec![stored])?;
    Ok(SetupOutput {
        api_key: Some(key),
        admin_key,
        join_token,
        cluster_id,
        offline_root: offline_root.map(|p| p.join(ROOT_KEY_FILE)),
    })
}

/// Converts a data directory of the old format (one shared secret) in place: keeps its API keys,
/// creates the certificate authority, gossip key, an admin key and a join token. The old
/// `cluster.json` is kept as `cluster.v1.json`.
pub fn migrate(dir: &Path) -> anyhow::Result<SetupOutput> {
    let path = dir.join(CLUSTER_FILE);
    let cluster: ClusterFile = serde_json::from_slice(&read(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    if cluster.version >= FORMAT {
        bail!("{} is already in the current format", dir.display());
    }
    std::fs::rename(&path, dir.join("cluster.v1.json"))
        .with_context(|| format!("keeping the old {}", path.display()))?;
    let keys = load_keys(dir)?;
    let (cluster_id, admin_key, join_token) = write_authority(dir, None, keys)?;
    Ok(SetupOutput {
        api_key: None,
        admin_key,
        join_token,
        cluster_id,
        offline_root: None,
    })
}

/// Reads the authority, the key hashes and the records.
pub fn load(dir: &Path) -> anyhow::Result<ClusterData> {
    let cluster_path = dir.join(CLUSTER_FILE);
    if !cluster_path.exists() {
        bail!(
            "{} holds no cluster; create one with `auxot-router setup --data-dir {}`",
            dir.display(),
            dir.display()
        );
    }
    let cluster: ClusterFile = serde_json::from_slice(&read(&cluster_path)?)
        .with_context(|| format!("parsing {}", cluster_path.display()))?;
    if cluster.version < FORMAT {
        bail!(
            "{} was created by an older auxot, where one shared secret was the whole cluster's authority; convert it with `auxot-router migrate --data-dir {}`, copy the result to every router, then rejoin workers with the join token it prints",
            dir.display(),
            dir.display()
        );
    }
    let ca = CertificateAuthority::from_pem(
        &read_text(&dir.join(CA_FILE))?,
        &read_text(&dir.join(CA_KEY_FILE))?,
    )
    .with_context(|| format!("loading the CA in {}", dir.display()))?;
    let key: [u8; 32] = B64
        .decode(read_text(&dir.join(GOSSIP_KEY_FILE))?.trim())
        .ok()
        .and_then(|k| k.try_into().ok())
        .with_context(|| format!("{} is not 32 bytes of base64", GOSSIP_KEY_FILE))?;
    Ok(ClusterData {
        gossip: GossipKey {
            cluster_id: cluster.cluster_id.clone(),
            key,
        },
        cluster_id: cluster.cluster_id,
        ca,
        keys: load_keys(dir)?,
        records: RecordStore::load(&dir.join(RECORDS_FILE))?,
        responses_key: load_responses_key(dir)?,
    })
}

fn keys_path(dir: &Path) -> PathBuf {
    dir.join(KEYS_FILE)
}

fn load_keys(dir: &Path) -> anyhow::Result<Vec<StoredKey>> {
    let path = keys_path(dir);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let file: KeysFile = serde_json::from_slice(&read(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    Ok(file.keys)
}

/// Adds a key; returns the raw key, to be shown once.
pub fn add_key(dir: &Path, name: &str, scope: Scope, limits: KeyLimits) -> anyhow::Result<String> {
    load(dir)?;
    let mut keys = load_keys(dir)?;
    let NewKey { key, mut stored } = keys::generate(name, scope)?;
    stored.limits = limits;
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
        let out = setup(&data_dir, "default", None).expect("setup");
        assert!(out
            .api_key
            .as_deref()
            .is_some_and(|k| k.starts_with("rtr_")));
        assert!(out.join_token.starts_with("jtk2."));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for file in [
                CLUSTER_FILE,
                KEYS_FILE,
                CA_FILE,
                CA_KEY_FILE,
                GOSSIP_KEY_FILE,
                RECORDS_FILE,
                RESPONSES_KEY_FILE,
            ] {
                let mode = std::fs::metadata(data_dir.join(file))
                    .expect("meta")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{file}");
            }
        }
        let keys_text = std::fs::read_to_string(data_dir.join(KEYS_FILE)).expect("read");
        assert!(!keys_text.contains(out.api_key.as_deref().unwrap_or("-")));
        assert!(!keys_text.contains(&out.admin_key));
        let records = std::fs::read_to_string(data_dir.join(RECORDS_FILE)).expect("read");
        let token = JoinToken::parse(&out.join_token).expect("token");
        assert!(records.contains(&token.secret_hash()));
        assert!(
            !records.contains(&B64.encode(token.secret)),
            "only the hash of the token's secret is kept"
        );
        let err = setup(&data_dir, "default", None)
            .err()
            .expect("second setup must fail");
        assert!(err.to_string().contains("refusing to overwrite"));
        let data = load(&data_dir).expect("load");
        assert_eq!(data.keys.len(), 2);
        assert_eq!(data.ca.root_fingerprint(), token.root);
        assert!(data.records.token(&token.id).is_some());
    }

    #[test]
    fn an_offline_root_stays_out_of_the_data_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (data_dir, root_dir) = (dir.path().join("data"), dir.path().join("offline"));
        let out = setup(&data_dir, "default", Some(&root_dir)).expect("setup");
        assert!(root_dir.join(ROOT_KEY_FILE).exists());
        let data = load(&data_dir).expect("load");
        assert!(!data.ca.is_root(), "routers hold only the intermediate");
        let token = JoinToken::parse(&out.join_token).expect("token");
        assert_eq!(token.root, data.ca.root_fingerprint());
    }

    #[test]
    fn an_old_directory_says_how_to_migrate_and_migrates() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(CLUSTER_FILE),
            r#"{"join_token": "jtk_AAAA", "created_at": 1}"#,
        )
        .expect("write");
        let old_key = keys::generate("old", Scope::Api).expect("key");
        std::fs::write(
            dir.path().join(KEYS_FILE),
            serde_json::to_vec(&KeysFile {
                keys: vec![old_key.stored.clone()],
            })
            .expect("json"),
        )
        .expect("write");
        let err = load(dir.path()).err().expect("old format");
        assert!(err.to_string().contains("auxot-router migrate"), "{err}");
        let out = migrate(dir.path()).expect("migrate");
        assert!(out.join_token.starts_with("jtk2."));
        let data = load(dir.path()).expect("load after migrating");
        assert!(
            data.keys.iter().any(|k| k.id == old_key.stored.id),
            "existing API keys keep working"
        );
        assert!(dir.path().join("cluster.v1.json").exists());
        assert!(dir.path().join(RESPONSES_KEY_FILE).exists());
    }

    #[test]
    fn migrating_keeps_an_existing_responses_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(CLUSTER_FILE),
            r#"{"join_token": "jtk_AAAA", "created_at": 1}"#,
        )
        .expect("write");
        let kept = [7u8; 32];
        std::fs::write(dir.path().join(RESPONSES_KEY_FILE), hex::encode(kept)).expect("write");
        migrate(dir.path()).expect("migrate");
        assert_eq!(load(dir.path()).expect("load").responses_key, kept);
    }

    #[test]
    fn a_directory_without_a_responses_key_gets_one_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        setup(dir.path(), "first", None).expect("setup");
        let made = load(dir.path()).expect("load").responses_key;
        assert_eq!(
            load(dir.path()).expect("load").responses_key,
            made,
            "stable"
        );
        // A v2 directory from before the file existed.
        std::fs::remove_file(dir.path().join(RESPONSES_KEY_FILE)).expect("rm");
        let created = load(dir.path()).expect("created on load").responses_key;
        assert_ne!(created, made);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(RESPONSES_KEY_FILE))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(RESPONSES_KEY_FILE), "abcd").expect("write");
        let err = load(dir.path()).err().expect("a short key");
        assert!(err.to_string().contains("32 bytes of hex"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_read_only_directory_without_a_responses_key_says_what_to_do() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        setup(dir.path(), "first", None).expect("setup");
        std::fs::remove_file(dir.path().join(RESPONSES_KEY_FILE)).expect("rm");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o500)).expect("ro");
        let result = load(dir.path());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("rw");
        // Root may write anyway; then the key was simply created.
        if let Err(err) = result {
            let message = err.to_string();
            assert!(
                message.contains("responses.key") && message.contains("every router"),
                "{message}"
            );
        }
    }

    #[test]
    fn keys_can_be_added_and_revoked() {
        let dir = tempfile::tempdir().expect("tempdir");
        setup(dir.path(), "first", None).expect("setup");
        let key = add_key(dir.path(), "second", Scope::Api, KeyLimits::default()).expect("add");
        assert_eq!(list_keys(dir.path()).expect("list").len(), 3);
        let id = keys::key_id(&key).expect("id").to_string();
        assert!(revoke_key(dir.path(), &id).expect("revoke"));
        assert!(!revoke_key(dir.path(), &id).expect("revoke again"));
        assert_eq!(list_keys(dir.path()).expect("list").len(), 2);
    }

    #[test]
    fn loading_an_empty_directory_says_how_to_set_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load(dir.path()).err().expect("no cluster");
        assert!(err.to_string().contains("auxot-router setup"));
    }
}
