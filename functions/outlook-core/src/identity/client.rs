//! The Entra ID v2.0 client: sign-in and admin-consent URLs, and the token grants (authorization
//! code + PKCE, refresh token, client credentials) through the `oauth2` crate.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenResponse,
    TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use super::credentials::{AppCredentials, CLIENT_ASSERTION_TYPE};
use super::error::{EntraErrorBody, IdentityError, IdentityFailure};
use super::reload::{CredentialSource, CredentialsLoader, Loaded};

/// The tenant segment for personal sign-in with work or school accounts.
pub const ORGANIZATIONS: &str = "organizations";
/// The scope of app-only (client credentials) tokens and of admin consent for app permissions.
pub const GRAPH_DEFAULT_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Assumed lifetime when Microsoft omits `expires_in`.
const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(3600);

/// `prompt` of the authorize request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Let the user pick among signed-in accounts (the default for connecting a mailbox).
    SelectAccount,
    Login,
    Consent,
    None,
}

impl Prompt {
    pub fn as_str(self) -> &'static str {
        match self {
            Prompt::SelectAccount => "select_account",
            Prompt::Login => "login",
            Prompt::Consent => "consent",
            Prompt::None => "none",
        }
    }
}

/// A new PKCE pair (S256): send the challenge in the authorize URL, keep the verifier secret
/// until the code is redeemed.
pub fn new_pkce() -> (PkceCodeChallenge, PkceCodeVerifier) {
    PkceCodeChallenge::new_random_sha256()
}

/// A new unguessable `state` value.
pub fn new_state() -> String {
    CsrfToken::new_random().secret().clone()
}

/// Tokens of a personal (delegated) sign-in.
#[derive(Debug, Clone)]
pub struct DelegatedTokens {
    pub access_token: SecretString,
    /// Microsoft rotates it on every refresh: store this one, discard the previous one.
    pub refresh_token: SecretString,
    pub expires_at: OffsetDateTime,
    /// The scopes Microsoft granted.
    pub scopes: Vec<String>,
    /// Who signed in (from the ID token, when `openid` was requested).
    pub id_token: Option<IdTokenClaims>,
}

/// The ID-token claims we use. The token comes straight from the token endpoint over TLS, so its
/// signature is not checked (OpenID Connect Core §3.1.3.7); its audience is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct IdTokenClaims {
    /// The user's tenant id.
    #[serde(default)]
    pub tid: Option<String>,
    /// The user's object id in that tenant.
    #[serde(default)]
    pub oid: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub aud: Option<String>,
}

/// An app-only access token for one tenant.
#[derive(Debug, Clone)]
pub struct AppToken {
    pub access_token: SecretString,
    pub expires_at: OffsetDateTime,
}

/// The raw ID token; its `Debug` does not show it.
#[derive(Clone, Deserialize, Serialize)]
#[serde(transparent)]
struct RawIdToken(String);

impl std::fmt::Debug for RawIdToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawIdToken([redacted])")
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
struct EntraExtraFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<RawIdToken>,
}

impl ExtraTokenFields for EntraExtraFields {}

type EntraTokenResponse = StandardTokenResponse<EntraExtraFields, BasicTokenType>;
type EntraClient = oauth2::Client<
    EntraErrorBody,
    EntraTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Why the HTTP exchange with the token endpoint failed (never with the URL or a body).
#[derive(Debug, thiserror::Error)]
enum HttpFailure {
    #[error("HTTP {0} from the token endpoint")]
    Status(u16),
    #[error("{0}")]
    Network(String),
}

struct Inner {
    http: reqwest::Client,
    login_base: Url,
    client_id: String,
    /// Read at cold start; read again when Microsoft refuses it (see `super::reload`).
    credentials: CredentialSource,
}

/// Built once per cold start; cheap to clone (clones share the credential in use).
#[derive(Clone)]
pub struct IdentityClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for IdentityClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityClient")
            .field("login_base", &self.inner.login_base.as_str())
            .field("client_id", &self.inner.client_id)
            .field("credentials", &self.inner.credentials.current().credentials)
            .finish()
    }
}

