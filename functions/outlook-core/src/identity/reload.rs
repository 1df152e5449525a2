//! The app credentials a running function uses, and reading them again when Microsoft refuses
//! them.
//!
//! Functions read the app-credentials secret at cold start and keep warm sandboxes for hours, so
//! an operator's new client secret (or certificate) put into the secret would otherwise reach
//! them only at their next cold start. When the token endpoint refuses the app's credentials
//! (`invalid_client`: expired secret AADSTS7000222, wrong secret 7000215, bad certificate
//! assertion 700027, …) the secret is read again and, if it holds another credential, the token
//! request is sent once more with it.
//!
//! A truly expired secret must not turn every invocation into a Secrets Manager call. Reads are
//! rate-limited per process: requests refused together (sent before, or within
//! [`APP_CREDENTIALS_RELOAD_COALESCE`] after, the start of the last read) share that read, and a
//! token bucket allows [`APP_CREDENTIALS_RELOAD_BURST`] reads in a row, then one per
//! [`APP_CREDENTIALS_RELOAD_INTERVAL`] (a read that finds a new credential refills it).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::credentials::AppCredentials;

/// Once the reads of the burst are used up, the app-credentials secret is read again after a
/// refusal at most once per this interval per process: a secret that stays expired costs one
/// Secrets Manager call a minute, however many mailboxes and invocations meet the refusal.
pub const APP_CREDENTIALS_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// Reads allowed in a row before [`APP_CREDENTIALS_RELOAD_INTERVAL`] applies: one when Microsoft
/// first refuses the credentials (an operator may have rotated them before the old ones expired),
/// one more for the first retry after the failure was reported (the operator has just put new
/// ones in), and one spare for refusals that did not arrive together.
pub const APP_CREDENTIALS_RELOAD_BURST: u32 = 3;

/// A request sent less than this after the last read started shares that read's result instead
/// of reading again: the mailboxes of a sync or rule-evaluation batch meet a refusal within
/// moments of each other, and no operator fixes the secret that fast.
pub const APP_CREDENTIALS_RELOAD_COALESCE: Duration = Duration::from_secs(1);

/// Reads the app-credentials secret's raw JSON (e.g. `TokenVault::app_credentials_json`).
pub type CredentialsLoader = Arc<
    dyn Fn() -> Pin<
            Box<
                dyn Future<Output = Result<SecretString, Box<dyn std::error::Error + Send + Sync>>>
                    + Send,
            >,
        > + Send
        + Sync,
>;

/// One credential in use, numbered: requests remember which one they were sent with.
pub(crate) struct Loaded {
    pub credentials: AppCredentials,
    fingerprint: [u8; 32],
    generation: u64,
    /// Microsoft refused a request sent with it: requests refused with an older credential
    /// are not sent again with this one.
    refused: AtomicBool,
}

impl Loaded {
    fn new(credentials: AppCredentials, generation: u64) -> Self {
        Self {
            fingerprint: credentials.fingerprint(),
            credentials,
            generation,
            refused: AtomicBool::new(false),
        }
    }
}

struct Gate {
    /// Reads left in the bucket, and when it was last refilled.
    reads_left: u32,
    refilled_at: Instant,
    /// When the last read started: a refused request sent before it, or within
    /// `coalesce` after, shares its result.
    last_read: Option<Instant>,
    coalesce: Duration,
}

impl Gate {
    fn new(now: Instant, coalesce: Duration) -> Self {
        Self {
            reads_left: APP_CREDENTIALS_RELOAD_BURST,
            refilled_at: now,
            last_read: None,
            coalesce,
        }
    }

    /// Whether a request sent at `sent_at` was refused together with the last read's.
    fn covered(&self, sent_at: Instant) -> bool {
        self.last_read
            .is_some_and(|read| sent_at < read + self.coalesce)
    }

    fn take(&mut self, now: Instant) -> bool {
        let earned = (now.duration_since(self.refilled_at).as_secs_f64()
            / APP_CREDENTIALS_RELOAD_INTERVAL.as_secs_f64()) as u32;
        if earned > 0 {
            self.reads_left = (self.reads_left + earned).min(APP_CREDENTIALS_RELOAD_BURST);
            self.refilled_at += APP_CREDENTIALS_RELOAD_INTERVAL * earned;
        }
        if self.reads_left == APP_CREDENTIALS_RELOAD_BURST {
            self.refilled_at = now;
        }
        if self.reads_left == 0 {
            return false;
        }
        self.reads_left -= 1;
        true
    }
}

