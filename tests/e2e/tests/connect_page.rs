//! The connect page end to end.
//!
//! - In real headless Chromium (Debian's `/usr/bin/chromium`, driven by `playwright-core` from
//!   `tests/e2e/browser/`, both installed by `make setup-browser`): open the page with the
//!   platform's token, connect organization-wide and personally through the simulator's admin
//!   consent and sign-in to the REAL `oauth-callback`, see both connected; the personal user's
//!   password changes, the REAL `mailbox-sync` finds out, the page shows "Needs reconnect" with
//!   the reason and fix, and its reconnect button connects it again.
//! - Over plain HTTP: the session cookie, the CSRF defences and the form answers.

use std::path::PathBuf;
use std::time::Duration;

use e2e::SqsEventSource;
use e2e::api_client::{ApiWorld, claims, now_secs};
use outlook_core::health::Reason;
use serde_json::{Value, json};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Runs `connect_flow.mjs` with `scenario`; fails the test with its report when the browser
/// flow fails.
async fn run_browser(scenario: Value) -> Value {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .exists(),
        "playwright-core is not installed in {}: run `make setup-browser`",
        dir.display()
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: run `make setup-browser`"
    );
    let mut scenario = scenario;
    scenario["chromium"] = json!(chromium);
    let run = tokio::process::Command::new("node")
        .arg("connect_flow.mjs")
        .arg(scenario.to_string())
        .current_dir(&dir)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser run finishes within 3 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!("no JSON report from the browser run; stdout: {stdout}\nstderr: {stderr}")
        });
    assert!(
        output.status.success() && report["ok"] == true,
        "the browser flow failed: {report:#}\nstderr: {}",
        stderr
            .chars()
            .rev()
            .take(4000)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
    );
    report
}

fn screenshot_dir(name: &str) -> String {
    e2e::paths::target_dir()
        .join("e2e-screenshots")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn result(report: &Value, index: usize) -> &Value {
    &report["results"][index]
}

fn integration<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["integrations"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["id"] == id))
        .unwrap_or_else(|| panic!("integration {id} not on the page: {status}"))
}

