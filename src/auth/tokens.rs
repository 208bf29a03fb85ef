//! API tokens: `sy_` and 64 hex digits (256 random bits), minted by
//! `switchyard token create`, by `POST /tokens`, or on a first start.
//!
//! The catalog database keeps only a SHA-256 digest of each token, with its
//! name, admin flag, creation, expiry and last use. Verified tokens are cached
//! in memory so a request costs a hash and a map probe, not a query; a token
//! the cache does not know (minted by the CLI against the same database while
//! the gateway runs) is looked up once. Revocation through the API removes
//! the cache entry at once.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use super::principal::Principal;
use crate::FastHash;

/// What every API token starts with, so leaked tokens are recognisable
/// (secret scanners, logs) and JWTs are told apart without parsing.
pub const PREFIX: &str = "sy_";
const SECRET_HEX_LEN: usize = 64;
/// `last_used` is written back at most this often per token.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;
/// A token's `last_used` in memory moves in steps of at most this.
const LAST_USED_STEP_MS: i64 = 1_000;
/// Longest accepted lifetime: beyond this "never expires" is the honest choice.
const MAX_LIFETIME: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum TokenStoreError {
    #[error("token store: {source}")]
    Sql {
        #[from]
        source: sqlx::Error,
    },
    #[error("corrupt token row: {detail}")]
    Corrupt { detail: String },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// A token as listed: everything but the secret, which is never stored.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub admin: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used: Option<DateTime<Utc>>,
}

/// A freshly minted token: the secret exists only here, once.
pub struct Minted {
    pub info: TokenInfo,
    pub token: String,
}

/// How a presented token fared.
pub enum Verdict {
    Valid(Principal),
    Expired,
    Unknown,
}

struct Cached {
    info: TokenInfo,
    /// Unix ms of the last use seen by this process (0: none).
    last_used_ms: AtomicI64,
    /// Unix ms of the last use written to the database.
    persisted_ms: AtomicI64,
}

pub struct TokenStore {
    pool: SqlitePool,
    /// By token digest (the raw bytes: a request hashes the token it
    /// presents and probes with that, with no hex string to build).
    cache: DashMap<TokenDigest, Arc<Cached>, FastHash>,
    /// Digests looked up and not found. A token is 256 random bits, so one
    /// that was unknown is never minted later: remembering it is always
    /// right, and a flood of made-up tokens costs map probes, not queries.
    /// Bounded: cleared when full.
    unknown: DashMap<TokenDigest, (), FastHash>,
}

/// SHA-256 of a whole token, as the cache keys it; the database keeps it
/// in lower-case hex.
type TokenDigest = [u8; 32];

/// Entries in the negative cache before it is cleared.
const UNKNOWN_CAPACITY: usize = 16_384;

impl TokenStore {
    /// Opens the store on the catalog's pool (its table is created by the
    /// catalog's migrations) and loads every token into the cache.
    pub async fn open(pool: SqlitePool) -> Result<TokenStore, TokenStoreError> {
        let store = TokenStore {
            pool,
            cache: DashMap::default(),
            unknown: DashMap::default(),
        };
        for row in sqlx::query("SELECT * FROM api_tokens")
            .fetch_all(&store.pool)
            .await?
        {
            let hash: String = row.try_get("token_hash")?;
            let info = info_from_row(&row)?;
            store.remember(digest_from_hex(&hash)?, info);
        }
        Ok(store)
    }

    fn remember(&self, hash: TokenDigest, info: TokenInfo) -> Arc<Cached> {
        let used = info.last_used.map_or(0, |t| t.timestamp_millis());
        let cached = Arc::new(Cached {
            info,
            last_used_ms: AtomicI64::new(used),
            persisted_ms: AtomicI64::new(used),
        });
        self.cache.insert(hash, Arc::clone(&cached));
        cached
    }

