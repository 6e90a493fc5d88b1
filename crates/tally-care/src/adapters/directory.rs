//! The patients the care service may book, as the patients service tells: one client interface,
//! [`PatientDirectory`], and its HTTP implementation over the patients service's public API.
//! (The binary implements it in-process over the patients service when both run together; care
//! never depends on the patients crate.)

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::PatientStatus;

/// How long care waits for the directory before answering 503; a bound on any implementation.
pub const DIRECTORY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the directory could not say whether a patient exists. Every case is transient for care:
/// the booking is answered 503 and nothing is stored, so the client can retry.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// No answer: connection refused, reset, or timed out.
    #[error("the patient directory did not answer: {0}")]
    Unreachable(String),
    /// An answer other than 200 or 404.
    #[error("the patient directory answered HTTP {0}")]
    Status(u16),
    /// A 200 whose body has no `status` of `active` or `deactivated`.
    #[error("the patient directory's answer was not understood")]
    Malformed,
    /// Any other failure of an implementation (the in-process one's database error).
    #[error("the patient directory failed: {0}")]
    Failed(String),
}

/// Whether a patient exists and may be booked.
pub trait PatientDirectory: Send + Sync + 'static {
    /// The patient's status; `None` when the patients service does not know the id.
    fn status<'a>(
        &'a self,
        patient_id: Uuid,
    ) -> BoxFuture<'a, Result<Option<PatientStatus>, DirectoryError>>;
}

/// Why a base URL for [`HttpPatientDirectory`] is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    #[error("is not a URL")]
    NotAUrl,
    #[error(
        "is https, and this build has no TLS: give an http:// URL (a local proxy can add TLS)"
    )]
    Https,
    #[error("must be an http:// URL")]
    NotHttp,
    #[error("has no host")]
    NoHost,
    #[error("must not have a query or a fragment: the patient's path is appended to it")]
    QueryOrFragment,
}

/// Timeouts of one request to the patients service.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

/// The patients service over HTTP: `GET {base}/patients/{id}` with the care service's own bearer
/// token. 200 gives the status in the body's `status` field, 404 an unknown patient, anything
/// else a [`DirectoryError`]. Only `status` is read from the body: the patient's details are
/// neither kept nor logged.
#[derive(Clone)]
pub struct HttpPatientDirectory {
    client: reqwest::Client,
    base_url: String,
    token: String,
}

/// Only the base URL: the token is a secret.
impl std::fmt::Debug for HttpPatientDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPatientDirectory")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// What care reads of the patients service's patient body.
#[derive(Deserialize)]
struct PatientBody {
    status: String,
}

impl HttpPatientDirectory {
    /// `base_url` is where the patients routes are served (`http://127.0.0.1:8080`); `token`
    /// is the care service's own API token, with the `patients:read` scope.
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            // Building fails only for a TLS backend or system proxy settings, which this client
            // has none of; the default client has the same features.
            .unwrap_or_default();
        Self {
            client,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            token: token.into(),
        }
    }

    /// Refuses a base URL that no request could reach: not `http://` (this build has no TLS,
    /// so an `https://` URL would fail every booking), without a host, or with a query or a
    /// fragment. The binary checks it at start, before it opens any database.
    pub fn check_base_url(base_url: &str) -> Result<(), BaseUrlError> {
        let url = reqwest::Url::parse(base_url).map_err(|_| BaseUrlError::NotAUrl)?;
        match url.scheme() {
            "http" => {}
            "https" => return Err(BaseUrlError::Https),
            _ => return Err(BaseUrlError::NotHttp),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(BaseUrlError::NoHost);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(BaseUrlError::QueryOrFragment);
        }
        Ok(())
    }

    async fn fetch(&self, patient_id: Uuid) -> Result<Option<PatientStatus>, DirectoryError> {
        let url = format!("{}/patients/{patient_id}", self.base_url);
        let response = self
            .client
            .get(&url)
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            // Without the URL: it is the patients service's address and a patient id, nothing
            // secret, but the error says enough without it.
            .map_err(|e| DirectoryError::Unreachable(e.without_url().to_string()))?;
        match response.status() {
            reqwest::StatusCode::OK => {
                let body: PatientBody = response
                    .json()
                    .await
                    .map_err(|_| DirectoryError::Malformed)?;
                PatientStatus::parse(&body.status)
                    .map(Some)
                    .ok_or(DirectoryError::Malformed)
            }
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            other => Err(DirectoryError::Status(other.as_u16())),
        }
    }
}

impl PatientDirectory for HttpPatientDirectory {
    fn status<'a>(
        &'a self,
        patient_id: Uuid,
    ) -> BoxFuture<'a, Result<Option<PatientStatus>, DirectoryError>> {
        Box::pin(self.fetch(patient_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_that_no_request_could_reach_are_refused() {
        for good in [
            "http://127.0.0.1:8080",
            "http://patients.internal/",
            "http://patients.internal:9000/api/v1",
        ] {
            assert_eq!(HttpPatientDirectory::check_base_url(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", BaseUrlError::NotAUrl),
            ("127.0.0.1:8080", BaseUrlError::NotAUrl),
            ("localhost:8080", BaseUrlError::NotHttp),
            ("patients.internal", BaseUrlError::NotAUrl),
            ("https://patients.example.com", BaseUrlError::Https),
            ("ftp://patients.internal", BaseUrlError::NotHttp),
            ("http://", BaseUrlError::NotAUrl),
            (
                "http://patients.internal/?x=1",
                BaseUrlError::QueryOrFragment,
            ),
            (
                "http://patients.internal/#top",
                BaseUrlError::QueryOrFragment,
            ),
        ] {
            assert_eq!(
                HttpPatientDirectory::check_base_url(bad),
                Err(why),
                "{bad:?}"
            );
        }
    }
}
