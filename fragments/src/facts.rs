//! Facts about the host that steps need and the config does not say: its name and its OS family. Read
//! through the [`Host`], so a rooted run describes the tree, not the machine running the agent.

use crate::host::{Cmd, Host, Mode};
use anyhow::{bail, Result};
use std::fmt;
use std::path::Path;

/// The OS families Hearth configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OsFamily {
    FedoraAtomic,
    FedoraCoreos,
    /// Debian, Ubuntu and their derivatives: systemd distros booted with cloud-init.
    Debian,
}

impl fmt::Display for OsFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OsFamily::FedoraAtomic => "fedora-atomic",
            OsFamily::FedoraCoreos => "fedora-coreos",
            OsFamily::Debian => "debian",
        })
    }
}

/// Where an OS family keeps the things steps change. Each OS difference lives here, not in steps.
pub trait OsLayout: fmt::Debug + Sync {
    /// Where a local CA certificate is dropped for the trust store to pick up.
    fn ca_anchor(&self) -> &'static Path;
    /// The command that rebuilds the system bundle from the anchors.
    fn update_ca_trust(&self) -> Cmd;
    /// The system CA bundle that TLS clients read.
    fn ca_bundle(&self) -> &'static Path;
}

#[derive(Debug)]
struct Fedora;

impl OsLayout for Fedora {
    fn ca_anchor(&self) -> &'static Path {
        Path::new(crate::paths::MAGNUM_OPENSTACK_CA)
    }
    fn update_ca_trust(&self) -> Cmd {
        Cmd::new("update-ca-trust").arg("extract")
    }
    fn ca_bundle(&self) -> &'static Path {
        Path::new("/etc/pki/tls/certs/ca-bundle.crt")
    }
}

#[derive(Debug)]
struct Debian;

impl OsLayout for Debian {
    // update-ca-certificates only picks up files ending in .crt.
    fn ca_anchor(&self) -> &'static Path {
        Path::new("/usr/local/share/ca-certificates/openstack-ca.crt")
    }
    fn update_ca_trust(&self) -> Cmd {
        Cmd::new("update-ca-certificates")
    }
    fn ca_bundle(&self) -> &'static Path {
        Path::new("/etc/ssl/certs/ca-certificates.crt")
    }
}

impl OsFamily {
    /// Reads `/etc/os-release` (`ID`, `ID_LIKE`, `VARIANT_ID`).
    pub fn from_os_release(text: &str) -> Result<OsFamily> {
        let field = |name: &str| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().trim_matches(|c| c == '"' || c == '\'').to_ascii_lowercase())
                .unwrap_or_default()
        };
        let (id, like, variant) = (field("ID"), field("ID_LIKE"), field("VARIANT_ID"));
        let ids: Vec<&str> = std::iter::once(id.as_str()).chain(like.split_whitespace()).collect();
        if id == "fedora" && variant == "coreos" || id == "fedora-coreos" {
            Ok(OsFamily::FedoraCoreos)
        } else if ids.iter().any(|i| ["fedora", "rhel", "centos"].contains(i)) {
            Ok(OsFamily::FedoraAtomic)
        } else if ids.iter().any(|i| ["debian", "ubuntu"].contains(i)) {
            Ok(OsFamily::Debian)
        } else {
            bail!("unsupported OS (ID={id:?}, ID_LIKE={like:?}): Hearth knows Fedora Atomic, Fedora CoreOS and Debian/Ubuntu")
        }
    }

    pub fn layout(self) -> &'static dyn OsLayout {
        match self {
            OsFamily::FedoraAtomic | OsFamily::FedoraCoreos => &Fedora,
            OsFamily::Debian => &Debian,
        }
    }
}

/// What steps may ask about the host.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Facts {
    /// Short hostname (`.novalocal` and any domain dropped, as Magnum did).
    pub hostname: String,
    pub os: OsFamily,
}

impl Facts {
    pub fn gather(host: &Host) -> Result<Facts> {
        let os_release = host
            .read_to_string(Path::new("/etc/os-release"))?
            .or(host.read_to_string(Path::new("/usr/lib/os-release"))?)
            .ok_or_else(|| anyhow::anyhow!("neither /etc/os-release nor /usr/lib/os-release exists"))?;
        let os = OsFamily::from_os_release(&os_release)?;
        // The live system's name is the kernel's (cloud-init sets it early); a tree only has /etc/hostname.
        let hostname = match host.mode() {
            Mode::System => std::fs::read_to_string(crate::paths::KERNEL_HOSTNAME).ok(),
            _ => host.read_to_string(Path::new("/etc/hostname"))?,
        }
        .unwrap_or_default();
        let hostname = hostname.trim().split('.').next().unwrap_or_default().to_string();
        let hostname = if hostname.is_empty() { "localhost".to_string() } else { hostname };
        Ok(Facts { hostname, os })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_families_from_real_os_release_files() {
        let fcos = "NAME=\"Fedora Linux\"\nID=fedora\nVARIANT_ID=coreos\n";
        let atomic = "NAME=Fedora\nVERSION=\"29.20190101.0 (Atomic Host)\"\nID=fedora\nVARIANT_ID=atomic.host\n";
        let ubuntu = "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n";
        let bookworm = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(OsFamily::from_os_release(fcos).unwrap(), OsFamily::FedoraCoreos);
        assert_eq!(OsFamily::from_os_release(atomic).unwrap(), OsFamily::FedoraAtomic);
        assert_eq!(OsFamily::from_os_release(ubuntu).unwrap(), OsFamily::Debian);
        assert_eq!(OsFamily::from_os_release(bookworm).unwrap(), OsFamily::Debian);
        assert!(OsFamily::from_os_release("ID=arch\n").unwrap_err().to_string().contains("arch"));
    }
}
