//! Providers turn a stored credential into a fresh access token. They know
//! nothing of sockets or scheduling: one call, one outcome.

pub mod authorization_code;
pub mod client_credentials;
pub mod designer_cloud;
pub mod oauth;
pub mod refresh;
pub mod static_token;

/// What a provider's call ends in. Defined in `a365-token`, whose parsers
/// return them.
pub use a365_token::{Fresh, ProviderError};
