//! Gets a list's text when it changed. A file is read again when its modification time or size
//! moved. A URL is fetched conditionally (`If-None-Match` with the last `ETag`,
//! `If-Modified-Since` with the last `Last-Modified`), so an unchanged list costs a 304; its
//! body is read up to `max_bytes` and refused past that. What identifies a version (the file's
//! stamp, the URL's validators) is only kept once the caller applied it (`commit`), so a
//! version that failed to apply is read again. The last good copy of a URL's list is kept in
//! `cache_file` with its validators and URL, so a restart applies it before the URL answers.

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
    /// The file changed while it was read.
    #[error(
        "the file changed while it was read (write lists elsewhere and rename them into place)"
    )]
    Changing,
}

/// What a look at the source found.
pub(crate) enum Fetched {
    /// The same list as last applied.
    Unchanged,
    /// A new text, and what identifies it (for `commit` once applied).
    Changed(Bytes, Version),
}

/// What identifies a version of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Version {
    /// A file's inode, modification time and size.
    File(Stamp),
    /// A URL's validators.
    Url(Validators),
}

type Stamp = (u64, SystemTime, u64);

/// What identifies a version of a URL's list, kept beside its cached copy.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
    /// The URL they are of (a copy of another URL is not used).
    #[serde(default)]
    url: String,
}

/// One list's source and what it last gave.
pub(crate) struct Source {
    config: BlocklistConfig,
    cache_file: PathBuf,
    client: Option<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>>,
    /// The file's stamp when last applied.
    stamp: Option<Stamp>,
    /// The URL's validators when last applied.
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

    /// The last good copy of this URL's list, kept by an earlier run (`None` for a file, or
    /// without one, or with one of another URL); `commit` it once applied.
    pub(crate) fn cached(&self) -> Option<(Bytes, Version)> {
        let ListSource::Url(url) = &self.config.source else {
            return None;
        };
        let meta = std::fs::read(meta_path(&self.cache_file)).ok()?;
        let validators: Validators = serde_json::from_slice(&meta).ok()?;
        if &validators.url != url {
            return None;
        }
        let text = std::fs::read(&self.cache_file).ok()?;
        Some((Bytes::from(text), Version::Url(validators)))
    }

    /// Keeps `version` as the one applied (and, for a URL fetched now, `body` as the last good
    /// copy), so the next look asks for what changed since.
    pub(crate) fn commit(&mut self, version: Version, body: Option<&Bytes>) {
        match version {
            Version::File(stamp) => self.stamp = Some(stamp),
            Version::Url(validators) => {
                self.validators = validators;
                if let Some(body) = body {
                    self.keep(body);
                }
            }
        }
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

    /// Reads the file when its stamp moved. A file being written in place (its stamp moves
    /// during the read) is left for the next look; lists are best replaced by a rename.
    fn read_file(&mut self, path: &Path) -> Result<Fetched, FetchError> {
        use std::{io::Read as _, os::unix::fs::MetadataExt as _};
        let io = |source| FetchError::File {
            path: path.to_path_buf(),
            source,
        };
        let stamp_of = |meta: &std::fs::Metadata| -> Result<Stamp, FetchError> {
            Ok((meta.ino(), meta.modified().map_err(io)?, meta.len()))
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let stamp = stamp_of(&file.metadata().map_err(io)?)?;
        if self.stamp == Some(stamp) {
            return Ok(Fetched::Unchanged);
        }
        let max = self.config.max_bytes;
        let mut text = Vec::new();
        file.take(max + 1).read_to_end(&mut text).map_err(io)?;
        if text.len() as u64 > max {
            return Err(FetchError::TooLarge { max });
        }
        let after = stamp_of(&std::fs::metadata(path).map_err(io)?)?;
        if after != stamp {
            return Err(FetchError::Changing);
        }
        Ok(Fetched::Changed(Bytes::from(text), Version::File(stamp)))
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
            url: url.to_owned(),
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
        Ok(Fetched::Changed(body, Version::Url(validators)))
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
