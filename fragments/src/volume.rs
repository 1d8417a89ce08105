//! A Cinder volume as a data directory: find the attached disk by the volume id, give it an xfs
//! filesystem unless it has one, record it in `/etc/fstab` by UUID and mount it.
//!
//! Used by docker-storage (the runtime's data directory) and etcd (`/var/lib/etcd`).
//!
//! - **Finding the disk.** Nova attaches the volume with its id as the disk serial; udev names it
//!   `/dev/disk/by-id/virtio-<first 20 characters of the id>` (virtio-blk keeps 20) or
//!   `scsi-0QEMU_QEMU_HARDDISK_<the id, possibly cut>` (virtio-scsi). Magnum's rule, any name ending with the
//!   first 20 characters, is accepted too. The link can appear late: the directory is polled every half
//!   second, asking udev to replay block events (`udevadm trigger`, best effort) now and then, for at
//!   most `agent.device_wait_secs` (default 60 s, Magnum's 60 × 0.5 s); then the error names the volume,
//!   the names looked for and what the directory held.
//! - **Formatting.** Only when `blkid` finds no xfs on it (Magnum's docker storage formatted on every
//!   run). The filesystem UUID is set to the volume id (`mkfs.xfs -m uuid=`), so the fstab entry is known
//!   before the disk is even seen (rooted and dry runs) and names the volume for whoever reads it.
//!   `-n ftype=1`: overlay2 and containerd's overlayfs need d_type support.
//! - **fstab.** Any entry for the mount point is replaced by ours (a comment line saying what it is, then
//!   `UUID=… <dir> xfs defaults 0 0`); every other line is kept. Magnum appended a line per run.
//! - **Mounting.** `mount <dir>` (so the fstab entry itself is proven) only when the mount table does not
//!   show the volume there already; something else mounted there is an error.
//!
//! A converged node is checked without any command: the fstab entry is ours and the mount table shows
//! the volume's device at the mount point. A host with no mount table at all (a rooted tree) holds only
//! the fstab entry and the directory; the live-only commands are recorded the first time, when the entry
//! is written.

use crate::host::{Cmd, CommandError, FileSpec};
use crate::http::RetryPolicy;
use crate::step::Context;
use anyhow::{bail, Context as _, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BY_ID: &str = "/dev/disk/by-id";
const FSTAB: &str = "/etc/fstab";
const MOUNTINFO: &str = "/proc/self/mountinfo";
/// How many characters of the volume id a virtio-blk serial holds.
const SERIAL_LEN: usize = 20;
const VIRTIO_PREFIX: &str = "virtio-";
const SCSI_PREFIX: &str = "scsi-0QEMU_QEMU_HARDDISK_";
const POLL: Duration = Duration::from_millis(500);
/// How often udev is asked to replay block events while waiting.
const TRIGGER_EVERY: Duration = Duration::from_secs(5);
const FSTAB_MARK: &str = "# hearth-agent:";

/// The attached disk of a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its `/dev/disk/by-id` link, which commands are given.
    pub path: PathBuf,
    /// False when this host cannot look for devices (a rooted tree, a dry run): `path` is then the name
    /// a live node would have.
    pub seen: bool,
}

