//! Folder paths of move and copy actions.
//!
//! # Syntax
//!
//! A path is a list of folder display names separated by `/`, e.g. `Clients/Acme/Invoices`.
//!
//! - It is relative to the mailbox's top of information store (Graph's `msgfolderroot`), so
//!   `Clients/Acme` is the folder "Acme" inside the top-level folder "Clients".
//! - The first segment may instead be a well-known folder name (case-insensitive), which works in
//!   every mailbox language: `inbox/Newsletters` is "Newsletters" inside the Inbox, whatever the
//!   Inbox is called. Allowed roots: `inbox`, `archive`, `deleteditems`, `junkemail`, `drafts`,
//!   `sentitems`, `clutter`, `conversationhistory`, `scheduled`, and `msgfolderroot` itself.
//!   A path may be just a well-known folder (`archive`), but not just `msgfolderroot`.
//! - `msgfolderroot/Inbox` names a top-level folder whose *display name* is "Inbox" (the escape
//!   hatch for a display name that equals a well-known name).
//! - `\/` is a slash inside a name and `\\` a backslash; any other `\` is an error.
//! - Well-known folders that must never receive mail from rules (`outbox`, `searchfolders`,
//!   `recoverableitemsdeletions`, `conflicts`, `localfailures`, `serverfailures`, `syncissues`)
//!   are rejected as a first segment.
//! - Rejected: empty paths, empty segments (`a//b`, a leading or trailing `/`), segments with
//!   leading or trailing whitespace or control characters, segments longer than
//!   `MAX_FOLDER_SEGMENT_CHARS`, paths longer than `MAX_FOLDER_PATH_CHARS`, and more than
//!   `MAX_FOLDER_DEPTH` segments below the root.
//!
//! Names are matched case-insensitively against display names by the executor (Outlook folder
//! names are case-insensitive); missing folders are created by the executor.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::limits::{MAX_FOLDER_DEPTH, MAX_FOLDER_PATH_CHARS, MAX_FOLDER_SEGMENT_CHARS};

/// Graph's name for the top of the mailbox's folder tree.
pub const ROOT: &str = "msgfolderroot";

/// Well-known folders a path may start with.
pub const ALLOWED_ROOTS: &[&str] = &[
    "archive",
    "clutter",
    "conversationhistory",
    "deleteditems",
    "drafts",
    "inbox",
    "junkemail",
    ROOT,
    "scheduled",
    "sentitems",
];

/// Well-known folders a rule may never move or copy mail into.
pub const FORBIDDEN_ROOTS: &[&str] = &[
    "conflicts",
    "localfailures",
    "outbox",
    "recoverableitemsdeletions",
    "searchfolders",
    "serverfailures",
    "syncissues",
];

/// Why a folder path was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FolderPathError {
    #[error("folder path is empty")]
    Empty,
    #[error(
        "folder path has an empty folder name at segment {segment} (check for `//` or a leading or trailing `/`)"
    )]
    EmptySegment { segment: usize },
    #[error("folder name at segment {segment} starts or ends with whitespace")]
    SurroundingWhitespace { segment: usize },
    #[error("folder name at segment {segment} contains a control character")]
    ControlCharacter { segment: usize },
    #[error("folder name at segment {segment} is longer than {max} characters")]
    SegmentTooLong { segment: usize, max: usize },
    #[error("folder path is longer than {max} characters")]
    TooLong { max: usize },
    #[error("folder path is deeper than {max} levels")]
    TooDeep { max: usize },
    #[error(
        "folder path has an invalid escape at character {position}: only `\\/` and `\\\\` are allowed"
    )]
    InvalidEscape { position: usize },
    #[error("rules cannot move or copy into the well-known folder `{0}`")]
    ForbiddenWellKnownFolder(String),
    #[error("folder path must name a folder below `msgfolderroot`")]
    RootOnly,
}

/// A validated folder path: a well-known root plus display names below it.
///
/// Serialized as its canonical string (its `Display` form): the root is written only
/// when it is not `msgfolderroot`, or when the first name would otherwise read as a well-known name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct FolderPath {
    root: &'static str,
    segments: Vec<String>,
}