    /// Mints a token. `lifetime` `None` never expires.
    pub async fn create(
        &self,
        name: &str,
        admin: bool,
        lifetime: Option<Duration>,
    ) -> Result<Minted, TokenStoreError> {
        let name = validate_name(name)?;
        let now = Utc::now();
        let expires_at = lifetime
            .map(|d| {
                if d.is_zero() || d > MAX_LIFETIME {
                    return Err(TokenStoreError::Invalid {
                        field: "expires",
                        reason: "must be more than 0 seconds and at most 10 years".into(),
                    });
                }
                chrono::Duration::from_std(d).map(|d| now + d).map_err(|e| {
                    TokenStoreError::Invalid {
                        field: "expires",
                        reason: e.to_string(),
                    }
                })
            })
            .transpose()?;
        let token = format!("{PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
        let hash = digest(&token);
        let info = TokenInfo {
            id: crate::catalog::new_id(),
            name,
            admin,
            created_at: now,
            expires_at,
            last_used: None,
        };
        sqlx::query(
            "INSERT INTO api_tokens (id, name, token_hash, admin, created_at, expires_at, last_used)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
        )
        .bind(&info.id)
        .bind(&info.name)
        .bind(hex::encode(hash))
        .bind(info.admin)
        .bind(info.created_at.to_rfc3339())
        .bind(info.expires_at.map(|t| t.to_rfc3339()))
        .execute(&self.pool)
        .await?;
        self.remember(hash, info.clone());
        Ok(Minted { info, token })
    }

    /// Checks a presented `sy_…` token from memory alone: `None` when only
    /// the database can tell (a token minted elsewhere since this process
    /// loaded the table). Lets the auth layer answer without a future.
    pub fn verify_cached(&self, token: &str) -> Option<Verdict> {
        if !well_formed(token) {
            return Some(Verdict::Unknown);
        }
        self.verdict_cached(&digest(token))
    }

    fn verdict_cached(&self, hash: &TokenDigest) -> Option<Verdict> {
        // Judged under the map's read guard rather than on a clone of the
        // entry: a clone and its drop are two writes, on every request, to
        // a cache line all of that token's requests share.
        if let Some(cached) = self.cache.get(hash) {
            return Some(self.judge(cached.value()));
        }
        self.unknown.contains_key(hash).then_some(Verdict::Unknown)
    }

    /// Checks a presented `sy_…` token.
    pub async fn verify(&self, token: &str) -> Result<Verdict, TokenStoreError> {
        if !well_formed(token) {
            return Ok(Verdict::Unknown);
        }
        let hash = digest(token);
        if let Some(verdict) = self.verdict_cached(&hash) {
            return Ok(verdict);
        }
        // Minted elsewhere (the CLI) since this process loaded the table.
        let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = ?1")
            .bind(hex::encode(hash))
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => {
                let cached = self.remember(hash, info_from_row(&row)?);
                Ok(self.judge(&cached))
            }
            None => {
                if self.unknown.len() >= UNKNOWN_CAPACITY {
                    self.unknown.clear();
                }
                self.unknown.insert(hash, ());
                Ok(Verdict::Unknown)
            }
        }
    }

    fn judge(&self, cached: &Cached) -> Verdict {
        let now = Utc::now();
        if cached.info.expires_at.is_some_and(|t| t <= now) {
            return Verdict::Expired;
        }
        self.touch(cached, now.timestamp_millis());
        // Built per request rather than cloned from the cache: see
        // `Principal::anonymous`.
        Verdict::Valid(Principal::api_token(
            &cached.info.id,
            &cached.info.name,
            cached.info.admin,
        ))
    }

