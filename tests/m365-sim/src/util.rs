//! Small helpers shared by every module: time formatting, ids, query strings, Prefer headers,
//! Graph error bodies.

use axum::http::HeaderMap;
use base64::Engine;
use rand::{Rng, RngCore};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Graph's date format: `2018-09-09T03:15:05Z` (seconds, UTC, no fraction).
pub fn fmt_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Entra's timestamp format in token errors: `2024-05-01 12:00:00Z`.
pub fn fmt_entra_time(t: OffsetDateTime) -> String {
    fmt_time(t).replace('T', " ")
}

/// Graph's innerError date: `2024-05-01T12:00:00` (no zone).
pub fn fmt_inner_date(t: OffsetDateTime) -> String {
    fmt_time(t).trim_end_matches('Z').to_string()
}

pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim().trim_matches('\'');
    OffsetDateTime::parse(s, &Rfc3339).ok().or_else(|| {
        // Accept a date without zone as UTC.
        OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339).ok()
    })
}

pub fn trunc_secs(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

pub fn b64url_nopad(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn random_bytes(rng: &mut impl RngCore, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

/// An opaque Exchange-looking id: a fixed prefix and URL-safe base64 (may contain `-`, `_`, `=`).
pub fn exchange_id(rng: &mut impl RngCore, prefix: &str, n: usize) -> String {
    format!("{prefix}{}", b64url(&random_bytes(rng, n)))
}

pub fn token_string(rng: &mut impl RngCore, n: usize) -> String {
    b64url_nopad(&random_bytes(rng, n))
}

pub fn uuid_from(rng: &mut impl Rng) -> String {
    let b: [u8; 16] = rng.random();
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

/// Percent-decodes a path segment or query component (`+` is kept as-is in paths).
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            let h = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(h, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        if b == b'+' && plus_is_space {
            out.push(b' ');
        } else {
            out.push(b);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn percent_encode_component(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Parses a raw query string into decoded pairs, keeping order.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

pub fn query_get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

pub fn encode_query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                k.replace(' ', "%20"),
                percent_encode_component(v).replace('+', "%20")
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Parsed `Prefer` preferences (several headers and comma-separated lists are merged).
#[derive(Debug, Default, Clone)]
pub struct Prefer {
    pub immutable_ids: bool,
    pub max_page_size: Option<usize>,
    pub body_text: bool,
}

pub fn parse_prefer(headers: &HeaderMap) -> Prefer {
    let mut p = Prefer::default();
    for v in headers.get_all("prefer") {
        let Ok(v) = v.to_str() else { continue };
        for part in split_prefer(v) {
            let part = part.trim();
            let (k, val) = part.split_once('=').unwrap_or((part, ""));
            let k = k.trim().to_ascii_lowercase();
            let val = val.trim().trim_matches('"');
            match k.as_str() {
                "idtype" => p.immutable_ids = val.eq_ignore_ascii_case("ImmutableId"),
                "odata.maxpagesize" => p.max_page_size = val.parse().ok().filter(|n| *n > 0),
                "outlook.body-content-type" => p.body_text = val.eq_ignore_ascii_case("text"),
                _ => {}
            }
        }
    }
    p
}

fn split_prefer(v: &str) -> Vec<String> {
    // Split on commas outside quotes.
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in v.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Graph error body: `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`.
pub fn graph_error_body(
    code: &str,
    message: &str,
    now: OffsetDateTime,
    request_id: &str,
    client_request_id: &str,
) -> Value {
    json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": fmt_inner_date(now),
                "request-id": request_id,
                "client-request-id": client_request_id,
            }
        }
    })
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Very small HTML-to-text for bodyPreview.
pub fn strip_html(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    let lower = s.to_ascii_lowercase();
    // Drop <head>...</head> and <style> blocks.
    let mut body = s.to_string();
    if let (Some(a), Some(b)) = (lower.find("<head"), lower.find("</head>"))
        && a < b
    {
        body = format!("{}{}", &s[..a], &s[b + 7..]);
    }
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn preview(text: &str) -> String {
    text.chars().take(255).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_parsing_merges_headers() {
        let mut h = HeaderMap::new();
        h.append(
            "prefer",
            "IdType=\"ImmutableId\", odata.maxpagesize=50"
                .parse()
                .unwrap(),
        );
        let p = parse_prefer(&h);
        assert!(p.immutable_ids);
        assert_eq!(p.max_page_size, Some(50));
        let mut h = HeaderMap::new();
        h.append("prefer", "odata.maxpagesize=5".parse().unwrap());
        h.append("prefer", "IdType=\"ImmutableId\"".parse().unwrap());
        let p = parse_prefer(&h);
        assert!(p.immutable_ids);
        assert_eq!(p.max_page_size, Some(5));
    }

    #[test]
    fn time_format_has_no_fraction() {
        let t = OffsetDateTime::from_unix_timestamp(1_536_462_905).unwrap();
        assert_eq!(fmt_time(t), "2018-09-09T03:15:05Z");
        assert_eq!(parse_time("2018-09-09T03:15:05Z"), Some(t));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c", true), "a b c");
        assert_eq!(percent_decode("a%3D", false), "a=");
        assert_eq!(percent_decode("100%", false), "100%");
    }
}
