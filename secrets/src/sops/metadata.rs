//! The `sops:` block of an age-encrypted sops file: the data key sealed to each age recipient,
//! the rule saying which keys stay in plaintext, `lastmodified` and the encrypted MAC
//! (getsops/sops `stores/stores.go` Metadata, `sops.go` `shouldBeEncrypted`, `age/keysource.go`).

use std::io::{Read, Write};

use age::armor::{ArmoredReader, ArmoredWriter, Format};

use super::cipher::DataKey;
use crate::age_key::AgeKey;
use crate::tree::Node;

/// sops's default rule when a file names none (`DefaultUnencryptedSuffix`).
pub(crate) const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

/// The sops version whose format this module reads and writes (`version/version.go`).
pub(crate) const SOPS_FORMAT_VERSION: &str = "3.13.2";

/// Which values stay in plaintext: sops allows exactly one rule per file.
#[derive(Debug, Clone)]
pub(crate) enum Rule {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(regex::Regex),
    EncryptedRegex(regex::Regex),
}

impl Rule {
    /// `shouldBeEncrypted`: a rule matches on any component of the key path, so it covers the
    /// whole subtree of the key it names. Regexes are unanchored, as Go's `regexp.Match`.
    pub(crate) fn encrypts(&self, path: &[String]) -> bool {
        match self {
            Rule::UnencryptedSuffix(suffix) => !path.iter().any(|k| k.ends_with(suffix.as_str())),
            Rule::EncryptedSuffix(suffix) => path.iter().any(|k| k.ends_with(suffix.as_str())),
            Rule::UnencryptedRegex(re) => !path.iter().any(|k| re.is_match(k)),
            Rule::EncryptedRegex(re) => path.iter().any(|k| re.is_match(k)),
        }
    }

    /// The rule as the `sops:` field that names it, to write it back.
    pub(crate) fn field(&self) -> (&'static str, String) {
        match self {
            Rule::UnencryptedSuffix(suffix) => ("unencrypted_suffix", suffix.clone()),
            Rule::EncryptedSuffix(suffix) => ("encrypted_suffix", suffix.clone()),
            Rule::UnencryptedRegex(re) => ("unencrypted_regex", re.as_str().to_string()),
            Rule::EncryptedRegex(re) => ("encrypted_regex", re.as_str().to_string()),
        }
    }
}

/// An age recipient entry: `enc` is an armored age file holding the raw 32-byte data key.
pub(crate) struct AgeEntry {
    pub(crate) recipient: String,
    pub(crate) enc: String,
}

pub(crate) struct Metadata {
    pub(crate) age: Vec<AgeEntry>,
    pub(crate) lastmodified: String,
    pub(crate) mac: String,
    pub(crate) rule: Rule,
    pub(crate) mac_only_encrypted: bool,
}

impl Metadata {
    /// Reads the `sops:` mapping. Key types other than age are ignored (this daemon holds an
    /// age key only); what would change the meaning of the file and is not implemented (key
    /// groups, comment rules) is refused rather than misread.
    pub(crate) fn from_node(node: &Node) -> Result<Metadata, String> {
        let Node::Map(fields) = node else { return Err(format!("`sops` is {}, not a mapping", node.kind())) };
        let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let text = |name: &str| -> Result<Option<String>, String> {
            match get(name) {
                None | Some(Node::Null) => Ok(None),
                Some(Node::Str(s)) => Ok(Some(s.clone())),
                Some(other) => Err(format!("sops.{name} is {}, not a string", other.kind())),
            }
        };
        for unsupported in ["key_groups", "shamir_threshold"] {
            if get(unsupported).is_some_and(|v| *v != Node::Null) {
                return Err(format!(
                    "sops.{unsupported}: key groups are not supported; encrypt the file to the daemon's age recipient \
                     without key groups"
                ));
            }
        }
        for unsupported in ["unencrypted_comment_regex", "encrypted_comment_regex"] {
            if text(unsupported)?.is_some() {
                return Err(format!("sops.{unsupported}: comment rules are not supported; use a key suffix or regex"));
            }
        }
        let mut age = Vec::new();
        match get("age") {
            None | Some(Node::Null) => {}
            Some(Node::Seq(entries)) => {
                for entry in entries {
                    let Node::Map(entry) = entry else { return Err("sops.age: an entry is not a mapping".into()) };
                    let field = |name: &str| match entry.iter().find(|(k, _)| k == name) {
                        Some((_, Node::Str(s))) => Ok(s.clone()),
                        _ => Err(format!("sops.age: an entry has no {name}")),
                    };
                    age.push(AgeEntry { recipient: field("recipient")?, enc: field("enc")? });
                }
            }
            Some(other) => return Err(format!("sops.age is {}, not a list", other.kind())),
        }
        let lastmodified = text("lastmodified")?.ok_or("sops.lastmodified is missing")?;
        let mac = text("mac")?.ok_or("sops.mac is missing: the file's integrity cannot be checked")?;
        let mac_only_encrypted = match get("mac_only_encrypted") {
            None | Some(Node::Null) => false,
            Some(Node::Bool(b)) => *b,
            Some(other) => return Err(format!("sops.mac_only_encrypted is {}, not a boolean", other.kind())),
        };
        Ok(Metadata { age, lastmodified, mac, rule: read_rule(&text)?, mac_only_encrypted })
    }

