//! Parsing the query Microsoft redirects back with, strictly: a repeated, oversized or malformed
//! parameter is refused before anything is looked up.

use secrecy::SecretString;

use crate::pages::ResultPage;

/// What Microsoft sent back.
#[derive(Debug)]
pub enum CallbackParams {
    /// Admin consent granted: `admin_consent=True&tenant=...&scope=...&state=...`.
    AdminConsent { state: SecretString, tenant: String },
    /// A personal sign-in: `code=...&state=...`.
    Code {
        state: SecretString,
        code: SecretString,
    },
    /// Microsoft reported an error. Admin-consent error redirects also carry
    /// `admin_consent=True`, so `error` is checked first.
    Error {
        state: SecretString,
        error: String,
        description: String,
    },
}

/// A request that cannot be a genuine callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamProblem {
    MissingState,
    Repeated(&'static str),
    TooLong(&'static str),
    Missing(&'static str),
    InvalidTenant,
}

const KNOWN: &[&str] = &[
    "state",
    "code",
    "error",
    "error_description",
    "error_uri",
    "admin_consent",
    "tenant",
    "scope",
    "session_state",
    "client_info",
    "error_subcode",
];

fn limit(name: &str) -> usize {
    match name {
        "code" => 4096,
        "error_description" => 4096,
        "scope" => 2048,
        _ => 256,
    }
}

pub fn parse_callback(query: &str) -> Result<CallbackParams, ParamProblem> {
    let mut values: Vec<(&'static str, String)> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let Some(known) = KNOWN.iter().find(|k| **k == name) else {
            continue;
        };
        if values.iter().any(|(n, _)| n == known) {
            return Err(ParamProblem::Repeated(known));
        }
        if value.len() > limit(known) {
            return Err(ParamProblem::TooLong(known));
        }
        values.push((known, value.into_owned()));
    }
    let take = |name: &str| {
        values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };

    let state = SecretString::from(take("state").ok_or(ParamProblem::MissingState)?);
    if let Some(error) = take("error") {
        return Ok(CallbackParams::Error {
            state,
            error,
            description: take("error_description").unwrap_or_default(),
        });
    }
    if take("admin_consent").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        let tenant = take("tenant").ok_or(ParamProblem::Missing("tenant"))?;
        // Microsoft sends the hyphenated form; braces, `urn:uuid:` or 32 bare digits would be
        // stored as given and never match the tenant id we compare with.
        if tenant.len() != 36 || uuid::Uuid::try_parse(&tenant).is_err() {
            return Err(ParamProblem::InvalidTenant);
        }
        return Ok(CallbackParams::AdminConsent {
            state,
            tenant: tenant.to_lowercase(),
        });
    }
    match take("code") {
        Some(code) => Ok(CallbackParams::Code {
            state,
            code: SecretString::from(code),
        }),
        None => Err(ParamProblem::Missing("code")),
    }
}

impl ParamProblem {
    pub fn page(&self) -> ResultPage {
        let detail = match self {
            ParamProblem::MissingState => "The link has no sign-in state.".to_string(),
            ParamProblem::Repeated(name) => {
                format!("The parameter '{name}' appears more than once.")
            }
            ParamProblem::TooLong(name) => format!("The parameter '{name}' is too long."),
            ParamProblem::Missing(name) => format!("The parameter '{name}' is missing."),
            ParamProblem::InvalidTenant => "The organization id is not valid.".to_string(),
        };
        ResultPage::problem(
            400,
            "This sign-in link is not valid",
            format!("{detail} Nothing was connected."),
            "Start the connection again from the integrations page.",
        )
    }
}

