//! The Local API, as a bouncer and a machine talk to it. The decision stream: `GET
//! /v1/decisions/stream` with the bouncer key in `X-Api-Key`, `startup=true` on the first pull
//! (every decision in force) and deltas after (`new` and `deleted` since the last pull, which
//! the LAPI keeps per bouncer). Reporting: `POST /v1/watchers/login` as a machine for a token,
//! then `POST /v1/alerts` with it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde::Deserialize;

use crate::{
    config::{CrowdsecConfig, Password},
    http_client::describe,
};

/// Largest answer read: a startup pull of a million decisions is about 250 MB.
const MAX_ANSWER_BYTES: usize = 512 * 1024 * 1024;

/// One decision as the stream gives it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LapiDecision {
    /// The LAPI's id for it (one network may hold several decisions).
    #[serde(default)]
    pub id: i64,
    /// Time left, as Go writes it (`3h59m58.9s`; negative once over).
    pub duration: String,
    /// Why (`crowdsecurity/ssh-bf`, `manual 'ban' from 'localhost'`).
    #[serde(default)]
    pub scenario: String,
    /// `Ip`, `Range`, or another the bouncer does not apply.
    pub scope: String,
    /// `ban`, `captcha`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The address or network.
    pub value: String,
}

/// One pull's answer.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamAnswer {
    /// Decisions made since the last pull (every one in force on a startup pull).
    #[serde(default)]
    pub new: Option<Vec<LapiDecision>>,
    /// Decisions deleted or over since the last pull.
    #[serde(default)]
    pub deleted: Option<Vec<LapiDecision>>,
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PullError {
    /// No connection, or it broke.
    #[error("cannot reach the LAPI: {0}")]
    Connect(String),
    /// No answer within `crowdsec.timeout`.
    #[error("the LAPI did not answer within crowdsec.timeout")]
    Timeout,
    /// The bouncer key or the machine's credentials were refused.
    #[error("the LAPI refused the credentials (HTTP {0}): check crowdsec.api_key_file (`cscli bouncers list`) or the machine's (`cscli machines list`)")]
    Refused(u16),
    /// Another error status.
    #[error("the LAPI answered HTTP {0}")]
    Status(u16),
    /// Not a decision stream.
    #[error("the LAPI's answer is not a decision stream: {0}")]
    Answer(String),
    /// The CA file could not be used.
    #[error("crowdsec.ca_file: {0}")]
    Ca(String),
}

/// A client of one LAPI.
#[derive(Clone)]
pub(crate) struct Lapi {
    stream_url: String,
    key: Password,
    timeout: Duration,
    base: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Lapi {
    /// A client for `config`'s LAPI, trusting `crowdsec.ca_file` (or the system's roots).
    pub(crate) fn new(config: &CrowdsecConfig, key: Password) -> Result<Lapi, PullError> {
        let connector =
            crate::http_client::connector(config.ca_file.as_deref()).map_err(PullError::Ca)?;
        Ok(Lapi {
            stream_url: format!(
                "{}/v1/decisions/stream?scopes={}",
                config.lapi_url,
                config.scopes.join(",")
            ),
            key,
            base: config.lapi_url.clone(),
            timeout: config.timeout,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// One pull: every decision in force when `startup`, else what changed since the last.
    pub(crate) async fn pull(&self, startup: bool) -> Result<StreamAnswer, PullError> {
        tokio::time::timeout(self.timeout, self.try_pull(startup))
            .await
            .map_err(|_| PullError::Timeout)?
    }

    async fn try_pull(&self, startup: bool) -> Result<StreamAnswer, PullError> {
        let url = format!("{}&startup={startup}", self.stream_url);
        let request = http::Request::get(url)
            .header("x-api-key", &self.key.0)
            .header(
                http::header::USER_AGENT,
                concat!("api-shield/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::default())
            .map_err(|e| PullError::Connect(e.to_string()))?;
        let body = self.send(request).await?;
        serde_json::from_slice(&body).map_err(|e| PullError::Answer(e.to_string()))
    }

    /// Logs in as a machine; its token (JWT, an hour by default).
    pub(crate) async fn login(
        &self,
        machine: &str,
        password: &Password,
    ) -> Result<String, PullError> {
        #[derive(Deserialize)]
        struct Login {
            token: String,
        }
        let body = serde_json::json!({
            "machine_id": machine,
            "password": password.0,
            "scenarios": [],
        });
        let answer = self
            .post("/v1/watchers/login", None, body.to_string())
            .await?;
        let login: Login =
            serde_json::from_slice(&answer).map_err(|e| PullError::Answer(e.to_string()))?;
        Ok(login.token)
    }

    /// Posts alerts as the machine `token` names.
    pub(crate) async fn post_alerts(
        &self,
        token: &str,
        alerts: &[serde_json::Value],
    ) -> Result<(), PullError> {
        let body = serde_json::to_string(alerts).map_err(|e| PullError::Answer(e.to_string()))?;
        self.post("/v1/alerts", Some(token), body).await.map(drop)
    }

    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: String,
    ) -> Result<Bytes, PullError> {
        let mut request = http::Request::post(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("api-shield/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(token) = token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| PullError::Connect(e.to_string()))?;
        tokio::time::timeout(self.timeout, self.send(request))
            .await
            .map_err(|_| PullError::Timeout)?
    }

    /// Sends `request`; the body of a 2xx answer.
    async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<Bytes, PullError> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| PullError::Connect(describe(&e)))?;
        let status = response.status().as_u16();
        match status {
            200..=299 => {}
            401 | 403 => return Err(PullError::Refused(status)),
            _ => return Err(PullError::Status(status)),
        }
        Ok(Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| PullError::Answer(e.to_string()))?
            .to_bytes())
    }
}
