//! sops files (getsops/sops) whose data key is sealed to the daemon's age key, read and
//! written in memory: every value AES-256-GCM under the file's data key, bound to its key path,
//! and a MAC over all values in file order that is checked before anything is used, so a value
//! changed, swapped or dropped by hand is refused. The crypto is the age, aes-gcm and sha2
//! crates'; this module is only sops's format (cited per rule from getsops/sops v3.13.2).

mod cipher;
mod metadata;

use sha2::{Digest, Sha512};

use crate::age_key::AgeKey;
use crate::tree::Node;
use cipher::{DataKey, scalar_bytes};
use metadata::{DEFAULT_UNENCRYPTED_SUFFIX, Metadata, Rule, SOPS_FORMAT_VERSION, seal_data_key};

/// `MACOnlyEncryptedInitialization` (`sops.go`): SHA-256 of "sops", hashed first when the
/// MAC covers encrypted values only, so the two kinds of MAC never coincide.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b, 0x0b, 0x97, 0x5b,
    0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// Decrypts a sops file with `key` and checks its MAC; the plaintext document as YAML.
/// Messages name key paths, never values.
pub(crate) fn decrypt(text: &str, key: &AgeKey) -> Result<String, String> {
    let Node::Map(mut entries) = Node::parse(text).map_err(|e| format!("not valid YAML: {e}"))? else {
        return Err("not a sops file: the document is not a mapping".into());
    };
    let at = entries.iter().position(|(k, _)| k == "sops").ok_or("not a sops file: it has no `sops` metadata")?;
    let (_, sops) = entries.remove(at);
    let metadata = Metadata::from_node(&sops)?;
    let data_key = metadata.data_key(key)?;
    let mut walk = Walk::new(&data_key, &metadata.rule, metadata.mac_only_encrypted);
    let plain = walk.decrypt(&Node::Map(entries), &mut Vec::new())?;
    let computed = walk.mac();
    let stored = match cipher::decrypt(&metadata.mac, &data_key, &metadata.mac_aad()?) {
        Ok(Node::Str(mac)) => mac,
        Ok(_) => return Err("sops.mac is not a string MAC".into()),
        Err(e) => return Err(format!("sops.mac cannot be decrypted ({e}); the file was altered")),
    };
    if !stored.eq_ignore_ascii_case(&computed) {
        return Err("MAC mismatch: a value, its order or a plaintext value was changed after the file was \
                    sealed; restore it, or re-create it with sops"
            .into());
    }
    Ok(plain.to_yaml())
}

/// How a sops file is sealed: its age recipients, its rule for which values stay in
/// plaintext, and whether its MAC covers the encrypted values only. A new file gets sops's
/// defaults; a file changed here keeps its own, so a team's layout survives the change.
#[derive(Debug, Clone)]
pub struct SopsLayout {
    recipients: Vec<age::x25519::Recipient>,
    rule: Rule,
    mac_only_encrypted: bool,
}

impl SopsLayout {
    /// sops's defaults: keys ending in `_unencrypted` stay in plaintext, MAC over every value.
    pub fn new(recipients: Vec<age::x25519::Recipient>) -> SopsLayout {
        SopsLayout {
            recipients,
            rule: Rule::UnencryptedSuffix(DEFAULT_UNENCRYPTED_SUFFIX.into()),
            mac_only_encrypted: false,
        }
    }

