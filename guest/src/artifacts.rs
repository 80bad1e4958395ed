//! The job's results: `report.json`, copies of it and of the log in `artifacts/`, and one
//! `agentlab-artifacts.tar.gz` of that directory with its size and SHA-256.

use agentlab_model::model::redact::Redactor;
use agentlab_model::protocol::guest::ReportStatus;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// `<run_dir>/report.json`, also inside the tarball.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub status: ReportStatus,
    pub exit_code: Option<i32>,
    pub duration_seconds: f64,
    pub commit: Option<String>,
    pub mode: agentlab_model::protocol::JobMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tarball {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub sha256: String,
}

/// Writes `report.json` in `run_dir` and copies it and the log (if any) into `artifacts`.
pub fn write_summary(summary: &RunSummary, run_dir: &Path, artifacts: &Path, log: Option<&Path>) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(summary).map_err(io::Error::other)?;
    let report = run_dir.join("report.json");
    crate::files::write_new(&report, &json, 0o600)?;
    crate::files::ensure_real_dir(artifacts)?;
    crate::files::copy_private(&report, &artifacts.join("report.json"))?;
    if let Some(log) = log {
        let name = log.file_name().map_or_else(|| "agent-runner.log".into(), |n| n.to_os_string());
        crate::files::copy_private(log, &artifacts.join(name))?;
    }
    Ok(())
}

/// Files up to this size are redacted in memory; larger ones stream through a redacted
/// temporary copy (security review F9: files over 64 MiB shipped their secrets).
const IN_MEMORY_REDACTION_BYTES: u64 = 64 * 1024 * 1024;

/// Packs the contents of `dir` into `out` (entries relative to `dir`), every secret value
/// replaced in the files' contents and in their names: an agent that writes a secret into an
/// artifact, or names a file after one, does not ship it. Symlinks and other special files
/// are skipped: the agent controls this directory and a link could point at the secrets.
pub fn pack(dir: &Path, out: &Path, redactor: &Redactor) -> io::Result<Tarball> {
    if !std::fs::symlink_metadata(dir)?.is_dir() {
        return Err(io::Error::other(format!("{} is not a directory", dir.display())));
    }
    let file = crate::files::create_private(out)?;
    let mut builder = tar::Builder::new(GzEncoder::new(file, Compression::default()));
    builder.follow_symlinks(false);
    let scratch = out.with_extension("redacting");
    let packed = add_dir(&mut builder, dir, Path::new(""), redactor, &scratch);
    let _ = std::fs::remove_file(&scratch);
    packed?;
    builder.into_inner()?.finish()?.sync_all()?;
    let (size_bytes, sha256) = digest(out)?;
    Ok(Tarball { path: out.to_path_buf(), size_bytes, sha256 })
}

fn add_dir(
    builder: &mut tar::Builder<GzEncoder<File>>,
    dir: &Path,
    prefix: &Path,
    redactor: &Redactor,
    scratch: &Path,
) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        // The whole relative path is redacted, so a secret split across a directory and a
        // file name (`abc/def…`, base64 has `/`) is caught too.
        let raw = prefix.join(entry.file_name());
        let name = PathBuf::from(redactor.redact(&raw.to_string_lossy()));
        // `DirEntry::file_type` does not follow links.
        let kind = entry.file_type()?;
        if kind.is_dir() {
            builder.append_dir(&name, &path)?;
            add_dir(builder, &path, &raw, redactor, scratch)?;
        } else if kind.is_file() {
            let mut file = File::open(&path)?;
            let metadata = file.metadata()?;
            let mut header = tar::Header::new_gnu();
            header.set_metadata(&metadata);
            if redactor.is_empty() {
                builder.append_file(&name, &mut file)?;
            } else if metadata.len() <= IN_MEMORY_REDACTION_BYTES {
                let mut bytes = Vec::with_capacity(metadata.len() as usize);
                file.read_to_end(&mut bytes)?;
                let clean = redactor.redact_bytes(&bytes);
                header.set_size(clean.len() as u64);
                builder.append_data(&mut header, &name, clean.as_slice())?;
            } else {
                let size = redact_to(&mut file, scratch, redactor)?;
                header.set_size(size);
                builder.append_data(&mut header, &name, File::open(scratch)?)?;
            }
        }
    }
    Ok(())
}

/// Streams `input` through the redactor into `scratch` (private); the redacted size.
fn redact_to(input: &mut File, scratch: &Path, redactor: &Redactor) -> io::Result<u64> {
    use std::io::Write;
    let mut out = crate::files::create_private(scratch)?;
    let mut stream = agentlab_model::model::redact::StreamRedactor::new(redactor.clone());
    let mut buf = vec![0; 1024 * 1024];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let clean = stream.push(&buf[..n]);
        out.write_all(&clean)?;
        size += clean.len() as u64;
    }
    let tail = stream.finish();
    out.write_all(&tail)?;
    out.sync_all()?;
    Ok(size + tail.len() as u64)
}