/// The credential in use, shared by every clone of the identity client.
pub(crate) struct CredentialSource {
    current: RwLock<Arc<Loaded>>,
    loader: Option<CredentialsLoader>,
    /// Held during a read: one read at a time, the refusals waiting meanwhile use its result.
    gate: Mutex<Gate>,
}

impl CredentialSource {
    pub fn new(credentials: AppCredentials, loader: Option<CredentialsLoader>) -> Self {
        Self::with_coalesce(credentials, loader, APP_CREDENTIALS_RELOAD_COALESCE)
    }

    fn with_coalesce(
        credentials: AppCredentials,
        loader: Option<CredentialsLoader>,
        coalesce: Duration,
    ) -> Self {
        Self {
            current: RwLock::new(Arc::new(Loaded::new(credentials, 0))),
            loader,
            gate: Mutex::new(Gate::new(Instant::now(), coalesce)),
        }
    }

    pub fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Microsoft refused a request sent with `used` (also the request sent once more).
    pub fn refused(&self, used: &Loaded) {
        used.refused.store(true, Ordering::Relaxed);
    }

    /// After Microsoft refused `used` for a request sent at `sent_at`: the credential to send the
    /// request with once more, if the app-credentials secret now holds another one. `None`: keep
    /// the refusal (nothing new, not allowed to read yet, or the secret is unreadable).
    pub async fn newer_than(&self, used: &Loaded, sent_at: Instant) -> Option<Arc<Loaded>> {
        self.refused(used);
        let loader = self.loader.as_ref()?;
        let mut gate = self.gate.lock().await;
        let current = self.current();
        if current.generation != used.generation {
            // Another request already found a newer credential: worth a try unless Microsoft
            // refused that one as well.
            return (!current.refused.load(Ordering::Relaxed)).then_some(current);
        }
        if gate.covered(sent_at) {
            // Refused together with the request that made the last read, which found nothing new.
            return None;
        }
        let now = Instant::now();
        if !gate.take(now) {
            tracing::info!(
                "Microsoft refused the app credentials; the app-credentials secret was read again recently, not reading it yet"
            );
            return None;
        }
        gate.last_read = Some(now);
        let raw = match loader().await {
            Ok(raw) => raw,
            Err(error) => {
                tracing::warn!(%error, "could not read the app-credentials secret again");
                return None;
            }
        };
        let credentials = match AppCredentials::from_secret_json(raw.expose_secret()) {
            Ok(credentials) => credentials,
            Err(error) => {
                tracing::warn!(%error, "the app-credentials secret is not usable; keeping the credential in use");
                return None;
            }
        };
        if credentials.fingerprint() == used.fingerprint {
            tracing::info!(
                "Microsoft refused the app credentials and the app-credentials secret still holds the same ones"
            );
            return None;
        }
        let fresh = Arc::new(Loaded::new(credentials, used.generation + 1));
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh.clone();
        // That read was worth it: the limit starts over.
        gate.reads_left = APP_CREDENTIALS_RELOAD_BURST;
        gate.refilled_at = now;
        tracing::info!(
            generation = fresh.generation,
            "new app credentials read from the app-credentials secret; retrying with them"
        );
        Some(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn secret(value: &str) -> AppCredentials {
        AppCredentials::ClientSecret(SecretString::from(value.to_owned()))
    }

    fn in_use(source: &CredentialSource) -> String {
        match &source.current().credentials {
            AppCredentials::ClientSecret(s) => s.expose_secret().to_owned(),
            AppCredentials::Certificate(_) => unreachable!(),
        }
    }

    /// A loader returning whatever `value` holds, counting its calls.
    fn loader(value: Arc<std::sync::Mutex<String>>, calls: Arc<AtomicUsize>) -> CredentialsLoader {
        Arc::new(move || {
            let value = value.clone();
            let calls = calls.clone();
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let json = serde_json::json!({ "client_secret": *value.lock().unwrap() });
                Ok(SecretString::from(json.to_string()))
            })
        })
    }