    /// Records a use; writes it back in the background at most once a
    /// minute per token, so verifying stays off the database.
    fn touch(&self, cached: &Cached, now_ms: i64) {
        // Written once a second at most: a write per request would bounce
        // the line between every core serving this token.
        if now_ms - cached.last_used_ms.load(Ordering::Relaxed) >= LAST_USED_STEP_MS {
            cached.last_used_ms.store(now_ms, Ordering::Relaxed);
        }
        let persisted = cached.persisted_ms.load(Ordering::Relaxed);
        if now_ms - persisted < LAST_USED_GRANULARITY_MS {
            return;
        }
        if cached
            .persisted_ms
            .compare_exchange(persisted, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another request is writing it
        }
        let Some(when) = DateTime::<Utc>::from_timestamp_millis(now_ms) else {
            return;
        };
        let pool = self.pool.clone();
        let id = cached.info.id.clone();
        tokio::spawn(async move {
            let written = sqlx::query("UPDATE api_tokens SET last_used = ?1 WHERE id = ?2")
                .bind(when.to_rfc3339())
                .bind(&id)
                .execute(&pool)
                .await;
            if let Err(e) = written {
                tracing::debug!(token = %id, error = %e, "last_used not recorded");
            }
        });
    }

    /// Every token, oldest first, from the database (which also knows tokens
    /// minted by the CLI), with the freshest `last_used` this process saw.
    pub async fn list(&self) -> Result<Vec<TokenInfo>, TokenStoreError> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        let seen_ms: std::collections::HashMap<String, i64> = self
            .cache
            .iter()
            .map(|e| {
                let c = e.value();
                (c.info.id.clone(), c.last_used_ms.load(Ordering::Relaxed))
            })
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut info = info_from_row(row)?;
            let seen = seen_ms
                .get(&info.id)
                .copied()
                .filter(|ms| *ms > 0)
                .and_then(DateTime::<Utc>::from_timestamp_millis);
            if seen > info.last_used {
                info.last_used = seen;
            }
            out.push(info);
        }
        Ok(out)
    }

    /// Drops cached tokens whose rows are gone (revoked by `switchyard token
    /// revoke`, another process); returns their ids.
    pub async fn forget_deleted(&self) -> Result<Vec<String>, TokenStoreError> {
        let ids: std::collections::HashSet<String> =
            sqlx::query_scalar("SELECT id FROM api_tokens")
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect();
        let mut gone = Vec::new();
        self.cache.retain(|_, c| {
            let keep = ids.contains(&c.info.id);
            if !keep && !gone.contains(&c.info.id) {
                gone.push(c.info.id.clone());
            }
            keep
        });
        Ok(gone)
    }

    /// Deletes a token; it stops working at once. False if there was none.
    pub async fn revoke(&self, id: &str) -> Result<bool, TokenStoreError> {
        // Cache first: from here on no request can pass with it.
        self.cache.retain(|_, c| c.info.id != id);
        let done = sqlx::query("DELETE FROM api_tokens WHERE id = ?1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn count(&self) -> Result<i64, TokenStoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_tokens")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}

/// SHA-256 of the whole token. A fast hash is right here: the token
/// carries 256 random bits, so there is nothing to brute-force.
fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

fn digest_from_hex(hex_digest: &str) -> Result<TokenDigest, TokenStoreError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).map_err(|e| TokenStoreError::Corrupt {
        detail: format!("token_hash {hex_digest:?}: {e}"),
    })?;
    Ok(out)
}

fn well_formed(token: &str) -> bool {
    token.strip_prefix(PREFIX).is_some_and(|s| {
        s.len() == SECRET_HEX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn validate_name(name: &str) -> Result<String, TokenStoreError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(TokenStoreError::Invalid {
            field: "name",
            reason: "must be 1 to 255 characters, without control characters".into(),
        });
    }
    Ok(name.to_owned())
}

/// `90s`, `15m`, `12h`, `30d`, `2w`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 15m, 12h, 30d or 2w"))?;
    let unit_secs = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(format!(
                "unknown duration unit {other:?}; use s, m, h, d or w"
            ))
        }
    };
    n.checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

fn time(row: &SqliteRow, col: &str) -> Result<Option<DateTime<Utc>>, TokenStoreError> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| {
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| TokenStoreError::Corrupt {
                detail: format!("{col} {s:?}: {e}"),
            })
    })
    .transpose()
}

