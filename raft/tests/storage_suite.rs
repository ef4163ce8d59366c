//! The sled log store and state machine pass openraft's own storage conformance suite.

use flotilla_raft::log_store::LogStore;
use flotilla_raft::state_machine::StateMachine;
use flotilla_raft::types::TypeConfig;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::StorageError;
use tempfile::TempDir;

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = TempDir::new().map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        let db = sled::Config::new()
            .path(dir.path().join("sled"))
            .cache_capacity(8 << 20)
            .open()
            .map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        let (tx, _) = tokio::sync::broadcast::channel(16);
        let log =
            LogStore::open(&db).map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        let sm = StateMachine::open(&db, dir.path().join("snapshot"), tx)
            .map_err(|e| StorageError::read(TypeConfig::err_from_error(&e)))?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_storage_passes_openraft_suite() {
    tracing::info!("phase: running openraft's storage suite against the sled store");
    Suite::test_all(SledBuilder).await.expect("storage suite");
}
