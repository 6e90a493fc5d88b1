//! Deliveries decided without I/O: which channels a message goes out on, and what an attempt's
//! result means (sent, retry at a time, or failed for good).

use std::time::Duration;

use serde::Serialize;
use tally_kernel::time::Timestamp;

/// How a message reaches its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// POSTed, signed, to a configured webhook.
    Webhook,
    /// Mailed through the configured SMTP relay to the recipient's address.
    Email,
    /// Neither is configured: the message is kept here, readable over the API.
    Stored,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Email => "email",
            Channel::Stored => "stored",
        }
    }

    pub fn parse(text: &str) -> Option<Channel> {
        match text {
            "webhook" => Some(Channel::Webhook),
            "email" => Some(Channel::Email),
            "stored" => Some(Channel::Stored),
            _ => None,
        }
    }
}

/// Where a delivery, or a message as a whole, stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Pending,
    Sent,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Sent => "sent",
            Status::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "pending" => Some(Status::Pending),
            "sent" => Some(Status::Sent),
            "failed" => Some(Status::Failed),
            _ => None,
        }
    }

    /// A message's status from its deliveries': pending while any is, then failed if any
    /// failed, else sent.
    pub fn of_message(deliveries: impl IntoIterator<Item = Status>) -> Status {
        let mut overall = Status::Sent;
        for status in deliveries {
            match status {
                Status::Pending => return Status::Pending,
                Status::Failed => overall = Status::Failed,
                Status::Sent => {}
            }
        }
        overall
    }
}

/// One delivery to make: a channel, and its target (the webhook URL; empty for the others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub channel: Channel,
    pub target: String,
}

/// The deliveries of one message: one per configured webhook, and an e-mail when SMTP is
/// configured and the recipient has an address. With none of these, the message is stored.
pub fn routes<'a>(
    webhook_urls: impl IntoIterator<Item = &'a str>,
    smtp_configured: bool,
    recipient_has_email: bool,
) -> Vec<Route> {
    let mut routes: Vec<Route> = webhook_urls
        .into_iter()
        .map(|url| Route {
            channel: Channel::Webhook,
            target: url.to_owned(),
        })
        .collect();
    if smtp_configured && recipient_has_email {
        routes.push(Route {
            channel: Channel::Email,
            target: String::new(),
        });
    }
    if routes.is_empty() {
        routes.push(Route {
            channel: Channel::Stored,
            target: String::new(),
        });
    }
    routes
}

/// Why an attempt failed, in words that hold no patient data and nothing the other side
/// answered (an SMTP reply may repeat the address): they are stored, shown over the API,
/// published in `notification.failed` and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    /// Another attempt cannot succeed (the recipient has no address any more, the webhook was
    /// removed from the settings): the delivery fails now instead of after its retries.
    pub permanent: bool,
}

impl Failure {
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            permanent: false,
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            permanent: true,
        }
    }
}

/// How failed attempts are retried: exponential backoff from `base`, capped at `max`, for at
/// most `max_attempts` attempts in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The wait after the `attempts`-th failed attempt: base, 2 × base, 4 × base, … ≤ max.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }
}

/// What to record after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Sent,
    RetryAt { at: Timestamp, reason: String },
    Failed { reason: String },
}

/// Decides after the `attempts`-th attempt (counting this one) ended with `result` at `now`.
pub fn decide(
    policy: &RetryPolicy,
    attempts: u32,
    result: Result<(), Failure>,
    now: Timestamp,
) -> Decision {
    match result {
        Ok(()) => Decision::Sent,
        Err(failure) if failure.permanent || attempts >= policy.max_attempts => Decision::Failed {
            reason: failure.reason,
        },
        Err(failure) => {
            let wait = chrono::TimeDelta::from_std(policy.backoff(attempts))
                .unwrap_or(chrono::TimeDelta::MAX);
            Decision::RetryAt {
                at: now.checked_add_signed(wait).unwrap_or(now),
                reason: failure.reason,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        base: Duration::from_secs(30),
        max: Duration::from_secs(300),
    };

    #[test]
    fn webhooks_and_email_when_possible_else_stored() {
        let hooks = ["http://a.example/h", "http://b.example/h"];
        let channels = |r: Vec<Route>| r.iter().map(|r| r.channel).collect::<Vec<_>>();
        assert_eq!(
            channels(routes(hooks, true, true)),
            [Channel::Webhook, Channel::Webhook, Channel::Email]
        );
        assert_eq!(routes(hooks, true, true)[1].target, "http://b.example/h");
        assert_eq!(channels(routes(hooks, true, false)), [Channel::Webhook; 2]);
        assert_eq!(channels(routes([], true, true)), [Channel::Email]);
        assert_eq!(channels(routes([], true, false)), [Channel::Stored]);
        assert_eq!(channels(routes([], false, true)), [Channel::Stored]);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let waits: Vec<u64> = (1..=6).map(|n| POLICY.backoff(n).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 300, 300]);
        assert_eq!(POLICY.backoff(u32::MAX), POLICY.max);
    }

    #[test]
    fn failures_retry_until_the_last_attempt_or_a_permanent_one() {
        let now = tally_kernel::time::from_db("2026-01-01T00:00:00.000000Z").unwrap();
        assert_eq!(decide(&POLICY, 5, Ok(()), now), Decision::Sent);
        assert_eq!(
            decide(&POLICY, 2, Err(Failure::retryable("HTTP 503")), now),
            Decision::RetryAt {
                at: tally_kernel::time::from_db("2026-01-01T00:01:00.000000Z").unwrap(),
                reason: "HTTP 503".into()
            }
        );
        assert_eq!(
            decide(&POLICY, 5, Err(Failure::retryable("HTTP 503")), now),
            Decision::Failed {
                reason: "HTTP 503".into()
            }
        );
        assert_eq!(
            decide(&POLICY, 1, Err(Failure::permanent("gone")), now),
            Decision::Failed {
                reason: "gone".into()
            }
        );
    }

    #[test]
    fn a_message_is_pending_while_any_delivery_is() {
        use Status::*;
        assert_eq!(Status::of_message([Sent, Pending, Failed]), Pending);
        assert_eq!(Status::of_message([Sent, Failed]), Failed);
        assert_eq!(Status::of_message([Sent, Sent]), Sent);
    }
}
