//! Verified tokens, so a client reusing its token does not pay a signature check per request.
//!
//! Keyed by a seeded hash of the token (`foldhash`, a fresh seed per cache) with the token
//! itself compared on a hit, as Envoy's JWT cache does: two tokens never share an entry, and a
//! hit costs a fraction of hashing the token with SHA-256 (what this cache did before; it was
//! 1.5 % of the daemon's CPU under the full policy chain). Only tokens whose signature verified
//! are ever stored, so a client cannot choose what fills the table. The tokens are held in
//! memory as long as their entries live, as the requests carrying them were; they are never
//! logged.
//!
//! Bounded in entries and in the bytes of the tokens it holds (each principal is decoded from
//! its token, so the entry count and the tokens' sizes bound the principals too), tied to the
//! key-set generation it was verified under (a key change voids every entry), and never used
//! past the token's `exp`: the caller checks times on every hit.

use std::{collections::HashMap, sync::Arc, sync::Mutex};

use super::TokenPrincipal;

/// A verified token's key-set generation and principal.
#[derive(Debug)]
struct Entry {
    generation: u64,
    principal: Arc<TokenPrincipal>,
}

/// The entries and the bytes of the tokens they hold.
struct Entries {
    by_token: HashMap<Box<str>, Entry, foldhash::quality::RandomState>,
    token_bytes: usize,
}

/// A bounded cache of verified tokens.
pub struct TokenCache {
    capacity: usize,
    max_token_bytes: usize,
    entries: Mutex<Entries>,
}

/// Counts only: the entries' keys are bearer tokens, which no log may show.
impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity)
            .field("max_token_bytes", &self.max_token_bytes)
            .field("tokens", &self.len())
            .field("token_bytes", &self.token_bytes())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache of at most `capacity` tokens holding at most `max_token_bytes` of them.
    pub fn new(capacity: usize, max_token_bytes: usize) -> TokenCache {
        TokenCache {
            capacity,
            max_token_bytes,
            entries: Mutex::new(Entries {
                by_token: HashMap::default(),
                token_bytes: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .expect("the token cache lock is never poisoned")
    }

    /// The principal cached for `token` under key-set `generation`.
    pub fn get(&self, token: &str, generation: u64) -> Option<Arc<TokenPrincipal>> {
        match self.lock().by_token.get(token) {
            Some(entry) if entry.generation == generation => Some(Arc::clone(&entry.principal)),
            _ => None,
        }
    }

    /// Remembers a verified token. When full (in entries or bytes), expired entries and
    /// those of other generations go first; when that is not enough, the cache starts over
    /// (bounded memory beats a perfect hit rate).
    pub fn insert(
        &self,
        token: &str,
        generation: u64,
        principal: Arc<TokenPrincipal>,
        now_unix: u64,
    ) {
        if self.capacity == 0 || token.len() > self.max_token_bytes {
            return;
        }
        let entry = Entry {
            generation,
            principal,
        };
        let mut entries = self.lock();
        if let Some(cached) = entries.by_token.get_mut(token) {
            *cached = entry;
            return;
        }
        let full = |e: &Entries| {
            e.by_token.len() >= self.capacity || e.token_bytes + token.len() > self.max_token_bytes
        };
        if full(&entries) {
            entries
                .by_token
                .retain(|_, e| e.generation == generation && e.principal.expires_unix > now_unix);
            entries.token_bytes = entries.by_token.keys().map(|t| t.len()).sum();
            if full(&entries) {
                entries.by_token.clear();
                entries.token_bytes = 0;
            }
        }
        entries.token_bytes += token.len();
        entries.by_token.insert(token.into(), entry);
    }

    /// Forgets everything (the key set changed).
    pub fn clear(&self) {
        let mut entries = self.lock();
        entries.by_token.clear();
        entries.token_bytes = 0;
    }

    /// Tokens cached now.
    pub fn len(&self) -> usize {
        self.lock().by_token.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the tokens cached now.
    pub fn token_bytes(&self) -> usize {
        self.lock().token_bytes
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{TokenCache, TokenPrincipal};

    fn principal(subject: &str, expires_unix: u64) -> Arc<TokenPrincipal> {
        Arc::new(TokenPrincipal {
            issuer: "test".into(),
            subject: Some(subject.to_owned()),
            expires_unix,
            not_before_unix: None,
            issued_unix: None,
            forwarded: Vec::new(),
            claims: serde_json::Map::new(),
        })
    }

    fn subject(cache: &TokenCache, token: &str, generation: u64) -> Option<String> {
        cache.get(token, generation).and_then(|p| p.subject.clone())
    }

    #[test]
    fn a_hit_is_the_same_token_under_the_same_generation() {
        let cache = TokenCache::new(10, 1000);
        cache.insert("aaa.bbb.ccc", 1, principal("alice", 100), 0);
        assert_eq!(subject(&cache, "aaa.bbb.ccc", 1).as_deref(), Some("alice"));
        assert_eq!(subject(&cache, "aaa.bbb.cc", 1), None);
        assert_eq!(subject(&cache, "aaa.bbb.ccd", 1), None);
        assert_eq!(subject(&cache, "aaa.bbb.ccc", 2), None, "another key set");
        cache.insert("aaa.bbb.ccc", 2, principal("alice2", 100), 0);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.token_bytes(), 11, "a token replaced is counted once");
        let shown = format!("{cache:?}");
        assert!(!shown.contains("aaa.bbb"), "{shown}");
        assert!(shown.contains("tokens: 1"), "{shown}");
        cache.clear();
        assert!(cache.is_empty());
        assert_eq!(cache.token_bytes(), 0);
    }

    #[test]
    fn entries_and_token_bytes_stay_bounded() {
        let cache = TokenCache::new(4, 40);
        for i in 0..4 {
            cache.insert(&format!("token-{i}"), 1, principal("a", 100), 0);
        }
        assert_eq!(cache.len(), 4);
        // Full in entries and nothing expired: the cache starts over.
        cache.insert("token-4", 1, principal("a", 100), 0);
        assert_eq!(cache.len(), 1);
        // Expired entries go first and live ones stay.
        cache.insert("old-0", 1, principal("a", 10), 0);
        cache.insert("old-1", 1, principal("a", 10), 0);
        cache.insert("live-1", 1, principal("a", 100), 0);
        cache.insert("live-2", 1, principal("a", 100), 50);
        assert_eq!(cache.len(), 3);
        assert!(cache.get("token-4", 1).is_some());
        assert!(cache.get("old-0", 1).is_none());
        // Full in bytes: 3 entries of 7 + 6 + 6 bytes, and a 25-byte token.
        let long = "x".repeat(25);
        cache.insert(&long, 1, principal("a", 100), 50);
        assert!(cache.token_bytes() <= 40, "{} bytes", cache.token_bytes());
        assert!(cache.get(&long, 1).is_some());
        // A token longer than the whole budget is never stored.
        cache.insert(&"y".repeat(41), 1, principal("a", 100), 50);
        assert!(cache.get(&"y".repeat(41), 1).is_none());
        assert!(cache.token_bytes() <= 40);
    }
}
