//! The router-overhead benchmark's two ends, on raw HTTP/1.1 so that neither costs more than the
//! routers it measures: a load generator (keep-alive connections, each sending the same request
//! as soon as the previous answer is read) and a trivial mock backend (a fixed OpenAI chat
//! completion for any POST, `ok` for any GET). Also the CPU time of a process and its children.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// What a load run measured.
#[derive(Debug, Default)]
pub struct Load {
    pub ok: u64,
    pub failed: u64,
    /// Latencies of successful requests, sorted.
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

impl Load {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub fn quantile(&self, q: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        self.latencies[((n - 1) as f64 * q).round() as usize]
    }
}

/// One HTTP/1.1 request, ready to send again and again.
pub fn post(addr: SocketAddr, path: &str, bearer: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {bearer}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads one response; its status. Handles `content-length` and `chunked` bodies.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<(u16, bool)> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        read_more(stream, buf).await?;
    };
    let lower = std::str::from_utf8(&buf[..head_end])
        .context("response head")?
        .to_ascii_lowercase();
    let status: u16 = lower
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("status")?;
    let close = lower.contains("\r\nconnection: close");
    let length = lower
        .split("\r\n")
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    buf.drain(..head_end);
    if let Some(length) = length {
        while buf.len() < length {
            read_more(stream, buf).await?;
        }
        buf.drain(..length);
    } else if lower.contains("transfer-encoding: chunked") {
        loop {
            let line_end = loop {
                if let Some(i) = find(buf, b"\r\n") {
                    break i;
                }
                read_more(stream, buf).await?;
            };
            let size_text = std::str::from_utf8(&buf[..line_end]).context("chunk size")?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .context("chunk size")?;
            while buf.len() < line_end + 2 + size + 2 {
                read_more(stream, buf).await?;
            }
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        bail!("response without a length: {lower}");
    }
    Ok((status, close))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        bail!("connection closed");
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// Sends `request` to `addr` over `connections` keep-alive connections for `duration`.
pub async fn load(
    addr: SocketAddr,
    request: Vec<u8>,
    connections: usize,
    duration: Duration,
) -> Load {
    let request = std::sync::Arc::new(request);
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut out = Load::default();
                let mut conn: Option<TcpStream> = None;
                let mut buf = Vec::with_capacity(16 * 1024);
                while Instant::now() < deadline {
                    if conn.is_none() {
                        match TcpStream::connect(addr).await {
                            Ok(s) => {
                                let _ = s.set_nodelay(true);
                                buf.clear();
                                conn = Some(s);
                            }
                            Err(_) => {
                                out.failed += 1;
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        }
                    }
                    let Some(stream) = conn.as_mut() else {
                        continue;
                    };
                    let sent = Instant::now();
                    let result = match stream.write_all(&request).await {
                        Ok(()) => read_response(stream, &mut buf).await,
                        Err(e) => Err(e.into()),
                    };
                    match result {
                        Ok((200, close)) => {
                            out.ok += 1;
                            out.latencies.push(sent.elapsed());
                            if close {
                                conn = None;
                            }
                        }
                        Ok((_, close)) => {
                            out.failed += 1;
                            if close {
                                conn = None;
                            }
                        }
                        Err(_) => {
                            out.failed += 1;
                            conn = None;
                        }
                    }
                }
                out
            })
        })
        .collect();
    let mut total = Load::default();
    for task in tasks {
        if let Ok(part) = task.await {
            total.ok += part.ok;
            total.failed += part.failed;
            total.latencies.extend(part.latencies);
        }
    }
    total.elapsed = started.elapsed();
    total.latencies.sort();
    total
}

/// The mock backend's answer to any POST: what a model server would return for 8 tokens.
pub fn mock_completion() -> String {
    serde_json::json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1_700_000_000u64,
        "model": "mock",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 "},
            "finish_reason": "stop",
            "logprobs": null,
        }],
        "usage": {"prompt_tokens": 2, "completion_tokens": 8, "total_tokens": 10},
    })
    .to_string()
}

/// Serves the mock backend on `listener` until the process ends.
pub async fn mock_backend(listener: TcpListener) {
    let completion = mock_completion();
    let chat = std::sync::Arc::new(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{completion}",
            completion.len()
        )
        .into_bytes(),
    );
    let models = r#"{"object":"list","data":[{"id":"mock","object":"model","created":0,"owned_by":"mock"}]}"#;
    let get = std::sync::Arc::new(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{models}",
            models.len()
        )
        .into_bytes(),
    );
    while let Ok((mut stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let (chat, get) = (chat.clone(), get.clone());
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(16 * 1024);
            loop {
                let head_end = loop {
                    if let Some(i) = find(&buf, b"\r\n\r\n") {
                        break Some(i + 4);
                    }
                    if read_more(&mut stream, &mut buf).await.is_err() {
                        break None;
                    }
                };
                let Some(head_end) = head_end else { return };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let length = head
                    .split("\r\n")
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    if read_more(&mut stream, &mut buf).await.is_err() {
                        return;
                    }
                }
                buf.drain(..head_end + length);
                let reply = if head.starts_with("post") {
                    &chat
                } else {
                    &get
                };
                if stream.write_all(reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// CPU seconds `pid` and its live descendants have used, in user space and in the kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    pub user: f64,
    pub kernel: f64,
}

impl CpuTime {
    pub fn total(self) -> f64 {
        self.user + self.kernel
    }
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;
    fn sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user - earlier.user,
            kernel: self.kernel - earlier.kernel,
        }
    }
}

/// [`CpuTime`] of `pid` and its live descendants, from /proc.
pub fn cpu_time(pid: u32) -> CpuTime {
    let ticks = 100.0; // USER_HZ on Linux
    let mut used = CpuTime::default();
    let mut pending = vec![pid];
    while let Some(p) = pending.pop() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces) start at state.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime: fields 14 and 15 of the line, counted from 1; `fields` starts at 3.
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0) as f64
                / ticks
        };
        used.user += field(11);
        used.kernel += field(12);
        pending.extend(children(p));
    }
    used
}

/// CPU seconds (user + kernel) `pid` and its live descendants have used.
pub fn cpu_seconds(pid: u32) -> f64 {
    cpu_time(pid).total()
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    out
}
