use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Error, Request, Response};
use outlook_core::connect::flows::{BINDING_COOKIE, handle_callback};
use outlook_core::pages::{PAGE_HEADERS, ResultPage};
use outlook_core::services::Services;

/// Renders the callback's page. The query (which carries the code) is never logged.
pub(crate) async fn handle(services: &Services, request: Request) -> Result<Response<Body>, Error> {
    let page = if request.method() != Method::GET {
        ResultPage::problem(
            405,
            "Method not allowed",
            "This address only accepts sign-in redirects.",
            "Open the integrations page.",
        )
    } else {
        let query = request.uri().query().unwrap_or_default().to_owned();
        let cookie = cookie_value(&request, BINDING_COOKIE);
        handle_callback(
            services,
            &query,
            cookie.as_deref(),
            time::OffsetDateTime::now_utc(),
        )
        .await
    };
    tracing::info!(
        status = page.status,
        success = page.success,
        "callback answered"
    );
    let mut response = Response::builder()
        .status(StatusCode::from_u16(page.status).unwrap_or(StatusCode::BAD_REQUEST));
    for (name, value) in PAGE_HEADERS {
        response = response.header(*name, *value);
    }
    // The binding is single use too.
    response = response.header(
        header::SET_COOKIE,
        format!("{BINDING_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"),
    );
    Ok(response.body(Body::from(page.render()))?)
}

fn cookie_value(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}
