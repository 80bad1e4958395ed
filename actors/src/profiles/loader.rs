//! Loads and validates every profile of a directory. All errors are collected, each naming
//! the file, the document, the profile and the field, so one run shows everything to fix.

use super::documents;
use crate::model::profile::{Profile, is_host_mount_key};
use crate::model::{ErrorCode, Refusal, modifiers, time_format};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A profile and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedProfile {
    pub profile: Profile,
    pub source: PathBuf,
    pub document: usize,
}

/// Every profile of one load, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileSet {
    pub dir: PathBuf,
    pub loaded_at: String,
    pub profiles: BTreeMap<String, LoadedProfile>,
    /// Profiles this daemon cannot serve (`type: lxc`, `cpulist` with an API token): not
    /// loaded, while every other profile is.
    pub skipped: Vec<ProfileError>,
    /// Keys accepted for compatibility with the seed and Go profiles that do nothing here.
    pub warnings: Vec<ProfileError>,
}

impl ProfileSet {
    pub fn get(&self, name: &str) -> Option<&LoadedProfile> {
        self.profiles.get(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.profiles.keys().cloned().collect()
    }

    /// The profile a request names: a profile name, or `+modifiers` (`+small +secure` →
    /// `secure-small`); refused with the nearest names when there is none.
    pub fn resolve(&self, requested: &str) -> Result<&LoadedProfile, Refusal> {
        let names = self.names();
        if let Some(skipped) = self.skipped.iter().find(|e| {
            matches!(e, ProfileError::NotServed { profile: Some(name), .. } if name == requested.trim_start_matches('+'))
        }) {
            return Err(Refusal::new(ErrorCode::UnknownProfile, skipped.to_string()));
        }
        let unknown = || {
            let near = modifiers::suggest_profiles(requested, &names);
            let hint = if near.is_empty() { String::new() } else { format!(" (did you mean {}?)", near.join(", ")) };
            Refusal::new(
                ErrorCode::UnknownProfile,
                format!("unknown profile `{requested}`{hint}; `agentlab profile list` shows them"),
            )
        };
        let name = modifiers::resolve_profile_name(requested, &names).ok_or_else(unknown)?;
        self.get(&name).ok_or_else(unknown)
    }
}

/// What the daemon's Proxmox identity allows, which some profile fields depend on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProfileRules {
    /// The daemon talks to Proxmox with an API token, whose user is never `root@pam`.
    pub api_token: bool,
}

impl ProfileRules {
    /// The fields of `profile` this daemon could not carry out, as (field, why).
    fn refusals(self, profile: &Profile) -> Vec<(String, String)> {
        let mut refused = Vec::new();
        if self.api_token && profile.resources.cpulist.is_some() {
            // qemu-server API2/Qemu.pm: `affinity` is root@pam-only, and a token's user is its
            // token id (`root@pam!agentlab`), so every sandbox of this profile would fail.
            refused.push((
                "resources.cpulist".to_string(),
                "Proxmox lets only root@pam set CPU affinity, and an API token is never root@pam; remove cpulist, or run agentlabd with proxmox_backend: shell on the Proxmox host".to_string(),
            ));
        }
        refused
    }
}

/// One problem with one profile document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profiles directory {}: {message}; create it or set profiles_dir", dir.display())]
    Directory { dir: PathBuf, message: String },
    #[error("cannot read profile file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{}: document {document} (line {line}): not valid YAML: {message}", path.display())]
    Yaml { path: PathBuf, document: usize, line: usize, message: String },
    #[error("{}: document {document}{}: field `{field}`: {message}", path.display(), profile_label(.profile))]
    Field { path: PathBuf, document: usize, profile: Option<String>, field: String, message: String },
    #[error("{}: document {document}: profile `{name}` is already defined in {}", path.display(), first.display())]
    Duplicate { path: PathBuf, document: usize, name: String, first: PathBuf },
    /// A well-formed profile this daemon cannot carry out: skipped, the others still load.
    #[error("{}: document {document}{}: field `{field}`: {message}; this profile is not served", path.display(), profile_label(.profile))]
    NotServed { path: PathBuf, document: usize, profile: Option<String>, field: String, message: String },
    /// A key that is accepted but has no effect here.
    #[error("{}: document {document}{}: field `{field}`: {message}", path.display(), profile_label(.profile))]
    NoEffect { path: PathBuf, document: usize, profile: Option<String>, field: String, message: String },
}

fn profile_label(profile: &Option<String>) -> String {
    profile.as_ref().map(|p| format!(" (profile `{p}`)")).unwrap_or_default()
}

/// All problems of a load; Display prints one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileErrors(pub Vec<ProfileError>);

impl fmt::Display for ProfileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for ProfileErrors {}

