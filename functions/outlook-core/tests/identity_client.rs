//! The token grants and the app-token cache against a scripted local token endpoint: what is sent
//! (form parameters, client credential, assertion), what comes back, and how failures classify.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use outlook_core::identity::{
    AppCredentials, AppTokenCache, IdentityClient, IdentityFailure, ORGANIZATIONS,
    PkceCodeChallenge, Prompt, new_pkce,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use url::Url;

const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const CERT: &str = include_str!("../src/identity/testdata/test-cert.pem");
const KEY: &str = include_str!("../src/identity/testdata/test-key.pem");
const PUBLIC_KEY: &str = include_str!("../src/identity/testdata/test-pub.pem");

#[derive(Clone)]
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    delay: Duration,
}

fn ok(body: Value) -> Reply {
    Reply {
        status: 200,
        content_type: "application/json; charset=utf-8",
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

fn status(status: u16, body: Value) -> Reply {
    Reply { status, ..ok(body) }
}

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    form: HashMap<String, String>,
    authorization: Option<String>,
}

#[derive(Default)]
struct Stub {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Option<Reply>>,
    seen: Mutex<Vec<Seen>>,
}

async fn handle(State(stub): State<Arc<Stub>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let authorization = request
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap();
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&bytes).unwrap();
    stub.seen.lock().unwrap().push(Seen {
        path,
        form,
        authorization,
    });
    let reply = stub
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| stub.default.lock().unwrap().clone())
        .expect("a scripted reply");
    tokio::time::sleep(reply.delay).await;
    Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type)
        .body(Body::from(reply.body))
        .unwrap()
}

struct Harness {
    stub: Arc<Stub>,
    base: Url,
}

impl Harness {
    async fn start(script: Vec<Reply>) -> Self {
        let stub = Arc::new(Stub {
            script: Mutex::new(script.into()),
            ..Default::default()
        });
        let router = Router::new().fallback(handle).with_state(stub.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self {
            stub,
            base: Url::parse(&format!("http://{addr}/login")).unwrap(),
        }
    }

    fn client(&self, credentials: AppCredentials) -> IdentityClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        IdentityClient::new(http, self.base.clone(), CLIENT_ID, credentials)
    }

    fn seen(&self) -> Vec<Seen> {
        self.stub.seen.lock().unwrap().clone()
    }
}

fn secret() -> AppCredentials {
    AppCredentials::from_secret_json(r#"{"client_secret": "the~secret.value"}"#).unwrap()
}

fn certificate() -> AppCredentials {
    AppCredentials::from_secret_json(
        &json!({"certificate_pem": CERT, "private_key_pem": KEY}).to_string(),
    )
    .unwrap()
}

fn app_token_body(expires_in: u64) -> Value {
    json!({"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": "app-access-token"})
}

fn id_token(claims: Value) -> String {
    use base64::Engine;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.sig",
        b64(json!({"alg": "RS256", "typ": "JWT"})),
        b64(claims)
    )
}

fn entra_error(error: &str, code: u32, description: &str) -> Value {
    json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description} Trace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333 Correlation ID: aaaa0000-bb11-2222-33cc-444444dddddd Timestamp: 2024-05-01 10:00:00Z"),
        "error_codes": [code],
        "timestamp": "2024-05-01 10:00:00Z",
        "trace_id": "0000aaaa-11bb-cccc-dd22-eeeeee333333",
        "correlation_id": "aaaa0000-bb11-2222-33cc-444444dddddd",
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    })
}

#[tokio::test]
async fn client_credentials_with_a_secret() {
    let h = Harness::start(vec![ok(app_token_body(3599))]).await;
    let before = time::OffsetDateTime::now_utc();
    let token = h.client(secret()).app_token("tenant-1").await.unwrap();
    assert_eq!(token.access_token.expose_secret(), "app-access-token");
    assert!(token.expires_at >= before + time::Duration::seconds(3598));
    let seen = h.seen();
    assert_eq!(seen[0].path, "/login/tenant-1/oauth2/v2.0/token");
    let form = &seen[0].form;
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["client_secret"], "the~secret.value");
    assert_eq!(form["scope"], "https://graph.microsoft.com/.default");
    assert!(seen[0].authorization.is_none());
    assert!(!format!("{token:?}").contains("app-access-token"));
}

#[tokio::test]
async fn client_credentials_with_a_certificate_assertion() {
    let h = Harness::start(vec![ok(app_token_body(3599))]).await;
    h.client(certificate()).app_token("tenant-1").await.unwrap();
    let form = h.seen()[0].form.clone();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], CLIENT_ID);
    assert!(!form.contains_key("client_secret"));
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    let aud = format!("{}/tenant-1/oauth2/v2.0/token", h.base);
    let mut validation = Validation::new(Algorithm::PS256);
    validation.set_audience(&[aud.as_str()]);
    validation.set_issuer(&[CLIENT_ID]);
    let key = DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap();
    let claims = jsonwebtoken::decode::<Value>(&form["client_assertion"], &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], CLIENT_ID);
    assert!(
        jsonwebtoken::decode_header(&form["client_assertion"])
            .unwrap()
            .x5t_s256
            .is_some()
    );
}

