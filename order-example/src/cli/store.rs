//! The store the program runs on: es-core's [`Store`], opened from the `--store` URL with
//! only what the command needs (a query never writes, and never creates a store).

use es_core::{Store, StoreError, StoreOptions};

/// What a command may do to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Write, creating the store if it does not exist (the tour, `generate`).
    Create,
    /// Write to an existing store only (`rebuild` saves read models).
    Existing,
    /// Read an existing store only, never writing to it (`history`, `state`, `read-models`).
    ReadOnly,
}

/// Opens the store `spec` names (`memory`, `sqlite:PATH` or `postgres://...`, the last with
/// its tables in `postgres_schema` or the default schema) for `access`.
pub async fn open(
    spec: &str,
    postgres_schema: Option<&str>,
    access: Access,
) -> anyhow::Result<Store> {
    let mut options = match access {
        Access::Create => StoreOptions::new(),
        Access::Existing => StoreOptions::new().existing_only(),
        Access::ReadOnly => StoreOptions::new().read_only(),
    };
    if let Some(schema) = postgres_schema {
        if !spec.starts_with("postgres://") && !spec.starts_with("postgresql://") {
            anyhow::bail!("--postgres-schema needs a `postgres://...` store");
        }
        options = options.with_postgres_schema(schema);
    }
    if spec == "memory" && access != Access::Create {
        anyhow::bail!(
            "the memory store starts empty and is gone when the program ends: nothing to read; \
             use --store sqlite:PATH or --store postgres://... (the tour writes orders.db)"
        );
    }
    match Store::open_with(spec, options).await {
        Ok(store) => Ok(store),
        // A URL that names no store: its own message says what is expected.
        Err(StoreError::Config(message)) => Err(anyhow::anyhow!(message)),
        // A PostgreSQL URL may carry a password: never repeat it.
        Err(error) if spec.starts_with("postgres") => {
            Err(anyhow::Error::new(error).context("cannot connect to the PostgreSQL store"))
        }
        Err(error) => {
            let path = spec.strip_prefix("sqlite:").unwrap_or(spec);
            Err(anyhow::Error::new(error).context(format!("cannot open the SQLite store `{path}`")))
        }
    }
}

/// How the tour names the store.
pub fn describe(store: &Store) -> String {
    if store.as_memory().is_some() {
        "in memory (nothing is kept after the program ends)".to_owned()
    } else {
        store.to_string()
    }
}
