//! Where a model's weights come from, decided from the `--model` value alone (a `.gguf` file, a
//! directory, or a Hugging Face id) before anything is loaded, so a typo fails in milliseconds
//! with a message instead of after a download attempt.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

/// Where the weights come from.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    /// Local GGUF files in one directory.
    LocalGguf { dir: PathBuf, files: Vec<String> },
    /// A local directory with `config.json` and safetensors.
    LocalDir(PathBuf),
    /// A Hugging Face repository of GGUF files.
    HubGguf { repo: String, files: Vec<String> },
    /// A Hugging Face repository of safetensors.
    Hub(String),
}

fn gguf_files_in(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".gguf") {
            files.push(name);
        }
    }
    files.sort();
    Ok(files)
}

/// The source `model` names; `gguf_files` picks files of a hub repository of GGUF files.
pub fn resolve(model: &str, gguf_files: &[String]) -> anyhow::Result<Source> {
    let path = Path::new(model);
    if path.is_file() {
        let (Some(dir), Some(file)) = (path.parent(), path.file_name()) else {
            bail!("model path {} has no file name", path.display());
        };
        if !file.to_string_lossy().ends_with(".gguf") {
            bail!(
                "model file {} is not a .gguf file; pass a .gguf file, a model directory or a Hugging Face id",
                path.display()
            );
        }
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        return Ok(Source::LocalGguf {
            dir: dir.to_path_buf(),
            files: vec![file.to_string_lossy().into_owned()],
        });
    }
    if path.is_dir() {
        let files = gguf_files_in(path)?;
        if !files.is_empty() {
            return Ok(Source::LocalGguf {
                dir: path.to_path_buf(),
                files,
            });
        }
        if path.join("config.json").is_file() {
            return Ok(Source::LocalDir(path.to_path_buf()));
        }
        bail!(
            "model directory {} holds neither .gguf files nor a config.json",
            path.display()
        );
    }
    let looks_like_hub_id = model.split('/').count() == 2
        && !model.starts_with('.')
        && !model.starts_with('/')
        && !model.ends_with(".gguf");
    if !looks_like_hub_id {
        bail!("model `{model}` is not an existing file or directory, nor a Hugging Face id like `org/name`");
    }
    Ok(if gguf_files.is_empty() {
        Source::Hub(model.to_string())
    } else {
        Source::HubGguf {
            repo: model.to_string(),
            files: gguf_files.to_vec(),
        }
    })
}

/// The id callers use for this model unless `--model-name` overrides it.
pub fn default_model_id(source: &Source) -> String {
    match source {
        Source::LocalGguf { files, .. } | Source::HubGguf { files, .. } => files
            .first()
            .map(|f| f.trim_end_matches(".gguf").to_string())
            .unwrap_or_default(),
        Source::LocalDir(dir) => dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string()),
        Source::Hub(id) => id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_recognised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gguf = dir.path().join("Tiny-Model.Q4.gguf");
        std::fs::write(&gguf, b"x").expect("write");
        let file_source = resolve(&gguf.display().to_string(), &[]).expect("file");
        assert_eq!(default_model_id(&file_source), "Tiny-Model.Q4");
        let dir_source = resolve(&dir.path().display().to_string(), &[]).expect("dir");
        assert!(
            matches!(dir_source, Source::LocalGguf { ref files, .. } if files == &["Tiny-Model.Q4.gguf"])
        );
        assert_eq!(
            resolve("HuggingFaceTB/SmolLM2-135M-Instruct", &[]).expect("hub"),
            Source::Hub("HuggingFaceTB/SmolLM2-135M-Instruct".into())
        );
        let files = vec!["model.Q4_K_M.gguf".to_string()];
        let hub_gguf = resolve("org/Model-GGUF", &files).expect("hub gguf");
        assert_eq!(default_model_id(&hub_gguf), "model.Q4_K_M");
        let err = resolve("./missing.gguf", &[]).expect_err("missing");
        assert!(err.to_string().contains("not an existing file"), "{err}");
        let not_gguf = dir.path().join("weights.bin");
        std::fs::write(&not_gguf, b"x").expect("write");
        assert!(resolve(&not_gguf.display().to_string(), &[]).is_err());
    }

    #[test]
    fn a_directory_of_safetensors_is_named_after_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("SmolLM2-135M");
        std::fs::create_dir(&model).expect("mkdir");
        let err = resolve(&model.display().to_string(), &[]).expect_err("empty dir");
        assert!(
            err.to_string()
                .contains("neither .gguf files nor a config.json"),
            "{err}"
        );
        std::fs::write(model.join("config.json"), b"{}").expect("write");
        let source = resolve(&model.display().to_string(), &[]).expect("dir");
        assert_eq!(source, Source::LocalDir(model.clone()));
        assert_eq!(default_model_id(&source), "SmolLM2-135M");
    }
}
