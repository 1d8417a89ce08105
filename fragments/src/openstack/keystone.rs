//! Keystone v3 password authentication for the cluster's trustee.
//!
//! `POST {auth_url}/auth/tokens` with the trustee's user id and password (and domain, when known), the
//! token in the `X-Subject-Token` header of the `201` answer. Scoped to the trust when the config has a
//! trust id (DESIGN §6: Magnum Stein sent an unscoped request, inventory A5), unscoped otherwise — Magnum's
//! `certificate:create` policy accepts the trustee's unscoped token (`user_id:%(trustee_user_id)s`).
//!
//! A [`Session`] asks for one token per run and renews it once when a service answers 401 (an expired or
//! revoked token); it never prints the token, the password or the request body.

use crate::config::Secret;
use crate::host::Host;
use crate::http::{HttpError, Request};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::fmt;

/// Who asks for the token.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Keystone's v3 URL, e.g. `https://keystone.example:5000/v3`.
    pub auth_url: String,
    pub user_id: String,
    /// The user's domain id; empty when unknown (a user id alone identifies the user).
    pub domain_id: String,
    pub password: Secret,
    /// Scope the token to this trust; empty: unscoped.
    pub trust_id: Secret,
}

impl Credentials {
    fn tokens_url(&self) -> String {
        format!("{}/auth/tokens", self.auth_url.trim_end_matches('/'))
    }

    /// The request body. Holds the password: never logged.
    fn body(&self) -> serde_json::Value {
        let mut user = json!({"id": self.user_id, "password": self.password.expose()});
        if !self.domain_id.is_empty() {
            user["domain"] = json!({"id": self.domain_id});
        }
        let mut auth = json!({"identity": {"methods": ["password"], "password": {"user": user}}});
        if !self.trust_id.is_empty() {
            auth["scope"] = json!({"OS-TRUST:trust": {"id": self.trust_id.expose()}});
        }
        json!({ "auth": auth })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeystoneError {
    /// Keystone answered, and not with a token: wrong credentials, a deleted trust, a disabled user.
    #[error("Keystone refused the trustee's credentials: HTTP {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("Keystone answered HTTP {status} without an X-Subject-Token header")]
    NoToken { status: u16 },
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// What the session holds.
enum Token {
    None,
    Issued(Secret),
    /// A dry run: the request was recorded, not sent.
    Planned,
}

/// One token for the run, asked for on first use.
pub struct Session<'h> {
    host: &'h Host,
    credentials: Credentials,
    token: RefCell<Token>,
    renewed: Cell<bool>,
}

impl fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("auth_url", &self.credentials.auth_url)
            .field("user_id", &self.credentials.user_id)
            .field("trust_scoped", &!self.credentials.trust_id.is_empty())
            .field("renewed", &self.renewed.get())
            .finish_non_exhaustive()
    }
}

impl<'h> Session<'h> {
    pub fn new(host: &'h Host, credentials: Credentials) -> Self {
        Session { host, credentials, token: RefCell::new(Token::None), renewed: Cell::new(false) }
    }

    /// The run's token, asking Keystone on first use; `None` on a dry run.
    pub fn token(&self) -> Result<Option<Secret>, KeystoneError> {
        match &*self.token.borrow() {
            Token::Issued(token) => return Ok(Some(token.clone())),
            Token::Planned => return Ok(None),
            Token::None => {}
        }
        self.issue()
    }

    /// Whether [`Session::renew`] may still be called: a token is renewed at most once per run, so a
    /// service that refuses every token fails the run instead of looping.
    pub fn can_renew(&self) -> bool {
        !self.renewed.get()
    }

    /// Replaces the token after a service answered 401 to it.
    pub fn renew(&self) -> Result<Option<Secret>, KeystoneError> {
        self.renewed.set(true);
        *self.token.borrow_mut() = Token::None;
        self.issue()
    }

    fn issue(&self) -> Result<Option<Secret>, KeystoneError> {
        let request = Request::post_json(self.credentials.tokens_url(), &self.credentials.body());
        let scope = if self.credentials.trust_id.is_empty() { "unscoped" } else { "trust-scoped" };
        let what = format!("{scope} token for trustee {}", self.credentials.user_id);
        let Some(response) = self.host.http(&request, &what)? else {
            *self.token.borrow_mut() = Token::Planned;
            return Ok(None);
        };
        if !(200..300).contains(&response.status) {
            let message = super::error_message(&response);
            return Err(KeystoneError::Refused { status: response.status, message });
        }
        let token = response
            .header("X-Subject-Token")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(KeystoneError::NoToken { status: response.status })?;
        let token = Secret::new(token);
        *self.token.borrow_mut() = Token::Issued(token.clone());
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(domain: &str, trust: &str) -> Credentials {
        Credentials {
            auth_url: "http://127.0.0.1:5000/v3/".into(),
            user_id: "u1".into(),
            domain_id: domain.into(),
            password: Secret::new("pw\"'$"),
            trust_id: Secret::new(trust),
        }
    }

    #[test]
    fn body_is_keystones_password_method_scoped_only_with_a_trust() {
        let unscoped = credentials("", "").body();
        assert_eq!(
            unscoped,
            json!({"auth": {"identity": {"methods": ["password"],
                "password": {"user": {"id": "u1", "password": "pw\"'$"}}}}})
        );
        let scoped = credentials("d1", "t1").body();
        assert_eq!(scoped["auth"]["scope"], json!({"OS-TRUST:trust": {"id": "t1"}}));
        assert_eq!(scoped["auth"]["identity"]["password"]["user"]["domain"], json!({"id": "d1"}));
        assert_eq!(credentials("", "").tokens_url(), "http://127.0.0.1:5000/v3/auth/tokens");
    }

    #[test]
    fn a_session_never_shows_its_secrets() {
        let host = Host::new(crate::host::Mode::DryRun { root: std::env::temp_dir() });
        let session = Session::new(&host, credentials("d1", "trust-secret"));
        assert_eq!(session.token().unwrap(), None, "a dry run sends nothing");
        let shown = format!("{session:?} {:?}", host.take_actions());
        assert!(!shown.contains("pw") && !shown.contains("trust-secret"), "{shown}");
        assert!(shown.contains("trust-scoped token for trustee u1"), "{shown}");
    }
}