/// Formats (if needed), records in fstab and mounts the Cinder volume `volume_id` at `mount_point`.
/// `what` says what the volume is for ("container storage"), in the fstab comment and in errors; `mode`
/// is the mount point's (the owner of the data decides, e.g. etcd wants 0700).
pub fn prepare(ctx: &Context, volume_id: &str, mount_point: &str, mode: u32, what: &str) -> Result<()> {
    check_volume_id(volume_id, what)?;
    let mount_path = Path::new(mount_point);
    let mount_table = ctx.host.read_to_string(Path::new(MOUNTINFO))?;
    let fstab = ctx.host.read_to_string(Path::new(FSTAB))?.unwrap_or_default();

    // Converged already? Checked without commands, so a second run changes and runs nothing.
    if is_in_place(ctx, volume_id, mount_point)? {
        ctx.host.ensure_dir(mount_path, mode)?;
        return Ok(());
    }

    let device = wait_for_device(ctx, volume_id, what)?;
    ctx.host.ensure_dir(mount_path, mode)?;
    let uuid = ensure_xfs(ctx, &device, volume_id, what)?;
    let entry = fstab_entry(&uuid, mount_point, volume_id, what);
    ctx.host.write_file(&FileSpec::new(FSTAB, with_entry(&fstab, mount_point, &entry), 0o644))?;

    let mounted = mount_table.as_deref().and_then(|table| mounted_device(table, mount_point));
    let ours = device_number(ctx, &device)?;
    match (mounted, ours) {
        (Some(mounted), Some(ours)) if mounted == ours => {}
        (Some(mounted), _) if device.seen => bail!(
            "{mount_point} already has device {}:{} mounted, not Cinder volume {volume_id} ({what}, {})",
            mounted.0,
            mounted.1,
            device.path.display()
        ),
        _ => {
            ctx.host
                .run(&Cmd::new("mount").arg(mount_point))
                .with_context(|| format!("mounting Cinder volume {volume_id} ({what}) at {mount_point}"))?;
        }
    }
    Ok(())
}

/// Whether the volume is the data directory already, checked without commands: our fstab entry, and
/// (where the host has a mount table) the volume's disk mounted there. What [`prepare`] leaves behind.
pub fn is_in_place(ctx: &Context, volume_id: &str, mount_point: &str) -> Result<bool> {
    let fstab = ctx.host.read_to_string(Path::new(FSTAB))?.unwrap_or_default();
    if !has_our_entry(&fstab, mount_point) {
        return Ok(false);
    }
    let Some(table) = ctx.host.read_to_string(Path::new(MOUNTINFO))? else {
        return Ok(true);
    };
    Ok(match (mounted_device(&table, mount_point), find_device(ctx, volume_id)?) {
        (Some(mounted), Some(device)) => device_number(ctx, &device)? == Some(mounted),
        _ => false,
    })
}

/// Whether the mount table shows anything mounted at `mount_point` (false on a host without one).
pub fn is_mounted(ctx: &Context, mount_point: &str) -> Result<bool> {
    Ok(ctx.host.read_to_string(Path::new(MOUNTINFO))?.is_some_and(|t| mounted_device(&t, mount_point).is_some()))
}

/// Cinder ids are UUIDs; the filesystem UUID is made from it.
fn check_volume_id(id: &str, what: &str) -> Result<()> {
    let groups: Vec<&str> = id.split('-').collect();
    let shape = groups.iter().map(|g| g.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12];
    if !shape || !groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit())) {
        bail!("{what}: {id:?} is not a Cinder volume id (a UUID such as 9c1e2d3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f)");
    }
    Ok(())
}

/// Whether a `/dev/disk/by-id` name is the disk (not a partition) of volume `id`.
fn is_volume_name(name: &str, id: &str) -> bool {
    let serial = &id[..SERIAL_LEN.min(id.len())];
    if name.rsplit_once("-part").is_some_and(|(_, n)| n.parse::<u32>().is_ok()) {
        return false;
    }
    name == format!("{VIRTIO_PREFIX}{serial}")
        || name.strip_prefix(SCSI_PREFIX).is_some_and(|s| s.len() >= serial.len() && id.starts_with(s))
        || name.ends_with(serial)
}

