//! Magnum's certificate API as clients see it (Magnum 8.0.0, `magnum/api/controllers/v1/certificate.py`):
//! the request and response bodies, the error body, and the API version headers.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Magnum 8.0.0's microversions: `container-infra 1.1` to `1.7`.
pub const SERVICE: &str = "container-infra";
pub const MIN_VERSION: (u32, u32) = (1, 1);
pub const MAX_VERSION: (u32, u32) = (1, 7);
pub const VERSION_HEADER: &str = "OpenStack-API-Version";
pub const MIN_VERSION_HEADER: &str = "OpenStack-API-Minimum-Version";
pub const MAX_VERSION_HEADER: &str = "OpenStack-API-Maximum-Version";
/// oslo.middleware's request id header, which Magnum's pipeline sends.
pub const REQUEST_ID_HEADER: &str = "X-OpenStack-Request-Id";

/// `POST /v1/certificates`. Magnum's `Certificate` type also has read-only fields; a client echoing
/// them back is accepted (as wsme did), anything else is a 400 naming the field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    pub cluster_uuid: Option<String>,
    /// The pre-Newton name, still accepted by Magnum.
    pub bay_uuid: Option<String>,
    pub csr: Option<String>,
    #[serde(default, rename = "pem")]
    _pem: Option<Value>,
    #[serde(default, rename = "links")]
    _links: Option<Value>,
    #[serde(default, rename = "created_at")]
    _created_at: Option<Value>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<Value>,
}

impl SignRequest {
    /// The cluster named by `cluster_uuid` or `bay_uuid` (they must agree when both are given), and the CSR.
    pub fn cluster_and_csr(&self) -> Result<(&str, &str), String> {
        let cluster = match (self.cluster_uuid.as_deref(), self.bay_uuid.as_deref()) {
            (Some(c), Some(b)) if c != b => return Err("cluster_uuid and bay_uuid name different clusters".into()),
            (Some(c), _) | (None, Some(c)) => c,
            (None, None) => return Err("the body names no cluster_uuid".into()),
        };
        match self.csr.as_deref() {
            Some(csr) if !csr.trim().is_empty() => Ok((cluster, csr)),
            _ => Err("the body has no csr (a PEM certificate signing request)".into()),
        }
    }
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Link {
    pub href: String,
    pub rel: String,
}

/// Magnum's self and bookmark links for a cluster's certificate resource (`link.build_url`).
pub fn links(base_url: &str, cluster_uuid: &str) -> Vec<Link> {
    vec![
        Link { href: format!("{base_url}/v1/certificates/{cluster_uuid}"), rel: "self".into() },
        Link { href: format!("{base_url}/certificates/{cluster_uuid}"), rel: "bookmark".into() },
    ]
}

/// `GET /v1/certificates/{cluster}` → 200.
#[derive(Debug, Serialize)]
pub struct CaResponse {
    pub cluster_uuid: String,
    pub bay_uuid: String,
    pub pem: String,
    pub links: Vec<Link>,
}

/// `POST /v1/certificates` → 201.
#[derive(Debug, Serialize)]
pub struct SignResponse {
    pub cluster_uuid: String,
    pub bay_uuid: String,
    pub csr: String,
    pub pem: String,
    pub links: Vec<Link>,
}

/// An error answer: Magnum's `ParsableErrorMiddleware` body,
/// `{"errors": [{"request_id", "code", "status", "title", "detail", "links"}]}`, where `code` is wsme's
/// fault code lower-cased (`client` for 4xx, `server` for 5xx).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub title: &'static str,
    /// For the caller.
    pub detail: String,
    /// For the log, when it should say more than the caller is told (internal paths, Keystone's
    /// address and error).
    pub log_detail: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, title: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError { status, title, detail: detail.into(), log_detail: None }
    }

    pub fn with_log_detail(self, log_detail: impl Into<String>) -> ApiError {
        ApiError { log_detail: Some(log_detail.into()), ..self }
    }

    pub fn body(&self, request_id: &str) -> Value {
        serde_json::json!({"errors": [{
            "request_id": request_id,
            "code": if self.status >= 500 { "server" } else { "client" },
            "status": self.status,
            "title": self.title,
            "detail": self.detail,
            "links": [],
        }]})
    }
}