#[tokio::test]
async fn authorization_code_with_pkce() {
    let h = Harness::start(vec![ok(json!({
        "token_type": "Bearer",
        "scope": "Mail.ReadWrite Mail.Send User.Read openid offline_access",
        "expires_in": 4435,
        "access_token": "user-access-token",
        "refresh_token": "refresh-1",
        "id_token": id_token(json!({"aud": CLIENT_ID, "tid": "tenant-guid", "oid": "user-oid", "preferred_username": "adele@contoso.com", "name": "Adele"})),
    }))])
    .await;
    let client = h.client(secret());
    let (challenge, verifier) = new_pkce();
    let redirect = Url::parse("https://app.example.com/oauth/callback").unwrap();
    let scopes = [
        "offline_access",
        "openid",
        "User.Read",
        "Mail.ReadWrite",
        "Mail.Send",
    ];

    let authorize = client.authorize_url(
        ORGANIZATIONS,
        &redirect,
        &scopes,
        "st",
        &challenge,
        Some(Prompt::SelectAccount),
        None,
    );
    assert!(
        authorize
            .as_str()
            .starts_with(&format!("{}/organizations/oauth2/v2.0/authorize?", h.base))
    );

    let verifier_value = verifier.secret().clone();
    let tokens = client
        .exchange_code(
            &SecretString::from("the-code"),
            &redirect,
            verifier,
            &scopes,
        )
        .await
        .unwrap();
    assert_eq!(tokens.access_token.expose_secret(), "user-access-token");
    assert_eq!(tokens.refresh_token.expose_secret(), "refresh-1");
    assert!(tokens.scopes.contains(&"Mail.Send".to_owned()));
    let who = tokens.id_token.unwrap();
    assert_eq!(
        (who.tid.as_deref(), who.oid.as_deref()),
        (Some("tenant-guid"), Some("user-oid"))
    );

    let seen = h.seen();
    assert_eq!(seen[0].path, "/login/organizations/oauth2/v2.0/token");
    let form = &seen[0].form;
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], "the-code");
    assert_eq!(
        form["redirect_uri"],
        "https://app.example.com/oauth/callback"
    );
    assert_eq!(form["code_verifier"], verifier_value);
    assert_eq!(
        PkceCodeChallenge::from_code_verifier_sha256(
            &outlook_core::identity::PkceCodeVerifier::new(verifier_value)
        )
        .as_str(),
        challenge.as_str()
    );
    assert_eq!(form["scope"], scopes.join(" "));
    assert_eq!(form["client_secret"], "the~secret.value");
}

#[tokio::test]
async fn refresh_returns_the_rotated_refresh_token() {
    let h = Harness::start(vec![
        ok(json!({"token_type": "Bearer", "expires_in": 3600, "access_token": "a2", "refresh_token": "refresh-2", "scope": "Mail.ReadWrite"})),
        ok(json!({"token_type": "Bearer", "expires_in": 3600, "access_token": "a3"})),
    ])
    .await;
    let client = h.client(certificate());
    let tokens = client
        .refresh(
            &SecretString::from("refresh-1"),
            &["offline_access", "Mail.ReadWrite"],
        )
        .await
        .unwrap();
    assert_eq!(tokens.refresh_token.expose_secret(), "refresh-2");
    let form = h.seen()[0].form.clone();
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["refresh_token"], "refresh-1");
    assert_eq!(form["scope"], "offline_access Mail.ReadWrite");
    assert!(form.contains_key("client_assertion"));
    // No new refresh token in the answer: the old one stays in use.
    let tokens = client
        .refresh(&SecretString::from("refresh-2"), &["Mail.ReadWrite"])
        .await
        .unwrap();
    assert_eq!(tokens.refresh_token.expose_secret(), "refresh-2");
}

#[tokio::test]
async fn a_sign_in_without_offline_access_is_refused() {
    let h = Harness::start(vec![ok(
        json!({"token_type": "Bearer", "expires_in": 3600, "access_token": "a"}),
    )])
    .await;
    let (_, verifier) = new_pkce();
    let redirect = Url::parse("https://app.example.com/cb").unwrap();
    let err = h
        .client(secret())
        .exchange_code(
            &SecretString::from("c"),
            &redirect,
            verifier,
            &["Mail.Read"],
        )
        .await
        .unwrap_err();
    assert_eq!(err.failure, IdentityFailure::NoRefreshToken);
    assert!(err.needs_reconnect());
}

