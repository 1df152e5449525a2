//! From a Graph message to the [`MailMessage`] rules evaluate: addresses, flags, sensitivity,
//! size, and the message kinds Outlook's rule conditions know (`isAutomaticReply`, …).

use thiserror::Error;

use crate::message::{Address, Body, FlagStatus, Header, MailMessage, MessageKind, Sensitivity};

use super::types::{GraphMessage, Recipient, SingleValueExtendedProperty};

/// MAPI `PR_MESSAGE_SIZE` as Graph names it in `singleValueExtendedProperties`.
pub const MESSAGE_SIZE_PROPERTY_ID: &str = "Integer 0x0E08";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConversionError {
    #[error("the message was removed from the folder (delta tombstone)")]
    Removed,
    #[error("the message has no {0} (was it in $select?)")]
    MissingField(&'static str),
}

impl GraphMessage {
    /// The message as rules see it, seen in `folder_id`.
    pub fn into_mail_message(self, folder_id: &str) -> Result<MailMessage, ConversionError> {
        if self.is_removed() {
            return Err(ConversionError::Removed);
        }
        let received_at = self
            .received_date_time
            .ok_or(ConversionError::MissingField("receivedDateTime"))?;
        let from = self.from.and_then(address);
        let sender = self.sender.and_then(address);
        let subject = self.subject.unwrap_or_default();
        let headers = self.internet_message_headers;
        let kinds = derive_kinds(
            self.odata_type.as_deref(),
            self.meeting_message_type.as_deref(),
            &headers,
            &subject,
            from.as_ref().or(sender.as_ref()),
        );
        Ok(MailMessage {
            id: self.id,
            folder_id: folder_id.to_owned(),
            internet_message_id: self.internet_message_id,
            sensitivity: sensitivity(&headers),
            size_bytes: message_size(&self.single_value_extended_properties),
            subject,
            from,
            sender,
            to: self.to_recipients.into_iter().filter_map(address).collect(),
            cc: self.cc_recipients.into_iter().filter_map(address).collect(),
            bcc: self
                .bcc_recipients
                .into_iter()
                .filter_map(address)
                .collect(),
            received_at,
            has_attachments: self.has_attachments.unwrap_or(false),
            importance: self.importance.unwrap_or_default(),
            categories: self.categories,
            flag: self
                .flag
                .and_then(|f| f.flag_status)
                .unwrap_or(FlagStatus::NotFlagged),
            is_read: self.is_read.unwrap_or(false),
            kinds,
            headers,
            body: self.body.map(|b| Body {
                content_type: b.content_type,
                content: b.content,
            }),
        })
    }
}

fn address(recipient: Recipient) -> Option<Address> {
    let address = recipient.email_address.address?.trim().to_owned();
    if address.is_empty() {
        return None;
    }
    let name = recipient
        .email_address
        .name
        .filter(|n| !n.trim().is_empty());
    Some(Address { name, address })
}

fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.trim())
}

/// The `Sensitivity` header (RFC 2156: `Personal`, `Private`, `Company-Confidential`).
pub fn sensitivity(headers: &[Header]) -> Sensitivity {
    match header(headers, "Sensitivity")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("personal") => Sensitivity::Personal,
        Some("private") => Sensitivity::Private,
        Some("company-confidential" | "confidential") => Sensitivity::Confidential,
        _ => Sensitivity::Normal,
    }
}

/// `PR_MESSAGE_SIZE` from the expanded extended properties. Graph may echo the id in another
/// spelling (`Integer 0xe08`), so the tag is compared as a number.
pub fn message_size(properties: &[SingleValueExtendedProperty]) -> Option<u64> {
    properties
        .iter()
        .find(|p| {
            property_tag(&p.id) == property_tag(MESSAGE_SIZE_PROPERTY_ID)
                && property_tag(&p.id).is_some()
        })
        .and_then(|p| p.value.as_deref())
        .and_then(|v| v.trim().parse().ok())
}

/// `("integer", 0x0e08)` from `Integer 0x0E08`.
fn property_tag(id: &str) -> Option<(String, u32)> {
    let (kind, tag) = id.trim().split_once(char::is_whitespace)?;
    let hex = tag
        .trim()
        .strip_prefix("0x")
        .or_else(|| tag.trim().strip_prefix("0X"))?;
    Some((
        kind.to_ascii_lowercase(),
        u32::from_str_radix(hex, 16).ok()?,
    ))
}