impl FolderPath {
    /// Parses the path syntax described in the module docs.
    pub fn parse(input: &str) -> Result<Self, FolderPathError> {
        if input.is_empty() {
            return Err(FolderPathError::Empty);
        }
        if input.chars().count() > MAX_FOLDER_PATH_CHARS {
            return Err(FolderPathError::TooLong {
                max: MAX_FOLDER_PATH_CHARS,
            });
        }
        let mut raw_segments = Vec::new();
        let mut current = String::new();
        let mut chars = input.chars().enumerate();
        while let Some((position, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, escaped @ ('/' | '\\'))) => current.push(escaped),
                    _ => return Err(FolderPathError::InvalidEscape { position }),
                },
                '/' => raw_segments.push(std::mem::take(&mut current)),
                other => current.push(other),
            }
        }
        raw_segments.push(current);

        // A first segment is a well-known name only when written without escapes.
        let first_unescaped = !input.split('/').next().unwrap_or_default().contains('\\');
        let first = raw_segments[0].to_ascii_lowercase();
        let (root, names) =
            if first_unescaped && let Some(root) = ALLOWED_ROOTS.iter().find(|r| **r == first) {
                (*root, &raw_segments[1..])
            } else if first_unescaped && FORBIDDEN_ROOTS.contains(&first.as_str()) {
                return Err(FolderPathError::ForbiddenWellKnownFolder(first));
            } else {
                (ROOT, &raw_segments[..])
            };
        let offset = raw_segments.len() - names.len();
        for (i, name) in names.iter().enumerate() {
            let segment = i + offset + 1;
            if name.is_empty() {
                return Err(FolderPathError::EmptySegment { segment });
            }
            if name.trim() != name {
                return Err(FolderPathError::SurroundingWhitespace { segment });
            }
            if name.chars().any(char::is_control) {
                return Err(FolderPathError::ControlCharacter { segment });
            }
            if name.chars().count() > MAX_FOLDER_SEGMENT_CHARS {
                return Err(FolderPathError::SegmentTooLong {
                    segment,
                    max: MAX_FOLDER_SEGMENT_CHARS,
                });
            }
        }
        if names.len() > MAX_FOLDER_DEPTH {
            return Err(FolderPathError::TooDeep {
                max: MAX_FOLDER_DEPTH,
            });
        }
        if root == ROOT && names.is_empty() {
            return Err(FolderPathError::RootOnly);
        }
        Ok(Self {
            root,
            segments: names.to_vec(),
        })
    }

    /// The well-known folder the path starts from (`msgfolderroot` when none was given).
    pub fn root(&self) -> &'static str {
        self.root
    }

    /// The display names below the root, outermost first, unescaped. May be empty when the path
    /// is just a well-known folder such as `archive`.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// True when the path is the well-known `deleteditems` folder itself.
    pub fn is_deleted_items(&self) -> bool {
        self.root == "deleteditems" && self.segments.is_empty()
    }

    /// A key equal for paths that name the same folder (display names compare case-insensitively).
    pub fn match_key(&self) -> String {
        self.to_string().to_lowercase()
    }
}

impl fmt::Display for FolderPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first_reads_as_well_known = self.segments.first().is_some_and(|s| {
            let lower = s.to_ascii_lowercase();
            ALLOWED_ROOTS.contains(&lower.as_str()) || FORBIDDEN_ROOTS.contains(&lower.as_str())
        });
        let mut parts: Vec<String> = Vec::with_capacity(self.segments.len() + 1);
        if self.root != ROOT || first_reads_as_well_known {
            parts.push(self.root.to_owned());
        }
        parts.extend(
            self.segments
                .iter()
                .map(|s| s.replace('\\', "\\\\").replace('/', "\\/")),
        );
        f.write_str(&parts.join("/"))
    }
}

