//! What the worker computes on, for the `device` gossip key.
//!
//! NVML is loaded at run time (`libnvidia-ml.so` ships with the driver), so one binary runs on
//! machines with and without NVIDIA GPUs; when it cannot be loaded the GPU is reported by kind
//! only.

use auxot_common::mesh::node::DeviceInfo;
use nvml_wrapper::Nvml;
use tracing::warn;

/// The GPU(s) the engine runs on, as NVML describes them.
pub fn detect_gpu() -> DeviceInfo {
    match describe_gpus() {
        Ok(info) => info,
        Err(err) => {
            warn!(%err, "NVML unavailable: advertising the GPU without name or memory");
            DeviceInfo {
                kind: "cuda".into(),
                name: "cuda".into(),
                memory_mib: None,
                count: 1,
            }
        }
    }
}

fn describe_gpus() -> Result<DeviceInfo, nvml_wrapper::error::NvmlError> {
    let nvml = Nvml::init()?;
    let count = nvml.device_count()?;
    let first = nvml.device_by_index(0)?;
    let memory = first.memory_info()?;
    Ok(DeviceInfo {
        kind: "cuda".into(),
        name: first.name()?,
        memory_mib: Some(memory.total / (1024 * 1024)),
        count,
    })
}