/// Loads every `*.yaml` and `*.yml` file of `dir`, in name order, under `rules`.
pub fn load_dir(dir: &Path, rules: ProfileRules) -> Result<ProfileSet, ProfileErrors> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ProfileErrors(vec![ProfileError::Directory { dir: dir.to_path_buf(), message: e.to_string() }]))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();

    let mut set = ProfileSet {
        dir: dir.to_path_buf(),
        loaded_at: time_format::now(),
        profiles: BTreeMap::new(),
        skipped: Vec::new(),
        warnings: Vec::new(),
    };
    let mut errors = Vec::new();
    for path in files {
        match std::fs::read_to_string(&path) {
            Ok(text) => load_file_text(&path, &text, rules, &mut set, &mut errors),
            Err(e) => errors.push(ProfileError::File { path, message: e.to_string() }),
        }
    }
    if errors.is_empty() { Ok(set) } else { Err(ProfileErrors(errors)) }
}

/// Adds the profiles of one file's text to `set`, pushing every problem to `errors`.
pub fn load_file_text(
    path: &Path,
    text: &str,
    rules: ProfileRules,
    set: &mut ProfileSet,
    errors: &mut Vec<ProfileError>,
) {
    for doc in documents::split(text) {
        if documents::is_blank(doc.text) {
            continue;
        }
        match parse_document(path, doc.index, doc.first_line, doc.text) {
            Ok(Parsed::NotServed(skipped)) => set.skipped.push(skipped),
            Ok(Parsed::Profile(profile, mut warnings)) => {
                let profile = *profile;
                set.warnings.append(&mut warnings);
                let refused = rules.refusals(&profile);
                if !refused.is_empty() {
                    set.skipped.extend(refused.into_iter().map(|(field, message)| ProfileError::NotServed {
                        path: path.to_path_buf(),
                        document: doc.index,
                        profile: Some(profile.name.clone()),
                        field,
                        message,
                    }));
                    continue;
                }
                if let Some(first) = set.profiles.get(&profile.name) {
                    errors.push(ProfileError::Duplicate {
                        path: path.to_path_buf(),
                        document: doc.index,
                        name: profile.name.clone(),
                        first: first.source.clone(),
                    });
                    continue;
                }
                let loaded = LoadedProfile { profile, source: path.to_path_buf(), document: doc.index };
                set.profiles.insert(loaded.profile.name.clone(), loaded);
            }
            Err(mut errs) => errors.append(&mut errs),
        }
    }
}

/// One document's outcome when it is well-formed.
enum Parsed {
    /// A profile to serve, and the keys in it that do nothing here.
    Profile(Box<Profile>, Vec<ProfileError>),
    NotServed(ProfileError),
}

/// Keys of the seed documents and the Go version's profiles that have no meaning here:
/// accepted with a warning that says so, instead of refusing the whole profile set.
const NO_EFFECT: &[(&str, &str, &str)] = &[
    (
        "resources",
        "cpu_over_commit",
        "has no effect here: Proxmox schedules by `cores`; cap CPU time with `resources.cpulimit`",
    ),
    (
        "resources",
        "mem_over_commit",
        "has no effect here: each sandbox gets its `memory_mb`; ballooning is `resources.balloon`",
    ),
    (
        "resources",
        "allow_burst",
        "has no effect here: there are no pools to burst from; `resources.cpulimit` caps CPU time",
    ),
    ("artifacts", "endpoint", "has no effect here: guests upload to the daemon's artifact_upload_url"),
    ("artifacts", "upload", "has no effect here: guests upload to the daemon's artifact_upload_url"),
    ("artifacts", "ttl_minutes", "has no effect here: use `artifacts.retention_minutes`"),
];

/// Takes the no-effect keys out of `value` (so the strict schema accepts the rest), each as a
/// warning, and says whether the profile is one this daemon cannot serve.
/// A field and what to say about it.
type FieldNote = (String, String);

fn compatibility(value: &mut serde_json::Value) -> (Vec<FieldNote>, Option<FieldNote>) {
    let mut warnings = Vec::new();
    for (section, key, why) in NO_EFFECT {
        if let Some(map) = value.get_mut(*section).and_then(|s| s.as_object_mut())
            && map.remove(*key).is_some()
        {
            warnings.push((format!("{section}.{key}"), why.to_string()));
        }
    }
    let kind = value.get("type").and_then(|t| t.as_str()).map(str::to_ascii_lowercase);
    if kind.as_deref() == Some("lxc") {
        let why = "`lxc` containers are not provisioned by AgentLab, which runs agents in VMs only; use `type: vm` with a VM template".to_string();
        return (warnings, Some(("type".into(), why)));
    }
    if let Some(map) = value.as_object_mut()
        && map.remove("image").is_some()
    {
        warnings.push(("image".into(), "has no effect here: a VM sandbox is a clone of `template_vmid`".into()));
    }
    (warnings, None)
}

