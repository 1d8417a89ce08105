//! The Kubernetes API of this master, for the steps that act on the cluster: apiserver-kubelet-rbac,
//! health and addons.
//!
//! **Where and as whom.** `https://127.0.0.1:<api.port>`, trusting the cluster CA only and presenting the
//! agent's own certificate (`/etc/kubernetes/certs/{ca.crt,agent.crt,agent.key}`, `CN=hearth-agent`):
//! nodes never hold an admin (`system:masters`) identity, and the API server's certificate is not this. With TLS disabled, `http://127.0.0.1:<api.port>`,
//! the port Magnum's apiserver then serves without TLS (`--insecure-port=<KUBE_API_PORT>`). Every request
//! is a request to the node's own service ([`Destination::NodeService`](crate::http::Destination::NodeService)): a dry run or a rooted run
//! records it and sends nothing.
//!
//! **What the identity needs.** User `hearth-agent` (no group) must be allowed `get`, `create`, `patch` on
//! each kind of [`KINDS`] (cluster-scoped ones cluster-wide, namespaced ones in `kube-system` only), with
//! `escalate` and `bind` on `clusterroles` (the roles applied grant what the user may not hold itself);
//! and the non-resource URLs `/healthz`, `/readyz`, `/version`, which every authenticated user has. The
//! kube-master step grants exactly the kinds, made from [`KINDS`].
//!
//! **Idempotent apply.** `GET` the object; if every field of the manifest already has its value in the
//! live object (fields the server defaulted do not matter), nothing is written. Otherwise, from Kubernetes
//! 1.16 on (server-side apply is beta there, GA in 1.22), `PATCH` with `application/apply-patch+yaml`,
//! field manager `hearth` and `force=true`, which creates or updates; before 1.16, `POST` to create or a
//! JSON merge patch to update. A write the server found to change nothing (the `resourceVersion` stayed)
//! counts as unchanged, so a second run reports no change even where the server normalises a value.

use crate::config::NodeConfig;
use crate::host::{Host, Outcome};
use crate::http::{ClientIdentity, Request, Response};
use crate::kube::KubeVersion;
use crate::paths::KUBE_CERTS;
use crate::probe::{self, Budget, Verdict};
use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::Value;
use std::fmt;
use std::path::Path;

/// The field manager Hearth applies as.
pub const FIELD_MANAGER: &str = "hearth";

/// How objects are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyMethod {
    /// `PATCH` with `application/apply-patch+yaml` (Kubernetes >= 1.16).
    ServerSide,
    /// `POST` to create, `PATCH` with `application/merge-patch+json` to update (older servers).
    CreateOrMergePatch,
}

impl ApplyMethod {
    /// The method for the Kubernetes version of the config's tag (or version); server-side apply when
    /// neither reads as a version, since every current release has it.
    pub fn for_config(config: &NodeConfig) -> ApplyMethod {
        match KubeVersion::of(config) {
            Ok(version) if !version.apiserver_has_server_side_apply() => ApplyMethod::CreateOrMergePatch,
            _ => ApplyMethod::ServerSide,
        }
    }
}

/// A kind the steps apply. The resource names are the ones the server's discovery documents list; an
/// unknown kind is refused rather than guessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kind {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub resource: &'static str,
    pub namespaced: bool,
}

impl Kind {
    /// The API group (`""` for the core group), as authorizers name it.
    pub fn api_group(&self) -> &'static str {
        self.api_version.rsplit_once('/').map(|(group, _)| group).unwrap_or("")
    }
}

const fn kind(api_version: &'static str, kind: &'static str, resource: &'static str, namespaced: bool) -> Kind {
    Kind { api_version, kind, resource, namespaced }
}

/// Every kind the steps apply; the agent's authorisation ([`crate::kube::components::authorization_policy`])
/// is made from this list, so a kind added here is also allowed there.
pub const KINDS: &[Kind] = &[
    kind("v1", "Namespace", "namespaces", false),
    kind("v1", "ServiceAccount", "serviceaccounts", true),
    kind("v1", "ConfigMap", "configmaps", true),
    kind("v1", "Secret", "secrets", true),
    kind("v1", "Service", "services", true),
    kind("apps/v1", "Deployment", "deployments", true),
    kind("apps/v1", "DaemonSet", "daemonsets", true),
    kind("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", false),
    kind("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", false),
    kind("rbac.authorization.k8s.io/v1", "Role", "roles", true),
    kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", true),
];

