//! The Git side of load tests and end-to-end tests.
//!
//! Start with [`fixture::Fixture`]: it generates a bare app-of-apps repository (A apps over
//! C simulated clusters) and commits changes to chosen apps. [`server::GitServer`] serves a
//! directory of bare repositories over smart HTTP on loopback (the system `git http-backend`
//! behind hyper, optional basic auth), and [`webhook`] builds and sends push-event webhooks
//! in GitHub, GitLab, Bitbucket Cloud and Gogs formats.

pub mod fixture;
pub mod server;
pub mod webhook;

pub use fixture::{CommitOutcome, Fixture, FixtureError, FixtureSpec};
pub use server::{BasicAuth, GitServer, GitServerConfig, ServerError};
pub use webhook::{PushEvent, WebhookError, WebhookProvider, WebhookRequest};