/// Size and lowercase hex SHA-256 of a file.
pub fn digest(path: &Path) -> io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let hex = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((size, hex))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::test_dir;
    use flate2::read::GzDecoder;

    /// Security review F9: a secret at the end of a 100 MiB artifact, and one in a name.
    #[test]
    fn big_files_and_names_are_redacted_too() {
        use std::io::Write;
        const SECRET: &str = "hunter2-secret-value";
        let dir = test_dir("artifacts-big");
        let artifacts = dir.join("artifacts");
        std::fs::create_dir_all(artifacts.join(format!("dir-{SECRET}"))).unwrap();
        std::fs::write(artifacts.join(format!("dir-{SECRET}")).join(format!("{SECRET}.txt")), "x").unwrap();
        let mut big = File::create(artifacts.join("big.bin")).unwrap();
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..100 {
            big.write_all(&zeros).unwrap();
        }
        // Across a 1 MiB read boundary of the streaming pass, then at the very end.
        big.write_all(&SECRET.as_bytes()[..5]).unwrap();
        big.write_all(&SECRET.as_bytes()[5..]).unwrap();
        big.write_all(format!(" tail {SECRET}").as_bytes()).unwrap();
        drop(big);
        let redactor = Redactor::new([SECRET]);
        let tarball = pack(&artifacts, &dir.join("bundle.tar.gz"), &redactor).unwrap();
        assert!(!dir.join("bundle.tar.redacting").exists(), "no scratch copy is left");
        let bytes = std::fs::read(&tarball.path).unwrap();
        let mut archive = tar::Archive::new(GzDecoder::new(bytes.as_slice()));
        let mut names = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            assert!(!content.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "{name} holds the secret");
            if name == "big.bin" {
                assert!(content.ends_with(b"[REDACTED] tail [REDACTED]"), "the end of the big file is redacted");
            }
            names.push(name);
        }
        assert!(names.iter().all(|n| !n.contains(SECRET)), "{names:?}");
        assert!(names.iter().any(|n| n == "dir-[REDACTED]/[REDACTED].txt"), "{names:?}");
    }

    #[test]
    fn the_tarball_holds_relative_regular_files_only() {
        let dir = test_dir("artifacts");
        let run = dir.join("run");
        let artifacts = run.join("artifacts");
        std::fs::create_dir_all(artifacts.join("sub")).unwrap();
        std::fs::write(artifacts.join("out.txt"), "result").unwrap();
        std::fs::write(artifacts.join("sub").join("deep.txt"), "deep").unwrap();
        std::fs::write(dir.join("secret"), "do not ship").unwrap();
        std::os::unix::fs::symlink(dir.join("secret"), artifacts.join("leak")).unwrap();
        std::fs::write(run.join("agent-runner.log"), "log").unwrap();
        let summary = RunSummary {
            status: ReportStatus::Completed,
            exit_code: Some(0),
            duration_seconds: 1.5,
            commit: Some("abc".into()),
            mode: agentlab_model::protocol::JobMode::Dangerous,
        };
        write_summary(&summary, &run, &artifacts, Some(&run.join("agent-runner.log"))).unwrap();
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("report.json")).unwrap_or_default()).unwrap_or_default();
        assert_eq!(report["status"], "COMPLETED");
        assert_eq!(report["exit_code"], 0);

        std::fs::write(artifacts.join("leak.txt"), "key=hunter2-secret-value\n").unwrap();
        let redactor = Redactor::new(["hunter2-secret-value"]);
        let tarball = pack(&artifacts, &run.join("agentlab-artifacts.tar.gz"), &redactor).unwrap();
        let bytes = std::fs::read(&tarball.path).unwrap_or_default();
        assert_eq!(tarball.size_bytes, bytes.len() as u64);
        assert_eq!(tarball.sha256.len(), 64);
        let linked = dir.join("linked");
        std::os::unix::fs::symlink(&artifacts, &linked).unwrap();
        assert!(
            pack(&linked, &dir.join("x.tar.gz"), &Redactor::default()).is_err(),
            "a linked artifacts dir is not followed"
        );
        let mut archive = tar::Archive::new(GzDecoder::new(bytes.as_slice()));
        let mut names: Vec<String> = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
            if name == "leak.txt" {
                let mut text = String::new();
                entry.read_to_string(&mut text).unwrap();
                assert_eq!(text, "key=[REDACTED]\n", "secrets written into artifacts are redacted");
            }
            names.push(name);
        }
        assert_eq!(names, ["agent-runner.log", "leak.txt", "out.txt", "report.json", "sub", "sub/deep.txt"]);
        std::fs::write(dir.join("abc"), "abc").unwrap();
        let known = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(digest(&dir.join("abc")).ok(), Some((3, known.to_string())));
        let _ = std::fs::remove_dir_all(dir);
    }
}
