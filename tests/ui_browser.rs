//! The trace viewer in a real browser: `cargo run --example demo -- --ui` serves the checkout
//! demo's traces, a hostile span name arrives over OTLP, and headless Chromium renders the
//! list and trace pages. The test drives Chromium over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: no WebSocket, no driver program) and waits on conditions in
//! the page's DOM, with generous deadlines, before reading it: the list page keeps a
//! server-sent event stream open, so there is no moment when the page is "done loading".
//! A trace posted while the list is open must appear in it without a reload.
//!
//! Needs Debian's `chromium` (`apt-get install -y chromium`); `.ci/run` installs it. Without
//! it this test fails and says so. `TRACEWIRE_UPDATE_SCREENSHOTS=1` also writes the README's
//! screenshots into `docs/`.
#![cfg(feature = "ui")]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::Value as Json;

const HOSTILE: &str = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>";

/// The demo, killed when the test ends however it ends.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn demo_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let demo = profile_dir
        .join("examples")
        .join(format!("demo{}", std::env::consts::EXE_SUFFIX));
    assert!(demo.exists(), "{} not built", demo.display());
    demo
}

/// Starts the demo with the viewer on a free loopback port; returns it and the viewer's URL.
fn start_demo() -> (Demo, String) {
    let mut child = Command::new(demo_binary())
        .arg("--ui")
        .env("TRACEWIRE_UI_ADDR", "127.0.0.1:0")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let stderr = child.stderr.take().unwrap();
    let demo = Demo(child);
    let (tx, rx) = std::sync::mpsc::channel();
    // Keeps draining stderr so the demo never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("tracewire: trace viewer at ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the demo prints the viewer's URL");
    (demo, url)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn get_json(url: &str) -> Json {
    runtime().block_on(async {
        let text = reqwest::get(url).await.unwrap().text().await.unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

/// Posts a trace of one span named [`HOSTILE`] over OTLP/JSON; returns its trace id.
fn post_hostile_span(viewer: &str) -> String {
    let trace_id = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";
    post_span(viewer, trace_id, HOSTILE, "<b>evil</b>");
    trace_id.to_owned()
}

/// Posts a trace of one erroring server span over OTLP/JSON.
fn post_span(viewer: &str, trace_id: &str, name: &str, service: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let body = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"spans": [{
            "traceId": trace_id, "spanId": "0102030405060708", "name": name, "kind": 2,
            "startTimeUnixNano": now.to_string(), "endTimeUnixNano": (now + 3_000_000).to_string(),
            "attributes": [{"key": "note", "value": {"stringValue": name}}],
            "status": {"code": 2, "message": name}
        }]}]
    }]});
    let status = runtime().block_on(async {
        reqwest::Client::new()
            .post(format!("{viewer}v1/traces"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
}

fn chromium() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "this test needs Chromium and did not find `chromium` on PATH. Install it with \
             `sudo apt-get update && sudo apt-get install -y chromium` (Debian/Ubuntu); \
             .ci/run does this in CI."
        )
    })
}

/// Headless Chromium driven over the DevTools protocol on a pipe: Chromium reads
/// commands from its fd 3 and writes answers to its fd 4, each a JSON text ended by a NUL
/// byte. A shell gives it its stdin and stdout as those two.
struct Browser {
    child: Child,
    commands: ChildStdin,
    answers: BufReader<ChildStdout>,
    next_id: u64,
    profile: PathBuf,
}

/// One tab of a [`Browser`].
struct Tab {
    session: String,
    target: String,
}