/// The paths [`KubeApi::wait_ready`] and the version probe read.
pub const PROBED_PATHS: &[&str] = &["/healthz", "/readyz", "/version"];

/// The one namespace the steps put namespaced objects in (Magnum's add-ons all live there); the agent is
/// allowed no other.
pub const NAMESPACE: &str = "kube-system";

/// Which object a manifest is, and where it lives in the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// `/apis/rbac.authorization.k8s.io/v1/clusterroles`, `/api/v1/namespaces/kube-system/services`.
    pub collection: String,
}

impl ObjectRef {
    pub fn of(object: &Value) -> Result<ObjectRef> {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let (api_version, kind) = (text(&object["apiVersion"]), text(&object["kind"]));
        let name = text(&object["metadata"]["name"]);
        let namespace = object["metadata"]["namespace"].as_str().map(str::to_string);
        let &Kind { resource, namespaced, .. } = KINDS
            .iter()
            .find(|k| k.api_version == api_version && k.kind == kind)
            .ok_or_else(|| anyhow!("{kind} {name:?} ({api_version}) is not a kind Hearth applies"))?;
        for part in std::iter::once(&name).chain(namespace.as_ref()) {
            // Object names are DNS labels or paths with ':' (RBAC); nothing that could change the URL.
            let fine = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':');
            if part.is_empty() || !part.chars().all(fine) {
                bail!("{kind} name or namespace {part:?} is not a Kubernetes object name");
            }
        }
        if namespaced && namespace.as_deref().is_some_and(|ns| ns != NAMESPACE) {
            bail!("{kind} {name} is in namespace {namespace:?}; the agent applies objects in {NAMESPACE} only");
        }
        let group = if api_version.contains('/') { "apis" } else { "api" };
        let collection = match (&namespace, namespaced) {
            (Some(ns), true) => format!("/{group}/{api_version}/namespaces/{ns}/{resource}"),
            (None, false) => format!("/{group}/{api_version}/{resource}"),
            (Some(_), false) => bail!("{kind} {name} is cluster-wide but its manifest names a namespace"),
            (None, true) => bail!("{kind} {name} needs a namespace in its manifest"),
        };
        Ok(ObjectRef { kind, namespace, name, collection })
    }

    pub fn path(&self) -> String {
        format!("{}/{}", self.collection, self.name)
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// The API server of this master.
#[derive(Debug)]
pub struct KubeApi<'h> {
    host: &'h Host,
    base: String,
    identity: Option<ClientIdentity>,
    method: ApplyMethod,
}

