//! Rendering on real Git repositories: directory, Jsonnet, Kustomize, Helm, plugins,
//! multiple sources, the sandbox, and scoped refresh.
mod support;

#[path = "render/directory.rs"]
mod directory;
#[path = "render/refresh.rs"]
mod refresh;
#[path = "render/tools.rs"]
mod tools;
