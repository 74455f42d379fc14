//! The one retry loop: chats, token counts, tool calls and the non-streaming redo all try
//! workers one after the other through [`retry`], each attempt told which workers were tried.
//! Retries back off a little (25 ms, doubling, at most 400 ms, with jitter) so a cluster whose
//! workers all fail at once is not hammered in a tight loop.

use std::collections::HashSet;
use std::future::Future;

use auxot_common::error::{ErrorKind, RemoteError};

use super::error::ForwardError;

/// How one attempt on one worker ended.
#[derive(Debug)]
pub enum Attempt<T> {
    Done(T),
    /// Another worker may succeed.
    Retry(RemoteError),
    /// No worker will succeed: the request itself is at fault.
    Fail(RemoteError),
}

impl<T> Attempt<T> {
    /// A worker's error: retried elsewhere when another worker might succeed, never when the
    /// caller is at fault.
    pub fn from_error(error: RemoteError) -> Self {
        if error.kind.is_retryable() {
            Attempt::Retry(error)
        } else {
            Attempt::Fail(error)
        }
    }
}

/// One step of a retry loop.
#[derive(Debug)]
pub enum Step<T> {
    /// No untried worker can take the request.
    NoCandidate,
    /// `worker` was tried.
    Tried { worker: String, outcome: Attempt<T> },
}

/// Runs `attempt` until it succeeds, fails for good, or `max_attempts` workers were tried. Each
/// attempt gets the workers tried so far (starting with `exclude`) and must not use them again.
/// A [`ForwardError`] from an attempt (an unknown model, a full cluster) ends the loop at once,
/// except that once a worker has failed, "no worker left" ends it with that worker's error.
pub async fn retry<T, F, Fut>(
    max_attempts: usize,
    exclude: &HashSet<String>,
    mut attempt: F,
) -> Result<T, ForwardError>
where
    F: FnMut(HashSet<String>) -> Fut,
    Fut: Future<Output = Result<Step<T>, ForwardError>>,
{
    let mut tried = exclude.clone();
    let mut last = None;
    for n in 0..max_attempts {
        if n > 0 {
            tokio::time::sleep(backoff(n)).await;
        }
        let step = match attempt(tried.clone()).await {
            Ok(step) => step,
            // The workers that failed were the only ones (now out of routing): their failure
            // is the answer, not "no worker".
            Err(ForwardError::NoWorkers | ForwardError::UnknownModel { .. }) if last.is_some() => {
                break
            }
            Err(error) => return Err(error),
        };
        match step {
            Step::NoCandidate => break,
            Step::Tried { worker, outcome } => match outcome {
                Attempt::Done(value) => return Ok(value),
                Attempt::Fail(error) => return Err(ForwardError::Remote(error)),
                Attempt::Retry(error) => {
                    tracing::debug!(%worker, %error, "retrying on another worker");
                    tried.insert(worker);
                    last = Some(error);
                }
            },
        }
    }
    Err(ForwardError::Remote(last.unwrap_or_else(|| {
        RemoteError::new(ErrorKind::Unavailable, "no worker could take the request")
    })))
}

/// The pause before retry `n` (1 for the first retry): 25 ms doubling to 400 ms, plus up to
/// half of it at random so routers retrying together spread out.
pub fn backoff(n: usize) -> std::time::Duration {
    let base = 25u64 << n.saturating_sub(1).min(4);
    let jitter = rand::random::<u64>() % (base / 2 + 1);
    std::time::Duration::from_millis(base + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        assert!(backoff(1) >= std::time::Duration::from_millis(25));
        assert!(backoff(1) <= std::time::Duration::from_millis(38));
        assert!(backoff(3) >= std::time::Duration::from_millis(100));
        assert!(backoff(50) <= std::time::Duration::from_millis(600));
    }

    #[tokio::test]
    async fn retries_other_workers_until_one_succeeds() {
        let mut seen = Vec::new();
        let result = retry(3, &HashSet::new(), |tried| {
            seen.push(tried.len());
            let worker = format!("w{}", tried.len());
            async move {
                let outcome = if worker == "w2" {
                    Attempt::Done(worker.clone())
                } else {
                    Attempt::Retry(RemoteError::new(ErrorKind::Unavailable, "down"))
                };
                Ok(Step::Tried { worker, outcome })
            }
        })
        .await;
        assert_eq!(result, Ok("w2".to_string()));
        assert_eq!(seen, [0, 1, 2]);
    }

    #[tokio::test]
    async fn caller_faults_are_not_retried() {
        let mut calls = 0;
        let result: Result<(), _> = retry(3, &HashSet::new(), |_| {
            calls += 1;
            async {
                Ok(Step::Tried {
                    worker: "w".into(),
                    outcome: Attempt::from_error(RemoteError::invalid("bad")),
                })
            }
        })
        .await;
        assert_eq!(
            result,
            Err(ForwardError::Remote(RemoteError::invalid("bad")))
        );
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn gives_up_with_the_last_error_or_unavailable() {
        let result: Result<(), _> = retry(2, &HashSet::new(), |tried| async move {
            Ok(Step::Tried {
                worker: format!("w{}", tried.len()),
                outcome: Attempt::Retry(RemoteError::new(ErrorKind::Overloaded, "full")),
            })
        })
        .await;
        assert_eq!(
            result,
            Err(ForwardError::Remote(RemoteError::new(
                ErrorKind::Overloaded,
                "full"
            )))
        );
        let none: Result<(), _> =
            retry(2, &HashSet::new(), |_| async { Ok(Step::NoCandidate) }).await;
        assert!(matches!(none, Err(ForwardError::Remote(e)) if e.kind == ErrorKind::Unavailable));
    }

    #[tokio::test]
    async fn excluded_workers_count_as_tried() {
        let exclude = HashSet::from(["w0".to_string()]);
        let result = retry(1, &exclude, |tried| async move {
            Ok(Step::Tried {
                worker: "w1".into(),
                outcome: Attempt::Done(tried.contains("w0")),
            })
        })
        .await;
        assert_eq!(result, Ok(true));
    }
}
