//! Verified tokens, so a client reusing its token does not pay a signature check per request.
//!
//! Keyed by the SHA-256 of the whole token (never the token itself), bounded in entries, tied to
//! the key-set generation it was verified under (a key change voids every entry), and never
//! used past the token's `exp`: the caller checks times on every hit.

use std::{collections::HashMap, sync::Arc, sync::Mutex};

use super::TokenPrincipal;

/// Token digest to the key-set generation it was verified under and its principal.
type Entries = HashMap<[u8; 32], (u64, Arc<TokenPrincipal>)>;

/// A bounded cache of verified tokens.
#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    entries: Mutex<Entries>,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The principal cached for this token digest under key-set `generation`.
    pub fn get(&self, digest: &[u8; 32], generation: u64) -> Option<Arc<TokenPrincipal>> {
        let entries = self
            .entries
            .lock()
            .expect("the token cache lock is never poisoned");
        match entries.get(digest) {
            Some((cached_generation, principal)) if *cached_generation == generation => {
                Some(Arc::clone(principal))
            }
            _ => None,
        }
    }

    /// Remembers a verified token. When full, expired entries go first; when none has
    /// expired, the cache starts over (bounded memory beats a perfect hit rate).
    pub fn insert(
        &self,
        digest: [u8; 32],
        generation: u64,
        principal: Arc<TokenPrincipal>,
        now_unix: u64,
    ) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self
            .entries
            .lock()
            .expect("the token cache lock is never poisoned");
        if entries.len() >= self.capacity {
            entries.retain(|_, (g, p)| *g == generation && p.expires_unix > now_unix);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(digest, (generation, principal));
    }

    /// Forgets everything (the key set changed).
    pub fn clear(&self) {
        self.entries
            .lock()
            .expect("the token cache lock is never poisoned")
            .clear();
    }

    /// Tokens cached now.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .expect("the token cache lock is never poisoned")
            .len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
