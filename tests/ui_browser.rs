//! The trace viewer in a real browser: `cargo run --example demo -- --ui` serves the checkout
//! demo's traces, a hostile span name arrives over OTLP, and headless Chromium renders the
//! list and trace pages (`--dump-dom` after the page's scripts ran).
//!
//! Needs Debian's `chromium` (`apt-get install -y chromium`); `.ci/run` installs it. Without
//! it this test fails and says so. `TRACEWIRE_UPDATE_SCREENSHOTS=1` also writes the README's
//! screenshots into `docs/`.
#![cfg(feature = "ui")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let body = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "<b>evil</b>"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": trace_id, "spanId": "0102030405060708", "name": HOSTILE, "kind": 2,
            "startTimeUnixNano": now.to_string(), "endTimeUnixNano": (now + 3_000_000).to_string(),
            "attributes": [{"key": "note", "value": {"stringValue": HOSTILE}}],
            "status": {"code": 2, "message": HOSTILE}
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
    trace_id.to_owned()
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

/// Runs headless Chromium on `url` with a fresh profile; `what` is `--dump-dom` or
/// `--screenshot=…`. Returns stdout.
fn browse(url: &str, what: &str) -> String {
    let profile = tempdir("profile");
    let output = Command::new(chromium())
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
            // Lets the page's fetches and rendering finish before the dump.
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(what)
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(output.status.success(), "chromium failed on {url}");
    String::from_utf8_lossy(&output.stdout).into_owned()
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

    // The list: the declined order highlighted, the hostile name as text.
    let list = browse(&viewer, "--dump-dom");
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

    // The checkout trace: one waterfall row per span, services and kinds shown.
    let page = browse(&format!("{viewer}#/trace/{checkout}"), "--dump-dom");
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
    let page = browse(&format!("{viewer}#/trace/{declined}"), "--dump-dom");
    assert_eq!(count(&page, "class=\"span-row"), 7, "{page}");
    assert!(count(&page, "class=\"span-row error\"") >= 3, "{page}");
    assert!(page.contains("ERROR"));

    // The hostile trace page: its name and service as text.
    let page = browse(&format!("{viewer}#/trace/{hostile}"), "--dump-dom");
    assert_eq!(count(&page, "class=\"span-row error\""), 1, "{page}");
    assert!(page.contains("&lt;b&gt;evil&lt;/b&gt;"), "{page}");
    assert!(!page.contains("<b>evil</b>"));
    assert!(!page.contains("<script>document.title"));
    assert!(page.contains("<title>tracewire traces</title>"));

    // Screenshots: always rendered (they must not fail); kept for the README on request.
    let shots = tempdir("shots");
    for (name, url) in [
        ("ui-traces.png", viewer.clone()),
        ("ui-trace.png", format!("{viewer}#/trace/{declined}")),
    ] {
        let file = shots.join(name);
        browse(&url, &format!("--screenshot={}", file.display()));
        let png = std::fs::read(&file).expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
        if std::env::var_os("TRACEWIRE_UPDATE_SCREENSHOTS").is_some() {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::copy(&file, docs.join(name)).unwrap();
        }
    }
    let _ = std::fs::remove_dir_all(&shots);
}
