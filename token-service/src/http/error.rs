//! The error a browser flow (sign-in, consent, connect) answers with: an HTML page naming what
//! went wrong, a redirect (e.g. to sign in first), or the internal-error page. Internal errors
//! are logged here; no page or log line carries a token, secret or password.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::http::{pages, redirect};

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// Shown to the person as a page with `status`.
    #[error("{title}: {message}")]
    Page {
        status: StatusCode,
        title: Cow<'static, str>,
        message: String,
    },
    /// The browser must go elsewhere first (`Location`, never cached).
    #[error("redirect to {location}")]
    Redirect {
        status: StatusCode,
        location: String,
    },
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl PageError {
    /// A page with `status`.
    pub fn page(
        status: StatusCode,
        title: impl Into<Cow<'static, str>>,
        message: impl std::fmt::Display,
    ) -> Self {
        Self::Page {
            status,
            title: title.into(),
            message: message.to_string(),
        }
    }

    /// A 400 page.
    pub fn bad_request(title: &'static str, message: impl std::fmt::Display) -> Self {
        Self::Page {
            status: StatusCode::BAD_REQUEST,
            title: title.into(),
            message: message.to_string(),
        }
    }

    /// A 403 page.
    pub fn forbidden(title: &'static str, message: impl std::fmt::Display) -> Self {
        Self::Page {
            status: StatusCode::FORBIDDEN,
            title: title.into(),
            message: message.to_string(),
        }
    }
}

/// The page shown for an internal error: 503 when the database is unreachable (it passes; see
/// `store::is_unavailable`), otherwise 500. The cause is logged, never shown.
pub fn internal_error_page(e: &anyhow::Error) -> Response {
    if crate::store::is_unavailable(e) {
        tracing::warn!(error = %format!("{e:#}"), "database unavailable");
        return pages::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Temporarily unavailable",
            "The gateway cannot reach its database right now. Try again in a moment.",
        );
    }
    tracing::error!(error = %format!("{e:#}"), "internal error");
    pages::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The gateway hit an internal error.",
    )
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            Self::Page {
                status,
                title,
                message,
            } => pages::error(status, &title, &message),
            Self::Redirect { status, location } => redirect(status, &location),
            Self::Internal(e) => internal_error_page(&e),
        }
    }
}
