//! A volume's bytes under the QEMU runtime: a qcow2 file per volume in
//! `<root>/volumes/<storage>/`, backed by the image the volume came from (so a linked clone
//! of a template shares the template's image, as on LVM-thin or ZFS) or blank, sized as the
//! volume is, and grown when the volume was resized.

use super::QemuRuntime;
use super::plan::Drive;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A disk of a VM about to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub key: String,
    pub overlay: PathBuf,
    pub size: u64,
    pub image: Option<PathBuf>,
}

pub fn overlay_path(runtime: &QemuRuntime, storage: &str, volname: &str) -> PathBuf {
    runtime.root.join("volumes").join(storage).join(format!("{}.qcow2", volname.replace('/', "_")))
}

/// `qcow2` when the file starts with QEMU's magic, else `raw`.
pub fn format_of(path: &Path) -> &'static str {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let ok = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok();
    if ok && magic == *b"QFI\xfb" { "qcow2" } else { "raw" }
}

/// The virtual size of an image file (a qcow2 header's size field, else the file length).
pub fn virtual_size(path: &Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    if format_of(path) == "qcow2" {
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(24))?;
        let mut size = [0u8; 8];
        file.read_exact(&mut size)?;
        return Ok(u64::from_be_bytes(size));
    }
    Ok(std::fs::metadata(path)?.len())
}

fn qemu_img(args: &[&str]) -> Result<String, String> {
    let out = Command::new("qemu-img").args(args).output().map_err(|e| format!("cannot run qemu-img: {e}"))?;
    if !out.status.success() {
        return Err(format!("qemu-img {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The overlay exists, at least as large as the volume.
pub fn prepare(_runtime: &QemuRuntime, disk: &Disk) -> Result<Drive, String> {
    let file = disk.overlay.to_string_lossy().into_owned();
    if let Some(dir) = disk.overlay.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    if !disk.overlay.exists() {
        let size = disk.size.to_string();
        match &disk.image {
            Some(image) => {
                let base = image.to_string_lossy().into_owned();
                // Never smaller than the image: a volume imported from it is its size.
                let size = disk.size.max(virtual_size(image).map_err(|e| format!("{base}: {e}"))?).to_string();
                qemu_img(&["create", "-q", "-f", "qcow2", "-F", format_of(image), "-b", &base, &file, &size])?;
            }
            None => {
                qemu_img(&["create", "-q", "-f", "qcow2", &file, &size])?;
            }
        }
    } else if virtual_size(&disk.overlay).map_err(|e| format!("{file}: {e}"))? < disk.size {
        qemu_img(&["resize", "-q", &file, &disk.size.to_string()])?;
    }
    Ok(Drive { key: disk.key.clone(), file: disk.overlay.clone(), format: "qcow2", cdrom: false })
}

pub fn remove(overlay: &Path) {
    let _ = std::fs::remove_file(overlay);
}

/// Internal snapshots of a stopped VM's overlays (`qemu-img snapshot -c|-a|-d`).
pub fn snapshot(overlays: &[PathBuf], flag: &str, name: &str) -> Result<(), String> {
    for overlay in overlays.iter().filter(|o| o.exists()) {
        qemu_img(&["snapshot", flag, name, &overlay.to_string_lossy()])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("a.img");
        std::fs::write(&raw, vec![0u8; 4096]).unwrap();
        assert_eq!((format_of(&raw), virtual_size(&raw).unwrap()), ("raw", 4096));
        let mut header = b"QFI\xfb".to_vec();
        header.extend([0u8; 20]);
        header.extend((10u64 << 30).to_be_bytes());
        let qcow = dir.path().join("b.qcow2");
        std::fs::write(&qcow, header).unwrap();
        assert_eq!((format_of(&qcow), virtual_size(&qcow).unwrap()), ("qcow2", 10 << 30));
    }
}