#[tokio::test]
async fn the_connect_page_connects_in_chromium_and_its_reconnect_button_works() {
    let w = ApiWorld::new("page-browser").await.expect("world");
    let sync = w
        .world
        .start_function("mailbox-sync")
        .await
        .expect("mailbox-sync");
    let support = w.world.add_user("support", "shared").await.unwrap();
    let alice = w.world.add_user("alice", "user").await.unwrap();
    let token = w.token("acme");
    // The administrator approves admin consent; Alice is who signs in personally.
    w.approve(Some(&alice)).await.unwrap();

    let first = run_browser(json!({
        "baseUrl": w.base(),
        "token": token,
        "screenshotDir": screenshot_dir("connect-page-connect"),
        "steps": [
            {"do": "open_with_token"},
            {"do": "connect_organization", "mailboxes": [support], "expectText": "Outlook is connected for your organization"},
            {"do": "status"},
            {"do": "connect_personal", "shared": [], "expectText": "Your Outlook mailbox is connected"},
            {"do": "status"}
        ]
    }))
    .await;
    let opened = result(&first, 0);
    assert_eq!(opened["path"], "/connect", "{opened}");
    assert_eq!(
        opened["session"],
        json!({"httpOnly": true, "sameSite": "Strict", "path": "/"}),
        "{opened}"
    );
    assert_eq!(opened["organizationRecommended"], true);
    let comparison = opened["comparison"].to_string();
    for row in [
        "Who sets it up",
        "Survives password / MFA changes",
        "Best for",
    ] {
        assert!(comparison.contains(row), "{comparison}");
    }
    assert_eq!(result(&first, 1)["callback"], "/oauth/callback");
    let after_org = result(&first, 2);
    assert_eq!(
        after_org["integrations"].as_array().unwrap().len(),
        1,
        "{after_org}"
    );
    assert_eq!(after_org["integrations"][0]["state"], "connected");
    assert_eq!(after_org["integrations"][0]["label"], "Connected");
    assert_eq!(after_org["integrations"][0]["hasReconnect"], false);

    // Both integrations exist, as the API sees them too.
    let listed = w
        .call("GET", "/api/integrations", Some(&token), None)
        .await
        .json();
    let integrations = listed["integrations"].as_array().unwrap().clone();
    assert_eq!(integrations.len(), 2, "{listed}");
    let personal = integrations
        .iter()
        .find(|i| i["accountType"] == "personal")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let organization = integrations
        .iter()
        .find(|i| i["accountType"] == "organization")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let after_personal = result(&first, 4);
    assert_eq!(
        integration(after_personal, &personal)["state"],
        "connected",
        "{after_personal}"
    );
    assert_eq!(
        integration(after_personal, &organization)["state"],
        "connected"
    );

    // Alice changes her password: Microsoft revokes the sign-in. "Sync now" and the real
    // mailbox-sync function find out.
    w.world
        .sim_post(
            "/events",
            &json!({"type": "password_changed", "user": alice}),
        )
        .await
        .unwrap();
    let queued = w
        .call(
            "POST",
            &format!("/api/integrations/{personal}/sync"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(queued.status, 202, "{}", queued.text);
    let source = SqsEventSource::for_function(
        w.world.stack.sdk_config(),
        &w.world.resources,
        "mailbox-sync",
    )
    .unwrap();
    source
        .drain(&sync, 5)
        .await
        .expect("the sync queue is drained");
    let shown = w
        .call(
            "GET",
            &format!("/api/integrations/{personal}"),
            Some(&token),
            None,
        )
        .await
        .json();
    assert_eq!(shown["state"], "needs_reconnect", "{shown}");
    assert_eq!(shown["reason"]["code"], "password_changed", "{shown}");

    // The page shows why and what to do, and its reconnect button signs Alice in again.
    let second = run_browser(json!({
        "baseUrl": w.base(),
        "token": token,
        "screenshotDir": screenshot_dir("connect-page-reconnect"),
        "steps": [
            {"do": "open_with_token"},
            {"do": "status"},
            {"do": "reconnect", "integrationId": personal, "expectText": "Your Outlook mailbox is connected"},
            {"do": "status"}
        ]
    }))
    .await;
    let before = result(&second, 1);
    let broken = integration(before, &personal);
    assert_eq!(broken["state"], "needs_reconnect", "{before}");
    assert_eq!(broken["label"], "Needs reconnect");
    assert_eq!(broken["reason"], Reason::PasswordChanged.message());
    assert!(
        broken["fix"]
            .as_str()
            .unwrap()
            .contains(Reason::PasswordChanged.fix()),
        "{broken}"
    );
    assert_eq!(broken["hasReconnect"], true);
    assert!(
        broken["mailboxes"][0].as_str().unwrap().contains("Paused"),
        "{broken}"
    );
    assert_eq!(integration(before, &organization)["state"], "connected");
    assert!(
        result(&second, 2)["screenshot"]
            .as_str()
            .unwrap()
            .ends_with(".png")
    );
    let after = result(&second, 3);
    assert_eq!(
        integration(after, &personal)["state"],
        "connected",
        "{after}"
    );
    assert_eq!(integration(after, &personal)["hasReconnect"], false);

    let shown = w
        .call(
            "GET",
            &format!("/api/integrations/{personal}"),
            Some(&token),
            None,
        )
        .await
        .json();
    assert_eq!(shown["state"], "connected", "{shown}");
    assert_eq!(shown["mailboxes"][0]["state"], "syncing", "{shown}");
}

struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Page {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    /// The CSRF token in the page's forms.
    fn csrf(&self) -> String {
        let start = self
            .text
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token")
            + 19;
        self.text[start..].split('"').next().unwrap().to_owned()
    }
}

async fn request(
    w: &ApiWorld,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    form: Option<&[(&str, &str)]>,
) -> Page {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = w
        .world
        .http()
        .request(method, format!("{}{path}", w.base()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(form) = form {
        request = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded_pairs(form));
    }
    let response = request.send().await.unwrap();
    Page {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap(),
    }
}

fn serde_urlencoded_pairs(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[tokio::test]
async fn the_connect_page_guards_its_session_and_forms() {
    let w = ApiWorld::new("page-http").await.expect("world");
    let support = w.world.add_user("support", "shared").await.unwrap();
    let token = w.token("acme");
    let ours = w.base().to_owned();

    let root = request(&w, "GET", "/", &[], None).await;
    assert_eq!(
        (root.status, root.header("location")),
        (303, format!("{ours}/connect").as_str())
    );

    // Without a session: a page that says what to do.
    let anonymous = request(&w, "GET", "/connect", &[], None).await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.header("content-type").starts_with("text/html"));
    assert!(
        anonymous.text.contains("open this page from the platform"),
        "{}",
        anonymous.text
    );

    // A bad or expired token starts no session.
    let mut expired = claims("acme");
    expired["exp"] = json!(now_secs() - 600);
    for bad in ["nonsense".to_owned(), w.keys.sign(&expired)] {
        let page = request(&w, "GET", &format!("/connect?token={bad}"), &[], None).await;
        assert_eq!(page.status, 401, "{}", page.text);
        assert!(
            page.set_cookies().iter().all(|c| c.contains("Max-Age=0")),
            "{:?}",
            page.set_cookies()
        );
    }

    // The platform's link: the token goes into an HttpOnly, SameSite=Strict cookie and leaves the URL.
    let landing = request(&w, "GET", &format!("/connect?token={token}"), &[], None).await;
    assert_eq!(landing.status, 303);
    assert_eq!(landing.header("location"), format!("{ours}/connect"));
    let cookie = landing
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("outlook_connect_session="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "http base URL: no Secure flag ({cookie})"
    );
    // Followed from another site: a page that moves on by itself, so the Strict cookie is sent.
    let cross = request(
        &w,
        "GET",
        &format!("/connect?token={token}"),
        &[("sec-fetch-site", "cross-site")],
        None,
    )
    .await;
    assert_eq!(cross.status, 200);
    assert!(
        cross.text.contains("http-equiv=\"refresh\""),
        "{}",
        cross.text
    );
    assert_eq!(cross.header("referrer-policy"), "no-referrer");
    assert!(
        cross
            .set_cookies()
            .iter()
            .any(|c| c.starts_with("outlook_connect_session=") && c.contains("SameSite=Strict"))
    );

    let session = format!("outlook_connect_session={token}");
    let page = request(&w, "GET", "/connect", &[("cookie", &session)], None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("Nothing is connected yet."));
    let login_origin = w.world.sim.base_url.trim_end_matches('/');
    let csp = page.header("content-security-policy").to_owned();
    assert!(
        csp.contains(&format!("form-action 'self' {login_origin}")),
        "{csp}"
    );
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert_eq!(page.header("referrer-policy"), "same-origin");
    assert_eq!(page.header("cache-control"), "no-store");
    let csrf = page.csrf();

    let organization = [
        ("csrf", csrf.as_str()),
        ("account_type", "organization"),
        ("mailboxes", support.as_str()),
    ];
    // Without a session, without or with a wrong CSRF token, or from another site: refused.
    let no_session = request(
        &w,
        "POST",
        "/connect/start",
        &[("origin", &ours)],
        Some(&organization),
    )
    .await;
    assert_eq!(no_session.status, 401);
    let no_csrf = request(
        &w,
        "POST",
        "/connect/start",
        &[("cookie", &session), ("origin", &ours)],
        Some(&[("account_type", "organization"), ("mailboxes", &support)]),
    )
    .await;
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.text);
    let wrong_csrf = [
        ("csrf", "AAAA"),
        ("account_type", "organization"),
        ("mailboxes", support.as_str()),
    ];
    let wrong = request(
        &w,
        "POST",
        "/connect/start",
        &[("cookie", &session), ("origin", &ours)],
        Some(&wrong_csrf),
    )
    .await;
    assert_eq!(wrong.status, 403);
    let evil = request(
        &w,
        "POST",
        "/connect/start",
        &[("cookie", &session), ("origin", "https://evil.example")],
        Some(&organization),
    )
    .await;
    assert_eq!(evil.status, 403);
    let cross_site = request(
        &w,
        "POST",
        "/connect/start",
        &[
            ("cookie", &session),
            ("origin", &ours),
            ("sec-fetch-site", "cross-site"),
        ],
        Some(&organization),
    )
    .await;
    assert_eq!(cross_site.status, 403);
    // Another workspace's session has another CSRF token.
    let other_session = format!("outlook_connect_session={}", w.token("globex"));
    let other = request(
        &w,
        "POST",
        "/connect/start",
        &[("cookie", &other_session), ("origin", &ours)],
        Some(&organization),
    )
    .await;
    assert_eq!(other.status, 403);

    // An invalid address: the page again, with the problem (escaped), nothing started.
    let invalid = [
        ("csrf", csrf.as_str()),
        ("account_type", "organization"),
        ("mailboxes", "<b>not-an-address</b>"),
    ];
    let invalid = request(
        &w,
        "POST",
        "/connect/start",
        &[("cookie", &session), ("origin", &ours)],
        Some(&invalid),
    )
    .await;
    assert_eq!(invalid.status, 400);
    assert!(invalid.text.contains("role=\"alert\""), "{}", invalid.text);
    assert!(!invalid.text.contains("<b>not-an-address</b>"));

    // A good form: 303 to Microsoft's admin consent, with the flow's binding cookie.
    let started = request(
        &w,
        "POST",
        "/connect/start",
        &[("cookie", &session), ("origin", &ours)],
        Some(&organization),
    )
    .await;
    assert_eq!(started.status, 303, "{}", started.text);
    let microsoft = started.header("location").to_owned();
    assert!(
        microsoft.starts_with(login_origin) && microsoft.contains("/v2.0/adminconsent"),
        "{microsoft}"
    );
    let binding = started
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("outlook_connect_binding="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=600"] {
        assert!(binding.contains(attribute), "{binding}");
    }
    // The callback accepts the flow only from this browser.
    w.approve(None).await.unwrap();
    let value = binding.split(';').next().unwrap().to_owned();
    let (status, page) = w
        .world
        .complete_sign_in(&microsoft, Some("outlook_connect_binding=another-browser"))
        .await
        .unwrap();
    assert_eq!(status, 403, "{page}");
    let again = request(
        &w,
        "POST",
        "/connect/start",
        &[("cookie", &session), ("origin", &ours)],
        Some(&organization),
    )
    .await;
    let microsoft = again.header("location").to_owned();
    let value_again = again
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("outlook_connect_binding="))
        .unwrap();
    assert_ne!(value, value_again.split(';').next().unwrap());
    let (status, page) = w
        .world
        .complete_sign_in(&microsoft, Some(value_again.split(';').next().unwrap()))
        .await
        .unwrap();
    assert_eq!(status, 200, "{page}");
    let page = request(&w, "GET", "/connect", &[("cookie", &session)], None).await;
    assert!(
        page.text.contains("data-state=\"connected\""),
        "{}",
        page.text
    );

    // Reconnect forms: another workspace's integration (or none) is not found.
    let globex = w.token("globex");
    let theirs = w.connect_organization(&globex, &[&support]).await.unwrap();
    let reconnect = [("csrf", csrf.as_str())];
    let path = format!("/connect/integrations/{theirs}/reconnect");
    let foreign = request(
        &w,
        "POST",
        &path,
        &[("cookie", &session), ("origin", &ours)],
        Some(&reconnect),
    )
    .await;
    assert_eq!(foreign.status, 404, "{}", foreign.text);
    let unknown = request(
        &w,
        "POST",
        "/connect/integrations/int_doesnotexist/reconnect",
        &[("cookie", &session), ("origin", &ours)],
        Some(&reconnect),
    )
    .await;
    assert_eq!(unknown.status, 404);
    let globex_session = format!("outlook_connect_session={globex}");
    let globex_page = request(&w, "GET", "/connect", &[("cookie", &globex_session)], None).await;
    let globex_csrf = globex_page.csrf();
    let own = request(
        &w,
        "POST",
        &path,
        &[("cookie", &globex_session), ("origin", &ours)],
        Some(&[("csrf", &globex_csrf)]),
    )
    .await;
    assert_eq!(own.status, 303, "{}", own.text);
    assert!(own.header("location").contains("/adminconsent"));
    // Each workspace's page lists only its own integrations.
    assert_eq!(globex_page.text.matches("class=\"integration\"").count(), 1);
    let acme_page = request(&w, "GET", "/connect", &[("cookie", &session)], None).await;
    assert_eq!(acme_page.text.matches("class=\"integration\"").count(), 1);
    assert!(!acme_page.text.contains(&theirs));

    // An expired session ends: the cookie is cleared.
    let stale = format!("outlook_connect_session={}", w.keys.sign(&expired));
    let page = request(&w, "GET", "/connect", &[("cookie", &stale)], None).await;
    assert_eq!(page.status, 401);
    assert!(
        page.set_cookies()
            .iter()
            .any(|c| c.starts_with("outlook_connect_session=;") && c.contains("Max-Age=0"))
    );
}
