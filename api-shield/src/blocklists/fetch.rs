//! Gets a list's text when it changed. A file is read again when its modification time or size
//! moved. A URL is fetched conditionally (`If-None-Match` with the last `ETag`,
//! `If-Modified-Since` with the last `Last-Modified`), so an unchanged list costs a 304; its
//! body is read up to `max_bytes` and refused past that. The last good copy of a URL's list is
//! kept in `cache_file` with its validators, so a restart applies it before the URL answers.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde::{Deserialize, Serialize};

use crate::{
    config::{BlocklistConfig, ListSource},
    http_client::describe,
};

/// Why a list could not be had this time (the last good copy stays applied).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The list is larger than `max_bytes`.
    #[error("the list is larger than blocklists.max_bytes ({max} bytes)")]
    TooLarge {
        /// The cap.
        max: u64,
    },
    /// No connection, or it broke.
    #[error("cannot fetch: {0}")]
    Connect(String),
    /// No answer within `timeout`.
    #[error("no answer within blocklists.timeout ({0:?})")]
    Timeout(Duration),
    /// An error status.
    #[error("the server answered HTTP {0}")]
    Status(u16),
    /// The CA file could not be used.
    #[error("blocklists.ca_file: {0}")]
    Ca(String),
}

/// What a look at the source found.
pub(crate) enum Fetched {
    /// The same list as last time.
    Unchanged,
    /// A new text.
    Changed(Bytes),
}

/// What identifies a version of a URL's list.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

/// One list's source and what it last gave.
pub(crate) struct Source {
    config: BlocklistConfig,
    cache_file: PathBuf,
    client: Option<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>>,
    /// A file's modification time and size when last read.
    stamp: Option<(SystemTime, u64)>,
    /// A URL's validators when last fetched.
    validators: Validators,
}

impl Source {
    /// The source of `config`; `runtime_dir` holds the default cache.
    pub(crate) fn new(config: &BlocklistConfig, runtime_dir: &Path) -> Result<Source, FetchError> {
        let client = match &config.source {
            ListSource::Url(_) => {
                let connector = crate::http_client::connector(config.ca_file.as_deref())
                    .map_err(FetchError::Ca)?;
                Some(Client::builder(TokioExecutor::new()).build(connector))
            }
            ListSource::File(_) => None,
        };
        Ok(Source {
            cache_file: config.cache_file.clone().unwrap_or_else(|| {
                runtime_dir
                    .join("blocklists")
                    .join(format!("{}.list", config.name))
            }),
            config: config.clone(),
            client,
            stamp: None,
            validators: Validators::default(),
        })
    }

    /// The last good copy of a URL's list, kept by an earlier run (`None` for a file, or
    /// without one). Its validators are used for the next fetch.
    pub(crate) fn cached(&mut self) -> Option<Bytes> {
        if matches!(self.config.source, ListSource::File(_)) {
            return None;
        }
        let text = std::fs::read(&self.cache_file).ok()?;
        let meta = std::fs::read(meta_path(&self.cache_file)).ok()?;
        self.validators = serde_json::from_slice(&meta).ok()?;
        Some(Bytes::from(text))
    }

    /// Looks at the source.
    pub(crate) async fn fetch(&mut self) -> Result<Fetched, FetchError> {
        match self.config.source.clone() {
            ListSource::File(path) => self.read_file(&path),
            ListSource::Url(url) => {
                let timeout = self.config.timeout;
                tokio::time::timeout(timeout, self.get(&url))
                    .await
                    .map_err(|_| FetchError::Timeout(timeout))?
            }
        }
    }

    fn read_file(&mut self, path: &Path) -> Result<Fetched, FetchError> {
        let io = |source| FetchError::File {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let stamp = (meta.modified().map_err(io)?, meta.len());
        if self.stamp == Some(stamp) {
            return Ok(Fetched::Unchanged);
        }
        if meta.len() > self.config.max_bytes {
            return Err(FetchError::TooLarge {
                max: self.config.max_bytes,
            });
        }
        let text = std::fs::read(path).map_err(io)?;
        self.stamp = Some(stamp);
        Ok(Fetched::Changed(Bytes::from(text)))
    }

    async fn get(&mut self, url: &str) -> Result<Fetched, FetchError> {
        let client = self.client.as_ref().expect("a URL source has a client");
        let mut request = http::Request::get(url).header(
            http::header::USER_AGENT,
            concat!("api-shield/", env!("CARGO_PKG_VERSION")),
        );
        if let Some(etag) = &self.validators.etag {
            request = request.header(http::header::IF_NONE_MATCH, etag);
        }
        if let Some(since) = &self.validators.last_modified {
            request = request.header(http::header::IF_MODIFIED_SINCE, since);
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| FetchError::Connect(e.to_string()))?;
        let response = client
            .request(request)
            .await
            .map_err(|e| FetchError::Connect(describe(&e)))?;
        let status = response.status();
        if status == http::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::Unchanged);
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let max = self.config.max_bytes;
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let validators = Validators {
            etag: header(http::header::ETAG),
            last_modified: header(http::header::LAST_MODIFIED),
        };
        let declared = header(http::header::CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok());
        if declared.is_some_and(|length| length > max) {
            return Err(FetchError::TooLarge { max });
        }
        let limit = usize::try_from(max).unwrap_or(usize::MAX);
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|error| {
                if error.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge { max }
                } else {
                    FetchError::Connect(describe(&*error))
                }
            })?
            .to_bytes();
        self.validators = validators;
        self.keep(&body);
        Ok(Fetched::Changed(body))
    }

    /// Keeps `body` as the last good copy (a failure only costs the copy, and is logged).
    fn keep(&self, body: &Bytes) {
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.cache_file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let meta = serde_json::to_vec(&self.validators).map_err(std::io::Error::other)?;
            write_atomically(&self.cache_file, body)?;
            write_atomically(&meta_path(&self.cache_file), &meta)
        };
        if let Err(error) = write() {
            tracing::warn!(list = %self.config.name, file = %self.cache_file.display(), %error, "blocklist: cannot keep the last good copy");
        }
    }
}

fn meta_path(cache_file: &Path) -> PathBuf {
    let mut name = cache_file.as_os_str().to_owned();
    name.push(".meta");
    PathBuf::from(name)
}

/// Writes through a temporary file renamed over `path`, so a reader never sees half a copy.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}