/// A MIME content type's media type (lower-cased) and a parameter lookup.
struct ContentType<'a> {
    media_type: String,
    params: Vec<(String, &'a str)>,
}

impl<'a> ContentType<'a> {
    fn parse(value: &'a str) -> Self {
        let mut parts = value.split(';');
        let media_type = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let params = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"')))
            .collect();
        Self { media_type, params }
    }

    fn param(&self, name: &str) -> Option<&'a str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    fn param_is(&self, name: &str, expected: &str) -> bool {
        self.param(name)
            .is_some_and(|v| v.eq_ignore_ascii_case(expected))
    }
}

/// Subject prefixes Outlook and Exchange put on automatic (out-of-office) replies, in the
/// languages customers most often use. Compared case-insensitively.
const AUTO_REPLY_SUBJECT_PREFIXES: &[&str] = &[
    "automatic reply:",
    "auto reply:",
    "autoreply:",
    "auto-reply:",
    "out of office:",
    "out of office reply:",
    "automatische antwort:",
    "abwesenheitsnotiz:",
    "réponse automatique :",
    "réponse automatique:",
    "respuesta automática:",
    "risposta automatica:",
    "automatisch antwoord:",
    "resposta automática:",
    "autosvar:",
    "automaattinen vastaus:",
];

/// Subject prefixes of delivery-failure reports, used only together with a system sender.
const NDR_SUBJECT_PREFIXES: &[&str] = &[
    "undeliverable:",
    "undelivered mail returned to sender",
    "delivery status notification (failure)",
    "mail delivery failed",
    "returned mail:",
    "failure notice",
    "unzustellbar:",
    "non remis :",
    "non remis:",
    "no se puede entregar:",
];

fn starts_with_any(text: &str, prefixes: &[&str]) -> bool {
    let lower = text.trim_start().to_lowercase();
    prefixes.iter().any(|p| lower.starts_with(p))
}

/// Bounce senders: `mailer-daemon@`, `postmaster@`, and Exchange's
/// `MicrosoftExchange<32 hex digits>@` system mailbox.
fn is_system_sender(from: &Address) -> (bool, bool) {
    let local = from
        .address
        .rsplit_once('@')
        .map(|(l, _)| l)
        .unwrap_or(&from.address)
        .to_ascii_lowercase();
    let daemon = local == "mailer-daemon" || local == "postmaster";
    let exchange = local
        .strip_prefix("microsoftexchange")
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()));
    (daemon, exchange)
}

