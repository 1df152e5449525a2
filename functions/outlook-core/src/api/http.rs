//! Plain HTTP request and response types of the management API, so the library stays free of
//! Lambda types: the `management-api` binary converts `lambda_http` requests into
//! [`HttpRequest`] and [`HttpResponse`] back.

use super::ApiError;

/// One HTTP request as the API sees it.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// Upper-case method (`GET`, `POST`, ...).
    pub method: String,
    /// The path without query (`/api/integrations`), not percent-decoded.
    pub path: String,
    /// The raw query string without `?` (empty when none).
    pub query: String,
    /// Header names in lower case; a header may appear more than once.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn new(method: &str, path: &str) -> Self {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        Self {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            query: query.to_owned(),
            ..Self::default()
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A cookie's value from the `Cookie` header(s).
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.trim())
    }

    /// The decoded value of a query parameter (the first one of that name).
    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// One HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case; `set-cookie` may appear more than once.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Headers of every JSON answer.
const JSON_HEADERS: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
];

impl HttpResponse {
    pub fn json(status: u16, value: &impl serde::Serialize) -> Self {
        let body = serde_json::to_vec(value).expect("API responses serialize");
        Self::raw_json(status, body)
    }

    fn raw_json(status: u16, body: Vec<u8>) -> Self {
        Self {
            status,
            headers: JSON_HEADERS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body,
        }
    }

    pub fn error(err: &ApiError) -> Self {
        let mut response = Self::raw_json(err.status(), err.body().into_bytes());
        if let ApiError::Unauthenticated = err {
            response
                .headers
                .push(("www-authenticate".into(), "Bearer".into()));
        }
        response
    }

    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: vec![("cache-control".into(), "no-store".into())],
            body: Vec::new(),
        }
    }

    /// An HTML page with the given headers.
    pub fn html(status: u16, headers: &[(&str, &str)], body: String) -> Self {
        Self {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.into_bytes(),
        }
    }

    /// A `303 See Other` to `location`.
    pub fn see_other(location: &str) -> Self {
        Self {
            status: 303,
            headers: vec![
                ("location".into(), location.to_owned()),
                ("cache-control".into(), "no-store".into()),
            ],
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (tests).
    pub fn json_body(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_query_parameters_are_read() {
        let request = HttpRequest::new("get", "/connect?token=a%2Bb&x=1")
            .with_header("Cookie", "a=1; outlook_connect_session=abc.def ; b=2")
            .with_header("cookie", "c=3");
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/connect");
        assert_eq!(request.query_param("token").as_deref(), Some("a+b"));
        assert_eq!(request.cookie("outlook_connect_session"), Some("abc.def"));
        assert_eq!(request.cookie("c"), Some("3"));
        assert_eq!(request.cookie("missing"), None);
    }

    #[test]
    fn unauthenticated_answers_carry_a_challenge() {
        let response = HttpResponse::error(&ApiError::Unauthenticated);
        assert_eq!(response.status, 401);
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
        assert_eq!(response.json_body()["error"]["code"], "unauthenticated");
    }
}
