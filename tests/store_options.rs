//! Store options out of any sensible range are configuration errors, not a panic or an
//! attempt to preallocate (or spawn) billions of threads or connections.

mod postgres_support;
mod sqlite_support;

use es_core::store::postgres::{Postgres, PostgresOptions};
use es_core::store::sqlite::{Sqlite, SqliteOptions};
use es_core::StoreError;
use sqlite_support::temporary_store_path;

#[tokio::test]
async fn a_huge_number_of_sqlite_read_connections_is_a_configuration_error() {
    let (_directory, path) = temporary_store_path();
    for count in [usize::MAX, 1 << 40, 1_000_000] {
        let error = Sqlite::open_with(&path, SqliteOptions::new().with_read_connections(count))
            .await
            .expect_err("a million reader threads are refused");
        assert!(matches!(error, StoreError::Config(_)), "got {error:?}");
    }
    assert!(
        !path.exists(),
        "nothing is created for a refused configuration"
    );
    let store = Sqlite::open_with(&path, SqliteOptions::new().with_read_connections(64))
        .await
        .expect("a few dozen readers are fine");
    store.close().await;
}

#[tokio::test]
async fn a_huge_postgres_pool_is_a_configuration_error() {
    // The pool size is checked before any connection is made: no server is needed.
    for size in [usize::MAX, 1 << 40, 1_000_000] {
        let options =
            PostgresOptions::new("postgres://nobody@127.0.0.1:1/none").with_pool_size(size);
        let error = Postgres::connect_with(options)
            .await
            .expect_err("a million connections are refused");
        assert!(matches!(error, StoreError::Config(_)), "got {error:?}");
    }
}