fn info_from_row(row: &SqliteRow) -> Result<TokenInfo, TokenStoreError> {
    Ok(TokenInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        admin: row.try_get("admin")?,
        created_at: time(row, "created_at")?.ok_or_else(|| TokenStoreError::Corrupt {
            detail: "created_at is NULL".into(),
        })?,
        expires_at: time(row, "expires_at")?,
        last_used: time(row, "last_used")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> TokenStore {
        let catalog = crate::catalog::Store::open("sqlite::memory:")
            .await
            .unwrap();
        TokenStore::open(catalog.pool()).await.unwrap()
    }

    #[tokio::test]
    async fn an_unknown_token_is_looked_up_once() {
        let s = store().await;
        let made_up = format!("sy_{}", "a".repeat(64));
        assert!(matches!(
            s.verify(&made_up).await.unwrap(),
            Verdict::Unknown
        ));
        // With the database gone, only the remembered miss can still answer.
        s.pool.close().await;
        assert!(matches!(
            s.verify(&made_up).await.unwrap(),
            Verdict::Unknown
        ));
        let other = format!("sy_{}", "b".repeat(64));
        assert!(s.verify(&other).await.is_err());
    }

    #[tokio::test]
    async fn minted_tokens_verify_until_revoked_and_only_digests_are_stored() {
        let s = store().await;
        assert_eq!(s.count().await.unwrap(), 0);
        let m = s.create("ci", true, None).await.unwrap();
        assert!(m.token.starts_with("sy_") && m.token.len() == 67);
        assert!(matches!(s.verify(&m.token).await.unwrap(), Verdict::Valid(p) if p.admin));
        let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM api_tokens")
            .fetch_all(&s.pool)
            .await
            .unwrap();
        assert_eq!(stored, vec![hex::encode(digest(&m.token))]);
        assert!(!stored[0].contains(&m.token[3..]));
        let other = format!("sy_{}", "0".repeat(64));
        assert!(matches!(s.verify(&other).await.unwrap(), Verdict::Unknown));
        assert!(matches!(
            s.verify("sy_short").await.unwrap(),
            Verdict::Unknown
        ));
        assert!(s.revoke(&m.info.id).await.unwrap());
        assert!(matches!(
            s.verify(&m.token).await.unwrap(),
            Verdict::Unknown
        ));
        assert!(!s.revoke(&m.info.id).await.unwrap());
    }

    #[tokio::test]
    async fn tokens_minted_by_another_process_are_found_and_expiry_is_enforced() {
        let s = store().await;
        // As if `switchyard token create` wrote the row while we run.
        let other = TokenStore {
            pool: s.pool.clone(),
            cache: DashMap::default(),
            unknown: DashMap::default(),
        };
        let m = other.create("cli", false, None).await.unwrap();
        // Memory alone cannot tell yet: the request takes the async path.
        assert!(s.verify_cached(&m.token).is_none());
        assert!(matches!(s.verify(&m.token).await.unwrap(), Verdict::Valid(p) if !p.admin));
        // Once looked up, it is answered from memory, as the auth layer's
        // fast path expects.
        assert!(matches!(s.verify_cached(&m.token), Some(Verdict::Valid(p)) if !p.admin));
        assert!(matches!(
            s.verify_cached("sy_short"),
            Some(Verdict::Unknown)
        ));
        let short = s
            .create("short", false, Some(Duration::from_secs(1)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(matches!(
            s.verify(&short.token).await.unwrap(),
            Verdict::Expired
        ));
        assert!(matches!(
            s.verify_cached(&short.token),
            Some(Verdict::Expired)
        ));
        assert!(s.create(" ", false, None).await.is_err());
        assert!(s.create("x", false, Some(Duration::ZERO)).await.is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(2_592_000)
        );
        assert!(parse_duration("1y").is_err() && parse_duration("d").is_err());
    }
}
