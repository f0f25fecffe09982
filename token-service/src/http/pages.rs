//! The HTML the token service shows people: sign-in, consent and error pages. maud escapes every
//! interpolated value; the pages carry no script and forbid framing.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use mcpgate_config::paths;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}.box{border:1px solid #ccc;border-radius:8px;padding:1rem 1.25rem}\
label{display:block;margin:.75rem 0 .25rem}input[type=text],input[type=password]{width:100%;padding:.5rem;box-sizing:border-box}\
button{padding:.5rem 1.25rem;margin:1rem .5rem 0 0;font-size:1rem}\
form.provider button{width:100%;margin:.5rem 0;padding:.75rem;background:#1a56db;color:#fff;border:0;border-radius:6px}\
.or{text-align:center;margin:1rem 0 .5rem}.error{color:#a00}\
.host{font-size:1.25rem;font-weight:bold;font-family:monospace;background:#f3f3f3;padding:.25rem .5rem;border-radius:4px}\
.muted{color:#666;font-size:.9rem;word-break:break-all}.note{color:#666;font-size:.9rem}";

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · mcpgate" }
                style { (STYLE) }
            }
            body { (body) }
        }
    }
}

/// A page response with headers that keep it out of caches and frames.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, axum::response::Html(markup.into_string())).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    // Not `no-referrer`: under it browsers send `Origin: null` on the page's own form posts,
    // which the sign-in's login-CSRF check must refuse. `same-origin` still sends nothing (no
    // query string with a code or state) to any other site.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

pub fn error(status: StatusCode, title: &str, message: &str) -> Response {
    respond(
        status,
        layout(
            title,
            html! {
                h1 { (title) }
                p.error { (message) }
                p.muted { "Return to the application and start again. The application was not contacted." }
            },
        ),
    )
}

/// The ways to sign in the sign-in page offers: the built-in form (when a users file is
/// configured) and one button per OpenID Connect provider.
#[derive(Debug, Clone, Default)]
pub struct SignInChoices {
    pub built_in: bool,
    /// (provider id, display name)
    pub providers: Vec<(String, String)>,
}

pub fn sign_in(
    request: &str,
    client_label: &str,
    username: &str,
    failed: bool,
    choices: &SignInChoices,
) -> Markup {
    sign_in_form("request", request, client_label, username, failed, choices)
}

/// The sign-in form for a browser sent by a client route or a connect URL: the form carries
/// `return_to` instead of a pending authorization request.
pub fn sign_in_to_return(
    return_to: &str,
    label: &str,
    username: &str,
    failed: bool,
    choices: &SignInChoices,
) -> Markup {
    sign_in_form("return_to", return_to, label, username, failed, choices)
}

