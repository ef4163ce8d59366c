//! The flotilla controller node.
//!
//! Where to start: [`model`] holds Argo CD's resource types as flotilla reads them
//! (`Application`, `AppProject`, cluster and repository Secrets); [`source`] keeps one bare
//! Git mirror per repository and reads trees from it; [`render`] turns an `Application`
//! into the objects that should exist ([`render::Renderer::render`]), with a cache keyed
//! by the app's inputs; [`cli`] is the `flotilla` command line.
pub mod cli;
pub mod diff;
pub mod health;
pub mod model;
pub mod render;
pub mod source;
pub mod sync;