    /// The data key, from the first age entry this daemon's key opens.
    pub(crate) fn data_key(&self, key: &AgeKey) -> Result<DataKey, String> {
        for entry in &self.age {
            let mut sealed = Vec::new();
            if ArmoredReader::new(entry.enc.as_bytes()).read_to_end(&mut sealed).is_err() {
                continue;
            }
            let Ok(decryptor) = age::Decryptor::new(sealed.as_slice()) else { continue };
            let Ok(mut reader) = decryptor.decrypt(key.identities()) else { continue };
            let mut data_key = DataKey([0; 32]);
            let mut rest = Vec::new();
            let whole =
                reader.read_exact(&mut data_key.0).is_ok() && reader.read_to_end(&mut rest).is_ok_and(|n| n == 0);
            if !whole {
                return Err(format!("the data key sealed to {} is not 32 bytes", entry.recipient));
            }
            return Ok(data_key);
        }
        let listed: Vec<&str> = self.age.iter().map(|e| e.recipient.as_str()).collect();
        Err(format!(
            "no age recipient of the file is this daemon's key (the file's: {}; the daemon's: {}); add it with \
             `sops rotate -i --add-age {} FILE`",
            if listed.is_empty() { "none".to_string() } else { listed.join(", ") },
            key.recipient(),
            key.recipient()
        ))
    }

    /// `lastmodified` as sops re-formats it for the MAC's additional data (Go's RFC 3339:
    /// seconds, `Z` for UTC, else the offset).
    pub(crate) fn mac_aad(&self) -> Result<String, String> {
        let parsed = time::OffsetDateTime::parse(&self.lastmodified, &time::format_description::well_known::Rfc3339)
            .map_err(|_| format!("sops.lastmodified {:?} is not an RFC 3339 time", self.lastmodified))?;
        Ok(rfc3339_seconds(parsed))
    }
}

/// Go's `time.RFC3339` layout: no fraction, `Z` or `±hh:mm`.
pub(crate) fn rfc3339_seconds(t: time::OffsetDateTime) -> String {
    let date = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let offset = t.offset();
    if offset.is_utc() {
        return format!("{date}Z");
    }
    let (h, m, _) = offset.as_hms();
    let sign = if offset.is_negative() { '-' } else { '+' };
    format!("{date}{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
}

fn read_rule(text: &dyn Fn(&str) -> Result<Option<String>, String>) -> Result<Rule, String> {
    let regex = |name: &str, pattern: &str| {
        regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("sops.{name} is not a valid regular expression: {e}"))
    };
    let mut rules = Vec::new();
    if let Some(s) = text("unencrypted_suffix")? {
        rules.push(Rule::UnencryptedSuffix(s));
    }
    if let Some(s) = text("encrypted_suffix")? {
        rules.push(Rule::EncryptedSuffix(s));
    }
    if let Some(s) = text("unencrypted_regex")? {
        rules.push(Rule::UnencryptedRegex(regex("unencrypted_regex", &s)?));
    }
    if let Some(s) = text("encrypted_regex")? {
        rules.push(Rule::EncryptedRegex(regex("encrypted_regex", &s)?));
    }
    match rules.len() {
        0 => Ok(Rule::UnencryptedSuffix(DEFAULT_UNENCRYPTED_SUFFIX.into())),
        1 => Ok(rules.remove(0)),
        _ => Err("sops allows only one of unencrypted_suffix, encrypted_suffix, unencrypted_regex and \
                  encrypted_regex"
            .into()),
    }
}

/// `enc` for one recipient: the data key as an armored age file.
pub(crate) fn seal_data_key(recipient: &age::x25519::Recipient, data_key: &DataKey) -> Result<String, String> {
    let failed = |e: std::io::Error| format!("cannot seal the data key: {e}");
    let encryptor = age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
        .map_err(|e| format!("cannot seal the data key: {e}"))?;
    let armored = ArmoredWriter::wrap_output(Vec::new(), Format::AsciiArmor).map_err(failed)?;
    let mut writer = encryptor.wrap_output(armored).map_err(failed)?;
    writer.write_all(&data_key.0).map_err(failed)?;
    let bytes = writer.finish().and_then(ArmoredWriter::finish).map_err(failed)?;
    String::from_utf8(bytes).map_err(|_| "age armor is not text".into())
}
