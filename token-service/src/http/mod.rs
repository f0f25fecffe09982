//! The HTTP surface shared by every endpoint: the HTML pages and OAuth request parameters.

pub mod pages;
pub mod params;