/// The names under `/dev/disk/by-id`, sorted (none when the directory does not exist yet).
fn by_id_names(ctx: &Context) -> Result<Vec<String>> {
    let dir = ctx.host.resolve(Path::new(BY_ID))?;
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {BY_ID}")),
    };
    let mut names = Vec::new();
    for entry in entries {
        names.push(entry.with_context(|| format!("listing {BY_ID}"))?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// The volume's disk if it is there now; a virtio name is preferred.
fn find_device(ctx: &Context, id: &str) -> Result<Option<Device>> {
    let names = by_id_names(ctx)?;
    let mut found: Vec<&String> = names.iter().filter(|n| is_volume_name(n, id)).collect();
    found.sort_by_key(|n| !n.starts_with(VIRTIO_PREFIX));
    Ok(found.first().map(|name| Device { path: Path::new(BY_ID).join(name.as_str()), seen: true }))
}

/// The volume's disk, waited for; on a host that cannot look for devices, the name a live node would
/// give it.
pub fn wait_for_device(ctx: &Context, id: &str, what: &str) -> Result<Device> {
    check_volume_id(id, what)?;
    let wait = Duration::from_secs(ctx.config.agent.device_wait_secs);
    let polls = RetryPolicy { initial_backoff: POLL, max_backoff: POLL, deadline: wait, max_attempts: None };
    let started = Instant::now();
    let mut last_trigger: Option<Instant> = None;
    let mut trigger_error = None;
    let mut missed = 0;
    loop {
        if let Some(device) = find_device(ctx, id)? {
            return Ok(device);
        }
        missed += 1;
        if polls.next_delay(missed, started.elapsed(), None).is_none() {
            break;
        }
        if last_trigger.is_none_or(|t| t.elapsed() >= TRIGGER_EVERY) {
            last_trigger = Some(Instant::now());
            let trigger = Cmd::new("udevadm")
                .args(["trigger", "--action=add", "--subsystem-match=block"])
                .timeout(Duration::from_secs(30));
            match ctx.host.run(&trigger) {
                Ok(out) if !out.ran => {
                    let name = format!("{VIRTIO_PREFIX}{}", &id[..SERIAL_LEN]);
                    return Ok(Device { path: Path::new(BY_ID).join(name), seen: false });
                }
                Ok(_) => {}
                // Best effort: without udev (a container) the link may still come; the wait goes on.
                Err(e) => trigger_error = Some(format!("{e:#}")),
            }
        }
        // Counted after the trigger, which takes its own time: no sleep reaches past the wait.
        if let Some(poll) = polls.next_delay(missed, started.elapsed(), None) {
            std::thread::sleep(poll);
        }
    }
    let names = by_id_names(ctx)?;
    let listed = if names.is_empty() { "nothing".to_string() } else { names.join(", ") };
    let serial = &id[..SERIAL_LEN];
    let mut message = format!(
        "{what}: Cinder volume {id} did not appear within {} s: no {BY_ID}/{VIRTIO_PREFIX}{serial} or \
         {SCSI_PREFIX}{serial}… (is the volume attached to this server?); {BY_ID} holds {listed}",
        wait.as_secs()
    );
    if let Some(e) = trigger_error {
        message.push_str(&format!("; asking udev to look again failed: {e}"));
    }
    bail!(message)
}

/// The device number (major, minor) behind the link, when the device was seen.
fn device_number(ctx: &Context, device: &Device) -> Result<Option<(u32, u32)>> {
    if !device.seen {
        return Ok(None);
    }
    let real = ctx.host.resolve(&device.path)?;
    let meta = std::fs::metadata(&real).with_context(|| format!("inspecting {}", device.path.display()))?;
    Ok(Some(split_dev(meta.rdev())))
}

/// Linux's encoding of a dev_t (glibc's `gnu_dev_major`/`gnu_dev_minor`).
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// Makes sure the device holds xfs; returns the filesystem UUID.
fn ensure_xfs(ctx: &Context, device: &Device, id: &str, what: &str) -> Result<String> {
    let shown = device.path.display().to_string();
    let blkid = Cmd::new("blkid").args(["--probe", "--output", "export"]).arg(&shown).reads_only();
    let found = match ctx.host.run(&blkid) {
        Ok(out) if !out.ran => None,
        Ok(out) => Some(Probe::from_export(&out.stdout)),
        // blkid's exit status 2: nothing it recognises on the device, a fresh volume.
        Err(e) if exit_code(&e) == Some(2) => Some(Probe::default()),
        Err(e) => return Err(e).with_context(|| format!("probing Cinder volume {id} ({what})")),
    };
    if let Some(Probe { fstype: Some(fstype), uuid: Some(uuid) }) = &found {
        if fstype == "xfs" {
            return Ok(uuid.clone());
        }
    }
    let uuid = id.to_ascii_lowercase();
    let mkfs = Cmd::new("mkfs.xfs")
        .args(["-f", "-n", "ftype=1", "-m"])
        .arg(format!("uuid={uuid}"))
        .arg(&shown)
        .timeout(Duration::from_secs(600));
    let had = found.and_then(|p| p.fstype).map(|t| format!(" (it held {t})")).unwrap_or_default();
    ctx.host.run(&mkfs).with_context(|| format!("formatting Cinder volume {id} ({what}) as xfs{had}"))?;
    Ok(uuid)
}

/// What `blkid --output export` says about a device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Probe {
    fstype: Option<String>,
    uuid: Option<String>,
}

impl Probe {
    fn from_export(text: &str) -> Probe {
        let field = |name: &str| {
            text.lines().filter_map(|l| l.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v.trim().to_string())
        };
        Probe { fstype: field("TYPE"), uuid: field("UUID") }
    }
}

/// The exit status of a command that failed, when it ran to the end.
pub(crate) fn exit_code(error: &anyhow::Error) -> Option<i32> {
    match error.downcast_ref::<CommandError>()? {
        CommandError::Failed { status, .. } => status.rsplit(' ').next()?.parse().ok(),
        _ => None,
    }
}

fn fstab_entry(uuid: &str, mount_point: &str, id: &str, what: &str) -> String {
    format!("{FSTAB_MARK} {what}, Cinder volume {id}, at {mount_point}\nUUID={uuid} {mount_point} xfs defaults 0 0\n")
}

/// The fields of an fstab line that is an entry (not blank, not a comment).
fn entry_fields(line: &str) -> Option<Vec<&str>> {
    let trimmed = line.trim();
    (!trimmed.is_empty() && !trimmed.starts_with('#')).then(|| trimmed.split_whitespace().collect())
}

fn is_our_comment(line: &str, mount_point: &str) -> bool {
    line.starts_with(FSTAB_MARK) && line.trim_end().ends_with(&format!(" at {mount_point}"))
}

/// Whether fstab holds our entry for the mount point: our comment followed by an xfs entry by UUID.
fn has_our_entry(fstab: &str, mount_point: &str) -> bool {
    let lines: Vec<&str> = fstab.lines().collect();
    lines.windows(2).any(|pair| {
        is_our_comment(pair[0], mount_point)
            && entry_fields(pair[1])
                .is_some_and(|f| f.len() >= 3 && f[0].starts_with("UUID=") && f[1] == mount_point && f[2] == "xfs")
    })
}

/// `fstab` with every entry for `mount_point` (and our comments about it) replaced by `entry`.
fn with_entry(fstab: &str, mount_point: &str, entry: &str) -> String {
    let mut out = String::new();
    for line in fstab.lines() {
        let for_mount_point = entry_fields(line).is_some_and(|f| f.get(1) == Some(&mount_point));
        if !for_mount_point && !is_our_comment(line, mount_point) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(entry);
    out
}

/// The device number of the top-most mount at `mount_point` in a `/proc/self/mountinfo` text.
fn mounted_device(mountinfo: &str, mount_point: &str) -> Option<(u32, u32)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            if unescape_mountinfo(fields.get(4)?) != mount_point {
                return None;
            }
            let (major, minor) = fields.get(2)?.split_once(':')?;
            Some((major.parse().ok()?, minor.parse().ok()?))
        })
        .next_back()
}

