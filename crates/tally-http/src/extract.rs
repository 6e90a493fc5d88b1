//! Extractors that turn bad input into a 4xx problem naming the field, never a 5xx.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use tally_kernel::EventMeta;

use crate::problem::Problem;

/// A JSON body deserialized into `T`, or a problem: 415 for another content type, 413 past the
/// body limit, 400 for malformed JSON or bad UTF-8, 422 naming the field for a missing field or a
/// wrong type.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            )
            .with_detail("send the body as application/json"));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "Body too large",
                )
                .with_detail("the request body is larger than this server accepts")
            } else {
                Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Unreadable body")
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Like [`ApiJson`], but an empty body (with or without a content type) is `T::default()`:
/// for requests whose every field is optional.
pub struct ApiJsonOrEmpty<T>(pub T);

impl<T, S> FromRequest<S> for ApiJsonOrEmpty<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared_empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0");
        if declared_empty || (req.headers().get(header::CONTENT_TYPE).is_none() && !has_body(&req))
        {
            return Ok(ApiJsonOrEmpty(T::default()));
        }
        ApiJson::from_request(req, state)
            .await
            .map(|ApiJson(v)| ApiJsonOrEmpty(v))
    }
}

fn has_body(req: &Request) -> bool {
    req.headers().contains_key(header::CONTENT_LENGTH)
        || req.headers().contains_key(header::TRANSFER_ENCODING)
}

fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deserializes `bytes`, naming the failing field the way the client wrote it.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        json_problem(&path, &inner)
    })?;
    de.end().map_err(|e| json_problem(".", &e))?;
    Ok(value)
}

fn json_problem(path: &str, error: &serde_json::Error) -> Problem {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON").with_detail(
                format!(
                    "the body is not valid JSON (line {}, column {})",
                    error.line(),
                    error.column()
                ),
            )
        }
        Category::Data => {
            let message = strip_position(&error.to_string());
            Problem::invalid_field(field_name(path, &message), message)
        }
    }
}

/// serde_json appends " at line L column C"; the field name says more to a client.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// The field a data error is about: the path, or for a missing field the name in the message.
fn field_name(path: &str, message: &str) -> String {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, missing) {
        (".", Some(name)) => name.to_owned(),
        (_, Some(name)) => format!("{path}.{name}"),
        (".", None) => String::from("body"),
        (_, None) => path.to_owned(),
    }
}

/// A query string deserialized into `T`, or a 422 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                let message = e.into_inner().to_string();
                Problem::invalid_field(field_name(&path, &message), message)
            })
    }
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

/// Who is calling: set by the authentication layer for every authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token_id: String,
}

/// The request id set by the request-id layer, as the correlation of the events it causes.
pub struct RequestMeta(pub EventMeta);

pub const REQUEST_ID: &str = "x-request-id";

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| tally_kernel::id::new_v7().to_string());
        Ok(RequestMeta(EventMeta::from_request(&id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        wallet_id: i64,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        n: i64,
    }

    fn refused(json: &str) -> Problem {
        parse_json::<Body>(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn names_missing_and_mistyped_fields() {
        let p = refused("{}");
        assert_eq!((p.status, p.errors[0].field.as_str()), (422, "walletId"));
        let p = refused(r#"{"walletId": "x"}"#);
        assert_eq!((p.status, p.errors[0].field.as_str()), (422, "walletId"));
        let p = refused(r#"{"walletId": 1, "inner": {}}"#);
        assert_eq!(p.errors[0].field, "inner.n");
        let p = refused(r#"{"walletId": 1, "extra": 2}"#);
        assert_eq!(p.status, 422);
    }

    #[test]
    fn malformed_json_and_bad_utf8_are_400() {
        assert_eq!(refused("{\"walletId\": 1").status, 400);
        assert_eq!(
            parse_json::<Body>(b"{\"walletId\": \"\xff\"}")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(refused("{\"walletId\": 1} trailing").status, 400);
    }
}