impl IdentityClient {
    /// `login_base_url` is `LOGIN_BASE_URL` (e.g. `https://login.microsoftonline.com`); `http`
    /// should have timeouts and no redirects (see `clients::http_client`).
    pub fn new(
        http: reqwest::Client,
        login_base_url: Url,
        client_id: impl Into<String>,
        credentials: AppCredentials,
    ) -> Self {
        Self::build(http, login_base_url, client_id.into(), credentials, None)
    }

    /// Like [`IdentityClient::new`]; when Microsoft refuses `credentials`, `loader` reads the
    /// app-credentials secret again (rate-limited) and a new credential found there is used from
    /// then on, the refused request being sent once more with it.
    pub fn with_reload(
        http: reqwest::Client,
        login_base_url: Url,
        client_id: impl Into<String>,
        credentials: AppCredentials,
        loader: CredentialsLoader,
    ) -> Self {
        Self::build(
            http,
            login_base_url,
            client_id.into(),
            credentials,
            Some(loader),
        )
    }

    fn build(
        http: reqwest::Client,
        login_base: Url,
        client_id: String,
        credentials: AppCredentials,
        loader: Option<CredentialsLoader>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                http,
                login_base,
                client_id,
                credentials: CredentialSource::new(credentials, loader),
            }),
        }
    }

    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// `{login}/{tenant}/{path…}`.
    fn endpoint(&self, tenant: &str, path: &[&str]) -> Url {
        let mut url = self.inner.login_base.clone();
        url.set_query(None);
        {
            let mut segments = url
                .path_segments_mut()
                .expect("the login base URL is http(s)");
            segments.pop_if_empty().push(tenant).extend(path);
        }
        url
    }

    /// `{login}/{tenant}/oauth2/v2.0/token`, also the audience of client assertions.
    pub fn token_url(&self, tenant: &str) -> Url {
        self.endpoint(tenant, &["oauth2", "v2.0", "token"])
    }

    fn oauth_client(&self, tenant: &str, credentials: &AppCredentials) -> EntraClient {
        let client = oauth2::Client::new(ClientId::new(self.inner.client_id.clone()))
            .set_auth_type(AuthType::RequestBody)
            .set_auth_uri(AuthUrl::from_url(
                self.endpoint(tenant, &["oauth2", "v2.0", "authorize"]),
            ))
            .set_token_uri(TokenUrl::from_url(self.token_url(tenant)));
        match credentials {
            AppCredentials::ClientSecret(secret) => {
                client.set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()))
            }
            AppCredentials::Certificate(_) => client,
        }
    }

    /// The client-assertion parameters for a certificate credential (none for a secret).
    ///
    /// `oauth2` has no private_key_jwt client authentication, but every token request accepts
    /// extra form parameters, so the assertion goes in with `add_extra_param` and the client is
    /// built without a secret (it then sends `client_id` in the body, as Entra expects).
    fn assertion_params(
        &self,
        tenant: &str,
        credentials: &AppCredentials,
    ) -> Result<Vec<(&'static str, String)>, IdentityError> {
        match credentials {
            AppCredentials::ClientSecret(_) => Ok(Vec::new()),
            AppCredentials::Certificate(cert) => {
                let jwt = cert.client_assertion(
                    &self.inner.client_id,
                    self.token_url(tenant).as_str(),
                    OffsetDateTime::now_utc(),
                )?;
                Ok(vec![
                    ("client_assertion_type", CLIENT_ASSERTION_TYPE.to_owned()),
                    ("client_assertion", jwt.expose_secret().to_owned()),
                ])
            }
        }
    }

    /// The sign-in URL for a personal connection (`tenant`: usually [`ORGANIZATIONS`]). Include
    /// `offline_access` in `scopes` to get a refresh token.
    #[allow(clippy::too_many_arguments)]
    pub fn authorize_url(
        &self,
        tenant: &str,
        redirect_uri: &Url,
        scopes: &[&str],
        state: &str,
        pkce_challenge: &PkceCodeChallenge,
        prompt: Option<Prompt>,
        login_hint: Option<&str>,
    ) -> Url {
        let client = self.oauth_client(tenant, &self.inner.credentials.current().credentials);
        let mut request = client
            .authorize_url(|| CsrfToken::new(state.to_owned()))
            .set_redirect_uri(Cow::Owned(RedirectUrl::from_url(redirect_uri.clone())))
            .add_scopes(scopes.iter().map(|s| Scope::new((*s).to_owned())))
            .set_pkce_challenge(pkce_challenge.clone())
            .add_extra_param("response_mode", "query");
        if let Some(prompt) = prompt {
            request = request.add_extra_param("prompt", prompt.as_str());
        }
        if let Some(hint) = login_hint.filter(|h| !h.trim().is_empty()) {
            request = request.add_extra_param("login_hint", hint.trim().to_owned());
        }
        request.url().0
    }

    /// The v2.0 admin-consent URL for the app's application permissions (`tenant`: a tenant id or
    /// [`ORGANIZATIONS`], never `common`).
    pub fn admin_consent_url(&self, tenant: &str, redirect_uri: &Url, state: &str) -> Url {
        let mut url = self.endpoint(tenant, &["v2.0", "adminconsent"]);
        url.query_pairs_mut()
            .append_pair("client_id", &self.inner.client_id)
            .append_pair("scope", GRAPH_DEFAULT_SCOPE)
            .append_pair("redirect_uri", redirect_uri.as_str())
            .append_pair("state", state);
        url
    }

    /// Redeems an authorization code (personal sign-in, `organizations` endpoint). Fails with
    /// `NoRefreshToken` when Microsoft returns no refresh token.
    pub async fn exchange_code(
        &self,
        code: &SecretString,
        redirect_uri: &Url,
        pkce_verifier: PkceCodeVerifier,
        scopes: &[&str],
    ) -> Result<DelegatedTokens, IdentityError> {
        // Microsoft checks the client credential before it redeems the code, so a code refused
        // for the credential can be sent again.
        let (used, sent_at) = self.credentials_for_request();
        let result = self
            .exchange_code_with(
                &used.credentials,
                code,
                redirect_uri,
                &pkce_verifier,
                scopes,
            )
            .await;
        match self.credentials_for_retry(&result, &used, sent_at).await {
            Some(fresh) => {
                let retried = self
                    .exchange_code_with(
                        &fresh.credentials,
                        code,
                        redirect_uri,
                        &pkce_verifier,
                        scopes,
                    )
                    .await;
                self.note_refusal(&retried, &fresh);
                retried
            }
            None => result,
        }
    }

    async fn exchange_code_with(
        &self,
        credentials: &AppCredentials,
        code: &SecretString,
        redirect_uri: &Url,
        pkce_verifier: &PkceCodeVerifier,
        scopes: &[&str],
    ) -> Result<DelegatedTokens, IdentityError> {
        let client = self.oauth_client(ORGANIZATIONS, credentials);
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.expose_secret().to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.secret().clone()))
            .set_redirect_uri(Cow::Owned(RedirectUrl::from_url(redirect_uri.clone())));
        if !scopes.is_empty() {
            request = request.add_extra_param("scope", scopes.join(" "));
        }
        for (name, value) in self.assertion_params(ORGANIZATIONS, credentials)? {
            request = request.add_extra_param(name, value);
        }
        let (status, http) = self.http_fn();
        let response = request
            .request_async(&http)
            .await
            .map_err(|e| token_error(e, &status))?;
        self.delegated_tokens(response, None)
    }

    /// Redeems a refresh token for new tokens, including the rotated refresh token.
    pub async fn refresh(
        &self,
        refresh_token: &SecretString,
        scopes: &[&str],
    ) -> Result<DelegatedTokens, IdentityError> {
        let (used, sent_at) = self.credentials_for_request();
        let result = self
            .refresh_with(&used.credentials, refresh_token, scopes)
            .await;
        match self.credentials_for_retry(&result, &used, sent_at).await {
            Some(fresh) => {
                let retried = self
                    .refresh_with(&fresh.credentials, refresh_token, scopes)
                    .await;
                self.note_refusal(&retried, &fresh);
                retried
            }
            None => result,
        }
    }

    async fn refresh_with(
        &self,
        credentials: &AppCredentials,
        refresh_token: &SecretString,
        scopes: &[&str],
    ) -> Result<DelegatedTokens, IdentityError> {
        let client = self.oauth_client(ORGANIZATIONS, credentials);
        let refresh = RefreshToken::new(refresh_token.expose_secret().to_owned());
        let mut request = client
            .exchange_refresh_token(&refresh)
            .add_scopes(scopes.iter().map(|s| Scope::new((*s).to_owned())));
        for (name, value) in self.assertion_params(ORGANIZATIONS, credentials)? {
            request = request.add_extra_param(name, value);
        }
        let (status, http) = self.http_fn();
        let response = request
            .request_async(&http)
            .await
            .map_err(|e| token_error(e, &status))?;
        self.delegated_tokens(response, Some(refresh_token))
    }

    /// An app-only token for `tenant_id` (client credentials, scope `.default`). No caching here:
    /// use [`super::AppTokenCache`].
    pub async fn app_token(&self, tenant_id: &str) -> Result<AppToken, IdentityError> {
        let (used, sent_at) = self.credentials_for_request();
        let result = self.app_token_with(&used.credentials, tenant_id).await;
        match self.credentials_for_retry(&result, &used, sent_at).await {
            Some(fresh) => {
                let retried = self.app_token_with(&fresh.credentials, tenant_id).await;
                self.note_refusal(&retried, &fresh);
                retried
            }
            None => result,
        }
    }

    async fn app_token_with(
        &self,
        credentials: &AppCredentials,
        tenant_id: &str,
    ) -> Result<AppToken, IdentityError> {
        let client = self.oauth_client(tenant_id, credentials);
        let mut request = client
            .exchange_client_credentials()
            .add_scope(Scope::new(GRAPH_DEFAULT_SCOPE.to_owned()));
        for (name, value) in self.assertion_params(tenant_id, credentials)? {
            request = request.add_extra_param(name, value);
        }
        let (status, http) = self.http_fn();
        let response = request
            .request_async(&http)
            .await
            .map_err(|e| token_error(e, &status))?;
        Ok(AppToken {
            access_token: SecretString::from(response.access_token().secret().to_owned()),
            expires_at: expires_at(&response),
        })
    }

    /// The credential to send a token request with, and when it was sent.
    fn credentials_for_request(&self) -> (Arc<Loaded>, tokio::time::Instant) {
        (
            self.inner.credentials.current(),
            tokio::time::Instant::now(),
        )
    }

    /// After a token request failed: the credential to send it once more with, when Microsoft
    /// refused the app's credential and the app-credentials secret now holds another one.
    async fn credentials_for_retry<T>(
        &self,
        result: &Result<T, IdentityError>,
        used: &Loaded,
        sent_at: tokio::time::Instant,
    ) -> Option<Arc<Loaded>> {
        match result {
            Err(err) if err.refuses_app_credentials() => {
                self.inner.credentials.newer_than(used, sent_at).await
            }
            _ => None,
        }
    }

    /// Remembers that Microsoft refused the credential a request was sent once more with.
    fn note_refusal<T>(&self, result: &Result<T, IdentityError>, used: &Loaded) {
        if let Err(err) = result
            && err.refuses_app_credentials()
        {
            self.inner.credentials.refused(used);
        }
    }

    fn delegated_tokens(
        &self,
        response: EntraTokenResponse,
        previous: Option<&SecretString>,
    ) -> Result<DelegatedTokens, IdentityError> {
        let refresh_token = match (response.refresh_token(), previous) {
            (Some(rt), _) => SecretString::from(rt.secret().to_owned()),
            // Microsoft always rotates; if it ever does not, the old token stays valid.
            (None, Some(previous)) => previous.clone(),
            (None, None) => {
                return Err(IdentityError::local(
                    IdentityFailure::NoRefreshToken,
                    "the token response has no refresh_token",
                ));
            }
        };
        let id_token = response
            .extra_fields()
            .id_token
            .as_ref()
            .and_then(|raw| self.id_token_claims(&raw.0));
        Ok(DelegatedTokens {
            access_token: SecretString::from(response.access_token().secret().to_owned()),
            refresh_token,
            expires_at: expires_at(&response),
            scopes: response
                .scopes()
                .map(|s| s.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
            id_token,
        })
    }

    fn id_token_claims(&self, jwt: &str) -> Option<IdTokenClaims> {
        let payload = jwt.split('.').nth(1)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        let claims: IdTokenClaims = serde_json::from_slice(&bytes).ok()?;
        if claims
            .aud
            .as_deref()
            .is_some_and(|aud| aud != self.inner.client_id)
        {
            tracing::warn!("ignoring an ID token issued for another client");
            return None;
        }
        Some(claims)
    }

    /// The HTTP function handed to `oauth2`: reqwest, with 5xx/429 reported as failures of their
    /// own (so they classify as transient) and the status of other answers recorded (oauth2 only
    /// passes the body of an error on).
    #[allow(clippy::type_complexity)]
    fn http_fn(
        &self,
    ) -> (
        Arc<AtomicU16>,
        impl Fn(
            oauth2::HttpRequest,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpFailure>> + Send>,
        >,
    ) {
        let status = Arc::new(AtomicU16::new(0));
        let recorded = status.clone();
        let http = self.inner.http.clone();
        let call = move |request: oauth2::HttpRequest| {
            let http = http.clone();
            let recorded = recorded.clone();
            Box::pin(async move {
                let request = reqwest::Request::try_from(request)
                    .map_err(|e| HttpFailure::Network(e.without_url().to_string()))?;
                let response = http.execute(request).await.map_err(|e| {
                    let kind = if e.is_timeout() {
                        "timeout"
                    } else {
                        "connection error"
                    };
                    HttpFailure::Network(format!("{kind}: {}", e.without_url()))
                })?;
                let code = response.status().as_u16();
                recorded.store(code, Ordering::Relaxed);
                if code >= 500 || code == 429 {
                    return Err(HttpFailure::Status(code));
                }
                let mut builder = oauth2::http::Response::builder().status(code);
                for (name, value) in response.headers() {
                    builder = builder.header(name, value);
                }
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| HttpFailure::Network(e.without_url().to_string()))?;
                builder
                    .body(body.to_vec())
                    .map_err(|e| HttpFailure::Network(e.to_string()))
            }) as std::pin::Pin<Box<dyn Future<Output = _> + Send>>
        };
        (status, call)
    }
}

