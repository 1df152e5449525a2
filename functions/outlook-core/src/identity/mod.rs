//! Entra ID (Microsoft identity platform v2.0) token client and error classification.
//!
//! - [`AppCredentials`]: the app's client secret or certificate (client assertions, PS256),
//!   read again from the app-credentials secret when Microsoft refuses them (`reload`).
//! - [`IdentityClient`]: authorize and admin-consent URLs; authorization code + PKCE, refresh
//!   token and client credentials grants.
//! - [`AppTokenCache`]: app-only tokens per tenant, single-flight, across warm invocations.
//! - [`IdentityError`] / [`IdentityFailure`]: failures classified on `error_codes` and `suberror`,
//!   with texts for customers.

pub mod cache;
pub mod client;
pub mod credentials;
pub mod error;
pub mod reload;

pub use cache::{AppTokenCache, RENEW_BEFORE};
pub use client::{
    AppToken, DelegatedTokens, GRAPH_DEFAULT_SCOPE, IdTokenClaims, IdentityClient, ORGANIZATIONS,
    Prompt, new_pkce, new_state,
};
pub use credentials::{AppCredentials, CertificateCredential, CredentialsError};
pub use error::{EntraErrorBody, IdentityError, IdentityFailure};
pub use oauth2::{PkceCodeChallenge, PkceCodeVerifier};
pub use reload::{
    APP_CREDENTIALS_RELOAD_BURST, APP_CREDENTIALS_RELOAD_COALESCE, APP_CREDENTIALS_RELOAD_INTERVAL,
    CredentialsLoader,
};