/// The kinds of a message, in a stable order without duplicates; empty for ordinary mail.
///
/// Sources, strongest first: `@odata.type` + `meetingMessageType` (meeting messages), the
/// top-level `Content-Type` (delivery and read reports, S/MIME, PGP), `Auto-Submitted` (RFC 3834),
/// Exchange's `Content-Class` (voicemail, rights-protected mail), then sender and subject for
/// reports that carry no telling header. `X-Auto-Response-Suppress` is not taken as a sign of an
/// automatic reply: mailing lists and notification systems set it (with `Auto-Submitted:
/// auto-generated`) on ordinary mail precisely so that Exchange does not auto-reply to it.
pub fn derive_kinds(
    odata_type: Option<&str>,
    meeting_message_type: Option<&str>,
    headers: &[Header],
    subject: &str,
    from: Option<&Address>,
) -> Vec<MessageKind> {
    let mut kinds = Vec::new();
    let mut add = |kind: MessageKind| {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    };

    let odata_type = odata_type.unwrap_or_default().to_ascii_lowercase();
    let meeting = meeting_message_type
        .unwrap_or_default()
        .to_ascii_lowercase();
    match meeting.as_str() {
        "meetingrequest" | "meetingcancelled" => add(MessageKind::MeetingRequest),
        "meetingaccepted"
        | "meetingtenativelyaccepted"
        | "meetingtentativelyaccepted"
        | "meetingdeclined" => add(MessageKind::MeetingResponse),
        _ if odata_type.ends_with("eventmessagerequest") => add(MessageKind::MeetingRequest),
        _ if odata_type.ends_with("eventmessageresponse") => add(MessageKind::MeetingResponse),
        _ => {}
    }

    if let Some(value) = header(headers, "Content-Type") {
        let ct = ContentType::parse(value);
        match ct.media_type.as_str() {
            "multipart/report" if ct.param_is("report-type", "delivery-status") => {
                add(MessageKind::NonDeliveryReport)
            }
            "multipart/report" if ct.param_is("report-type", "disposition-notification") => {
                add(MessageKind::ReadReceipt)
            }
            "application/pkcs7-mime" | "application/x-pkcs7-mime" => {
                if ct.param_is("smime-type", "signed-data") {
                    add(MessageKind::Signed)
                } else {
                    // enveloped-data, authEnveloped-data, or no smime-type (an .p7m envelope).
                    add(MessageKind::Encrypted)
                }
            }
            "multipart/signed" => add(MessageKind::Signed),
            "multipart/encrypted" | "application/pgp-encrypted" => add(MessageKind::Encrypted),
            _ => {}
        }
    }

    let auto_submitted = header(headers, "Auto-Submitted")
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if auto_submitted.starts_with("auto-replied") {
        add(MessageKind::AutomaticReply);
    }
    if auto_submitted.starts_with("auto-forwarded")
        || header(headers, "X-MS-Exchange-Organization-AutoForwarded")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || header(headers, "X-MS-Exchange-Inbox-Rules-Loop").is_some()
    {
        add(MessageKind::AutomaticForward);
    }
    if starts_with_any(subject, AUTO_REPLY_SUBJECT_PREFIXES) {
        add(MessageKind::AutomaticReply);
    }

    if let Some(class) = header(headers, "Content-Class").map(str::to_ascii_lowercase) {
        if class.starts_with("voice") {
            add(MessageKind::Voicemail);
        }
        if class == "rpmsg.message" {
            add(MessageKind::PermissionControlled);
        }
    }

    if let Some(from) = from {
        let (daemon, exchange) = is_system_sender(from);
        if daemon || (exchange && starts_with_any(subject, NDR_SUBJECT_PREFIXES)) {
            add(MessageKind::NonDeliveryReport);
        }
    }
    kinds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Importance;

    fn h(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    fn kinds(headers: &[Header], subject: &str, from: &str) -> Vec<MessageKind> {
        derive_kinds(
            Some("#microsoft.graph.message"),
            None,
            headers,
            subject,
            Some(&Address::new(from)),
        )
    }

    #[test]
    fn meeting_messages_come_from_the_odata_type_and_meeting_type() {
        let req = derive_kinds(
            Some("#microsoft.graph.eventMessage"),
            Some("meetingRequest"),
            &[],
            "Sync",
            None,
        );
        assert_eq!(req, vec![MessageKind::MeetingRequest]);
        let resp = derive_kinds(
            Some("#microsoft.graph.eventMessage"),
            Some("meetingTenativelyAccepted"),
            &[],
            "",
            None,
        );
        assert_eq!(resp, vec![MessageKind::MeetingResponse]);
        let resp = derive_kinds(
            Some("#microsoft.graph.eventMessageResponse"),
            None,
            &[],
            "",
            None,
        );
        assert_eq!(resp, vec![MessageKind::MeetingResponse]);
        let none = derive_kinds(
            Some("#microsoft.graph.eventMessage"),
            Some("none"),
            &[],
            "",
            None,
        );
        assert!(none.is_empty());
    }

    #[test]
    fn reports_come_from_the_content_type() {
        let ndr = kinds(
            &[h(
                "Content-Type",
                "multipart/report; report-type=delivery-status; boundary=\"x\"",
            )],
            "Hi",
            "a@b.c",
        );
        assert_eq!(ndr, vec![MessageKind::NonDeliveryReport]);
        let mdn = kinds(
            &[h(
                "content-type",
                "Multipart/Report; Report-Type=\"disposition-notification\"",
            )],
            "Read: Hi",
            "a@b.c",
        );
        assert_eq!(mdn, vec![MessageKind::ReadReceipt]);
        // The doc's bare `multipart/report` says nothing about which report it is.
        assert!(kinds(&[h("Content-Type", "multipart/report")], "Hi", "a@b.c").is_empty());
    }

    #[test]
    fn smime_and_pgp() {
        let enc = kinds(
            &[h(
                "Content-Type",
                "application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m",
            )],
            "",
            "a@b.c",
        );
        assert_eq!(enc, vec![MessageKind::Encrypted]);
        let opaque_signed = kinds(
            &[h(
                "Content-Type",
                "application/x-pkcs7-mime; smime-type=signed-data",
            )],
            "",
            "a@b.c",
        );
        assert_eq!(opaque_signed, vec![MessageKind::Signed]);
        let signed = kinds(
            &[h(
                "Content-Type",
                "multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256",
            )],
            "",
            "a@b.c",
        );
        assert_eq!(signed, vec![MessageKind::Signed]);
        assert_eq!(
            kinds(
                &[h(
                    "Content-Type",
                    "multipart/encrypted; protocol=\"application/pgp-encrypted\""
                )],
                "",
                "a@b.c"
            ),
            vec![MessageKind::Encrypted]
        );
    }

    #[test]
    fn automatic_replies() {
        assert_eq!(
            kinds(&[h("Auto-Submitted", "auto-replied")], "Re: Hi", "a@b.c"),
            vec![MessageKind::AutomaticReply]
        );
        assert_eq!(
            kinds(&[], "Automatic reply: Quarterly numbers", "a@b.c"),
            vec![MessageKind::AutomaticReply]
        );
        assert_eq!(
            kinds(&[], "Abwesenheitsnotiz: Termin", "a@b.c"),
            vec![MessageKind::AutomaticReply]
        );
        // Mailing lists and notification systems set X-Auto-Response-Suppress (and often
        // `Auto-Submitted: auto-generated`) on ordinary mail: not automatic replies.
        assert!(
            kinds(
                &[h("X-Auto-Response-Suppress", "OOF, DR, RN, NRN")],
                "Our news",
                "news@b.c"
            )
            .is_empty()
        );
        let notification = [
            h("Auto-Submitted", "auto-generated"),
            h("X-Auto-Response-Suppress", "All"),
        ];
        assert!(kinds(&notification, "Your weekly digest", "noreply@b.c").is_empty());
        assert!(kinds(&[h("Auto-Submitted", "no")], "Hi", "a@b.c").is_empty());
    }

    #[test]
    fn automatic_forwards() {
        assert_eq!(
            kinds(&[h("Auto-Submitted", "auto-forwarded")], "Fw: x", "a@b.c"),
            vec![MessageKind::AutomaticForward]
        );
        assert_eq!(
            kinds(
                &[h("X-MS-Exchange-Inbox-Rules-Loop", "a@b.c")],
                "x",
                "a@b.c"
            ),
            vec![MessageKind::AutomaticForward]
        );
    }

    #[test]
    fn bounces_from_system_senders() {
        assert_eq!(
            kinds(
                &[],
                "Returned mail: see transcript",
                "MAILER-DAEMON@mx.example.com"
            ),
            vec![MessageKind::NonDeliveryReport]
        );
        // The message-move doc example: Exchange's system mailbox with "Undeliverable:".
        let exch = "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.onmicrosoft.com";
        assert_eq!(
            kinds(&[], "Undeliverable: Meet for lunch?", exch),
            vec![MessageKind::NonDeliveryReport]
        );
        // The same mailbox also sends quota warnings, which are not bounces.
        assert!(kinds(&[], "Your mailbox is almost full", exch).is_empty());
        assert!(kinds(&[], "Undeliverable: a forwarded joke", "friend@example.com").is_empty());
    }

    #[test]
    fn voicemail_and_rights_protected() {
        assert_eq!(
            kinds(
                &[h("Content-Class", "voice-uc")],
                "Voice Mail (15 seconds)",
                "a@b.c"
            ),
            vec![MessageKind::Voicemail]
        );
        assert_eq!(
            kinds(&[h("Content-Class", "rpmsg.message")], "x", "a@b.c"),
            vec![MessageKind::PermissionControlled]
        );
    }

    #[test]
    fn sensitivity_from_header() {
        assert_eq!(
            sensitivity(&[h("Sensitivity", "Company-Confidential")]),
            Sensitivity::Confidential
        );
        assert_eq!(
            sensitivity(&[h("sensitivity", " private ")]),
            Sensitivity::Private
        );
        assert_eq!(
            sensitivity(&[h("Sensitivity", "Personal")]),
            Sensitivity::Personal
        );
        assert_eq!(
            sensitivity(&[h("Sensitivity", "weird")]),
            Sensitivity::Normal
        );
        assert_eq!(sensitivity(&[]), Sensitivity::Normal);
    }

    #[test]
    fn size_matches_the_tag_in_any_spelling() {
        let p = |id: &str, v: &str| SingleValueExtendedProperty {
            id: id.into(),
            value: Some(v.into()),
        };
        assert_eq!(message_size(&[p("Integer 0xe08", "5120")]), Some(5120));
        assert_eq!(message_size(&[p("Integer 0x0E08", "77")]), Some(77));
        assert_eq!(message_size(&[p("String 0x0E08", "77")]), None);
        assert_eq!(message_size(&[p("Integer 0x0E09", "77")]), None);
        assert_eq!(message_size(&[p("garbage", "77")]), None);
    }

    #[test]
    fn converts_a_full_message() {
        let json = serde_json::json!({
            "@odata.type": "#microsoft.graph.message",
            "id": "AAMk=",
            "subject": "Invoice 42",
            "from": {"emailAddress": {"name": "Adele", "address": "adele@contoso.com"}},
            "sender": {"emailAddress": {"name": "", "address": "adele@contoso.com"}},
            "toRecipients": [{"emailAddress": {"name": "Alex", "address": "alex@contoso.com"}}, {"emailAddress": {"name": "No address"}}],
            "ccRecipients": null,
            "receivedDateTime": "2016-10-19T10:37:00Z",
            "hasAttachments": true,
            "importance": "high",
            "categories": ["Red category"],
            "flag": {"flagStatus": "flagged"},
            "isRead": false,
            "internetMessageId": "<a@b>",
            "internetMessageHeaders": [{"name": "Sensitivity", "value": "Private"}],
            "body": {"contentType": "html", "content": "<p>hi</p>"},
            "parentFolderId": "inbox-id",
            "singleValueExtendedProperties": [{"id": "Integer 0xe08", "value": "2048"}]
        });
        let msg: GraphMessage = serde_json::from_value(json).unwrap();
        let mail = msg.into_mail_message("folder-1").unwrap();
        assert_eq!(mail.id, "AAMk=");
        assert_eq!(mail.folder_id, "folder-1");
        assert_eq!(mail.from.as_ref().unwrap().name.as_deref(), Some("Adele"));
        assert_eq!(mail.sender.as_ref().unwrap().name, None);
        assert_eq!(mail.to.len(), 1);
        assert!(mail.cc.is_empty());
        assert_eq!(
            mail.received_at,
            time::macros::datetime!(2016-10-19 10:37:00 UTC)
        );
        assert_eq!(mail.importance, Importance::High);
        assert_eq!(mail.flag, FlagStatus::Flagged);
        assert_eq!(mail.sensitivity, Sensitivity::Private);
        assert_eq!(mail.size_bytes, Some(2048));
        assert!(mail.kinds.is_empty());
        assert_eq!(mail.body.unwrap().content, "<p>hi</p>");
    }

    #[test]
    fn tombstones_and_missing_dates_do_not_convert() {
        let tomb: GraphMessage = serde_json::from_value(
            serde_json::json!({"id": "x", "@removed": {"reason": "deleted"}}),
        )
        .unwrap();
        assert!(tomb.is_removed());
        assert_eq!(
            tomb.into_mail_message("f").unwrap_err(),
            ConversionError::Removed
        );
        let bare: GraphMessage = serde_json::from_value(serde_json::json!({"id": "x"})).unwrap();
        assert_eq!(
            bare.into_mail_message("f").unwrap_err(),
            ConversionError::MissingField("receivedDateTime")
        );
    }

    #[test]
    fn body_debug_hides_the_content() {
        let msg: GraphMessage = serde_json::from_value(serde_json::json!({
            "id": "x", "body": {"contentType": "text", "content": "secret salary numbers"}
        }))
        .unwrap();
        let debug = format!("{msg:?}");
        assert!(!debug.contains("salary"), "{debug}");
    }
}
