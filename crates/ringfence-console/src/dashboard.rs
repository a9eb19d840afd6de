//! The dashboard: server-rendered HTML from compiled templates (askama, `templates/`) with a
//! little JavaScript, no front-end toolchain.
//!
//! Pages: fleet (agents, versions, health, tags, findings over time), rollouts (each ring's
//! progress drawn as inline SVG, gates with their evidence, halt/resume/rollback buttons, the
//! audit trail), findings, one finding, and one host ([`crate::dashboard_findings`]), and the
//! default content's ATT&CK coverage ([`crate::coverage`]).
//! Every page needs a session from the login form (or a one-time sign-in link that
//! `ringfence up` prints). Buttons call the same JSON API as the CLI, with the session cookie
//! and the CSRF header; everything shown is escaped by the templates' escaper ([`Printable`]),
//! and characters that hide or reorder text (controls, bidi overrides) are shown as `\u{…}`.
//!
//! Every dashboard response carries a Content-Security-Policy that allows no inline script or
//! style (the script and style sheet are served from `/assets/`), cannot be framed, and is not
//! cached or sent as a referrer.

use std::fmt::Write as _;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::AppState;
use crate::agents::{self, AgentRow};
use crate::audit;
use crate::auth::{self, SESSION_COOKIE};
use crate::clock::Millis;
use crate::error::AppError;
use crate::plan::format_duration;
use crate::rollout::{self, RolloutView};
use crate::svg;

/// Dashboard routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/fleet") }))
        .route("/login", get(login_page).post(login_submit))
        .route("/login/once", get(login_once))
        .route("/logout", post(logout))
        .route("/fleet", get(fleet_page))
        .route("/rollouts", get(rollouts_page))
        .route("/rollouts/{id}", get(rollout_page))
        .route("/coverage", get(crate::coverage::coverage_page))
        .merge(crate::dashboard_findings::router())
        .merge(crate::posture::router())
        .route("/assets/dashboard.css", get(css))
        .route("/assets/dashboard.js", get(js))
        .layer(axum::middleware::map_response(security_headers))
}

/// What the dashboard's pages may load and do: their own script and style sheet and nothing
/// inline, no framing, forms and fetches to this origin only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Revalidated each time, so a new console's script is picked up at once.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}

/// Escape text for HTML; characters that hide or reorder text are written as `\u{…}`
/// ([`ringfence_wire::printable`]), so one host name cannot pass for another.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            c if ringfence_wire::is_hidden_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The templates' escaper (`askama.toml`): [`esc`] for every `{{ value }}`.
#[derive(Debug, Clone, Copy)]
pub struct Printable;

impl askama::filters::Escaper for Printable {
    fn write_escaped_str<W: std::fmt::Write>(&self, mut dest: W, s: &str) -> std::fmt::Result {
        dest.write_str(&esc(s))
    }
}

/// Render a template as a page; a template that fails to render is a 500 naming it.
pub fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => AppError::internal(format!("rendering a dashboard page: {e}")).into_response(),
    }
}

/// What every page's frame shows.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    pub active: &'static str,
    pub operator: String,
}

impl Layout {
    pub fn new(title: impl Into<String>, active: &'static str, operator: &str) -> Layout {
        Layout {
            title: title.into(),
            active,
            operator: operator.to_owned(),
        }
    }

    pub fn is_on(&self, name: &str) -> bool {
        name == self.active
    }

    pub fn nav(&self) -> [(&'static str, &'static str); 6] {
        [
            ("/fleet", "Fleet"),
            ("/rollouts", "Rollouts"),
            ("/findings", "Findings"),
            ("/exceptions", "Exceptions"),
            ("/coverage", "Coverage"),
            ("/posture", "Posture"),
        ]
    }
}