impl<'h> KubeApi<'h> {
    /// The API of this master as the module documentation says; reads the client certificate through
    /// `host` (an absent file fails the first request sent, not a dry run).
    pub fn for_master(config: &NodeConfig, host: &'h Host) -> Result<KubeApi<'h>> {
        let port = config.api.port;
        if config.cluster.tls_disabled {
            let base = format!("http://127.0.0.1:{port}");
            return Ok(KubeApi { host, base, identity: None, method: ApplyMethod::for_config(config) });
        }
        let read = |name: &str| -> Result<String> {
            Ok(host.read_to_string(&Path::new(KUBE_CERTS).join(name))?.unwrap_or_default())
        };
        let identity = ClientIdentity {
            source: format!("{KUBE_CERTS}/{{ca.crt,agent.crt,agent.key}}"),
            ca_pem: read("ca.crt")?,
            cert_pem: read("agent.crt")?,
            key_pem: crate::config::Secret::new(read("agent.key")?),
        };
        Ok(KubeApi {
            host,
            base: format!("https://127.0.0.1:{port}"),
            identity: Some(identity),
            method: ApplyMethod::for_config(config),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: &str, path: &str) -> Request {
        Request::node_service(method, &self.base, path, self.identity.as_ref())
    }

    /// Waits within `budget` for `/healthz` to answer `ok`, then for `/readyz` where the server has it
    /// (Kubernetes 1.16 and later; an older one answers 404). `false`: nothing was sent (dry run, rooted).
    /// A 403 counts as not ready yet: until the API server has created its default roles, it refuses even
    /// these paths to a user outside `system:masters`.
    pub fn wait_ready(&self, budget: &Budget) -> Result<bool> {
        let service = format!("the Kubernetes API at {}", self.base);
        let ok = |response: &Response| match response.status {
            200 if String::from_utf8_lossy(&response.body).trim() == "ok" => Verdict::Healthy,
            200 | 403 => Verdict::not_yet(response),
            _ => Verdict::Broken(probe::status_line(response)),
        };
        let healthz = self.request("GET", "/healthz");
        if probe::wait_until(self.host, &healthz, &service, "waiting for /healthz", budget, ok)?.is_none() {
            return Ok(false);
        }
        let readyz = self.request("GET", "/readyz");
        let ready_or_absent = |response: &Response| match response.status {
            404 => Verdict::Healthy,
            _ => ok(response),
        };
        probe::wait_until(self.host, &readyz, &service, "waiting for /readyz", budget, ready_or_absent)?;
        Ok(true)
    }

    /// Makes `object` (a manifest as JSON) exist with every field it sets, and records what it took.
    pub fn apply(&self, object: &Value) -> Result<Outcome> {
        let target = ObjectRef::of(object)?;
        let applied = match self.apply_to(&target, object) {
            // Another master created it between our read and our create (every master applies the same
            // objects when none has an index): read it again and update it like any live object.
            Err(e) if e.downcast_ref::<Conflict>().is_some() => self.apply_to(&target, object),
            other => other,
        };
        applied.with_context(|| format!("applying {target}"))
    }

    fn apply_to(&self, target: &ObjectRef, object: &Value) -> Result<Outcome> {
        let path = target.path();
        let Some(live) = self.host.http(&self.request("GET", &path), &format!("reading {target}"))? else {
            return self.write(target, object, None);
        };
        match live.status {
            200 => {
                let live: Value = live.json().context("the API server's answer is not JSON")?;
                if contains(&live, object) {
                    self.host.record_remote(target, "as the manifest says".into(), Outcome::Unchanged);
                    return Ok(Outcome::Unchanged);
                }
                self.write(target, object, Some(&live))
            }
            404 => self.write(target, object, None),
            _ => Err(status_error(&live)),
        }
    }

    /// Creates or updates `target`; `live` is the object as read, `None` when it is absent or was not read.
    /// A create the server refuses with 409 (the object appeared meanwhile) is a [`Conflict`].
    fn write(&self, target: &ObjectRef, object: &Value, live: Option<&Value>) -> Result<Outcome> {
        let body = object.to_string().into_bytes();
        let request = match (self.method, live) {
            (ApplyMethod::ServerSide, _) => self
                .request("PATCH", &format!("{}?fieldManager={FIELD_MANAGER}&force=true", target.path()))
                .body(body, "application/apply-patch+yaml"),
            (ApplyMethod::CreateOrMergePatch, None) => self
                .request("POST", &format!("{}?fieldManager={FIELD_MANAGER}", target.collection))
                .body(body, "application/json"),
            (ApplyMethod::CreateOrMergePatch, Some(_)) => self
                .request("PATCH", &format!("{}?fieldManager={FIELD_MANAGER}", target.path()))
                .body(body, "application/merge-patch+json"),
        }
        .header("Accept", "application/json");
        let verb = if live.is_some() { "updating" } else { "creating" };
        let Some(answer) = self.host.http(&request, &format!("{verb} {target}"))? else {
            return Ok(Outcome::NotRun);
        };
        if answer.status == 409 && live.is_none() && self.method == ApplyMethod::CreateOrMergePatch {
            return Err(anyhow::Error::new(Conflict).context(status_error(&answer)));
        }
        if !(200..300).contains(&answer.status) {
            return Err(status_error(&answer));
        }
        let written: Value = answer.json().context("the API server's answer is not JSON")?;
        let version = |v: &Value| v["metadata"]["resourceVersion"].as_str().map(str::to_string);
        let (outcome, detail) = match live {
            None => (Outcome::Changed, "created"),
            Some(live) if version(live).is_some() && version(live) == version(&written) => {
                (Outcome::Unchanged, "as the manifest says (the server changed nothing)")
            }
            Some(_) => (Outcome::Changed, "updated"),
        };
        self.host.record_remote(target, detail.into(), outcome);
        Ok(outcome)
    }
}

/// A create that found the object already there (HTTP 409 `AlreadyExists`).
#[derive(Debug)]
struct Conflict;

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the object was created by someone else meanwhile")
    }
}

impl std::error::Error for Conflict {}

/// The error for an answer the API server gave instead of the object: the status and its `Status`
/// message (`clusterroles.rbac.authorization.k8s.io is forbidden: User "kubernetes" cannot create …`).
fn status_error(response: &Response) -> anyhow::Error {
    let message = response
        .json::<Value>()
        .ok()
        .and_then(|status| {
            let text = |key: &str| status[key].as_str().filter(|s| !s.is_empty()).map(str::to_string);
            match (text("reason"), text("message")) {
                (Some(reason), Some(message)) => Some(format!("{reason}: {message}")),
                (_, Some(message)) => Some(message),
                _ => None,
            }
        })
        .unwrap_or_else(|| response.text_tail(300));
    anyhow!("{} {} answered HTTP {}: {message}", response.method, response.url, response.status)
}

/// Whether `live` has every field `wanted` sets, with the same value: objects may hold more keys, lists
/// must have as many items, each containing the wanted one. A wanted zero value (`""`, `false`, `0`, an
/// empty list or map, `null`) also matches an absent field: the API server leaves out empty `omitempty`
/// fields when it answers.
pub fn contains(live: &Value, wanted: &Value) -> bool {
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    };
    match (live, wanted) {
        (Value::Object(live), Value::Object(wanted)) => wanted.iter().all(|(key, value)| match live.get(key) {
            Some(l) => contains(l, value),
            None => empty(value),
        }),
        (Value::Array(live), Value::Array(wanted)) => {
            live.len() == wanted.len() && live.iter().zip(wanted).all(|(l, w)| contains(l, w))
        }
        (live, wanted) => live == wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use serde_json::json;

    #[test]
    fn server_side_apply_from_1_16() {
        let mut c = NodeConfig::new(Role::Master);
        for (tag, method) in [
            ("v1.11.6", ApplyMethod::CreateOrMergePatch),
            ("v1.15.12", ApplyMethod::CreateOrMergePatch),
            ("v1.16.0", ApplyMethod::ServerSide),
            ("v1.24.17", ApplyMethod::ServerSide),
            ("latest", ApplyMethod::ServerSide),
        ] {
            c.kubernetes.tag = tag.into();
            c.kubernetes.version = tag.into();
            assert_eq!(ApplyMethod::for_config(&c), method, "{tag}");
        }
        c.kubernetes.version = "v1.11.6".into();
        assert_eq!(ApplyMethod::for_config(&c), ApplyMethod::CreateOrMergePatch, "the version when the tag says none");
    }

    #[test]
    fn objects_map_to_their_api_paths() {
        let path = |v: Value| ObjectRef::of(&v).map(|r| (r.to_string(), r.path()));
        assert_eq!(
            path(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "system:coredns"}}))
            .unwrap(),
            (
                "ClusterRole system:coredns".into(),
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:coredns".into()
            )
        );
        assert_eq!(
            path(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kube-dns", "namespace": "kube-system"}}))
            .unwrap()
            .1,
            "/api/v1/namespaces/kube-system/services/kube-dns"
        );
        for (bad, why) in [
            (json!({"apiVersion": "extensions/v1beta1", "kind": "DaemonSet", "metadata": {"name": "x"}}), "not a kind"),
            (json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}}), "needs a namespace"),
            (
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "namespace": "y"}}),
                "cluster-wide",
            ),
            (
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "../x", "namespace": "y"}}),
                "not a Kubernetes object name",
            ),
        ] {
            let err = path(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn live_objects_contain_the_manifest_despite_defaults() {
        let wanted = json!({"spec": {"ports": [{"port": 53, "name": "dns"}], "clusterIP": "10.254.0.10"}});
        let live = json!({"metadata": {"uid": "u"}, "spec": {"type": "ClusterIP", "clusterIP": "10.254.0.10",
            "ports": [{"port": 53, "name": "dns", "protocol": "UDP", "targetPort": 53}]}});
        assert!(contains(&live, &wanted));
        let moved = json!({"spec": {"clusterIP": "10.254.0.11", "ports": [{"port": 53, "name": "dns"}]}});
        assert!(!contains(&moved, &wanted));
        let extra_port =
            json!({"spec": {"clusterIP": "10.254.0.10", "ports": [{"port": 53, "name": "dns"}, {"port": 9153}]}});
        assert!(!contains(&extra_port, &wanted), "lists must match item for item");
        assert!(!contains(&json!({"data": {"a": "1"}}), &json!({"data": {"a": 1}})), "types count");
        let env = json!({"env": [{"name": "IP", "value": ""}], "readOnly": false, "replicas": 0});
        assert!(contains(&json!({"env": [{"name": "IP"}]}), &env), "omitted empty fields match");
        assert!(!contains(&json!({"env": [{"name": "IP", "value": "10.0.0.1"}]}), &env));
    }
}
