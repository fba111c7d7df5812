//! The one bounded retry loop: exponential backoff with a total deadline.
//! Used for broker requests and, later, for waiting on devices.

use std::time::{Duration, Instant};

/// How an attempt failed: worth another try, or final.
#[derive(Debug)]
pub enum Attempt<E> {
    /// Might succeed later (timeout, connection refused, 5xx).
    Transient(E),
    /// Will not get better by retrying (policy denial, bad reply, wrong key).
    Permanent(E),
}

/// Backoff schedule and the total time budget.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub deadline: Duration,
}

impl Backoff {
    /// 250 ms doubling up to 5 s, within `deadline`.
    pub fn with_deadline(deadline: Duration) -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
            deadline,
        }
    }
}

/// Why [`retry`] gave up.
#[derive(Debug)]
pub enum GaveUp<E> {
    /// The operation failed permanently.
    Permanent(E),
    /// The deadline passed; `last` is the last transient error.
    Deadline { attempts: u32, last: E },
}

impl<E> GaveUp<E> {
    pub fn into_inner(self) -> E {
        match self {
            GaveUp::Permanent(e) | GaveUp::Deadline { last: e, .. } => e,
        }
    }
}

/// Runs `op` until it succeeds, fails permanently, or the next wait would
/// pass the deadline. `op` gets the attempt number (1-based) and the time
/// left, so it can shorten its own timeouts. Each transient failure is
/// reported to `on_retry` before sleeping.
pub fn retry<T, E>(
    backoff: Backoff,
    mut op: impl FnMut(u32, Duration) -> Result<T, Attempt<E>>,
    mut on_retry: impl FnMut(u32, &E, Duration),
) -> Result<T, GaveUp<E>> {
    let start = Instant::now();
    let mut delay = backoff.initial;
    let mut attempt = 1u32;
    loop {
        let left = backoff.deadline.saturating_sub(start.elapsed());
        match op(attempt, left) {
            Ok(v) => return Ok(v),
            Err(Attempt::Permanent(e)) => return Err(GaveUp::Permanent(e)),
            Err(Attempt::Transient(e)) => {
                if start.elapsed() + delay >= backoff.deadline {
                    return Err(GaveUp::Deadline {
                        attempts: attempt,
                        last: e,
                    });
                }
                on_retry(attempt, &e, delay);
                std::thread::sleep(delay);
                delay = (delay * 2).min(backoff.max);
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn quick(deadline_ms: u64) -> Backoff {
        Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(4),
            deadline: Duration::from_millis(deadline_ms),
        }
    }

    #[test]
    fn succeeds_after_transient_failures() {
        let mut retried = Vec::new();
        let got = retry(
            quick(10_000),
            |n, _| {
                if n < 3 {
                    Err(Attempt::Transient(n))
                } else {
                    Ok(n)
                }
            },
            |n, _, _| retried.push(n),
        );
        assert_eq!(got.unwrap(), 3);
        assert_eq!(retried, [1, 2]);
    }

    #[test]
    fn permanent_failure_stops_at_once() {
        let mut calls = 0;
        let got: Result<(), _> = retry(
            quick(10_000),
            |_, _| {
                calls += 1;
                Err(Attempt::Permanent("denied"))
            },
            |_, _, _| {},
        );
        assert!(matches!(got, Err(GaveUp::Permanent("denied"))));
        assert_eq!(calls, 1);
    }

    #[test]
    fn deadline_bounds_the_attempts() {
        let start = Instant::now();
        let got: Result<(), _> = retry(quick(30), |n, _| Err(Attempt::Transient(n)), |_, _, _| {});
        match got {
            Err(GaveUp::Deadline { attempts, last }) => {
                assert!(attempts >= 2, "{attempts}");
                assert_eq!(attempts, last);
            }
            other => panic!("expected deadline, got {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut waits = Vec::new();
        let _: Result<(), _> = retry(
            Backoff {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(4),
                deadline: Duration::from_millis(60),
            },
            |n, _| {
                if n < 6 {
                    Err(Attempt::Transient(()))
                } else {
                    Ok(())
                }
            },
            |_, _, d| waits.push(d.as_millis()),
        );
        assert_eq!(waits, [1, 2, 4, 4, 4]);
    }
}
