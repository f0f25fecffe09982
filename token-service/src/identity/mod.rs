//! Who the user is: the built-in user directory, browser sessions and signing in.

pub mod session;
pub mod sign_in;
pub mod users;
