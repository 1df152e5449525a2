//! Entra ID (Microsoft identity platform v2.0) token client and error classification.