impl TryFrom<String> for FolderPath {
    type Error = FolderPathError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl<'de> Deserialize<'de> for FolderPath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl From<FolderPath> for String {
    fn from(path: FolderPath) -> String {
        path.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> FolderPath {
        FolderPath::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn plain_paths_are_relative_to_the_root() {
        let p = parse("Clients/Acme/Invoices");
        assert_eq!(p.root(), ROOT);
        assert_eq!(p.segments(), ["Clients", "Acme", "Invoices"]);
        assert_eq!(p.to_string(), "Clients/Acme/Invoices");
    }

    #[test]
    fn a_leading_well_known_name_is_the_root() {
        let p = parse("Inbox/Newsletters");
        assert_eq!(p.root(), "inbox");
        assert_eq!(p.segments(), ["Newsletters"]);
        assert_eq!(p.to_string(), "inbox/Newsletters");
        let archive = parse("ARCHIVE");
        assert_eq!((archive.root(), archive.segments().len()), ("archive", 0));
        assert!(parse("deleteditems").is_deleted_items());
        assert!(!parse("deleteditems/x").is_deleted_items());
    }

    #[test]
    fn msgfolderroot_prefix_names_a_display_name_equal_to_a_well_known_name() {
        let p = parse("msgfolderroot/Inbox");
        assert_eq!(p.root(), ROOT);
        assert_eq!(p.segments(), ["Inbox"]);
        assert_eq!(p.to_string(), "msgfolderroot/Inbox");
        assert_eq!(parse(&p.to_string()), p);
        assert_eq!(parse("msgfolderroot/Clients").to_string(), "Clients");
    }

    #[test]
    fn escapes_allow_slashes_and_backslashes_in_names() {
        let p = parse(r"Finance/A\/B Corp/x\\y");
        assert_eq!(p.segments(), ["Finance", "A/B Corp", r"x\y"]);
        assert_eq!(p.to_string(), r"Finance/A\/B Corp/x\\y");
        assert_eq!(parse(&p.to_string()), p);
        // An escaped first segment is a display name, never a well-known one.
        let escaped = parse(r"in\\box");
        assert_eq!(escaped.root(), ROOT);
    }

    #[test]
    fn unicode_names_are_kept() {
        let p = parse("Kunden/Müller & Söhne/Ärger");
        assert_eq!(p.segments()[2], "Ärger");
    }

    #[test]
    fn invalid_paths_are_rejected_with_a_reason() {
        use FolderPathError::*;
        let cases: &[(&str, FolderPathError)] = &[
            ("", Empty),
            ("/Clients", EmptySegment { segment: 1 }),
            ("Clients/", EmptySegment { segment: 2 }),
            ("a//b", EmptySegment { segment: 2 }),
            ("inbox/", EmptySegment { segment: 2 }),
            (" a", SurroundingWhitespace { segment: 1 }),
            ("a/b ", SurroundingWhitespace { segment: 2 }),
            ("a/b\tc", ControlCharacter { segment: 2 }),
            (r"a\b", InvalidEscape { position: 1 }),
            (r"a\", InvalidEscape { position: 1 }),
            ("outbox/x", ForbiddenWellKnownFolder("outbox".into())),
            (
                "SearchFolders",
                ForbiddenWellKnownFolder("searchfolders".into()),
            ),
            ("msgfolderroot", RootOnly),
        ];
        for (input, expected) in cases {
            assert_eq!(
                FolderPath::parse(input).as_ref(),
                Err(expected),
                "{input:?}"
            );
        }
    }

    #[test]
    fn limits_are_enforced() {
        let long = "x".repeat(MAX_FOLDER_SEGMENT_CHARS + 1);
        assert_eq!(
            FolderPath::parse(&format!("a/{long}")),
            Err(FolderPathError::SegmentTooLong {
                segment: 2,
                max: MAX_FOLDER_SEGMENT_CHARS
            })
        );
        let deep = ["d"; MAX_FOLDER_DEPTH + 1].join("/");
        assert_eq!(
            FolderPath::parse(&deep),
            Err(FolderPathError::TooDeep {
                max: MAX_FOLDER_DEPTH
            })
        );
        let ok = ["d"; MAX_FOLDER_DEPTH].join("/");
        assert!(FolderPath::parse(&ok).is_ok());
        assert!(FolderPath::parse(&format!("inbox/{ok}")).is_ok());
        let huge = vec!["y".repeat(200); 6].join("/");
        assert_eq!(
            FolderPath::parse(&huge),
            Err(FolderPathError::TooLong {
                max: MAX_FOLDER_PATH_CHARS
            })
        );
    }

    #[test]
    fn serde_uses_the_canonical_string() {
        let p: FolderPath = serde_json::from_str("\"Inbox/Reports\"").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"inbox/Reports\"");
        assert!(serde_json::from_str::<FolderPath>("\"a//b\"").is_err());
    }

    #[test]
    fn match_key_ignores_case() {
        assert_eq!(
            parse("Inbox/ÄRGER").match_key(),
            parse("inbox/ärger").match_key()
        );
    }
}
