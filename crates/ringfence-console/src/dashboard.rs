//! The dashboard: plain server-rendered HTML with a little JavaScript, no front-end toolchain.
//!
//! Pages: fleet (agents, versions, health, tags), rollouts (each ring's progress drawn as inline
//! SVG, gates with their evidence, halt/resume/rollback buttons, the audit trail) and findings.
//! Every page needs a session from the login form (or a one-time sign-in link that
//! `ringfence up` prints). Buttons call the same JSON API as the CLI, with the session cookie
//! and the CSRF header; everything shown is escaped, and characters that hide or reorder text
//! (controls, bidi overrides) are shown as `\u{…}`.
//!
//! Every dashboard response carries a Content-Security-Policy that allows no inline script or
//! style (the script and style sheet are served from `/assets/`), cannot be framed, and is not
//! cached or sent as a referrer.

use std::fmt::Write as _;

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
use crate::gate::GateReport;
use crate::plan::format_duration;
use crate::rollout::{self, RingView, RolloutView};

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
        .route("/findings", get(findings_page))
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

fn ago(now: Millis, t: Millis) -> String {
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
const upd = document.getElementById('updated');
if (upd) upd.textContent = 'updated ' + new Date().toLocaleTimeString();
const live = document.getElementById('live');
if (live) { live.checked = localStorage.getItem('rf-live') !== 'off';
  live.onchange = () => localStorage.setItem('rf-live', live.checked ? 'on' : 'off');
  setInterval(() => { if (live.checked) location.reload(); }, 5000); }
"#;

fn page(title: &str, active: &str, operator: &str, body: &str) -> Html<String> {
    let nav = |href: &str, name: &str| {
        let on = if name == active { " class=\"on\"" } else { "" };
        format!("<a href=\"{href}\"{on}>{name}</a>")
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · Ringfence</title>\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><link rel=\"stylesheet\" href=\"/assets/dashboard.css\"></head><body>\
         <header><b>Ringfence console</b>{f}{r}{fi}<span class=\"me\">{op} · <span id=\"updated\"></span> \
         <label><input type=\"checkbox\" id=\"live\"> live</label></span>\
         <form method=\"post\" action=\"/logout\"><button>Sign out</button></form></header>\
         <main>{body}</main><script src=\"/assets/dashboard.js\"></script></body></html>",
        t = esc(title),
        f = nav("/fleet", "Fleet"),
        r = nav("/rollouts", "Rollouts"),
        fi = nav("/findings", "Findings"),
        op = esc(operator),
    ))
}

/// The signed-in operator, or a redirect to the login page.
async fn session(state: &AppState, headers: &HeaderMap) -> Result<String, Response> {
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

fn login_html(error: Option<&str>) -> Html<String> {
    let err = error.map_or(String::new(), |e| {
        format!("<p class=\"err\">{}</p>", esc(e))
    });
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign in · Ringfence</title><link rel=\"stylesheet\" href=\"/assets/dashboard.css\"></head>\
         <body><form class=\"login\" method=\"post\" action=\"/login\"><h1>Ringfence console</h1>{err}\
         <label>Operator<input name=\"name\" autocomplete=\"username\" autofocus></label>\
         <label>Password<input name=\"password\" type=\"password\" autocomplete=\"current-password\"></label>\
         <button>Sign in</button></form></body></html>"
    ))
}

