//! What keeps the service running on its configuration: the signing keys and the key files
//! created on first start, watching the gateway file and applying its changes.

pub mod key_files;
pub mod reload;
pub mod serve;
pub mod signing_keys;
pub mod watch;