/// Undoes the octal escapes (`\040` for a space) of mountinfo fields.
pub fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(digits)) = (bytes[i], octal) {
            let value = digits.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "9c1e2d3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f";

    #[test]
    fn by_id_names_of_virtio_and_scsi_disks_match_but_partitions_and_others_do_not() {
        assert!(is_volume_name("virtio-9c1e2d3f-4a5b-6c7d-8", ID));
        assert!(is_volume_name("scsi-0QEMU_QEMU_HARDDISK_9c1e2d3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f", ID));
        assert!(is_volume_name("scsi-0QEMU_QEMU_HARDDISK_9c1e2d3f-4a5b-6c7d-8", ID));
        assert!(is_volume_name("ata-QEMU_HARDDISK_9c1e2d3f-4a5b-6c7d-8", ID));
        assert!(!is_volume_name("virtio-9c1e2d3f-4a5b-6c7d-8-part1", ID));
        assert!(!is_volume_name("virtio-0f6b6c0e-3d5b-4a4e-8", ID));
        assert!(!is_volume_name("scsi-0QEMU_QEMU_HARDDISK_9c1e2d3f-4a5b-6c7d-8e9f-0a1b2c3d4e50", ID));
    }

    #[test]
    fn volume_ids_must_be_uuids() {
        assert!(check_volume_id(ID, "x").is_ok());
        let err = check_volume_id("vol-1", "container storage").unwrap_err().to_string();
        assert!(err.contains("container storage") && err.contains("\"vol-1\""), "{err}");
        assert!(check_volume_id("9c1e2d3f-4a5b-6c7d-8e9f-0a1b2c3d4e5g", "x").is_err());
    }

    #[test]
    fn fstab_keeps_other_lines_and_replaces_entries_for_the_mount_point() {
        let before = "# /etc/fstab\nUUID=abc / ext4 errors=remount-ro 0 1\n/dev/vdb /var/lib/docker xfs defaults 0 0\n\
                      /dev/vdb /var/lib/docker xfs defaults 0 0\n";
        let entry = fstab_entry(ID, "/var/lib/docker", ID, "container storage");
        let after = with_entry(before, "/var/lib/docker", &entry);
        assert_eq!(
            after,
            format!(
                "# /etc/fstab\nUUID=abc / ext4 errors=remount-ro 0 1\n# hearth-agent: container storage, Cinder volume \
                 {ID}, at /var/lib/docker\nUUID={ID} /var/lib/docker xfs defaults 0 0\n"
            )
        );
        assert!(has_our_entry(&after, "/var/lib/docker"));
        assert!(!has_our_entry(before, "/var/lib/docker"));
        assert_eq!(with_entry(&after, "/var/lib/docker", &entry), after, "replacing is idempotent");
        let other = with_entry(&after, "/var/lib/etcd", &fstab_entry(ID, "/var/lib/etcd", ID, "etcd data"));
        assert!(has_our_entry(&other, "/var/lib/docker") && has_our_entry(&other, "/var/lib/etcd"), "{other}");
    }

    #[test]
    fn the_top_most_mount_is_read_from_mountinfo() {
        let table = "22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
                     90 22 0:45 / /var/lib/docker rw shared:40 - tmpfs tmpfs rw\n\
                     91 90 7:3 / /var/lib/docker rw,relatime shared:41 - xfs /dev/loop3 rw\n\
                     92 22 7:4 / /mnt/with\\040space rw - xfs /dev/loop4 rw\n";
        assert_eq!(mounted_device(table, "/var/lib/docker"), Some((7, 3)));
        assert_eq!(mounted_device(table, "/mnt/with space"), Some((7, 4)));
        assert_eq!(mounted_device(table, "/var/lib/containerd"), None);
    }

    #[test]
    fn device_numbers_split_like_glibc() {
        assert_eq!(split_dev(0x0703), (7, 3));
        assert_eq!(split_dev((259 << 8) | 1), (259, 1));
        // glibc's makedev for a major and minor beyond the old 8-bit fields.
        let (major, minor) = (0x12008u64, 0x305u64);
        let dev = ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12);
        assert_eq!(split_dev(dev), (0x12008, 0x305));
    }

    #[test]
    fn blkid_export_is_read() {
        let probe = Probe::from_export("DEVNAME=/dev/vdb\nUUID=1234\nBLOCK_SIZE=512\nTYPE=xfs\n");
        assert_eq!(probe, Probe { fstype: Some("xfs".into()), uuid: Some("1234".into()) });
        assert_eq!(Probe::from_export(""), Probe::default());
    }
}
