//! Adapts `lambda_http` requests and responses to the library's plain HTTP types.

use lambda_http::http::{HeaderName, HeaderValue, StatusCode};
use lambda_http::{Body, Error, Request, RequestExt, Response};
use outlook_core::api::http::{HttpRequest, HttpResponse};
use outlook_core::api::server::ManagementApi;

pub(crate) async fn handle(api: &ManagementApi, request: Request) -> Result<Response<Body>, Error> {
    let response = api
        .handle(to_http_request(request), time::OffsetDateTime::now_utc())
        .await;
    to_lambda_response(response)
}

/// The request as the library sees it: the raw path (without a stage prefix), the raw query,
/// lower-case header names and the body bytes (API Gateway's base64 already decoded).
pub(crate) fn to_http_request(request: Request) -> HttpRequest {
    let path = match request.raw_http_path() {
        "" => request.uri().path().to_owned(),
        raw => raw.to_owned(),
    };
    let query = request.uri().query().unwrap_or_default().to_owned();
    let method = request.method().as_str().to_owned();
    let headers = request
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            Some((
                name.as_str().to_ascii_lowercase(),
                value.to_str().ok()?.to_owned(),
            ))
        })
        .collect();
    let body = match request.into_body() {
        Body::Empty => Vec::new(),
        Body::Text(text) => text.into_bytes(),
        Body::Binary(bytes) => bytes,
        _ => Vec::new(),
    };
    HttpRequest {
        method,
        path,
        query,
        headers,
        body,
    }
}

pub(crate) fn to_lambda_response(response: HttpResponse) -> Result<Response<Body>, Error> {
    let mut builder = Response::builder().status(StatusCode::from_u16(response.status)?);
    for (name, value) in &response.headers {
        builder = builder.header(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(value)?,
        );
    }
    let body = if response.body.is_empty() {
        Body::Empty
    } else {
        match String::from_utf8(response.body) {
            Ok(text) => Body::Text(text),
            Err(binary) => Body::Binary(binary.into_bytes()),
        }
    };
    Ok(builder.body(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_path_query_headers_and_body() {
        let request = lambda_http::http::Request::builder()
            .method("POST")
            .uri("https://api.example.com/api/rules/validate?x=1")
            .header("Content-Type", "application/json")
            .header("Cookie", "a=1")
            .body(Body::Text("{\"rules\": []}".into()))
            .unwrap();
        let plain = to_http_request(request);
        assert_eq!(plain.method, "POST");
        assert_eq!(plain.path, "/api/rules/validate");
        assert_eq!(plain.query, "x=1");
        assert_eq!(plain.header("content-type"), Some("application/json"));
        assert_eq!(plain.cookie("a"), Some("1"));
        assert_eq!(plain.body, b"{\"rules\": []}");
    }

    #[test]
    fn responses_keep_every_set_cookie() {
        let response = HttpResponse::see_other("/connect")
            .with_header("set-cookie", "a=1; HttpOnly")
            .with_header("set-cookie", "b=2; HttpOnly");
        let lambda = to_lambda_response(response).unwrap();
        assert_eq!(lambda.status(), 303);
        assert_eq!(lambda.headers().get_all("set-cookie").iter().count(), 2);
        assert_eq!(lambda.headers()["location"], "/connect");
    }
}