#[tokio::test]
async fn token_errors_are_classified() {
    let h = Harness::start(vec![
        status(400, entra_error("invalid_grant", 50173, "The provided grant has expired due to it being revoked.")),
        status(401, entra_error("invalid_client", 7000222, "The provided client secret keys for app are expired.")),
        status(400, json!({"error": "invalid_grant", "error_description": "AADSTS50076: ...", "error_codes": [50076], "suberror": "basic_action"})),
        Reply { status: 503, content_type: "text/html", body: "<html>Service Unavailable</html>".into(), delay: Duration::ZERO },
        Reply { status: 200, content_type: "application/json", body: "{\"access_token\": ".into(), delay: Duration::ZERO },
        Reply { status: 400, content_type: "text/html", body: "<html>bad</html>".into(), delay: Duration::ZERO },
    ])
    .await;
    let client = h.client(secret());
    let rt = SecretString::from("rt");
    let refresh = || client.refresh(&rt, &["Mail.ReadWrite"]);

    let err = refresh().await.unwrap_err();
    assert_eq!(err.failure, IdentityFailure::PasswordChanged);
    assert_eq!(err.http_status, Some(400));
    assert_eq!(err.trace_id(), Some("0000aaaa-11bb-cccc-dd22-eeeeee333333"));
    assert!(!err.to_string().contains("rt"), "{err}");

    let err = client.app_token("tenant-1").await.unwrap_err();
    assert_eq!(err.failure, IdentityFailure::AppSecretExpired);
    assert_eq!(err.http_status, Some(401));
    assert!(!err.is_retryable() && !err.needs_reconnect());

    assert_eq!(
        refresh().await.unwrap_err().failure,
        IdentityFailure::MfaRequired
    );

    let err = refresh().await.unwrap_err();
    assert_eq!(
        (err.failure.clone(), err.http_status),
        (IdentityFailure::Transient, Some(503))
    );
    assert!(err.is_retryable());

    // An unreadable success body is retryable and never echoed.
    let err = refresh().await.unwrap_err();
    assert_eq!(err.failure, IdentityFailure::Transient);
    assert!(!err.to_string().contains("access_token"), "{err}");

    assert_eq!(
        refresh().await.unwrap_err().failure,
        IdentityFailure::Transient
    );
}

#[tokio::test]
async fn unreachable_token_endpoint_is_transient() {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let client = IdentityClient::new(
        http,
        Url::parse("http://127.0.0.1:1/").unwrap(),
        CLIENT_ID,
        secret(),
    );
    let err = client.app_token("t").await.unwrap_err();
    assert_eq!(err.failure, IdentityFailure::Transient);
    assert!(!err.to_string().contains("127.0.0.1"), "{err}");
}

#[tokio::test]
async fn app_tokens_are_cached_per_tenant_with_one_request_at_a_time() {
    let h = Harness::start(vec![]).await;
    *h.stub.default.lock().unwrap() = Some(Reply {
        delay: Duration::from_millis(100),
        ..ok(app_token_body(3599))
    });
    let cache = AppTokenCache::new(h.client(secret()));

    let tokens = futures::future::join_all((0..8).map(|_| cache.token("Tenant-1"))).await;
    assert!(
        tokens
            .iter()
            .all(|t| t.as_ref().unwrap().expose_secret() == "app-access-token")
    );
    assert_eq!(
        h.seen().len(),
        1,
        "concurrent mailboxes of one tenant make one token request"
    );

    cache.token("tenant-1").await.unwrap();
    assert_eq!(h.seen().len(), 1, "warm: served from the cache");

    cache.token("tenant-2").await.unwrap();
    assert_eq!(h.seen().len(), 2);
    assert_eq!(h.seen()[1].path, "/login/tenant-2/oauth2/v2.0/token");

    cache.invalidate("tenant-1").await;
    cache.token("tenant-1").await.unwrap();
    assert_eq!(h.seen().len(), 3);
}

#[tokio::test]
async fn app_tokens_close_to_expiry_are_renewed() {
    let h = Harness::start(vec![]).await;
    // 4 minutes left is under the 5-minute margin.
    *h.stub.default.lock().unwrap() = Some(ok(app_token_body(240)));
    let cache = AppTokenCache::new(h.client(secret()));
    cache.token("t").await.unwrap();
    cache.token("t").await.unwrap();
    assert_eq!(h.seen().len(), 2);
}

#[tokio::test]
async fn a_failed_fetch_is_shared_by_the_callers_waiting_for_it() {
    let h = Harness::start(vec![]).await;
    *h.stub.default.lock().unwrap() = Some(Reply {
        delay: Duration::from_millis(100),
        ..status(
            400,
            entra_error(
                "unauthorized_client",
                700016,
                "Application with identifier was not found in the directory.",
            ),
        )
    });
    let cache = AppTokenCache::new(h.client(secret()));
    let results = futures::future::join_all((0..5).map(|_| cache.token("t"))).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap_err().failure == IdentityFailure::AppNotInTenant)
    );
    assert_eq!(h.seen().len(), 1);
    // A later call asks again.
    assert!(cache.token("t").await.is_err());
    assert_eq!(h.seen().len(), 2);
}