    /// A request sent now, refused a moment later.
    async fn sent() -> Instant {
        let at = Instant::now();
        tokio::time::sleep(Duration::from_millis(2)).await;
        at
    }

    #[tokio::test]
    async fn a_refusal_reads_again_and_a_new_credential_is_used() {
        let value = Arc::new(std::sync::Mutex::new("old".to_owned()));
        let calls = Arc::new(AtomicUsize::new(0));
        let source = CredentialSource::with_coalesce(
            secret("old"),
            Some(loader(value.clone(), calls.clone())),
            Duration::from_millis(50),
        );
        let used = source.current();
        let first = sent().await;
        // Unchanged: the refusal stands.
        assert!(source.newer_than(&used, first).await.is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Refused together with the first: shares its read.
        assert!(source.newer_than(&used, first).await.is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Sent shortly after the read started: shares it too.
        assert!(source.newer_than(&used, sent().await).await.is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // The operator puts a new secret in; the next refused request finds it.
        *value.lock().unwrap() = "new".to_owned();
        tokio::time::sleep(Duration::from_millis(60)).await;
        let second = sent().await;
        let fresh = source
            .newer_than(&used, second)
            .await
            .expect("new credential");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(
            matches!(&fresh.credentials, AppCredentials::ClientSecret(s) if s.expose_secret() == "new")
        );
        assert_eq!(in_use(&source), "new");
        // A request refused with the old one meanwhile uses the new one without another read.
        let again = source
            .newer_than(&used, second)
            .await
            .expect("already replaced");
        assert_eq!(again.generation, fresh.generation);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Once Microsoft refused the new one too, requests refused with the old one stay refused.
        source.refused(&fresh);
        assert!(source.newer_than(&used, second).await.is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn refusals_past_the_burst_wait_for_the_interval() {
        let value = Arc::new(std::sync::Mutex::new("old".to_owned()));
        let calls = Arc::new(AtomicUsize::new(0));
        let source = CredentialSource::with_coalesce(
            secret("old"),
            Some(loader(value.clone(), calls.clone())),
            Duration::ZERO,
        );
        let used = source.current();
        for _ in 0..APP_CREDENTIALS_RELOAD_BURST + 3 {
            let at = sent().await;
            assert!(source.newer_than(&used, at).await.is_none());
        }
        assert_eq!(
            calls.load(Ordering::SeqCst) as u32,
            APP_CREDENTIALS_RELOAD_BURST
        );
        // Even a new secret waits for the interval now.
        *value.lock().unwrap() = "new".to_owned();
        let at = sent().await;
        assert!(source.newer_than(&used, at).await.is_none());
        assert_eq!(in_use(&source), "old");
    }

    #[test]
    fn an_expired_secret_is_read_again_at_most_once_per_interval_after_the_burst() {
        let start = Instant::now();
        let mut gate = Gate::new(start, APP_CREDENTIALS_RELOAD_COALESCE);
        // A refusal every second for ten minutes.
        let reads = (0..600u64)
            .filter(|s| gate.take(start + Duration::from_secs(*s)))
            .count() as u32;
        let bound =
            APP_CREDENTIALS_RELOAD_BURST + (600 / APP_CREDENTIALS_RELOAD_INTERVAL.as_secs()) as u32;
        assert!(reads <= bound, "{reads} reads (at most {bound})");
        assert!(reads + 1 >= bound, "{reads} reads: still one per interval");
        // A quiet spell fills the bucket again, never beyond the burst.
        let later = start + Duration::from_secs(3600);
        let burst = (0..10u64)
            .filter(|s| gate.take(later + Duration::from_millis(*s)))
            .count() as u32;
        assert_eq!(burst, APP_CREDENTIALS_RELOAD_BURST);
    }

    #[tokio::test]
    async fn without_a_loader_or_with_an_unusable_secret_the_refusal_stands() {
        let source = CredentialSource::new(secret("old"), None);
        let used = source.current();
        assert!(source.newer_than(&used, sent().await).await.is_none());

        let broken: CredentialsLoader =
            Arc::new(|| Box::pin(async { Ok(SecretString::from("not json".to_owned())) }));
        let source = CredentialSource::new(secret("old"), Some(broken));
        let used = source.current();
        assert!(source.newer_than(&used, sent().await).await.is_none());
        assert_eq!(in_use(&source), "old");
    }
}
