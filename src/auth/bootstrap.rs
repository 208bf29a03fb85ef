//! The first start: with authentication on and no API token in the catalog,
//! nobody could use the gateway; so an admin token is minted, handed to the
//! caller to print once, and written to a file only its owner can read.

use std::path::{Path, PathBuf};

use super::tokens::{Minted, TokenStore, TokenStoreError};

/// The name the first admin token gets in `GET /tokens`.
pub const BOOTSTRAP_TOKEN_NAME: &str = "admin (minted on first start)";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Store {
        #[from]
        source: TokenStoreError,
    },
    #[error("cannot write the admin token to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Mints an admin token when the store is empty, writing it to `file` (mode
/// 0600) when one is given. `None` when tokens exist already.
pub async fn mint_first_admin_token(
    tokens: &TokenStore,
    file: Option<&Path>,
) -> Result<Option<Minted>, BootstrapError> {
    if tokens.count().await? > 0 {
        return Ok(None);
    }
    let minted = tokens.create(BOOTSTRAP_TOKEN_NAME, true, None).await?;
    if let Some(path) = file {
        crate::fs::write_owner_only(path, format!("{}\n", minted.token).as_bytes()).map_err(
            |source| BootstrapError::Write {
                path: path.to_owned(),
                source,
            },
        )?;
    }
    Ok(Some(minted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn mints_once_into_an_owner_only_file() {
        let catalog = crate::catalog::Store::open("sqlite::memory:")
            .await
            .unwrap();
        let tokens = TokenStore::open(catalog.pool()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        std::fs::write(&path, "stale").unwrap();
        let minted = mint_first_admin_token(&tokens, Some(&path))
            .await
            .unwrap()
            .unwrap();
        assert!(minted.info.admin);
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), minted.token);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(mint_first_admin_token(&tokens, Some(&path))
            .await
            .unwrap()
            .is_none());
    }
}
