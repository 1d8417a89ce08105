//! Magnum's certificate API (or hearth-server's, which speaks it): the cluster CA and CSR signing.
//!
//! - `GET {magnum_url}/certificates/{cluster_uuid}` → `200 {"cluster_uuid", "bay_uuid", "pem", "links"}`
//! - `POST {magnum_url}/certificates` `{"cluster_uuid", "csr"}` → `201 {"cluster_uuid", "bay_uuid", "csr",
//!   "pem", "links"}`
//!
//! Every call carries the trustee's token (`X-Auth-Token`) and `OpenStack-API-Version: container-infra
//! latest`, as Magnum's make-cert scripts sent them. Transport errors, 5xx and 429 are retried by the
//! run's client; a 401 renews the token once; any other 4xx is the signer's answer and becomes an error
//! with its message.

use super::keystone::{KeystoneError, Session};
use crate::host::Host;
use crate::http::{HttpError, Request, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum MagnumError {
    // The cause follows in the error chain (`{:#}`), once.
    #[error("getting a Keystone token")]
    Keystone(#[from] KeystoneError),
    /// 401 to a token Keystone had just issued: the trustee is not allowed, or Keystone and Magnum
    /// disagree about it.
    #[error("Magnum answered 401 even to a renewed token: {0}")]
    Unauthorized(String),
    /// The signer's answer to this request: a 4xx other than 401.
    #[error("Magnum answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("Magnum's answer (HTTP {status}) has no PEM in its \"pem\" field")]
    NoPem { status: u16 },
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// The certificate API of one cluster.
#[derive(Debug)]
pub struct Magnum<'a> {
    host: &'a Host,
    session: &'a Session<'a>,
    /// `magnum_url` without a trailing slash.
    base: String,
    cluster_uuid: String,
}

impl<'a> Magnum<'a> {
    pub fn new(host: &'a Host, session: &'a Session<'a>, magnum_url: &str, cluster_uuid: &str) -> Self {
        Magnum {
            host,
            session,
            base: magnum_url.trim_end_matches('/').to_string(),
            cluster_uuid: cluster_uuid.to_string(),
        }
    }

    /// The cluster CA in PEM; `None` on a dry run. `what` goes to the journal.
    pub fn ca(&self, what: &str) -> Result<Option<String>, MagnumError> {
        let url = format!("{}/certificates/{}", self.base, self.cluster_uuid);
        self.pem_of(self.call(&Request::get(url), what)?)
    }

    /// Signs a CSR (PEM) and returns the certificate in PEM; `None` on a dry run.
    pub fn sign(&self, csr_pem: &str, what: &str) -> Result<Option<String>, MagnumError> {
        let body = json!({"cluster_uuid": self.cluster_uuid, "csr": csr_pem});
        let request = Request::post_json(format!("{}/certificates", self.base), &body);
        self.pem_of(self.call(&request, what)?)
    }

    fn pem_of(&self, response: Option<Response>) -> Result<Option<String>, MagnumError> {
        let Some(response) = response else { return Ok(None) };
        let body: serde_json::Value = response.json().unwrap_or_default();
        match body["pem"].as_str() {
            Some(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => Ok(Some(pem.to_string())),
            _ => Err(MagnumError::NoPem { status: response.status }),
        }
    }

    /// Sends `request` with the session's token, renewing it once on 401.
    fn call(&self, request: &Request, what: &str) -> Result<Option<Response>, MagnumError> {
        let mut token = self.session.token()?;
        loop {
            let mut request = request
                .clone()
                .header("OpenStack-API-Version", "container-infra latest")
                .header("Accept", "application/json");
            // No token only on a dry run, where nothing is sent.
            if let Some(token) = &token {
                request = request.header("X-Auth-Token", token.expose());
            }
            let Some(response) = self.host.http(&request, what)? else { return Ok(None) };
            match response.status {
                200..=299 => return Ok(Some(response)),
                401 if self.session.can_renew() => token = self.session.renew()?,
                401 => return Err(MagnumError::Unauthorized(super::error_message(&response))),
                status => return Err(MagnumError::Refused { status, message: super::error_message(&response) }),
            }
        }
    }
}
