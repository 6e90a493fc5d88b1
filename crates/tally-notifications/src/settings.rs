//! How notifications go out: the webhooks, the SMTP relay, and the limits of the retries.

use std::fmt;
use std::time::Duration;

/// A receiver of every notification: each message is POSTed to `url`, signed with `secret`
/// (see [`crate::signature`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    /// An `http://` URL. This build has no TLS: put an `https` receiver behind a local proxy.
    pub url: String,
    pub secret: String,
}

/// The secret never reaches a log; nor does the URL, which may hold a token of its own.
impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook").finish_non_exhaustive()
    }
}

/// An SMTP relay reached without TLS or authentication (a local mail daemon or relay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    /// The sender, as `notifications@clinic.example` or `Clinic <notifications@clinic.example>`.
    pub from: String,
}

#[derive(Debug, Clone)]
pub struct NotificationSettings {
    /// Every message is sent to each of these.
    pub webhooks: Vec<Webhook>,
    /// When set, every message whose recipient has an e-mail address is also mailed.
    pub smtp: Option<Smtp>,
    /// Attempts at one delivery before it is marked failed.
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles after each further one.
    pub retry_base: Duration,
    /// The longest wait between two attempts.
    pub retry_max: Duration,
    /// How often the worker looks for due deliveries when no commit of this process woke it.
    pub poll_interval: Duration,
    /// Longest one webhook request or one SMTP session may take before it counts as failed.
    pub send_timeout: Duration,
    /// Most messages routed, and most deliveries sent, in one round of the worker.
    pub batch_size: u32,
    /// With SMTP configured, how long a message waits for its recipient's contact details (the
    /// two consumers read different logs, so a booking may be read before the registration)
    /// before it goes out on the other channels only.
    pub recipient_wait: Duration,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            smtp: None,
            max_attempts: 5,
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(30 * 60),
            poll_interval: Duration::from_secs(1),
            send_timeout: Duration::from_secs(10),
            batch_size: 32,
            recipient_wait: Duration::from_secs(5 * 60),
        }
    }
}

/// Most deliveries in flight at once per worker.
pub const MAX_BATCH_SIZE: u32 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("webhook {index}: the URL must be an absolute http:// URL (this build has no TLS)")]
    WebhookUrl { index: usize },
    #[error("webhook {index}: the secret must not be empty")]
    WebhookSecret { index: usize },
    #[error("webhook {index}: the same URL is configured twice")]
    WebhookDuplicate { index: usize },
    #[error("smtp: the host must not be empty")]
    SmtpHost,
    #[error("smtp: `from` must be an e-mail address, optionally with a display name")]
    SmtpFrom,
    #[error("max_attempts must be at least 1")]
    MaxAttempts,
    #[error("batch_size must be between 1 and {MAX_BATCH_SIZE}")]
    BatchSize,
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    #[error("retry_max must not be shorter than retry_base")]
    RetryMax,
}

impl NotificationSettings {
    /// Refuses settings the worker could not use; the binary checks them at start, so that a
    /// typo is an error there and not a failed delivery an hour later.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (index, hook) in self.webhooks.iter().enumerate() {
            let url =
                reqwest::Url::parse(&hook.url).map_err(|_| SettingsError::WebhookUrl { index })?;
            if url.scheme() != "http" || url.host_str().is_none_or(str::is_empty) {
                return Err(SettingsError::WebhookUrl { index });
            }
            if hook.secret.is_empty() {
                return Err(SettingsError::WebhookSecret { index });
            }
            if self.webhooks[..index].iter().any(|h| h.url == hook.url) {
                return Err(SettingsError::WebhookDuplicate { index });
            }
        }
        if let Some(smtp) = &self.smtp {
            if smtp.host.trim().is_empty() {
                return Err(SettingsError::SmtpHost);
            }
            smtp.from
                .parse::<lettre::message::Mailbox>()
                .map_err(|_| SettingsError::SmtpFrom)?;
        }
        if self.max_attempts == 0 {
            return Err(SettingsError::MaxAttempts);
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(SettingsError::BatchSize);
        }
        for (name, value) in [
            ("retry_base", self.retry_base),
            ("poll_interval", self.poll_interval),
            ("send_timeout", self.send_timeout),
        ] {
            if value.is_zero() {
                return Err(SettingsError::Zero(name));
            }
        }
        if self.retry_max < self.retry_base {
            return Err(SettingsError::RetryMax);
        }
        Ok(())
    }

    /// The webhook configured for `url`, if it still is.
    pub(crate) fn webhook(&self, url: &str) -> Option<&Webhook> {
        self.webhooks.iter().find(|w| w.url == url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(url: &str, secret: &str) -> Webhook {
        Webhook {
            url: url.into(),
            secret: secret.into(),
        }
    }

    #[test]
    fn defaults_are_valid_and_bad_settings_are_named() {
        assert_eq!(NotificationSettings::default().validate(), Ok(()));
        let with = |webhooks: Vec<Webhook>, smtp: Option<Smtp>| NotificationSettings {
            webhooks,
            smtp,
            ..NotificationSettings::default()
        };
        let ok = hook("http://127.0.0.1:9000/hooks", "s3cret");
        assert_eq!(with(vec![ok.clone()], None).validate(), Ok(()));
        for (bad, error) in [
            (
                hook("https://example.com/x", "s"),
                SettingsError::WebhookUrl { index: 1 },
            ),
            (
                hook("not a url", "s"),
                SettingsError::WebhookUrl { index: 1 },
            ),
            (
                hook("http://example.com/x", ""),
                SettingsError::WebhookSecret { index: 1 },
            ),
            (ok.clone(), SettingsError::WebhookDuplicate { index: 1 }),
        ] {
            assert_eq!(with(vec![ok.clone(), bad], None).validate(), Err(error));
        }
        let smtp = |from: &str| Smtp {
            host: "127.0.0.1".into(),
            port: 25,
            from: from.into(),
        };
        assert_eq!(
            with(vec![], Some(smtp("Clinic <n@clinic.example>"))).validate(),
            Ok(())
        );
        assert_eq!(
            with(vec![], Some(smtp("not an address"))).validate(),
            Err(SettingsError::SmtpFrom)
        );
        let zero = NotificationSettings {
            max_attempts: 0,
            ..NotificationSettings::default()
        };
        assert_eq!(zero.validate(), Err(SettingsError::MaxAttempts));
    }

    #[test]
    fn debug_shows_no_webhook_secret_or_url() {
        let settings = NotificationSettings {
            webhooks: vec![hook("http://h.example/?token=tok123", "s3cret")],
            ..NotificationSettings::default()
        };
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("tok123"),
            "{shown}"
        );
    }
}
