//! The config values that are one of a few words: each a type, with the one list of its words that the
//! node's loaders, its steps and the server's validation all use. A value is written and read as its
//! word (serde, heat-params, `Display`), so the native document and heat-params keep Magnum's spelling.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A choice's word list for messages: `must be one of flannel, calico`.
fn allowed(words: &[&str]) -> String {
    format!("must be one of {}", words.join(", "))
}

/// What a heat-params slot needs of any choice type.
pub trait Choice: fmt::Debug {
    /// Sets the value from its word, or says which words are allowed.
    fn set_word(&mut self, word: &str) -> Result<(), String>;
    fn word(&self) -> &'static str;
}

macro_rules! choice {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+ } default $default:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value's word, in the order messages list them.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            pub fn word(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::$default
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(word: &str) -> Result<Self, String> {
                match word {
                    $($word => Ok($name::$variant),)+
                    _ => Err(allowed(Self::WORDS)),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.word())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.word())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let word = String::deserialize(deserializer)?;
                word.parse().map_err(|reason| serde::de::Error::custom(format!("{word:?}: {reason}")))
            }
        }

        impl Choice for $name {
            fn set_word(&mut self, word: &str) -> Result<(), String> {
                *self = word.parse()?;
                Ok(())
            }
            fn word(&self) -> &'static str {
                $name::word(*self)
            }
        }
    };
}

choice! {
    /// The pod network (`NETWORK_DRIVER`).
    NetworkDriver {
        Flannel = "flannel",
        Calico = "calico",
    } default Flannel
}

choice! {
    /// flannel's backend (`FLANNEL_BACKEND`).
    FlannelBackend {
        Udp = "udp",
        Vxlan = "vxlan",
        HostGw = "host-gw",
    } default Vxlan
}

choice! {
    /// The cgroup driver of the kubelet and the runtime (`CGROUP_DRIVER`).
    CgroupDriver {
        Cgroupfs = "cgroupfs",
        Systemd = "systemd",
    } default Cgroupfs
}

choice! {
    /// The container runtime asked for (`CONTAINER_RUNTIME`, later Magnum releases); what runs is
    /// [`crate::kube::RuntimeKind`], decided with the Kubernetes release.
    RuntimeChoice {
        /// Not given: containerd from Kubernetes 1.24 (no dockershim), docker before, as Magnum did.
        ByRelease = "",
        Docker = "docker",
        Containerd = "containerd",
        /// Later Magnum releases' name for docker on the host: docker where a dockershim exists.
        HostDocker = "host-docker",
    } default ByRelease
}

choice! {
    /// docker's storage driver (`DOCKER_STORAGE_DRIVER`); what runs is
    /// [`crate::runtime::StorageDriver`].
    StorageDriverChoice {
        /// Not given: overlay2.
        Default = "",
        Overlay2 = "overlay2",
        Overlay = "overlay",
        Devicemapper = "devicemapper",
    } default Default
}

choice! {
    /// The SELinux mode the agent sets and persists (native config only).
    SelinuxMode {
        /// Magnum's choice.
        Permissive = "permissive",
        Enforcing = "enforcing",
        Disabled = "disabled",
    } default Permissive
}

choice! {
    /// The ingress controller Magnum deployed (`INGRESS_CONTROLLER`); Hearth deploys none yet and keeps
    /// the value for tools.
    IngressController {
        None = "",
        Traefik = "traefik",
        Octavia = "octavia",
    } default None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_anything_else_names_the_allowed_ones() {
        for word in RuntimeChoice::WORDS {
            let choice: RuntimeChoice = word.parse().unwrap();
            assert_eq!(choice.word(), *word);
            assert_eq!(serde_json::to_string(&choice).unwrap(), format!("{word:?}"));
        }
        assert_eq!(
            "btrfs".parse::<StorageDriverChoice>().unwrap_err(),
            "must be one of , overlay2, overlay, devicemapper"
        );
        let err = serde_json::from_str::<NetworkDriver>("\"weave\"").unwrap_err().to_string();
        assert!(err.contains("\"weave\": must be one of flannel, calico"), "{err}");
        assert_eq!(NetworkDriver::default(), NetworkDriver::Flannel);
    }
}
