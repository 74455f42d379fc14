//! Router overhead against the peers, in one run: the same load generator and settings against
//! a trivial mock backend alone (the floor), vllm-router and sglang-router in front of it, and
//! an auxot router in front of a synthetic worker in zero-delay mode (no timer per token). Each
//! router's CPU time is read from /proc before and after its run.
//!
//! The peers come from PyPI into the bench's cached virtual environment; one that cannot be
//! installed or started is reported as such and the rest still run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::http::{self, CpuTime, Load};

/// Keep-alive connections of the load generator (as wrk -c 32).
pub const CONNECTIONS: usize = 32;
/// Measured seconds per router, after a warm-up.
pub const DURATION: Duration = Duration::from_secs(10);
const WARM_UP: Duration = Duration::from_secs(2);
/// The request every router gets (auxot adds nothing to it but its key).
pub const BODY: &str =
    r#"{"model":"auto","messages":[{"role":"user","content":"hello"}],"max_tokens":8}"#;
pub const PATH: &str = "/v1/chat/completions";

/// One router's figures.
pub struct RouterRun {
    pub name: String,
    pub load: Load,
    /// The router process's CPU time during the measured run.
    pub cpu: CpuTime,
    /// The backend's (mock or worker) CPU seconds during the measured run.
    pub backend_cpu: f64,
}

impl RouterRun {
    /// Router CPU per successful request.
    pub fn cpu_per_request(&self) -> Duration {
        Duration::from_secs_f64(self.cpu.total() / self.load.ok.max(1) as f64)
    }

    /// The part of [`Self::cpu_per_request`] spent in the kernel (system calls, and on loopback
    /// the receiving side's network stack too).
    pub fn kernel_cpu_per_request(&self) -> Duration {
        Duration::from_secs_f64(self.cpu.kernel / self.load.ok.max(1) as f64)
    }

    pub fn backend_cpu_per_request(&self) -> Duration {
        Duration::from_secs_f64(self.backend_cpu / self.load.ok.max(1) as f64)
    }
}

/// A child process killed when dropped.
pub struct Process(pub Child);

impl Process {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Warms `addr` up, then measures it; CPU of `router` and `backend` over the measured part.
pub async fn measure(
    name: &str,
    addr: SocketAddr,
    bearer: &str,
    router: Option<u32>,
    backend: u32,
) -> RouterRun {
    let request = http::post(addr, PATH, bearer, BODY);
    let _ = http::load(addr, request.clone(), CONNECTIONS, WARM_UP).await;
    let (cpu0, backend0) = (router.map(http::cpu_time), http::cpu_seconds(backend));
    let load = http::load(addr, request, CONNECTIONS, DURATION).await;
    let (cpu1, backend1) = (router.map(http::cpu_time), http::cpu_seconds(backend));
    RouterRun {
        name: name.to_string(),
        load,
        cpu: cpu1.unwrap_or_default() - cpu0.unwrap_or_default(),
        backend_cpu: backend1 - backend0,
    }
}

/// The mock backend: this benchmark binary started as `auxot-bench mock-backend`, which prints
/// its address.
pub fn start_mock() -> anyhow::Result<(Process, SocketAddr)> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("mock-backend")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    let addr = line.trim().parse().context("mock backend address")?;
    Ok((Process(child), addr))
}

/// A peer router from the venv, in front of `backend` on `port`; waits until it answers.
pub async fn start_peer(
    venv: &Path,
    name: &str,
    port: u16,
    backend: SocketAddr,
) -> anyhow::Result<Process> {
    let worker = format!("http://{backend}");
    let port = port.to_string();
    let (program, args): (PathBuf, Vec<&str>) = match name {
        "vllm-router" => (
            venv.join("bin/vllm-router"),
            vec![
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--worker-urls",
                &worker,
                "--policy",
                "round_robin",
                "--log-level",
                "warning",
            ],
        ),
        "sglang-router" => (
            venv.join("bin/sglang-router"),
            vec![
                "launch",
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--worker-urls",
                &worker,
                "--policy",
                "round_robin",
                "--log-level",
                "warn",
            ],
        ),
        other => bail!("unknown peer {other}"),
    };
    if !program.exists() {
        bail!("{} is not installed", program.display());
    }
    let child = Command::new(&program)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let process = Process(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let request = http::post(addr, PATH, "none", BODY);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let probe = http::load(addr, request.clone(), 1, Duration::from_millis(200)).await;
        if probe.ok > 0 {
            return Ok(process);
        }
        if Instant::now() > deadline {
            bail!("{name} did not answer within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Installs the peers and llama-cpp-python into `venv` once (a marker per package records
/// success); returns what could not be installed, with pip's last words.
pub fn ensure_venv(venv: &Path, packages: &[&str]) -> Vec<(String, String)> {
    let mut missing = Vec::new();
    if !venv.join("bin/python").exists() {
        let created = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv)
            .status();
        if !created.is_ok_and(|s| s.success()) {
            return packages
                .iter()
                .map(|p| (p.to_string(), "python3 -m venv failed".to_string()))
                .collect();
        }
    }
    for package in packages {
        let marker = venv.join(format!(
            ".installed-{}",
            package.replace(['=', '<', '>'], "_")
        ));
        if marker.exists() {
            continue;
        }
        println!("   installing {package} into {} (once)", venv.display());
        let output = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", package])
            .output();
        match output {
            Ok(o) if o.status.success() => {
                let _ = std::fs::write(&marker, b"");
            }
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                let last = err.lines().last().unwrap_or("").to_string();
                missing.push((package.to_string(), last));
            }
            Err(e) => missing.push((package.to_string(), e.to_string())),
        }
    }
    missing
}
