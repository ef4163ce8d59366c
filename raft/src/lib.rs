//! The replicated state store.