impl Browser {
    fn launch() -> Browser {
        let profile = tempdir("profile");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1280,800",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run chromium");
        let commands = child.stdin.take().unwrap();
        let answers = BufReader::new(child.stdout.take().unwrap());
        Browser {
            child,
            commands,
            answers,
            next_id: 0,
            profile,
        }
    }

    /// Sends a command (to a tab's session, if given) and returns its result; events and
    /// other answers on the way are skipped.
    fn call(&mut self, session: Option<&str>, method: &str, params: Json) -> Json {
        match self.try_call(session, method, params) {
            Ok(result) => result,
            Err(error) => panic!("{method}: {error}"),
        }
    }

    /// Like [`Browser::call`], with the protocol's error instead of a panic.
    fn try_call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Json,
    ) -> Result<Json, Json> {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = serde_json::json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = session.into();
        }
        let mut bytes = command.to_string().into_bytes();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .expect("chromium takes commands");
        loop {
            let mut message = Vec::new();
            let n = self
                .answers
                .read_until(0, &mut message)
                .expect("chromium answers");
            assert!(n > 0, "chromium closed the pipe during {method}");
            message.pop();
            let message: Json = serde_json::from_slice(&message).expect("JSON from chromium");
            if message["id"] == id {
                if !message["error"].is_null() {
                    return Err(message["error"].clone());
                }
                return Ok(message["result"].clone());
            }
        }
    }

    /// Opens `url` in a new tab.
    fn open(&mut self, url: &str) -> Tab {
        let target = self.call(None, "Target.createTarget", serde_json::json!({"url": url}))
            ["targetId"]
            .as_str()
            .expect("a target id")
            .to_owned();
        let session = self.call(
            None,
            "Target.attachToTarget",
            serde_json::json!({"targetId": target, "flatten": true}),
        )["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Tab { session, target }
    }

    fn close(&mut self, tab: Tab) {
        self.call(
            None,
            "Target.closeTarget",
            serde_json::json!({"targetId": tab.target}),
        );
    }

    /// The value of a JavaScript expression in `tab`.
    fn eval(&mut self, tab: &Tab, expression: &str) -> Json {
        let result = self.call(
            Some(&tab.session),
            "Runtime.evaluate",
            serde_json::json!({"expression": expression, "returnByValue": true}),
        );
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Waits (30 s at most) until `condition`, a JavaScript expression, is true in `tab`;
    /// then returns the page's HTML.
    fn wait_for(&mut self, tab: &Tab, condition: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        // Exceptions while the page is still loading (no element yet) count as false.
        let guarded = format!(
            "(() => {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }})()"
        );
        // A page still loading may have no context to evaluate in yet: not true either.
        let params = serde_json::json!({"expression": guarded, "returnByValue": true});
        while self
            .try_call(Some(&tab.session), "Runtime.evaluate", params.clone())
            .map_or(true, |result| result["result"]["value"] != Json::Bool(true))
        {
            if Instant::now() >= deadline {
                let html = self.html(tab);
                panic!("not true within 30 s: {condition}\n{html}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.html(tab)
    }

    fn html(&mut self, tab: &Tab) -> String {
        // Nothing yet while a page is still loading.
        self.eval(
            tab,
            "document.documentElement ? document.documentElement.outerHTML : ''",
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    fn screenshot(&mut self, tab: &Tab) -> Vec<u8> {
        let shot = self.call(
            Some(&tab.session),
            "Page.captureScreenshot",
            serde_json::json!({"format": "png"}),
        );
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("image data"))
            .expect("base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn tempdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "ui_browser-{name}-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// How many times `needle` occurs in `hay`.
fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[test]
fn the_demo_renders_in_headless_chromium() {
    let chromium = chromium(); // Fail first, and clearly, without a browser.
    assert!(chromium.exists());
    let (_demo, viewer) = start_demo();

    // The demo's five orders, one of them declined.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (checkout, declined) = loop {
        let list = get_json(&format!("{viewer}api/traces?service=payment"));
        let traces = list["traces"].as_array().unwrap().clone();
        let complete = |t: &&Json| t["span_count"] == 7;
        let ok = traces.iter().filter(complete).find(|t| t["error"] == false);
        let error = traces.iter().filter(complete).find(|t| t["error"] == true);
        if let (Some(ok), Some(error)) = (ok, error) {
            break (
                ok["trace_id"].as_str().unwrap().to_owned(),
                error["trace_id"].as_str().unwrap().to_owned(),
            );
        }
        assert!(Instant::now() < deadline, "no demo traces: {list}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let hostile = post_hostile_span(&viewer);
    let mut browser = Browser::launch();

    // The list: the declined order highlighted, the hostile name as text, the stream of
    // live updates open.
    let tab = browser.open(&viewer);
    let list = browser.wait_for(
        &tab,
        &format!(
            "document.querySelectorAll('.trace-row').length >= 3 \
             && document.querySelector('[data-trace-id=\"{hostile}\"]') \
             && document.querySelector('[data-trace-id=\"{declined}\"]') \
             && document.querySelectorAll('#stat-rows tr').length > 0 \
             && document.body.dataset.live === 'events'"
        ),
    );
    assert!(count(&list, "class=\"trace-row") >= 3, "{list}");
    assert!(list.contains(&format!("data-trace-id=\"{declined}\"")));
    assert!(
        list.contains("class=\"trace-row error\""),
        "an error trace is highlighted: {list}"
    );
    assert!(list.contains("checkout → inventory, payment"));
    assert!(list.contains(
        "&lt;script&gt;document.title='pwned'&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
    ));
    assert!(!list.contains("<script>document.title"), "injected markup");
    assert!(!list.contains("<img src=\"x\""), "injected markup");
    assert!(
        list.contains("<title>tracewire traces</title>"),
        "no script ran"
    );
    assert!(list.contains("Latency per operation"));
    assert!(list.contains("payment.Pay/Charge"));

    // Live: a trace posted now shows in the open list, without a reload (a reload would
    // lose the mark set on the window).
    browser.eval(&tab, "window.sameDocument = true");
    let live = "11fe11fe11fe11fe11fe11fe11fe11fe";
    post_span(&viewer, live, "GET /live", "late-comer");
    let list = browser.wait_for(
        &tab,
        &format!("document.querySelector('[data-trace-id=\"{live}\"]')"),
    );
    assert!(list.contains("GET /live"), "{list}");
    assert_eq!(browser.eval(&tab, "window.sameDocument"), Json::Bool(true));
    let traces_png = browser.screenshot(&tab);
    browser.close(tab);

    // The checkout trace: one waterfall row per span, services and kinds shown.
    let trace_page = |browser: &mut Browser, id: &str| {
        let tab = browser.open(&format!("{viewer}#/trace/{id}"));
        let page = browser.wait_for(
            &tab,
            &format!(
                "document.getElementById('trace-info').textContent.includes('{id}') \
                 && document.querySelectorAll('#span-rows .span-row').length > 0"
            ),
        );
        (tab, page)
    };
    let (tab, page) = trace_page(&mut browser, &checkout);
    browser.close(tab);
    assert_eq!(count(&page, "class=\"span-row"), 7, "{page}");
    assert_eq!(count(&page, "class=\"span-row error"), 0, "{page}");
    for text in [
        "checkout → inventory, payment",
        "<span class=\"span-name\">POST /checkout/{sku}</span>",
        "<span class=\"span-name\">GET /items/{sku}</span>",
        "<span class=\"span-name\">payment.Pay/Charge</span>",
        "<span class=\"service\">inventory</span><span class=\"kind\">server</span>",
        "<span class=\"service\">checkout</span><span class=\"kind\">client</span>",
        "class=\"bar\"",
    ] {
        assert!(page.contains(text), "{text} missing: {page}");
    }

    // The declined order: its failing spans highlighted.
    let (tab, page) = trace_page(&mut browser, &declined);
    let trace_png = browser.screenshot(&tab);
    browser.close(tab);
    assert_eq!(count(&page, "class=\"span-row"), 7, "{page}");
    assert!(count(&page, "class=\"span-row error\"") >= 3, "{page}");
    assert!(page.contains("ERROR"));

    // The hostile trace page: its name and service as text.
    let (tab, page) = trace_page(&mut browser, &hostile);
    browser.close(tab);
    assert_eq!(count(&page, "class=\"span-row error\""), 1, "{page}");
    assert!(page.contains("&lt;b&gt;evil&lt;/b&gt;"), "{page}");
    assert!(!page.contains("<b>evil</b>"));
    assert!(!page.contains("<script>document.title"));
    assert!(page.contains("<title>tracewire traces</title>"));

    // A link with a malformed escape (typed, or crafted by another site) shows an error,
    // and the page still runs: live updates open.
    let tab = browser.open(&format!("{viewer}#/trace/%E0%A4%A"));
    let page = browser.wait_for(
        &tab,
        "document.getElementById('trace-title').textContent.includes('hex digits') \
         && document.body.dataset.live === 'events'",
    );
    browser.close(tab);
    assert!(page.contains("<title>tracewire traces</title>"));

    // Screenshots: always taken (they must not fail); kept for the README on request.
    for (name, png) in [("ui-traces.png", traces_png), ("ui-trace.png", trace_png)] {
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
        if std::env::var_os("TRACEWIRE_UPDATE_SCREENSHOTS").is_some() {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(name), png).unwrap();
        }
    }
}
