//! Secrets: a string type that never prints itself, and encryption at rest.
//!
//! Upstream credentials (tokens, passwords, client secrets, TLS keys, STDIO
//! environment values) are stored in the catalog database only as
//! AES-256-GCM ciphertext. The key comes from `SWITCHYARD_SECRET_KEY` or a
//! key file; a first start with no key and no stored secrets generates the
//! file (mode 0600) next to the database, so the README's one command works
//! and a copied database or backup alone reveals nothing. A database holding
//! secrets without its key is refused at start rather than half-loaded.

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use rand::RngCore;

/// A credential or key: `Debug` prints `[redacted]`, there is no `Display`,
/// so it cannot reach a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// What the API shows instead of a secret's value.
pub const MASK: &str = "*****";

/// Versioned so a future key rotation or algorithm can coexist with old rows.
const BLOB_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the catalog holds encrypted upstream credentials but no key is available: set \
         SWITCHYARD_SECRET_KEY or --secret-key-file to the key they were written with \
         (expected at {})", path.as_ref().map_or_else(|| "(no key file configured)".to_owned(), |p| p.display().to_string())
    )]
    Missing { path: Option<PathBuf> },
    #[error("secret key {origin}: {reason}")]
    Invalid { origin: String, reason: String },
    #[error("cannot read secret key file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write a new secret key file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("not an encrypted value (unknown format)")]
    Format,
    #[error("cannot decrypt: wrong key, or the value was altered or moved to another row")]
    Decrypt,
}

/// Where the key came from; logged at start (never the key itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    Environment,
    File(PathBuf),
    /// Generated on this start and written to this file.
    Generated(PathBuf),
    /// Generated for this process only (in-memory catalog: the secrets die with it).
    Ephemeral,
}

/// Encrypts and decrypts catalog secrets with one AES-256-GCM key.
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher([redacted])")
    }
}

impl Cipher {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            aead: Aes256Gcm::new(key.into()),
        }
    }

    #[cfg(test)]
    pub fn ephemeral() -> Self {
        Self::new(&random_key())
    }

    /// `context` is bound into the ciphertext (AEAD associated data): a value
    /// copied into another row or column fails to decrypt instead of being
    /// silently accepted there.
    pub fn encrypt(&self, plaintext: &[u8], context: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext,
            aad: context.as_bytes(),
        };
        // AES-GCM encryption fails only for inputs beyond 64 GiB.
        let sealed = self
            .aead
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!(
            "{BLOB_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    pub fn decrypt(&self, blob: &str, context: &str) -> Result<Vec<u8>, CryptoError> {
        let raw = blob
            .strip_prefix(BLOB_PREFIX)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .filter(|r| r.len() > NONCE_LEN)
            .ok_or(CryptoError::Format)?;
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        self.aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Decrypt)
    }
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

/// A key is 32 bytes written as 64 hex digits or as base64 (as `openssl rand
/// -hex 32` or `-base64 32` print them); surrounding whitespace is ignored.
pub fn parse_key(text: &str, origin: &str) -> Result<[u8; 32], KeyError> {
    let text = text.trim();
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).ok()
    } else {
        base64::engine::general_purpose::STANDARD.decode(text).ok()
    };
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| KeyError::Invalid {
            origin: origin.to_owned(),
            reason: "must be 32 bytes written as 64 hex digits or base64 \
                     (e.g. the output of `openssl rand -hex 32`)"
                .into(),
        })
}

/// Finds the key: the environment's, else the file's, else (only while the
/// catalog holds no secret) a new one written to the file, or kept in memory
/// when there is no file to write.
pub fn resolve_key(
    env_key: Option<&str>,
    file: Option<&Path>,
    secrets_stored: bool,
) -> Result<(Cipher, KeyOrigin), KeyError> {
    if let Some(text) = env_key.filter(|t| !t.trim().is_empty()) {
        let key = parse_key(text, "in SWITCHYARD_SECRET_KEY")?;
        return Ok((Cipher::new(&key), KeyOrigin::Environment));
    }
    if let Some(path) = file {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let key = parse_key(&text, &format!("in {}", path.display()))?;
                return Ok((Cipher::new(&key), KeyOrigin::File(path.to_owned())));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KeyError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }
    if secrets_stored {
        return Err(KeyError::Missing {
            path: file.map(Path::to_owned),
        });
    }
    let key = random_key();
    match file {
        Some(path) => {
            crate::fs::write_owner_only(path, format!("{}\n", hex::encode(key)).as_bytes())
                .map_err(|source| KeyError::Write {
                    path: path.to_owned(),
                    source,
                })?;
            Ok((Cipher::new(&key), KeyOrigin::Generated(path.to_owned())))
        }
        None => Ok((Cipher::new(&key), KeyOrigin::Ephemeral)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_binds_the_context() {
        let c = Cipher::ephemeral();
        let blob = c.encrypt(b"hunter2", "gateway:a");
        assert!(blob.starts_with("v1:"));
        assert!(!blob.contains("hunter2"));
        assert_eq!(c.decrypt(&blob, "gateway:a").unwrap(), b"hunter2");
        assert!(matches!(
            c.decrypt(&blob, "gateway:b"),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            Cipher::ephemeral().decrypt(&blob, "gateway:a"),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            c.decrypt("plain", "gateway:a"),
            Err(CryptoError::Format)
        ));
        // Fresh nonce each time: equal secrets do not give equal ciphertexts.
        assert_ne!(blob, c.encrypt(b"hunter2", "gateway:a"));
    }

    #[test]
    fn keys_parse_as_hex_or_base64_only_when_32_bytes() {
        let hex_key = "00".repeat(32);
        assert_eq!(parse_key(&format!(" {hex_key}\n"), "t").unwrap(), [0u8; 32]);
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(parse_key(&b64, "t").unwrap(), [7u8; 32]);
        assert!(parse_key("short", "t").is_err());
        assert!(parse_key(&"00".repeat(16), "t").is_err());
    }

    #[test]
    fn generates_a_key_file_once_and_refuses_when_secrets_lack_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let (c1, origin) = resolve_key(None, Some(&path), false).unwrap();
        assert_eq!(origin, KeyOrigin::Generated(path.clone()));
        let blob = c1.encrypt(b"x", "ctx");
        let (c2, origin) = resolve_key(None, Some(&path), true).unwrap();
        assert_eq!(origin, KeyOrigin::File(path.clone()));
        assert_eq!(c2.decrypt(&blob, "ctx").unwrap(), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_file(&path).unwrap();
        let err = resolve_key(None, Some(&path), true).unwrap_err();
        assert!(err.to_string().contains("SWITCHYARD_SECRET_KEY"), "{err}");
        assert!(resolve_key(Some("nonsense"), None, false).is_err());
    }
}
