//! The admin web page: `/` and its three assets, compiled into the binary (`include_str!`), so the page needs no
//! build step, no files next to the binary and no internet. The page itself is `ui/app.js`; it signs in with the
//! admin token and uses only the JSON API and the WebSocket. Every answer carries a Content-Security-Policy that
//! allows scripts, styles and connections from this origin only: even if hostile text (a release title) ever
//! reached the page as markup, no inline script or handler could run.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");
const ICON_SVG: &str = include_str!("ui/icon.svg");

/// Scripts, styles, images and connections (fetch, WebSocket) only from this origin; no inline code, no framing.
/// Images may also be `blob:` URLs: the spectrograms are fetched with the admin token and shown from a blob.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Revalidate each time: a service upgrade must not leave an old script running against a new API.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the page.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /ui/app.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /ui/app.css`.
pub async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// `GET /ui/icon.svg`.
pub async fn icon() -> Response {
    asset("image/svg+xml", ICON_SVG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_another_origin_and_never_writes_markup() {
        for (name, text) in [("index.html", INDEX_HTML), ("app.js", APP_JS), ("app.css", APP_CSS)] {
            for forbidden in ["http://", "https://", "//cdn", "@import"] {
                assert!(!text.contains(forbidden), "{name} refers to {forbidden}");
            }
        }
        // Text from the service must only reach the page as text nodes.
        for forbidden in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
            assert!(!APP_JS.contains(forbidden), "app.js uses {forbidden}");
        }
        assert!(INDEX_HTML.contains("/ui/app.js") && INDEX_HTML.contains("/ui/app.css"));
        assert!(!INDEX_HTML.contains("<script>"), "no inline script: the CSP forbids it");
    }
}
