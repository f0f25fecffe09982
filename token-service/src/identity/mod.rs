//! Who the user is: the built-in user directory, OpenID Connect providers, browser sessions and
//! signing in.

pub mod oidc;
pub mod session;
pub mod sign_in;
pub mod users;