/// `YYYY-MM-DD HH:MM:SS` UTC.
pub fn utc(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

pub fn ago(now: Millis, t: Millis) -> String {
    let d = (now - t).max(0);
    format!("{} ago", format_duration(d))
}

const CSS: &str = r#"
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2330;--muted:#667085;--line:#e4e7ec;--ok:#12a150;--run:#2e6be6;--bad:#d92d20;--warn:#dc8a00;--idle:#c9ced6}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:var(--bg);color:var(--ink)}
header{background:#101828;color:#fff;display:flex;align-items:center;gap:24px;padding:10px 24px}
header b{font-size:16px;letter-spacing:.3px}header a{color:#cfd4dc;text-decoration:none}header a.on{color:#fff;font-weight:600}
header .me{margin-left:auto;color:#98a2b3}header form{margin:0}header button{background:none;border:1px solid #475467;color:#cfd4dc;border-radius:6px;padding:3px 10px;cursor:pointer}
main{padding:20px 24px;max-width:1280px}h1{font-size:20px;margin:0 0 14px}h2{font-size:16px;margin:22px 0 10px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:14px}.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 16px;min-width:150px}
.card .n{font-size:22px;font-weight:650}.card .l{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.4px}
table{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line);border-radius:10px;overflow:hidden}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}th{background:#f9fafb;color:var(--muted);font-weight:600;font-size:12px}
td.num{text-align:right;font-variant-numeric:tabular-nums}code{font:12px ui-monospace,monospace}
.badge{display:inline-block;border-radius:999px;padding:1px 9px;font-size:12px;font-weight:600;color:#fff;background:var(--idle)}
.b-running,.b-active{background:var(--run)}.b-completed,.b-passed,.b-pass{background:var(--ok)}.b-rolled_back,.b-failed,.b-fail{background:var(--bad)}
.b-paused,.b-halted,.b-halt,.b-inconclusive{background:var(--warn)}.b-wait,.b-pending{background:#98a2b3}
.panel{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;margin-bottom:14px}
.actions button{border:0;border-radius:8px;padding:7px 14px;font-weight:600;color:#fff;cursor:pointer;margin-right:8px}
.actions .halt{background:var(--warn)}.actions .resume{background:var(--run)}.actions .rollback{background:var(--bad)}.actions button:disabled{opacity:.35;cursor:default}
.grow{flex:1}.muted{color:var(--muted)}.reason{margin:6px 0 10px}.err{color:var(--bad);font-weight:600}
form.login{max-width:340px;margin:80px auto;background:var(--card);border:1px solid var(--line);border-radius:12px;padding:24px}
form.login input{width:100%;padding:8px;margin:4px 0 12px;border:1px solid var(--line);border-radius:6px}form.login button{width:100%;padding:9px;border:0;border-radius:6px;background:#101828;color:#fff;font-weight:600}
.sev-critical{background:#7a1010}.sev-high{background:#d92d20}.sev-medium{background:#dc8a00}.sev-low{background:#2e6be6}.sev-informational{background:#667085}.sev-unknown{background:#98a2b3}
.st-open{background:#2e6be6}.st-acknowledged{background:#dc8a00}.st-closed{background:#12a150}
.st-pending{background:#dc8a00}.st-approved{background:#2e6be6}.st-published{background:#12a150}.st-withdrawn{background:var(--idle)}
.tag{display:inline-block;border:1px solid var(--line);border-radius:6px;padding:0 6px;font-size:12px;background:#f9fafb}
form.filters,form.bulk,form.triage{display:flex;flex-wrap:wrap;gap:8px 12px;align-items:center;margin-bottom:12px}
form.filters label,form.triage label{color:var(--muted);font-size:12px}
input,select,textarea{font:inherit;padding:3px 6px;border:1px solid var(--line);border-radius:6px}
form button{border:0;border-radius:6px;padding:5px 12px;background:#101828;color:#fff;font-weight:600;cursor:pointer}
.cols{display:flex;gap:14px;align-items:flex-start}.cols .side{width:420px;flex:none}
ol.tree{list-style:none;padding-left:0}ol.tree li{margin:4px 0;padding-left:8px;border-left:3px solid var(--line)}ol.tree li.subject{border-left-color:var(--bad)}
code.cmd{white-space:pre-wrap;word-break:break-all}pre{white-space:pre-wrap;word-break:break-all;font:12px ui-monospace,monospace}
.comment{white-space:pre-wrap;background:#f9fafb;border-radius:6px;padding:6px 10px}.pager{margin:12px 0}
"#;

const JS: &str = r#"
for (const b of document.querySelectorAll('button[data-action]')) {
  b.addEventListener('click', () => act(b.dataset.rollout, b.dataset.action));
}
async function act(id, action){
  let reason = prompt('Reason for ' + action + ' (recorded in the audit log):', '');
  if (reason === null) return;
  const r = await fetch('/api/v1/rollouts/' + id + '/' + action, {method:'POST', credentials:'same-origin',
    headers:{'content-type':'application/json','x-ringfence-csrf':'1'}, body: JSON.stringify({reason})});
  const body = await r.json().catch(() => ({}));
  if (!r.ok) { alert(action + ' refused: ' + (body.error || r.status)); }
  location.reload();
}
async function send(method, url, body){
  const r = await fetch(url, {method, credentials:'same-origin',
    headers:{'content-type':'application/json','x-ringfence-csrf':'1'}, body: JSON.stringify(body)});
  const out = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(out.error || String(r.status));
  return out;
}
function change(form){
  const c = {}; const v = n => (form.elements[n] ? form.elements[n].value.trim() : '');
  if (v('status')) c.status = v('status');
  if (c.status === 'closed' && v('close_reason')) c.close_reason = v('close_reason');
  if (form.elements.assignee && (v('assignee') || form.classList.contains('triage'))) c.assignee = v('assignee');
  if (form.elements.tags && (v('tags') || form.classList.contains('triage'))) c.tags = v('tags').split(',').map(t => t.trim()).filter(t => t);
  if (form.elements.comment) c.comment = form.elements.comment.value;
  if (v('why')) c.why = v('why');
  return c;
}
for (const f of document.querySelectorAll('form.triage')) {
  f.addEventListener('submit', async e => { e.preventDefault();
    try { await send('PATCH', '/api/v1/findings/' + f.dataset.finding, change(f)); location.reload(); }
    catch (err) { f.querySelector('.result').textContent = 'refused: ' + err.message; } });
}
for (const f of document.querySelectorAll('form.bulk')) {
  f.addEventListener('submit', async e => { e.preventDefault();
    try { const r = await send('POST', '/api/v1/findings/bulk', {filter: JSON.parse(f.dataset.filter), change: change(f)});
      f.querySelector('.result').textContent = r.changed + ' changed' + (r.more ? ', more match: apply again' : '');
      setTimeout(() => location.reload(), 800); }
    catch (err) { f.querySelector('.result').textContent = 'refused: ' + err.message; } });
}
for (const f of document.querySelectorAll('form.exception')) {
  f.addEventListener('submit', async e => { e.preventDefault();
    const body = {rule: f.elements.rule.value, hosts: [], fields: {}, comment: f.elements.comment.value,
      finding: Number(f.dataset.finding)};
    if (f.elements.use_host.checked && f.elements.host.value.trim()) body.hosts = [f.elements.host.value.trim()];
    for (const l of f.querySelectorAll('label.cond')) {
      const c = l.querySelector('input[name=use]'); const v = l.querySelector('input[name=value]').value;
      if (c.checked && v) body.fields[c.dataset.field] = [v];
    }
    try { const r = await send('POST', '/api/v1/exceptions', body);
      f.querySelector('.result').innerHTML = '';
      f.querySelector('.result').append('exception ' + r.id + ' proposed: a content admin approves and publishes it on ');
      const a = document.createElement('a'); a.href = '/exceptions'; a.textContent = 'the exceptions page';
      f.querySelector('.result').append(a); }
    catch (err) { f.querySelector('.result').textContent = 'refused: ' + err.message; } });
}
for (const b of document.querySelectorAll('button.exc')) {
  b.addEventListener('click', async () => { const out = b.parentElement.querySelector('.result');
    try { const r = await send('POST', '/api/v1/exceptions/' + b.dataset.id + '/' + b.dataset.op, {});
      out.textContent = r.pending_approval ? 'held for a second operator (approval ' + r.pending_approval.id + ')' : 'done';
      setTimeout(() => location.reload(), 800); }
    catch (err) { out.textContent = 'refused: ' + err.message; } });
}
for (const f of document.querySelectorAll('form.exceptions-publish')) {
  f.addEventListener('submit', async e => { e.preventDefault();
    try { const r = await send('POST', '/api/v1/exceptions/publish', {reason: f.elements.reason.value});
      f.querySelector('.result').textContent = 'content v' + r.version + ' published; rollout ' + r.rollout.id + ' started';
      setTimeout(() => location.href = '/rollouts/' + r.rollout.id, 1200); }
    catch (err) { f.querySelector('.result').textContent = 'refused: ' + err.message; } });
}
const upd = document.getElementById('updated');
if (upd) upd.textContent = 'updated ' + new Date().toLocaleTimeString();
const live = document.getElementById('live');
if (live) { live.checked = localStorage.getItem('rf-live') !== 'off';
  live.onchange = () => localStorage.setItem('rf-live', live.checked ? 'on' : 'off');
  // Not while the operator is typing in a form.
  setInterval(() => { const a = document.activeElement;
    if (live.checked && !(a && a.matches('input:not(#live),select,textarea'))) location.reload(); }, 5000); }
"#;

/// The signed-in operator, or a redirect to the login page.
pub(crate) async fn session(state: &AppState, headers: &HeaderMap) -> Result<String, Response> {
    let secret = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned());
    if let Some(secret) = secret {
        match auth::session_operator(state, &secret).await {
            Ok(Some(op)) => return Ok(op),
            Ok(None) => {}
            Err(e) => return Err(e.into_response()),
        }
    }
    Err(Redirect::to("/login").into_response())
}

fn set_cookie(state: &AppState, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("rf_session=; Path=/; Max-Age=0"))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    error: Option<&'a str>,
}

fn login_html(error: Option<&str>) -> Response {
    render(&LoginPage { error })
}

async fn login_page() -> Response {
    login_html(None)
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    name: String,
    password: String,
}

async fn start_session(state: &AppState, operator: &str, next: &str) -> Response {
    match auth::create_session(state, operator, state.config.session_ttl_ms, false).await {
        Ok(secret) => {
            let mut resp = Redirect::to(next).into_response();
            resp.headers_mut().insert(
                header::SET_COOKIE,
                set_cookie(state, &secret, state.config.session_ttl_ms / 1000),
            );
            resp
        }
        Err(e) => e.into_response(),
    }
}

async fn login_submit(
    State(state): State<AppState>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let peer = peer.map(|axum::Extension(ConnectInfo(addr))| addr.ip());
    match auth::login(&state, &form.name, &form.password, peer).await {
        Ok(op) => start_session(&state, &op, "/rollouts").await,
        Err(AppError::Unauthorized(msg)) => {
            (StatusCode::UNAUTHORIZED, login_html(Some(msg))).into_response()
        }
        Err(e @ (AppError::TooManyRequests { .. } | AppError::Unavailable(_))) => {
            let mut resp = (e.status(), login_html(Some(&e.to_string()))).into_response();
            if let AppError::TooManyRequests { retry_after_s, .. } = e {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s.max(1)));
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct OnceQuery {
    token: String,
    /// Where to go after signing in: a local dashboard path only.
    next: Option<String>,
}

fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-_".contains(&b)) =>
        {
            p
        }
        _ => "/rollouts",
    }
}

async fn login_once(State(state): State<AppState>, Query(q): Query<OnceQuery>) -> Response {
    match auth::consume_one_time(&state, &q.token).await {
        Ok(op) => start_session(&state, &op, local_path(q.next.as_deref())).await,
        Err(AppError::Unauthorized(msg)) => {
            (StatusCode::UNAUTHORIZED, login_html(Some(msg))).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(secret) = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(';')
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| *k == SESSION_COOKIE)
                .map(|(_, v)| v.to_owned())
        })
    {
        let _ = auth::delete_session(&state, &secret).await;
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&state, "", 0));
    resp
}

fn mib(bytes: f64) -> String {
    format!("{:.0} MiB", bytes / 1_048_576.0)
}

/// An agent's tags in words: `region=eu-west · env=prod · UTC+01:00`.
pub fn tags_of(a: &AgentRow) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("region", &a.region),
        ("industry", &a.industry),
        ("env", &a.environment),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    }
    if let Ok(custom) =
        serde_json::from_str::<std::collections::BTreeMap<String, String>>(&a.custom_tags)
    {
        for (k, v) in custom {
            parts.push(format!("{k}={v}"));
        }
    }
    let tz = a.tz_offset;
    parts.push(format!(
        "UTC{}{:02}:{:02}",
        if tz < 0 { '-' } else { '+' },
        tz.abs() / 60,
        tz.abs() % 60
    ));
    parts.join(" · ")
}

/// An agent's health: badge class and word.
pub fn health_of(a: &AgentRow, now: Millis, heartbeat_ms: Millis) -> (&'static str, &'static str) {
    if a.lkg_total > 0 {
        ("fail", "fallback")
    } else if now - a.last_seen > heartbeat_ms {
        ("wait", "offline")
    } else {
        ("pass", "ok")
    }
}

struct FleetRow {
    id: String,
    short_id: String,
    hostname: String,
    health: &'static str,
    health_word: &'static str,
    agent_version: String,
    content: String,
    content_version: i64,
    cpu: String,
    rss: String,
    crashes: i64,
    lkg: i64,
    drops: i64,
    findings: i64,
    last_seen: String,
    tags: String,
}

#[derive(Template)]
#[template(path = "fleet.html")]
struct FleetPage {
    layout: Layout,
    agents: i64,
    online: i64,
    baseline: i64,
    versions_svg: String,
    timeline_svg: String,
    rows: Vec<FleetRow>,
}

/// Hours the fleet page's findings picture covers.
const FLEET_HOURS: usize = 24;

async fn fleet_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let op = match session(&state, &headers).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let now = state.clock.now_ms();
    let hour = 3_600_000;
    let since = (now - now.rem_euclid(hour)) - hour * (FLEET_HOURS as i64 - 1);
    let (summary, list, timeline) = match (
        agents::summary(&state).await,
        agents::list(&state, 500).await,
        crate::findings::timeline(&state, None, since, hour, FLEET_HOURS).await,
    ) {
        (Ok(s), Ok(l), Ok(t)) => (s, l, t),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e.into_response(),
    };
    let hb = 3 * state.config.checkin_interval_ms;
    let rows = list
        .iter()
        .map(|a| {
            let (health, health_word) = health_of(a, now, hb);
            FleetRow {
                id: a.id.clone(),
                short_id: a.id.chars().take(12).collect(),
                hostname: a.hostname.clone(),
                health,
                health_word,
                agent_version: a.agent_version.clone(),
                content: a.content.clone().unwrap_or_default(),
                content_version: a.content_version,
                cpu: format!("{:.1}%", a.cpu),
                rss: mib(a.rss as f64),
                crashes: a.crashes_total,
                lkg: a.lkg_total,
                drops: a.drops_total,
                findings: a.findings_total,
                last_seen: ago(now, a.last_seen),
                tags: tags_of(a),
            }
        })
        .collect();
    render(&FleetPage {
        layout: Layout::new("Fleet", "Fleet", &op),
        agents: summary.agents,
        online: summary.online,
        baseline: summary.baseline,
        versions_svg: svg::versions_svg(summary.agents, &summary.versions),
        timeline_svg: svg::timeline_svg("findings per hour by severity", since, hour, &timeline),
        rows,
    })
}

/// A rollout's heading as the pages show it.
struct RolloutHead {
    id: i64,
    /// `content` or `agent`.
    kind: String,
    /// The versions in words (`content v2`, `agent release 0.3.0 (#2)`).
    from: String,
    to: String,
    state: String,
    state_words: String,
    created_at: String,
    created_by: String,
    svg: String,
}

impl RolloutHead {
    fn of(v: &RolloutView) -> RolloutHead {
        RolloutHead {
            id: v.id,
            kind: v.kind.clone(),
            from: v.describe(v.from_version),
            to: v.describe(v.to_version),
            state: v.state.clone(),
            state_words: v.state.replace('_', " "),
            created_at: utc(v.created_at),
            created_by: v.created_by.clone(),
            svg: svg::rollout_svg(v),
        }
    }
}

#[derive(Template)]
#[template(path = "rollouts.html")]
struct RolloutsPage {
    layout: Layout,
    rollouts: Vec<RolloutHead>,
}

async fn rollouts_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let op = match session(&state, &headers).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let rows = match rollout::list(&state).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut rollouts = Vec::new();
    for r in rows.iter().take(20) {
        match rollout::view(&state, r.id).await {
            Ok(v) => rollouts.push(RolloutHead::of(&v)),
            Err(e) => return e.into_response(),
        }
    }
    render(&RolloutsPage {
        layout: Layout::new("Rollouts", "Rollouts", &op),
        rollouts,
    })
}

struct GateView {
    idx: i64,
    ring: String,
    verdict: String,
    verdict_words: String,
    at: String,
    reason: String,
    evidence: String,
    metrics: Vec<[String; 7]>,
}

/// Where a ring's members are, by version.
struct RingVersions {
    idx: i64,
    name: String,
    members: i64,
    on_new: i64,
    /// Members on neither the new nor the rollback version (not taken yet, or back on the old).
    on_old: i64,
    on_rollback: i64,
    fell_back: i64,
}

struct AuditView {
    at: String,
    actor: String,
    action: String,
    decision: String,
    evidence: String,
}

#[derive(Template)]
#[template(path = "rollout.html")]
struct RolloutPage {
    layout: Layout,
    r: RolloutHead,
    reason: String,
    emergency: bool,
    /// A rollback: what it offers and what that carries, in words.
    rollback: Option<(String, String)>,
    /// Agent rollouts: the plan's pinned tag groups and the agents in them.
    is_agent: bool,
    pins: String,
    pinned_agents: i64,
    /// What a fallback of this kind is, for the versions table's heading.
    fell_back_to: &'static str,
    versions: Vec<RingVersions>,
    can_halt: bool,
    can_resume: bool,
    can_rollback: bool,
    gates: Vec<GateView>,
    log: Vec<AuditView>,
}

async fn rollout_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let op = match session(&state, &headers).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let v = match rollout::view(&state, id).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let log = match audit::entries(&state, Some(id), 100).await {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    let active = matches!(v.state.as_str(), "running" | "paused" | "halted");
    let is_agent = v.kind == rollout::Kind::Agent.as_str();
    let versions = v
        .rings
        .iter()
        .map(|ring| RingVersions {
            idx: ring.idx,
            name: ring.name.clone(),
            members: ring.members,
            on_new: ring.on_new,
            on_old: ring
                .members
                .saturating_sub(ring.on_new)
                .saturating_sub(ring.on_rollback)
                .max(0),
            on_rollback: ring.on_rollback,
            fell_back: ring.fell_back,
        })
        .collect();
    let gates = v
        .rings
        .iter()
        .rev()
        .filter_map(|ring| {
            let g = ring.gate.as_ref()?;
            Some(GateView {
                idx: ring.idx,
                ring: ring.name.clone(),
                verdict: g.verdict.as_str().to_owned(),
                verdict_words: g.verdict.as_str().replace('_', " "),
                at: utc(g.at),
                reason: g.reason.clone(),
                evidence: format!(
                    "{} ring agents with data, {} control agents with data (min {}); \
                     missing {} of {} expected ({:.0}% vs {:.0}% of controls); {} on {} agents; baked {} of {}",
                    g.ring_samples,
                    g.control_samples,
                    g.min_samples,
                    g.missing.missing,
                    g.missing.expected,
                    g.missing.share * 100.0,
                    g.missing.control_share * 100.0,
                    if is_agent {
                        "fallbacks to the previous release or last-known-good content"
                    } else {
                        "last-known-good fallbacks"
                    },
                    g.lkg_agents,
                    format_duration(g.baked_ms),
                    format_duration(g.bake_ms),
                ),
                metrics: g
                    .metrics
                    .iter()
                    .map(|m| {
                        [
                            m.name.clone(),
                            format!("{:.4}", m.ring_mean),
                            format!("{:.4}", m.control_mean),
                            format!("×{}", m.ratio),
                            format!("{:.2e}", m.p),
                            m.test.clone(),
                            m.verdict.clone(),
                        ]
                    })
                    .collect(),
            })
        })
        .collect();
    let log = log
        .iter()
        .map(|e| AuditView {
            at: utc(e.at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            decision: e.decision.clone(),
            evidence: e.evidence.chars().take(400).collect(),
        })
        .collect();
    render(&RolloutPage {
        layout: Layout::new(format!("Rollout {id}"), "Rollouts", &op),
        r: RolloutHead::of(&v),
        reason: v.reason.clone(),
        emergency: v.emergency,
        rollback: v
            .rollback_version
            .map(|rb| (v.describe(rb), v.describe(v.from_version))),
        is_agent,
        pins: v.pins.join(", "),
        pinned_agents: v.pinned_agents,
        fell_back_to: if is_agent {
            "fell back to their previous release"
        } else {
            "fell back to last-known-good content"
        },
        versions,
        can_halt: active && v.state != "halted",
        can_resume: active && v.state != "running",
        can_rollback: active,
        gates,
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn escapes_text_that_hides_or_reorders() {
        // "web1-prod" with a right-to-left override would read as another host.
        assert_eq!(esc("evil\u{202e}dorp-1bew"), "evil\\u{202e}dorp-1bew");
        assert_eq!(esc("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(esc("zero\u{200b}width"), "zero\\u{200b}width");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