fn parse_document(path: &Path, document: usize, first_line: usize, text: &str) -> Result<Parsed, Vec<ProfileError>> {
    let mut value: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| {
        vec![ProfileError::Yaml {
            path: path.to_path_buf(),
            document,
            line: first_line,
            message: one_line(&e.to_string()),
        }]
    })?;
    let name = value.get("name").and_then(|n| n.as_str()).map(str::to_string);
    let field_error = |field: String, message: String| ProfileError::Field {
        path: path.to_path_buf(),
        document,
        profile: name.clone(),
        field,
        message,
    };
    if !value.is_object() {
        return Err(vec![field_error(
            "(document)".into(),
            "a profile document must be a mapping with at least `name` and `template_vmid`".into(),
        )]);
    }
    let (no_effect, not_served) = compatibility(&mut value);
    let warning = |(field, message): (String, String)| ProfileError::NoEffect {
        path: path.to_path_buf(),
        document,
        profile: name.clone(),
        field,
        message,
    };
    if let Some((field, message)) = not_served {
        return Ok(Parsed::NotServed(ProfileError::NotServed {
            path: path.to_path_buf(),
            document,
            profile: name.clone(),
            field,
            message,
        }));
    }
    let warnings: Vec<ProfileError> = no_effect.into_iter().map(warning).collect();
    let mut mounts = Vec::new();
    find_host_mounts(&value, "", &mut mounts);
    if !mounts.is_empty() {
        return Err(mounts
            .into_iter()
            .map(|f| field_error(f, "host mounts are not allowed: a sandbox must never see host paths".into()))
            .collect());
    }
    let profile: Profile = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let (field, message) = describe_serde_error(&e);
        vec![field_error(field, message)]
    })?;
    let problems = profile.validate();
    if problems.is_empty() {
        Ok(Parsed::Profile(Box::new(profile), warnings))
    } else {
        Err(problems.into_iter().map(|p| field_error(p.field, p.message)).collect())
    }
}

/// The dotted path of the bad field and a message without serde's internal wording.
fn describe_serde_error(e: &serde_path_to_error::Error<serde_json::Error>) -> (String, String) {
    let path = e.path().to_string();
    let inner = e.inner().to_string();
    // serde reports an unknown field at its parent's path; name the field itself.
    if let Some(rest) = inner.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        let full = if path == "." || path.is_empty() {
            field.to_string()
        } else if path == field || path.ends_with(&format!(".{field}")) {
            path.clone()
        } else {
            format!("{path}.{field}")
        };
        let expected = expected.trim_start_matches(',').trim();
        return (full, format!("unknown field; {expected}"));
    }
    if let Some(rest) = inner.strip_prefix("missing field `")
        && let Some((field, _)) = rest.split_once('`')
    {
        let full = if path == "." || path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
        return (full, "is required".to_string());
    }
    let field = if path == "." || path.is_empty() { "(document)".to_string() } else { path };
    (field, inner)
}