/// The `AADSTSnnnnn` code at the start of a redirect's `error_description`, the only place a
/// redirect carries it.
pub fn aadsts_code(description: &str) -> Option<u32> {
    let rest = description.trim_start().strip_prefix("AADSTS")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The page for an error Microsoft redirected back with. Nothing was stored.
pub fn microsoft_error_page(error: &str, description: &str, organization: bool) -> ResultPage {
    let code = aadsts_code(description);
    let admin_approval = !organization
        && (matches!(code, Some(90094 | 90095 | 65001 | 90099)) || error == "consent_required");
    if admin_approval {
        return ResultPage::problem(
            403,
            "Your organization requires an administrator to approve this app",
            "Microsoft 365 answered that only an administrator can allow an app to read mail in your organization. \
             Nothing was connected.",
            "Ask a Microsoft 365 administrator to connect organization-wide (recommended): they approve once for the \
             whole organization and it keeps working when passwords or MFA settings change.",
        );
    }
    match error {
        "access_denied" if organization => ResultPage::problem(
            403,
            "The administrator did not grant consent",
            "The consent request was declined, so nothing was connected.",
            "If that was a mistake, start the organization-wide connection again and choose Accept.",
        ),
        "access_denied" => ResultPage::problem(
            403,
            "You declined the permissions",
            "The sign-in was cancelled or the requested permissions were declined, so nothing was connected.",
            "Start the connection again and accept the permissions, or connect organization-wide.",
        ),
        "interaction_required" | "login_required" => ResultPage::problem(
            401,
            "Microsoft needs you to sign in again",
            "Microsoft 365 could not complete the sign-in without further steps (for example multi-factor authentication).",
            "Start the connection again and complete every sign-in step.",
        ),
        _ => ResultPage::problem(
            502,
            "Microsoft 365 reported a problem",
            match code {
                Some(code) => format!(
                    "Microsoft 365 answered '{error}' (AADSTS{code}). Nothing was connected."
                ),
                None => format!("Microsoft 365 answered '{error}'. Nothing was connected."),
            },
            "Try again in a few minutes; if it persists, send the error code to support.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn error_wins_over_admin_consent_true() {
        let q = "admin_consent=True&error=access_denied&error_description=AADSTS65004%3A+declined&state=abc";
        match parse_callback(q).unwrap() {
            CallbackParams::Error {
                error,
                description,
                state,
            } => {
                assert_eq!(error, "access_denied");
                assert_eq!(aadsts_code(&description), Some(65004));
                assert_eq!(state.expose_secret(), "abc");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn admin_consent_needs_a_guid_tenant() {
        let ok = "admin_consent=True&tenant=7F2B1C1E-0000-4000-8000-000000000001&state=s&scope=x";
        assert!(
            matches!(parse_callback(ok).unwrap(), CallbackParams::AdminConsent { ref tenant, .. } if tenant == "7f2b1c1e-0000-4000-8000-000000000001")
        );
        assert_eq!(
            parse_callback("admin_consent=True&tenant=evil.com&state=s").unwrap_err(),
            ParamProblem::InvalidTenant
        );
        for other_form in [
            "%7B7f2b1c1e-0000-4000-8000-000000000001%7D",
            "urn:uuid:7f2b1c1e-0000-4000-8000-000000000001",
            "7f2b1c1e000040008000000000000001",
        ] {
            assert_eq!(
                parse_callback(&format!("admin_consent=True&tenant={other_form}&state=s"))
                    .unwrap_err(),
                ParamProblem::InvalidTenant
            );
        }
        assert_eq!(
            parse_callback("admin_consent=True&tenant=evil.com&state=s").unwrap_err(),
            ParamProblem::InvalidTenant
        );
        assert_eq!(
            parse_callback("admin_consent=True&state=s").unwrap_err(),
            ParamProblem::Missing("tenant")
        );
    }

    #[test]
    fn repeated_missing_and_oversized_parameters_are_refused() {
        assert_eq!(
            parse_callback("code=a").unwrap_err(),
            ParamProblem::MissingState
        );
        assert_eq!(
            parse_callback("state=&code=a").unwrap_err(),
            ParamProblem::MissingState
        );
        assert_eq!(
            parse_callback("state=a&state=b&code=c").unwrap_err(),
            ParamProblem::Repeated("state")
        );
        assert_eq!(
            parse_callback("state=a").unwrap_err(),
            ParamProblem::Missing("code")
        );
        let long = format!("state={}&code=c", "x".repeat(300));
        assert_eq!(
            parse_callback(&long).unwrap_err(),
            ParamProblem::TooLong("state")
        );
        assert!(matches!(
            parse_callback("state=a&code=c&unrelated=1").unwrap(),
            CallbackParams::Code { .. }
        ));
    }

    #[test]
    fn admin_approval_required_points_to_organization_wide() {
        let page = microsoft_error_page(
            "access_denied",
            "AADSTS90094: Admin consent is required.",
            false,
        );
        assert_eq!(page.status, 403);
        assert!(page.fix.unwrap().contains("organization-wide"));
        let declined = microsoft_error_page(
            "access_denied",
            "AADSTS65004: User declined to consent",
            false,
        );
        assert_eq!(declined.title, "You declined the permissions");
        let admin = microsoft_error_page("access_denied", "AADSTS65004: declined", true);
        assert_eq!(admin.title, "The administrator did not grant consent");
    }
}