    /// The layout of the sops file at `path`, so that re-sealing it keeps the people who
    /// could open it and the values its rule leaves readable. A file also sealed to keys of
    /// another kind (KMS, PGP, …) is refused: re-sealing here would drop them, and only sops
    /// can seal to those.
    pub fn of_file(path: &std::path::Path) -> Result<SopsLayout, crate::BundleError> {
        let unsupported = |reason: String| crate::BundleError::Unsupported { path: path.to_path_buf(), reason };
        // Read as YAML (JSON is YAML), but written back as YAML: under a `.json` name that
        // would break the team's `sops` for the file.
        if path.extension().is_some_and(|ext| ext == "json") {
            return Err(unsupported(
                "a sops JSON bundle is read here but not rewritten (it would be written as YAML); re-create it as \
                 NAME.sops.yaml, or change it with `sops set`"
                    .into(),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| crate::BundleError::io("reading", path, e))?;
        let document = Node::parse(&text).map_err(|e| unsupported(format!("not valid YAML: {e}")))?;
        let sops =
            document.get("sops").ok_or_else(|| unsupported("not a sops file: it has no `sops` metadata".into()))?;
        let others: Vec<&str> = OTHER_KEY_KINDS
            .into_iter()
            .filter(|kind| {
                sops.get(kind).is_some_and(|keys| !matches!(keys, Node::Null) && *keys != Node::Seq(Vec::new()))
            })
            .collect();
        if !others.is_empty() {
            return Err(unsupported(format!(
                "the sops file is also sealed to {} keys, which re-sealing it here would drop; change it with `sops \
                 set` or `sops edit`",
                others.join(", ")
            )));
        }
        let metadata = Metadata::from_node(sops).map_err(unsupported)?;
        let recipients = metadata
            .age
            .iter()
            .map(|entry| {
                entry
                    .recipient
                    .parse()
                    .map_err(|_| unsupported(format!("sops.age: {:?} is not an age recipient", entry.recipient)))
            })
            .collect::<Result<_, _>>()?;
        Ok(SopsLayout { recipients, rule: metadata.rule, mac_only_encrypted: metadata.mac_only_encrypted })
    }

    pub fn recipients(&self) -> &[age::x25519::Recipient] {
        &self.recipients
    }

    /// The same layout sealed to `recipients` instead.
    pub fn with_recipients(self, recipients: Vec<age::x25519::Recipient>) -> SopsLayout {
        SopsLayout { recipients, ..self }
    }

    /// The file's rule as sops names it, e.g. ``encrypted_regex `^env$` ``.
    pub fn rule(&self) -> String {
        let (field, pattern) = self.rule.field();
        format!("{field} `{pattern}`")
    }

    /// Whether the file's rule encrypts the value at `path` (e.g. `["env", "API_KEY"]`).
    pub fn encrypts(&self, path: &[&str]) -> bool {
        let path: Vec<String> = path.iter().map(|k| k.to_string()).collect();
        self.rule.encrypts(&path)
    }
}

/// Encrypts a plaintext YAML mapping as a sops file with `layout`'s recipients and rule.
pub(crate) fn encrypt(plaintext: &str, layout: &SopsLayout) -> Result<String, String> {
    let document = Node::parse(plaintext).map_err(|e| format!("not valid YAML: {e}"))?;
    let document = match document {
        Node::Map(entries) if entries.iter().any(|(k, _)| k == "sops") => {
            return Err("the plaintext already has a `sops` key: it is a sops file, not a bundle".into());
        }
        Node::Map(entries) => Node::Map(entries),
        Node::Null => Node::Map(Vec::new()),
        other => return Err(format!("the document is {}, not a mapping", other.kind())),
    };
    if layout.recipients.is_empty() {
        return Err("no recipients".into());
    }
    let data_key = DataKey::random().map_err(|e| format!("cannot read random bytes: {e}"))?;
    let mut walk = Walk::new(&data_key, &layout.rule, layout.mac_only_encrypted);
    let Node::Map(mut entries) = walk.encrypt(&document, &mut Vec::new())? else {
        return Err("the document is not a mapping".into());
    };
    let lastmodified = metadata::rfc3339_seconds(time::OffsetDateTime::now_utc());
    let mac = cipher::encrypt(&Node::Str(walk.mac()), &data_key, &lastmodified)?;
    let age = layout
        .recipients
        .iter()
        .map(|recipient| {
            let enc = seal_data_key(recipient, &data_key)?;
            Ok(Node::Map(vec![("recipient".into(), Node::Str(recipient.to_string())), ("enc".into(), Node::Str(enc))]))
        })
        .collect::<Result<Vec<Node>, String>>()?;
    let (rule, pattern) = layout.rule.field();
    let mut sops = vec![
        ("age".into(), Node::Seq(age)),
        ("lastmodified".into(), Node::Str(lastmodified)),
        ("mac".into(), Node::Str(mac)),
        (rule.into(), Node::Str(pattern)),
    ];
    if layout.mac_only_encrypted {
        sops.push(("mac_only_encrypted".into(), Node::Bool(true)));
    }
    sops.push(("version".into(), Node::Str(SOPS_FORMAT_VERSION.into())));
    let sops = Node::Map(sops);
    entries.push(("sops".into(), sops));
    Ok(Node::Map(entries).to_yaml())
}

/// What a walk does to one scalar: `(walk, value, key path, whether sops encrypts it)`.
type LeafFn<'f, 'a> = dyn FnMut(&mut Walk<'a>, &Node, &[String], bool) -> Result<Node, String> + 'f;

/// One pass over the values in file order, encrypting or decrypting each and feeding the MAC.
struct Walk<'a> {
    key: &'a DataKey,
    rule: &'a Rule,
    mac_only_encrypted: bool,
    hash: Sha512,
}

impl<'a> Walk<'a> {
    fn new(key: &'a DataKey, rule: &'a Rule, mac_only_encrypted: bool) -> Walk<'a> {
        let mut hash = Sha512::new();
        if mac_only_encrypted {
            hash.update(MAC_ONLY_ENCRYPTED_INIT);
        }
        Walk { key, rule, mac_only_encrypted, hash }
    }

    /// sops's MAC: the SHA-512 of the values, upper-case hex (`fmt.Sprintf("%X")`).
    fn mac(&self) -> String {
        self.hash.clone().finalize().iter().map(|b| format!("{b:02X}")).collect()
    }

    fn decrypt(&mut self, node: &Node, path: &mut Vec<String>) -> Result<Node, String> {
        self.map_leaves(node, path, &mut |walk, leaf, path, encrypted| {
            let value = match leaf {
                _ if !encrypted => leaf.clone(),
                // sops leaves empty strings as they are (`aes/cipher.go`).
                Node::Str(s) if s.is_empty() => leaf.clone(),
                Node::Str(s) => cipher::decrypt(s, walk.key, &additional_data(path))
                    .map_err(|e| format!("{}: cannot decrypt: {e}", dotted(path)))?,
                other => {
                    return Err(format!(
                        "{}: is {} in plaintext where sops encrypts every value",
                        dotted(path),
                        other.kind()
                    ));
                }
            };
            walk.hash_value(&value, encrypted);
            Ok(value)
        })
    }

    fn encrypt(&mut self, node: &Node, path: &mut Vec<String>) -> Result<Node, String> {
        self.map_leaves(node, path, &mut |walk, leaf, path, encrypted| {
            walk.hash_value(leaf, encrypted);
            match leaf {
                // sops leaves empty strings as they are, like what its rule keeps in plaintext.
                _ if !encrypted => Ok(leaf.clone()),
                Node::Str(s) if s.is_empty() => Ok(leaf.clone()),
                _ => cipher::encrypt(leaf, walk.key, &additional_data(path)).map(Node::Str),
            }
        })
    }

    fn hash_value(&mut self, value: &Node, encrypted: bool) {
        if (!self.mac_only_encrypted || encrypted)
            && let Some((bytes, _)) = scalar_bytes(value)
        {
            self.hash.update(bytes);
        }
    }

    /// Rebuilds `node` with each scalar replaced by `leaf(…)`; nulls are kept and, as in sops's
    /// walk, neither encrypted nor hashed. A sequence element has its sequence's path.
    fn map_leaves(&mut self, node: &Node, path: &mut Vec<String>, leaf: &mut LeafFn<'_, 'a>) -> Result<Node, String> {
        match node {
            Node::Map(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    path.push(key.clone());
                    let mapped = self.map_leaves(value, path, leaf);
                    path.pop();
                    out.push((key.clone(), mapped?));
                }
                Ok(Node::Map(out))
            }
            Node::Seq(items) => {
                let mapped = items.iter().map(|item| self.map_leaves(item, path, leaf));
                Ok(Node::Seq(mapped.collect::<Result<_, _>>()?))
            }
            Node::Null => Ok(Node::Null),
            scalar => {
                let encrypted = self.rule.encrypts(path);
                leaf(self, scalar, path, encrypted)
            }
        }
    }
}