fn expires_at(response: &EntraTokenResponse) -> OffsetDateTime {
    OffsetDateTime::now_utc() + response.expires_in().unwrap_or(DEFAULT_EXPIRES_IN)
}

fn token_error(
    error: RequestTokenError<HttpFailure, EntraErrorBody>,
    status: &AtomicU16,
) -> IdentityError {
    let status = Some(status.load(Ordering::Relaxed)).filter(|s| *s != 0);
    match error {
        RequestTokenError::ServerResponse(body) => IdentityError::from_body(status, body),
        RequestTokenError::Request(HttpFailure::Status(code)) => {
            let mut err = IdentityError::local(
                IdentityFailure::Transient,
                format!("HTTP {code} from the token endpoint"),
            );
            err.http_status = Some(code);
            err
        }
        RequestTokenError::Request(failure) => {
            IdentityError::local(IdentityFailure::Transient, failure.to_string())
        }
        // The body is never included: a successful one holds tokens.
        RequestTokenError::Parse(_, _) => {
            let mut err = IdentityError::local(
                IdentityFailure::Transient,
                "unreadable response from the token endpoint",
            );
            err.http_status = status;
            err
        }
        RequestTokenError::Other(reason) => {
            let mut err = IdentityError::local(IdentityFailure::Transient, reason);
            err.http_status = status;
            err
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn client() -> IdentityClient {
        IdentityClient::new(
            reqwest::Client::new(),
            Url::parse("https://login.microsoftonline.com/").unwrap(),
            "11111111-2222-3333-4444-555555555555",
            AppCredentials::ClientSecret(SecretString::from("s")),
        )
    }

    fn params(url: &Url) -> HashMap<String, String> {
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn authorize_url_has_pkce_state_scopes_and_prompt() {
        let (challenge, verifier) = new_pkce();
        let redirect = Url::parse("https://app.example.com/oauth/callback").unwrap();
        let url = client().authorize_url(
            ORGANIZATIONS,
            &redirect,
            &["offline_access", "openid", "User.Read", "Mail.ReadWrite"],
            "state-123",
            &challenge,
            Some(Prompt::SelectAccount),
            Some("adele@contoso.com"),
        );
        assert_eq!(
            url.origin().ascii_serialization(),
            "https://login.microsoftonline.com"
        );
        assert_eq!(url.path(), "/organizations/oauth2/v2.0/authorize");
        let p = params(&url);
        assert_eq!(p["client_id"], "11111111-2222-3333-4444-555555555555");
        assert_eq!(p["response_type"], "code");
        assert_eq!(p["response_mode"], "query");
        assert_eq!(p["redirect_uri"], "https://app.example.com/oauth/callback");
        assert_eq!(p["scope"], "offline_access openid User.Read Mail.ReadWrite");
        assert_eq!(p["state"], "state-123");
        assert_eq!(p["prompt"], "select_account");
        assert_eq!(p["login_hint"], "adele@contoso.com");
        assert_eq!(p["code_challenge_method"], "S256");
        assert_eq!(
            p["code_challenge"],
            PkceCodeChallenge::from_code_verifier_sha256(&verifier).as_str()
        );
        assert!(!p.contains_key("client_secret"));
        let bare = client().authorize_url(
            "contoso.onmicrosoft.com",
            &redirect,
            &["openid"],
            "s",
            &challenge,
            None,
            None,
        );
        assert_eq!(
            bare.path(),
            "/contoso.onmicrosoft.com/oauth2/v2.0/authorize"
        );
        assert!(!params(&bare).contains_key("prompt") && !params(&bare).contains_key("login_hint"));
    }

    #[test]
    fn admin_consent_url_asks_for_application_permissions() {
        let redirect = Url::parse("https://app.example.com/oauth/callback").unwrap();
        let url = client().admin_consent_url(ORGANIZATIONS, &redirect, "st");
        assert_eq!(url.path(), "/organizations/v2.0/adminconsent");
        let p = params(&url);
        assert_eq!(p["scope"], GRAPH_DEFAULT_SCOPE);
        assert_eq!(p["client_id"], "11111111-2222-3333-4444-555555555555");
        assert_eq!(p["redirect_uri"], "https://app.example.com/oauth/callback");
        assert_eq!(p["state"], "st");
    }

    #[test]
    fn token_url_keeps_a_base_path() {
        let c = IdentityClient::new(
            reqwest::Client::new(),
            Url::parse("http://127.0.0.1:4010/login").unwrap(),
            "id",
            AppCredentials::ClientSecret(SecretString::from("s")),
        );
        assert_eq!(
            c.token_url("tenant-1").as_str(),
            "http://127.0.0.1:4010/login/tenant-1/oauth2/v2.0/token"
        );
        // The tenant is one path segment, whatever it contains.
        assert_eq!(
            c.token_url("a/b?c").as_str(),
            "http://127.0.0.1:4010/login/a%2Fb%3Fc/oauth2/v2.0/token"
        );
    }

    #[test]
    fn state_and_pkce_are_random() {
        assert_ne!(new_state(), new_state());
        assert!(new_state().len() >= 16);
        let (a, _) = new_pkce();
        let (b, _) = new_pkce();
        assert_ne!(a.as_str(), b.as_str());
    }

    #[test]
    fn id_token_claims_are_read_and_audience_checked() {
        let c = client();
        let payload = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"aud": "11111111-2222-3333-4444-555555555555", "tid": "t1", "oid": "o1", "preferred_username": "adele@contoso.com"})
                .to_string(),
        );
        let claims = c.id_token_claims(&format!("e30.{payload}.sig")).unwrap();
        assert_eq!(claims.tid.as_deref(), Some("t1"));
        assert_eq!(
            claims.preferred_username.as_deref(),
            Some("adele@contoso.com")
        );
        let foreign = URL_SAFE_NO_PAD
            .encode(serde_json::json!({"aud": "someone-else", "tid": "t1"}).to_string());
        assert!(c.id_token_claims(&format!("e30.{foreign}.sig")).is_none());
        assert!(c.id_token_claims("garbage").is_none());
    }

    /// A token endpoint that accepts only the client secret `accepted` holds; returns the client
    /// secrets it saw.
    async fn token_endpoint(
        accepted: Arc<std::sync::Mutex<String>>,
    ) -> (Url, Arc<std::sync::Mutex<Vec<String>>>) {
        use axum::extract::State;
        type Shared = (
            Arc<std::sync::Mutex<String>>,
            Arc<std::sync::Mutex<Vec<String>>>,
        );
        async fn handle(
            State((accepted, seen)): State<Shared>,
            body: String,
        ) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
            let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
            let secret = form.get("client_secret").cloned().unwrap_or_default();
            seen.lock().unwrap().push(secret.clone());
            if secret == *accepted.lock().unwrap() {
                let mut body = serde_json::json!({"token_type": "Bearer", "expires_in": 3600, "access_token": "at"});
                if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
                    body["refresh_token"] = "rt2".into();
                }
                (axum::http::StatusCode::OK, axum::Json(body))
            } else {
                (
                    axum::http::StatusCode::UNAUTHORIZED,
                    axum::Json(serde_json::json!({
                        "error": "invalid_client",
                        "error_description": "AADSTS7000222: The provided client secret keys for app are expired.",
                        "error_codes": [7000222]
                    })),
                )
            }
        }
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let router = axum::Router::new()
            .fallback(axum::routing::post(handle))
            .with_state((accepted, seen.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (Url::parse(&format!("http://{addr}/")).unwrap(), seen)
    }

    #[tokio::test]
    async fn token_requests_refused_for_the_app_credentials_are_sent_again_with_new_ones() {
        let accepted = Arc::new(std::sync::Mutex::new("new".to_owned()));
        let (base, seen) = token_endpoint(accepted.clone()).await;
        // What the app-credentials secret holds.
        let stored = Arc::new(std::sync::Mutex::new("old".to_owned()));
        let reads = Arc::new(AtomicU16::new(0));
        let loader: CredentialsLoader = {
            let stored = stored.clone();
            let reads = reads.clone();
            Arc::new(move || {
                let value = stored.lock().unwrap().clone();
                reads.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    Ok(SecretString::from(
                        serde_json::json!({ "client_secret": value }).to_string(),
                    ))
                })
            })
        };
        let client = IdentityClient::with_reload(
            reqwest::Client::new(),
            base,
            "11111111-2222-3333-4444-555555555555",
            AppCredentials::ClientSecret(SecretString::from("old")),
            loader,
        );
        // The secret still holds the refused one: one request, one read, the refusal stands.
        let err = client.app_token("tenant-1").await.unwrap_err();
        assert_eq!(err.failure, IdentityFailure::AppSecretExpired);
        assert!(err.refuses_app_credentials());
        assert_eq!(*seen.lock().unwrap(), ["old"]);
        assert_eq!(reads.load(Ordering::SeqCst), 1);

        // The operator put the new secret in: refused once more with the old one, then sent
        // again with the new one, which every later request uses.
        *stored.lock().unwrap() = "new".to_owned();
        // (An operator takes longer than the moment refusals are coalesced over.)
        tokio::time::sleep(crate::identity::APP_CREDENTIALS_RELOAD_COALESCE).await;
        client.app_token("tenant-1").await.unwrap();
        assert_eq!(*seen.lock().unwrap(), ["old", "old", "new"]);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        let refreshed = client
            .refresh(&SecretString::from("rt"), &["Mail.ReadWrite"])
            .await
            .unwrap();
        assert_eq!(refreshed.refresh_token.expose_secret(), "rt2");
        assert_eq!(*seen.lock().unwrap(), ["old", "old", "new", "new"]);
        assert!(!format!("{client:?}").contains("new\""));

        // Rotated again (refresh token grant): the same, once.
        *accepted.lock().unwrap() = "newer".to_owned();
        *stored.lock().unwrap() = "newer".to_owned();
        tokio::time::sleep(crate::identity::APP_CREDENTIALS_RELOAD_COALESCE).await;
        client
            .refresh(&SecretString::from("rt"), &["Mail.ReadWrite"])
            .await
            .unwrap();
        assert_eq!(seen.lock().unwrap()[4..], ["new", "newer"]);
        assert_eq!(reads.load(Ordering::SeqCst), 3);

        // Without a loader the refusal stands, after one request.
        let (plain, seen) = token_endpoint(Arc::new(std::sync::Mutex::new("x".into()))).await;
        let no_reload = IdentityClient::new(
            reqwest::Client::new(),
            plain,
            "id",
            AppCredentials::ClientSecret(SecretString::from("old")),
        );
        assert!(no_reload.app_token("t").await.is_err());
        assert_eq!(seen.lock().unwrap().len(), 1);
    }
}