fn find_host_mounts(value: &serde_json::Value, prefix: &str, found: &mut Vec<String>) {
    if let Some(map) = value.as_object() {
        for (key, child) in map {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            if is_host_mount_key(key) {
                found.push(path.clone());
            }
            find_host_mounts(child, &path, found);
        }
    }
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (ProfileSet, Vec<ProfileError>) {
        let mut set = empty_set();
        let mut errors = Vec::new();
        load_file_text(Path::new("/p/test.yaml"), text, ProfileRules::default(), &mut set, &mut errors);
        (set, errors)
    }

    fn empty_set() -> ProfileSet {
        ProfileSet {
            dir: PathBuf::from("/p"),
            loaded_at: String::new(),
            profiles: BTreeMap::new(),
            skipped: Vec::new(),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn cpulist_needs_root_at_pam_so_an_api_token_daemon_refuses_it() {
        let text =
            "name: ok\ntemplate_vmid: 9000\n---\nname: pinned\ntemplate_vmid: 9000\nresources:\n  cpulist: 0-3\n";
        let mut set = empty_set();
        let mut errors = Vec::new();
        load_file_text(Path::new("/p/pin.yaml"), text, ProfileRules { api_token: true }, &mut set, &mut errors);
        assert!(errors.is_empty(), "not an error of the set: {errors:?}");
        let messages: Vec<String> = set.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(
            messages[0].starts_with(
                "/p/pin.yaml: document 2 (profile `pinned`): field `resources.cpulist`: Proxmox lets only root@pam"
            ),
            "{messages:?}"
        );
        assert!(messages[0].contains("proxmox_backend: shell"), "{messages:?}");
        assert_eq!(set.names(), ["ok"], "the other profile still loads");
        // With the shell backend (pvesh runs as root@pam) the same profile is fine.
        let (set, errors) = load(text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(set.names(), ["ok", "pinned"]);
    }

    #[test]
    fn seed_and_go_profiles_load_with_warnings_and_lxc_is_skipped_alone() {
        let text = "name: seedy\ntemplate_vmid: 9000\nresources:\n  balloon: false\n  cpu_over_commit: 2.0\n  mem_over_commit: 1.5\n  allow_burst: true\nartifacts:\n  endpoint: http://10.77.0.1:8846/upload\n---\nname: agent-claude\ntype: lxc\nimage: debian-12\ntemplate_vmid: 9100\n---\nname: plain\ntemplate_vmid: 9000\n";
        let (set, errors) = load(text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(set.names(), ["plain", "seedy"]);
        let warned: Vec<String> = set.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warned.len(), 4, "{warned:?}");
        for field in
            ["resources.cpu_over_commit", "resources.mem_over_commit", "resources.allow_burst", "artifacts.endpoint"]
        {
            assert!(
                warned.iter().any(|w| w.contains(&format!("(profile `seedy`): field `{field}`: has no effect here"))),
                "{field}: {warned:?}"
            );
        }
        let skipped: Vec<String> = set.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(skipped.len(), 1);
        assert!(
            skipped[0].starts_with("/p/test.yaml: document 2 (profile `agent-claude`): field `type`: `lxc` containers"),
            "{skipped:?}"
        );
        assert!(skipped[0].ends_with("this profile is not served"), "{skipped:?}");
        assert_eq!(
            set.get("seedy").map(|p| p.profile.resources.balloon),
            Some(Some(crate::model::profile::Balloon::Off))
        );
    }

    #[test]
    fn loads_every_document_and_skips_comment_only_ones() {
        let (set, errors) = load(
            "# comments only\n---\nname: a\ntemplate_vmid: 9000\n---\n# nothing\n---\nname: b\ntemplate_vmid: 9001\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(set.names(), ["a", "b"]);
        assert_eq!(set.get("b").map(|p| p.document), Some(4));
    }

    #[test]
    fn unknown_field_names_file_document_profile_and_full_field_path() {
        let (_, errors) =
            load("name: a\ntemplate_vmid: 9000\n---\nname: b\ntemplate_vmid: 9000\nresources:\n  cpus: 4\n");
        assert_eq!(errors.len(), 1);
        let text = errors[0].to_string();
        assert!(
            text.starts_with("/p/test.yaml: document 2 (profile `b`): field `resources.cpus`: unknown field"),
            "{text}"
        );
        assert!(text.contains("cores"), "{text}");
    }

    #[test]
    fn wrong_type_and_missing_field_are_named() {
        let (_, errors) = load("name: a\ntemplate_vmid: nine\n---\nname: b\n");
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(texts[0].contains("field `template_vmid`"), "{texts:?}");
        assert!(texts[1].contains("(profile `b`): field `template_vmid`: is required"), "{texts:?}");
    }

    #[test]
    fn host_mounts_are_refused_by_path() {
        let (_, errors) = load("name: a\ntemplate_vmid: 9000\nstorage:\n  host_mounts: [/etc]\n");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("field `storage.host_mounts`: host mounts are not allowed"));
    }

    #[test]
    fn duplicate_names_are_refused() {
        let (_, errors) = load("name: a\ntemplate_vmid: 9000\n---\nname: a\ntemplate_vmid: 9001\n");
        assert!(matches!(&errors[..], [ProfileError::Duplicate { document: 2, .. }]));
    }

    #[test]
    fn invalid_yaml_is_reported_with_its_document() {
        let (_, errors) = load("name: a\ntemplate_vmid: 9000\n---\nname: [unclosed\n");
        assert!(matches!(&errors[..], [ProfileError::Yaml { document: 2, line: 4, .. }]), "{errors:?}");
    }

    #[test]
    fn the_shipped_defaults_load_as_they_are() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        let set = load_dir(&shipped, ProfileRules { api_token: true })
            .unwrap_or_else(|e| panic!("shipped profiles must load (with the API backend too):\n{e}"));
        for name in ["yolo-ephemeral", "yolo-workspace", "interactive-dev", "small", "secure", "secure-small"] {
            assert!(set.get(name).is_some(), "missing shipped profile {name}");
        }
        let names = set.names();
        let resolved = crate::model::modifiers::resolve(&["+small".into(), "+secure".into()], &names);
        assert_eq!(resolved, Ok("secure-small".to_string()));
        assert_eq!(crate::model::modifiers::resolve(&["+small".into()], &names), Ok("small".to_string()));
    }
}
