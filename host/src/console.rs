//! The web console's static files, embedded in the binary (built by `cargo xtask console` from
//! `host/console/src` into `host/console/dist`, which is committed): `GET /ui` and
//! `/ui/app.js`, `/ui/app.css` on the admin listener.
//!
//! They hold no data, so they are served without the admin token: the page asks for the token
//! and every view reads the admin API with it. A Content-Security-Policy keeps the page to its
//! own origin: nothing is fetched from elsewhere, nothing inline runs.

use crate::body::{self, Body};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

const INDEX: &[u8] = include_bytes!("../console/dist/index.html");
const APP_JS: &[u8] = include_bytes!("../console/dist/app.js");
const APP_CSS: &[u8] = include_bytes!("../console/dist/app.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console file `req` asks for, if it is one.
pub(crate) fn asset<B>(req: &Request<B>) -> Option<Response<Body>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    if req.uri().path() == "/favicon.ico" {
        // Browsers ask for it on every page; there is none.
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        return Some(resp);
    }
    let (bytes, content_type) = match req.uri().path() {
        "/ui" | "/ui/" => (INDEX, "text/html; charset=utf-8"),
        "/ui/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "/ui/app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return None,
    };
    let mut resp = Response::new(body::full(bytes));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Small and embedded: always revalidated, so a new gateway's console is never stale.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(resp)
}

/// The embedded files' total size (what the console adds to the binary).
pub fn embedded_bytes() -> usize {
    INDEX.len() + APP_JS.len() + APP_CSS.len()
}