/// The additional data of a value: its key path joined by `:`, with a trailing `:`
/// (`sops.go`: `strings.Join(path, ":") + ":"`).
fn additional_data(path: &[String]) -> String {
    let mut aad = path.join(":");
    aad.push(':');
    aad
}

fn dotted(path: &[String]) -> String {
    if path.is_empty() { "(top level)".into() } else { path.join(".") }
}

/// Largest sops file read: each value grows by its base64, nonce and tag (~100 bytes).
const MAX_SOPS_FILE_BYTES: u64 = 4 * crate::age_file::MAX_PLAINTEXT_BYTES;

/// Decrypts the sops file at `path` with `key`, MAC checked; the plaintext bundle as YAML.
pub fn decrypt_sops_file(path: &std::path::Path, key: &AgeKey) -> Result<Vec<u8>, crate::BundleError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| crate::BundleError::io("opening", path, e))?;
    let mut text = String::new();
    file.take(MAX_SOPS_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| crate::BundleError::io("reading", path, e))?;
    if text.len() as u64 > MAX_SOPS_FILE_BYTES {
        return Err(crate::BundleError::TooLarge { path: path.to_path_buf(), limit: MAX_SOPS_FILE_BYTES });
    }
    decrypt(&text, key).map(String::into_bytes).map_err(|reason| crate::BundleError::DecryptFailed {
        path: path.to_path_buf(),
        reason: format!("sops: {reason}"),
    })
}

/// Key kinds a sops file may hold besides age (`stores/stores.go` Metadata).
const OTHER_KEY_KINDS: [&str; 6] = ["kms", "gcp_kms", "azure_kv", "hc_vault", "pgp", "huawei_kms"];

/// Encrypts a plaintext YAML bundle as a sops file with `layout`.
pub fn encrypt_sops(layout: &SopsLayout, plaintext: &[u8]) -> Result<Vec<u8>, crate::BundleError> {
    let in_memory = std::path::Path::new("<in-memory sops file>");
    let invalid =
        |message: String| crate::BundleError::InvalidBundle { origin: in_memory.display().to_string(), message };
    let text = std::str::from_utf8(plaintext).map_err(|_| invalid("not UTF-8 text".into()))?;
    encrypt(text, layout).map(String::into_bytes).map_err(invalid)
}