async fn login_page() -> Html<String> {
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

fn tags_of(a: &AgentRow) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("region", &a.region),
        ("industry", &a.industry),
        ("env", &a.environment),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}={}", esc(v)));
        }
    }
    if let Ok(custom) =
        serde_json::from_str::<std::collections::BTreeMap<String, String>>(&a.custom_tags)
    {
        for (k, v) in custom {
            parts.push(format!("{}={}", esc(&k), esc(&v)));
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

async fn fleet_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let op = match session(&state, &headers).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let (summary, list) = match (
        agents::summary(&state).await,
        agents::list(&state, 500).await,
    ) {
        (Ok(s), Ok(l)) => (s, l),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let now = state.clock.now_ms();
    let hb = 3 * state.config.checkin_interval_ms;
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Fleet</h1><div class=\"cards\"><div class=\"card\"><div class=\"n\">{}</div><div class=\"l\">agents</div></div>\
         <div class=\"card\"><div class=\"n\">{}</div><div class=\"l\">online</div></div>\
         <div class=\"card\"><div class=\"n\">v{}</div><div class=\"l\">baseline content</div></div>",
        summary.agents, summary.online, summary.baseline
    );
    let total = summary.agents.max(1) as f64;
    let _ = write!(
        b,
        "<div class=\"card grow\"><div class=\"l\">content versions</div><svg width=\"100%\" height=\"26\" viewBox=\"0 0 600 26\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"agents per content version\">"
    );
    let palette = [
        "#2e6be6", "#12a150", "#dc8a00", "#7a5af8", "#d92d20", "#0ba5ec",
    ];
    let mut x = 0.0;
    for (i, (v, n)) in summary.versions.iter().enumerate() {
        let w = *n as f64 / total * 600.0;
        let _ = write!(
            b,
            "<rect x=\"{x:.1}\" y=\"2\" width=\"{w:.1}\" height=\"22\" fill=\"{}\"><title>v{v}: {n} agents</title></rect>\
             <text x=\"{:.1}\" y=\"17\" font-size=\"11\" fill=\"#fff\">v{v} ({n})</text>",
            palette[i % palette.len()],
            x + 4.0
        );
        x += w;
    }
    b.push_str("</svg></div></div>");
    b.push_str("<table><tr><th>agent</th><th>host</th><th>health</th><th>agent</th><th>content</th><th class=num>cpu</th><th class=num>rss</th><th class=num>crashes</th><th class=num>lkg</th><th class=num>drops</th><th class=num>findings</th><th>last seen</th><th>tags</th></tr>");
    for a in &list {
        let online = now - a.last_seen <= hb;
        let health = if a.lkg_total > 0 {
            "<span class=\"badge b-fail\">fallback</span>"
        } else if !online {
            "<span class=\"badge b-wait\">offline</span>"
        } else {
            "<span class=\"badge b-pass\">ok</span>"
        };
        let _ = write!(
            b,
            "<tr><td><code>{}</code></td><td>{}</td><td>{health}</td><td>{}</td><td title=\"{}\">v{}</td><td class=num>{:.1}%</td><td class=num>{}</td>\
             <td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td>{}</td><td class=muted>{}</td></tr>",
            esc(&a.id[..12.min(a.id.len())]),
            esc(&a.hostname),
            esc(&a.agent_version),
            esc(a.content.as_deref().unwrap_or("")),
            a.content_version,
            a.cpu,
            mib(a.rss as f64),
            a.crashes_total,
            a.lkg_total,
            a.drops_total,
            a.findings_total,
            ago(now, a.last_seen),
            tags_of(a)
        );
    }
    b.push_str("</table>");
    if summary.agents > 500 {
        let _ = write!(
            b,
            "<p class=muted>Showing the 500 most recently seen of {} agents.</p>",
            summary.agents
        );
    }
    page("Fleet", "Fleet", &op, &b).into_response()
}

fn badge(s: &str) -> String {
    format!(
        "<span class=\"badge b-{}\">{}</span>",
        esc(s),
        esc(&s.replace('_', " "))
    )
}

/// The picture of a rollout: fleet coverage by ring, then each ring's progress.
pub fn rollout_svg(r: &RolloutView) -> String {
    let width = 1000.0;
    let label_w = 230.0;
    let bar_w = width - label_w - 150.0;
    let row_h = 46.0;
    let height = 70.0 + row_h * r.rings.len() as f64;
    let color = |state: &str| match state {
        "passed" => "#12a150",
        "active" => "#2e6be6",
        "failed" => "#d92d20",
        "halted" => "#dc8a00",
        _ => "#c9ced6",
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" width=\"100%\" role=\"img\" aria-label=\"rollout {} progress\" font-family=\"system-ui,sans-serif\">",
        r.id
    );
    // Fleet coverage strip.
    let fleet = r.fleet.max(1) as f64;
    let _ = write!(
        s,
        "<text x=\"0\" y=\"16\" font-size=\"13\" font-weight=\"600\">Fleet coverage ({} agents)</text>\
         <rect x=\"{label_w}\" y=\"4\" width=\"{bar_w}\" height=\"18\" rx=\"4\" fill=\"#eef0f3\"/>",
        r.fleet
    );
    let mut x = label_w;
    for ring in &r.rings {
        let w = ring.members as f64 / fleet * bar_w;
        if w > 0.0 {
            let _ = write!(
                s,
                "<rect x=\"{x:.2}\" y=\"4\" width=\"{w:.2}\" height=\"18\" fill=\"{}\" stroke=\"#fff\" stroke-width=\"1\"><title>{}: {} agents ({:.1}% of the fleet)</title></rect>",
                color(&ring.state),
                esc(&ring.name),
                ring.members,
                ring.members as f64 / fleet * 100.0
            );
        }
        x += w;
    }
    let reached: i64 = r.rings.iter().map(|g| g.members).sum();
    let _ = write!(
        s,
        "<text x=\"{:.0}\" y=\"18\" font-size=\"12\" fill=\"#667085\">{:.1}% reached</text>",
        label_w + bar_w + 10.0,
        reached as f64 / fleet * 100.0
    );
    for (i, ring) in r.rings.iter().enumerate() {
        let y = 50.0 + row_h * i as f64;
        let members = ring.members.max(1) as f64;
        let new_w = ring.on_new as f64 / members * bar_w;
        let rb_w = ring.on_rollback as f64 / members * bar_w;
        let window = ring
            .window
            .as_deref()
            .map_or(String::new(), |w| format!(" · window {w}"));
        let _ = write!(
            s,
            "<g><circle cx=\"8\" cy=\"{cy:.0}\" r=\"6\" fill=\"{c}\"/>\
             <text x=\"22\" y=\"{ty:.0}\" font-size=\"13\" font-weight=\"600\">{i}. {name}</text>\
             <text x=\"22\" y=\"{sy:.0}\" font-size=\"11\" fill=\"#667085\">{sel} · bake {bake}{window}</text>\
             <rect x=\"{label_w}\" y=\"{by:.0}\" width=\"{bar_w}\" height=\"20\" rx=\"4\" fill=\"#eef0f3\"/>\
             <rect x=\"{label_w}\" y=\"{by:.0}\" width=\"{new_w:.2}\" height=\"20\" rx=\"4\" fill=\"{c}\"><title>{on_new} of {m} on v{to}</title></rect>\
             <rect x=\"{rx:.2}\" y=\"{by:.0}\" width=\"{rb_w:.2}\" height=\"20\" fill=\"#7a5af8\"><title>{on_rb} rolled back</title></rect>\
             <text x=\"{lx:.0}\" y=\"{ty:.0}\" font-size=\"12\">{on_new}/{m} on v{to}{rbtxt}</text>\
             <text x=\"{lx:.0}\" y=\"{sy:.0}\" font-size=\"11\" fill=\"#667085\">{st} · {ctl} controls</text></g>",
            cy = y + 10.0,
            c = color(&ring.state),
            ty = y + 14.0,
            sy = y + 29.0,
            by = y + 2.0,
            rx = label_w + new_w,
            lx = label_w + bar_w + 10.0,
            name = esc(&ring.name),
            sel = esc(&ring.selector),
            bake = format_duration(ring.bake_ms),
            on_new = ring.on_new,
            on_rb = ring.on_rollback,
            m = ring.members,
            to = r.to_version,
            rbtxt = if ring.on_rollback > 0 {
                format!(", {} rolled back", ring.on_rollback)
            } else {
                String::new()
            },
            st = esc(&ring.state),
            ctl = ring.controls,
        );
    }
    s.push_str("</svg>");
    s
}

fn gate_html(ring: &RingView, g: &GateReport) -> String {
    let mut b = format!(
        "<div class=\"panel\"><b>Ring {} · {}</b> gate {} <span class=muted>at {}</span>\
         <p class=\"reason\">{}</p><p class=muted>{} ring agents with data, {} control agents with data (min {}); \
         missing {} of {} expected ({:.0}% vs {:.0}% of controls); last-known-good fallbacks on {} agents; baked {} of {}</p>",
        ring.idx,
        esc(&ring.name),
        badge(g.verdict.as_str()),
        utc(g.at),
        esc(&g.reason),
        g.ring_samples,
        g.control_samples,
        g.min_samples,
        g.missing.missing,
        g.missing.expected,
        g.missing.share * 100.0,
        g.missing.control_share * 100.0,
        g.lkg_agents,
        format_duration(g.baked_ms),
        format_duration(g.bake_ms),
    );
    if !g.metrics.is_empty() {
        b.push_str("<table><tr><th>metric</th><th class=num>ring mean</th><th class=num>control mean</th><th class=num>ratio limit</th><th class=num>p (one-sided)</th><th>test</th><th>verdict</th></tr>");
        for m in &g.metrics {
            let _ = write!(
                b,
                "<tr><td>{}</td><td class=num>{:.4}</td><td class=num>{:.4}</td><td class=num>×{}</td><td class=num>{:.2e}</td><td class=muted>{}</td><td>{}</td></tr>",
                esc(&m.name),
                m.ring_mean,
                m.control_mean,
                m.ratio,
                m.p,
                esc(&m.test),
                esc(&m.verdict)
            );
        }
        b.push_str("</table>");
    }
    b.push_str("</div>");
    b
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
    let mut b = String::from("<h1>Rollouts</h1>");
    if rows.is_empty() {
        b.push_str("<p class=muted>No rollouts yet. Start one with <code>ringfence rollout start --version N --plan plan.toml</code>.</p>");
    }
    for r in rows.iter().take(20) {
        match rollout::view(&state, r.id).await {
            Ok(v) => {
                let _ = write!(
                    b,
                    "<div class=\"panel\"><a href=\"/rollouts/{id}\"><b>Rollout {id}</b></a> v{} → v{} {} <span class=muted>started {} by {}</span>{}",
                    v.from_version,
                    v.to_version,
                    badge(&v.state),
                    utc(v.created_at),
                    esc(&v.created_by),
                    rollout_svg(&v),
                    id = v.id,
                );
                b.push_str("</div>");
            }
            Err(e) => return e.into_response(),
        }
    }
    page("Rollouts", "Rollouts", &op, &b).into_response()
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
    let dis = |on: bool| if on { "" } else { " disabled" };
    let mut b = format!(
        "<h1>Rollout {id}: v{} → v{} {}</h1><div class=\"panel\">\
         <p class=\"reason\">{}</p><p class=muted>started {} by {}{}{}</p>\
         <div class=\"actions\"><button class=\"halt\" data-rollout=\"{id}\" data-action=\"halt\"{}>Halt</button>\
         <button class=\"resume\" data-rollout=\"{id}\" data-action=\"resume\"{}>Resume</button>\
         <button class=\"rollback\" data-rollout=\"{id}\" data-action=\"rollback\"{}>Roll back</button></div></div>",
        v.from_version,
        v.to_version,
        badge(&v.state),
        esc(&v.reason),
        utc(v.created_at),
        esc(&v.created_by),
        if v.emergency {
            " · <b class=err>emergency: windows overridden</b>"
        } else {
            ""
        },
        v.rollback_version.map_or(String::new(), |rb| format!(
            " · rolled back with v{rb} (carries v{})",
            v.from_version
        )),
        dis(active && v.state != "halted"),
        dis(active && v.state != "running"),
        dis(active),
    );
    let _ = write!(
        b,
        "<div class=\"panel\">{}</div><h2>Gates</h2>",
        rollout_svg(&v)
    );
    let mut any = false;
    for ring in v.rings.iter().rev() {
        if let Some(g) = &ring.gate {
            b.push_str(&gate_html(ring, g));
            any = true;
        }
    }
    if !any {
        b.push_str("<p class=muted>No gate evaluated yet.</p>");
    }
    b.push_str("<h2>Audit log</h2><table><tr><th>time</th><th>actor</th><th>action</th><th>decision</th><th>evidence</th></tr>");
    for e in &log {
        let ev: String = e.evidence.chars().take(400).collect();
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><details><summary class=muted>evidence</summary><code>{}</code></details></td></tr>",
            utc(e.at),
            esc(&e.actor),
            esc(&e.action),
            esc(&e.decision),
            esc(&ev)
        );
    }
    b.push_str("</table>");
    page(&format!("Rollout {id}"), "Rollouts", &op, &b).into_response()
}

async fn findings_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let op = match session(&state, &headers).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    let rows = match agents::list_findings(&state, 200).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut b = String::from(
        "<h1>Findings</h1><table><tr><th>received</th><th>agent</th><th>rule</th><th>severity</th><th>finding</th></tr>",
    );
    for f in &rows {
        let body: String = f.body.chars().take(300).collect();
        let _ = write!(
            b,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            utc(f.received_at),
            esc(&f.agent_id[..12.min(f.agent_id.len())]),
            esc(f.rule.as_deref().unwrap_or("-")),
            esc(f.severity.as_deref().unwrap_or("-")),
            esc(&body)
        );
    }
    b.push_str("</table>");
    if rows.is_empty() {
        b.push_str("<p class=muted>No findings uploaded yet.</p>");
    }
    page("Findings", "Findings", &op, &b).into_response()
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