fn sign_in_form(
    hidden_name: &str,
    hidden_value: &str,
    client_label: &str,
    username: &str,
    failed: bool,
    choices: &SignInChoices,
) -> Markup {
    layout(
        "Sign in",
        html! {
            h1 { "Sign in" }
            p { "to continue to " strong { (client_label) } }
            @if failed {
                p.error role="alert" { "The username or password is not correct." }
            }
            @for (id, display_name) in &choices.providers {
                form.provider method="post" action=(paths::oidc_start(id)) {
                    input type="hidden" name=(hidden_name) value=(hidden_value);
                    button type="submit" class="provider" data-provider=(id) { "Sign in with " (display_name) }
                }
            }
            @if choices.built_in {
                @if !choices.providers.is_empty() {
                    p.muted.or { "or with a username and password" }
                }
                form.box method="post" action=(paths::SIGN_IN) {
                    input type="hidden" name=(hidden_name) value=(hidden_value);
                    label for="username" { "Username" }
                    input type="text" id="username" name="username" value=(username) autocomplete="username" required autofocus[choices.providers.is_empty()];
                    label for="password" { "Password" }
                    input type="password" id="password" name="password" autocomplete="current-password" required;
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// A sign-in through a provider that failed: which provider, what failed in words, and a way
/// to try again.
pub fn provider_sign_in_failed(
    status: StatusCode,
    provider: &str,
    what: &str,
    retry_url: Option<&str>,
) -> Response {
    let title = format!("Signing in with {provider} did not work");
    respond(
        status,
        layout(
            &title,
            html! {
                h1 { (title) }
                p.error role="alert" { (what) }
                @if let Some(url) = retry_url {
                    p { a href=(url) { "Try again" } }
                } @else {
                    p.muted { "Return to the application and start again." }
                }
            },
        ),
    )
}

/// The question before signing out (GET /.mcpgate/sign_out); its button posts the answer.
pub fn sign_out_confirm(username: &str) -> Response {
    respond(
        StatusCode::OK,
        layout(
            "Sign out",
            html! {
                h1 { "Sign out of the gateway?" }
                div.box {
                    p { "You are signed in as " strong { (username) } "." }
                    p { "Signing out ends your gateway session: the applications you authorized with it lose access until you sign in again. If you signed in through your organization's provider, you are signed out there too." }
                    form method="post" action=(paths::SIGN_OUT) {
                        button type="submit" id="sign-out" { "Sign out" }
                    }
                }
                p.note { "Did not mean to come here? Close this page; you stay signed in." }
            },
        ),
    )
}

/// After signing out.
pub fn signed_out() -> Response {
    respond(
        StatusCode::OK,
        layout(
            "Signed out",
            html! {
                h1 { "You are signed out" }
                p { "Your gateway session has ended and the applications it authorized can no longer use it." }
                p.note { "You can close this page. To use an application again, open it and sign in." }
            },
        ),
    )
}

pub struct ConsentView<'a> {
    pub request: &'a str,
    pub csrf: &'a str,
    pub client_name: Option<&'a str>,
    pub client_id: &'a str,
    pub metadata_document: bool,
    pub redirect_host: &'a str,
    pub redirect_uri: &'a str,
    pub route_name: &'a str,
    pub resource: &'a str,
    pub scope: Option<&'a str>,
    pub username: &'a str,
}

pub fn consent(v: &ConsentView<'_>) -> Markup {
    layout(
        "Authorize access",
        html! {
            h1 { "Allow access to " (v.route_name) "?" }
            div.box {
                p {
                    @if let Some(name) = v.client_name { strong { (name) } " " span.muted { "(name given by the application, not verified)" } }
                    @else { strong { "An application" } }
                    " wants to use " strong { (v.route_name) } " as " strong { (v.username) } "."
                }
                p { "After you decide, you will be sent to:" }
                p { span.host { (v.redirect_host) } }
                p.muted { "Redirect URI: " (v.redirect_uri) }
                p.muted { "Client ID" @if v.metadata_document { " (metadata document)" } ": " (v.client_id) }
                p.muted { "Resource: " (v.resource) }
                @if let Some(scope) = v.scope { p.muted { "Scopes: " (scope) } }
                p { "Only allow this if you started this sign-in and trust " (v.redirect_host) "." }
                form method="post" action=(paths::CONSENT) {
                    input type="hidden" name="request" value=(v.request);
                    input type="hidden" name="csrf" value=(v.csrf);
                    button type="submit" name="decision" value="approve" { "Allow" }
                    button type="submit" name="decision" value="deny" { "Deny" }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let choices = SignInChoices {
            built_in: true,
            providers: vec![("corp".into(), "<i>Corp</i>".into())],
        };
        let page = sign_in("r\"><script>", "<b>evil</b>", "", true, &choices).into_string();
        assert!(!page.contains("<i>Corp</i>"));
        assert!(page.contains("/.mcpgate/oidc/corp/start"));
        assert!(!page.contains("<script>"));
        assert!(!page.contains("<b>evil</b>"));
        assert!(page.contains("not correct"));
    }
}
