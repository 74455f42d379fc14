//! Local LoRA adapter directories for mistral.rs 0.8.1.
//!
//! mistral.rs resolves model and X-LoRA paths on disk first, but fetches plain LoRA adapters
//! (`with_lora`) only through the Hugging Face hub client (`ApiRepo::get("adapter_config.json")`
//! and `adapter_model.safetensors`), which looks in the hub cache before downloading. So a local
//! adapter directory is made to look cached: its two files are linked under the cache entry of a
//! repository named like the path (`models--<path with / as -->/snapshots/local`, `refs/main`
//! naming it), which is where the hub client looks for that id. Nothing is downloaded or copied.

use std::path::Path;

use anyhow::{bail, Context as _};

/// The files mistral.rs reads for a LoRA adapter.
pub const ADAPTER_FILES: [&str; 2] = ["adapter_config.json", "adapter_model.safetensors"];

/// The snapshot name the links live under.
const SNAPSHOT: &str = "auxot-local";

/// Makes the adapter in `dir` readable by mistral.rs as the hub repository `id` from `cache`
/// (the hub cache directory, `HF_HUB_CACHE` or `HF_HOME/hub`).
pub fn stage(dir: &Path, id: &str, cache: &Path) -> anyhow::Result<()> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("the LoRA adapter directory {}", dir.display()))?;
    for file in ADAPTER_FILES {
        if !dir.join(file).is_file() {
            bail!(
                "the LoRA adapter directory {} has no {file} (a PEFT adapter has adapter_config.json and adapter_model.safetensors)",
                dir.display()
            );
        }
    }
    let repo = cache.join(format!("models--{id}").replace('/', "--"));
    let snapshot = repo.join("snapshots").join(SNAPSHOT);
    std::fs::create_dir_all(&snapshot)
        .with_context(|| format!("creating {}", snapshot.display()))?;
    std::fs::create_dir_all(repo.join("refs"))?;
    std::fs::write(repo.join("refs").join("main"), SNAPSHOT)?;
    for file in ADAPTER_FILES {
        let link = snapshot.join(file);
        if link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link).with_context(|| format!("replacing {}", link.display()))?;
        }
        link_file(&dir.join(file), &link)?;
    }
    Ok(())
}

#[cfg(unix)]
fn link_file(target: &Path, link: &Path) -> anyhow::Result<()> {
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

#[cfg(not(unix))]
fn link_file(target: &Path, link: &Path) -> anyhow::Result<()> {
    std::fs::copy(target, link)
        .map(|_| ())
        .with_context(|| format!("copying {} to {}", target.display(), link.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_adapter_is_found_where_the_hub_client_looks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let adapter = dir.path().join("adapters/sql");
        std::fs::create_dir_all(&adapter).expect("mkdir");
        let cache = dir.path().join("hub");
        let id = adapter.display().to_string();
        let err = stage(&adapter, &id, &cache).expect_err("no files yet");
        assert!(
            err.to_string().contains("has no adapter_config.json"),
            "{err}"
        );
        std::fs::write(adapter.join("adapter_config.json"), b"{}").expect("write");
        std::fs::write(adapter.join("adapter_model.safetensors"), b"weights").expect("write");
        stage(&adapter, &id, &cache).expect("staged");
        // Twice is fine (a restart).
        stage(&adapter, &id, &cache).expect("staged again");
        // The hub client's lookup: `models--{id}` with `/` as `--`, refs/main, snapshots/<ref>.
        let repo = cache.join(format!("models--{id}").replace('/', "--"));
        let snapshot = std::fs::read_to_string(repo.join("refs/main")).expect("ref");
        let weights = repo
            .join("snapshots")
            .join(snapshot)
            .join("adapter_model.safetensors");
        assert_eq!(std::fs::read(weights).expect("linked"), b"weights");
    }
}
