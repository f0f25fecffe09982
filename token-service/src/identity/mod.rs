//! Who the user is: the built-in user directory and browser sessions.

pub mod session;
pub mod users;