/// The version a request asked for, per Magnum's `Version.parse_headers`: absent → the minimum;
/// `container-infra latest` → the maximum; another service or a malformed or unsupported version → 406.
pub fn negotiate(header: Option<&str>) -> Result<(u32, u32), ApiError> {
    let Some(header) = header else { return Ok(MIN_VERSION) };
    let not_acceptable = |detail: String| ApiError::new(406, "Requested microversion is unsupported", detail);
    let mut words = header.split_whitespace();
    let (Some(service), Some(version), None) = (words.next(), words.next(), words.next()) else {
        return Err(not_acceptable(format!("Invalid service type for {VERSION_HEADER} header")));
    };
    if service != SERVICE {
        return Err(not_acceptable(format!("Invalid service type for {VERSION_HEADER} header")));
    }
    if version.eq_ignore_ascii_case("latest") {
        return Ok(MAX_VERSION);
    }
    let parsed = version.split_once('.').and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)));
    let Some(parsed) = parsed else {
        return Err(not_acceptable(format!("Invalid value for {VERSION_HEADER} header")));
    };
    if parsed < MIN_VERSION || parsed > MAX_VERSION {
        return Err(not_acceptable(format!(
            "Version {}.{} was requested but is not supported by this service. The supported version range is: \
             [{SERVICE} {}.{}, {SERVICE} {}.{}].",
            parsed.0, parsed.1, MIN_VERSION.0, MIN_VERSION.1, MAX_VERSION.0, MAX_VERSION.1
        )));
    }
    Ok(parsed)
}

/// The headers Magnum sets on every v1 answer.
pub fn version_headers(version: (u32, u32)) -> [(&'static str, String); 4] {
    [
        (MIN_VERSION_HEADER, format!("{SERVICE} {}.{}", MIN_VERSION.0, MIN_VERSION.1)),
        (MAX_VERSION_HEADER, format!("{SERVICE} {}.{}", MAX_VERSION.0, MAX_VERSION.1)),
        (VERSION_HEADER, format!("{SERVICE} {}.{}", version.0, version.1)),
        ("Vary", VERSION_HEADER.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_magnum() {
        assert_eq!(negotiate(None), Ok((1, 1)));
        assert_eq!(negotiate(Some("container-infra latest")), Ok((1, 7)));
        assert_eq!(negotiate(Some("container-infra 1.5")), Ok((1, 5)));
        for bad in ["container-infra 1.8", "container-infra 2.0", "compute 1.1", "container-infra", "container-infra x"]
        {
            assert_eq!(negotiate(Some(bad)).unwrap_err().status, 406, "{bad}");
        }
        assert_eq!(version_headers((1, 7))[2], (VERSION_HEADER, "container-infra 1.7".to_string()));
    }

    #[test]
    fn bodies_have_magnums_shapes() {
        let request: SignRequest =
            serde_json::from_str(r#"{"bay_uuid": "u", "csr": "x", "pem": null, "links": []}"#).unwrap();
        assert_eq!(request.cluster_and_csr(), Ok(("u", "x")));
        let both: SignRequest = serde_json::from_str(r#"{"cluster_uuid": "a", "bay_uuid": "b", "csr": "x"}"#).unwrap();
        assert!(both.cluster_and_csr().is_err());
        let error = serde_json::from_str::<SignRequest>(r#"{"cluster_uuid": "a", "csr": "x", "cn": "y"}"#).unwrap_err();
        assert!(error.to_string().contains("unknown field `cn`"), "{error}");
        assert_eq!(
            serde_json::to_value(links("http://h:9511", "u")).unwrap(),
            serde_json::json!([{"href": "http://h:9511/v1/certificates/u", "rel": "self"},
                               {"href": "http://h:9511/certificates/u", "rel": "bookmark"}])
        );
        let body = ApiError::new(403, "Forbidden", "no").body("req-1");
        assert_eq!(
            body,
            serde_json::json!({"errors": [{"request_id": "req-1", "code": "client", "status": 403,
                                           "title": "Forbidden", "detail": "no", "links": []}]})
        );
    }
}
