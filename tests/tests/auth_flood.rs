//! Authentication under a flood: the first 12 characters of a key (its id) are not secret, so
//! anyone can send that id with made-up secrets, each of which would cost an Argon2id
//! verification. The flood must not make any other key slower or refused.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use auxot_tests::{bin, Cluster};

async fn models_status(client: &reqwest::Client, url: &str, key: &str) -> (u16, Duration) {
    let started = Instant::now();
    let status = client
        .get(format!("{url}/api/openai/models"))
        .bearer_auth(key)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    (status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_secret_flood_on_one_key_id_leaves_other_keys_working() {
    let mut cluster = Cluster::setup();
    let output = Command::new(bin("auxot-router"))
        .args(["keys", "create", "--name", "second", "--data-dir"])
        .arg(cluster.data_dir())
        .output()
        .expect("keys create");
    assert!(output.status.success());
    let second = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(second.starts_with("rtr_"), "{second}");
    cluster.start_router(&[], &[]);
    cluster
        .wait_health(0, Duration::from_secs(30), |h| h["status"] == "ok")
        .await;
    let url = cluster.router_url(0);
    let client = reqwest::Client::new();
    let first = cluster.api_key.clone();
    // The first key is verified once and cached.
    assert_eq!(models_status(&client, &url, &first).await.0, 200);

    // 400 requests naming the first key's id with wrong secrets, 150 at a time.
    let id_part = first[..16].to_string();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut flood = Vec::new();
    for _ in 0..150 {
        let (client, url, id_part, next) =
            (client.clone(), url.clone(), id_part.clone(), next.clone());
        flood.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= 400 {
                    return statuses;
                }
                let forged = format!("{id_part}{i:0>43}");
                statuses.push(models_status(&client, &url, &forged).await.0);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile: the second key, never used before, is verified and accepted...
    let (status, took) = models_status(&client, &url, &second).await;
    println!("second key during the flood: {status} in {took:?}");
    assert_eq!(
        status, 200,
        "a key nobody attacks was refused during the flood"
    );
    // ...and the cached first key stays fast.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let (status, took) = models_status(&client, &url, &first).await;
        assert_eq!(status, 200);
        slowest = slowest.max(took);
    }
    println!("cached key during the flood: slowest of 20 took {slowest:?}");
    assert!(
        slowest < Duration::from_secs(2),
        "the flood slowed a cached key to {slowest:?}"
    );
    let mut answers = Vec::new();
    for task in flood {
        answers.extend(task.await.expect("flooder"));
    }
    assert_eq!(answers.len(), 400);
    let refused = answers.iter().filter(|s| **s == 401).count();
    assert_eq!(
        refused,
        400,
        "every forged key gets the same 401: {:?}",
        answers
            .iter()
            .filter(|s| **s != 401)
            .take(5)
            .collect::<Vec<_>>()
    );
}
