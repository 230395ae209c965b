//! A reader's whole round trip through the web pages, in a real browser:
//! headless Chromium, driven over WebDriver (chromedriver) with fantoccini,
//! against `herald serve` on loopback. Sign up on the form, open the
//! confirmation link from the mail in the outbox, get a digest, and leave
//! with the unsubscribe link from its `List-Unsubscribe` header. Each step
//! is checked on the page and in the store (`herald subscribers list`).
//!
//! A PNG screenshot of every page the reader sees is kept as a test artifact
//! in `target/browser-artifacts/` (the form, "check your inbox", the
//! confirmation, the unsubscribe page and the goodbye), for a human or CI to
//! look at after the run.
//!
//! A second test opens an SVG and an HTML file with scripts in them from a
//! source's folder (served with herald's no-script policy) and checks that
//! the scripts did not run while herald's own article page keeps its styles
//! and images.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`.ci/run`
//! installs them); without them the tests are skipped and say so, or fail
//! under `HERALD_TEST_REQUIRE_ALL=1`.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::{Capabilities, TimeoutConfiguration};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::support::http::Server;
use crate::support::outside;
use crate::support::{stderr, stdout, Mail, Site};

const EMAIL: &str = "reader@example.org";

/// The whole test may take this long; a hung browser fails it instead of
/// hanging CI.
const TEST_LIMIT: Duration = Duration::from_secs(90);

/// `herald serve` on a free loopback port, with its links pointing at
/// itself. Killed when dropped; [`Server::stop`] asks it to exit cleanly.
/// chromedriver on a free loopback port, in a process group of its own so
/// that dropping it (also when the test panics) ends it and the browsers it
/// started.
struct Chromedriver {
    child: Child,
    url: String,
    log: tempfile::NamedTempFile,
}

impl Chromedriver {
    /// `None` when Chromium is not installed and the test is skipped.
    fn start() -> Option<Self> {
        if !outside::available(&outside::CHROMIUM) {
            return None;
        }
        let addr = crate::support::free_port();
        let log = tempfile::NamedTempFile::new().expect("chromedriver log");
        let child = Command::new("chromedriver")
            .arg(format!("--port={}", addr.port()))
            .arg(format!("--log-path={}", log.path().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let driver = Self { child, url: format!("http://{addr}"), log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {addr}:\n{}",
                driver.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(driver)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// A headless Chromium session.
    async fn connect(&self) -> Client {
        let mut caps = Capabilities::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1024,900",
                ]
            }),
        );
        // chromedriver speaks plain HTTP on loopback: no TLS connector needed.
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| {
                panic!("no Chromium session from chromedriver: {e}\n{}", self.log())
            });
        let timeouts = TimeoutConfiguration::new(
            Some(Duration::from_secs(10)),
            Some(Duration::from_secs(20)),
            Some(Duration::ZERO),
        );
        client.update_timeouts(timeouts).await.expect("set WebDriver timeouts");
        client
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        crate::support::signal_group(&self.child, rustix::process::Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The h1 of the page, once it reads `expected` (a click that submits a
/// form returns before the next page is there); fails with what it read.
async fn wait_for_h1(client: &Client, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    loop {
        if let Ok(h1) = client.find(Locator::Css("h1")).await {
            if let Ok(text) = h1.text().await {
                if text.trim() == expected {
                    return;
                }
                seen = text;
            }
        }
        if Instant::now() > deadline {
            let url = client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            panic!("expected the h1 {expected:?} at {url}; the page's h1 is {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Saves a screenshot of the page as `<name>.png` among the artifacts.
async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(!png.is_empty(), "the screenshot of {name} is empty");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "the screenshot of {name} is not a PNG");
    let dir = artifacts();
    std::fs::create_dir_all(&dir).expect("artifact folder");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, &png).expect("write screenshot");
    assert!(std::fs::metadata(&path).unwrap().len() > 0, "{} is empty", path.display());
}

/// `target/browser-artifacts/` (the target folder in use, wherever it is).
fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .join("browser-artifacts")
}

/// The reader's status on the daily list, as `herald subscribers list` says.
fn status_of(site: &Site, email: &str) -> String {
    let out = site.herald(&["subscribers", "list", "--list", "daily"]);
    assert!(out.status.success(), "subscribers list failed: {}", stderr(&out));
    let listing = stdout(&out);
    let row = listing
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.get(1) == Some(&email))
        .unwrap_or_else(|| panic!("{email} is not in the list:\n{listing}"));
    assert_eq!(row[0], "daily", "{listing}");
    row[2].to_owned()
}

/// The first outbox message whose file name passes `pick`, waiting up to
/// 5 s for it (confirmation mails are written by a background task).
fn wait_for_mail(site: &Site, what: &str, pick: impl Fn(&str) -> bool) -> Mail {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = site
            .outbox()
            .into_iter()
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&pick));
        if let Some(path) = found {
            return Mail::read(&path);
        }
        assert!(Instant::now() < deadline, "no {what} in the outbox: {:?}", site.outbox());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first link in `text` that starts with `prefix`.
fn link_in(text: &str, prefix: &str) -> String {
    let start = text.find(prefix).unwrap_or_else(|| panic!("no {prefix} link in:\n{text}"));
    text[start..]
        .split(|c: char| c.is_whitespace() || c == '>' || c == '"')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_reader_subscribes_confirms_and_unsubscribes_in_a_browser() {
    let started = Instant::now();
    // First, so that a machine without the browser skips (or fails) at once.
    let Some(driver) = Chromedriver::start() else { return };
    let site = Site::init();
    let server = Server::start_linked(&site, &[]);
    let client = driver.connect().await;
    tokio::time::timeout(TEST_LIMIT, round_trip(&site, &server, &client))
        .await
        .unwrap_or_else(|_| panic!("the browser test took over {TEST_LIMIT:?}"));
    client.close().await.expect("end the browser session");
    drop(driver);
    server.stop();
    eprintln!(
        "browser round trip in {:.1}s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        artifacts().display()
    );
}

async fn round_trip(site: &Site, server: &Server, client: &Client) {
    let base = server.base();

    // 1. The form: fill it in and send it.
    client.goto(&format!("{base}subscribe")).await.expect("open the form");
    wait_for_h1(client, "Subscribe to The Harbour Gazette").await;
    let list = client.find(Locator::Css("input[name=list][value=daily]")).await.unwrap();
    assert!(list.is_selected().await.unwrap(), "the only public list is pre-checked");
    let label = client.find(Locator::Css("label[for=list-daily]")).await.unwrap();
    assert!(label.text().await.unwrap().contains("The Morning Digest"));
    client.find(Locator::Css("input#email")).await.unwrap().send_keys(EMAIL).await.unwrap();
    client.find(Locator::Css("input#name")).await.unwrap().send_keys("Ann Reader").await.unwrap();
    let trap = client.find(Locator::Css("input#website")).await.unwrap();
    assert!(!trap.is_displayed().await.unwrap_or(false), "the honeypot field is on screen");
    screenshot(client, "1-subscribe-form").await;
    let submit = client.find(Locator::Css("button[type=submit]")).await.unwrap();
    assert_eq!(submit.text().await.unwrap().trim(), "Subscribe");
    submit.click().await.expect("send the form");

    wait_for_h1(client, "Check your inbox").await;
    screenshot(client, "2-check-your-inbox").await;
    assert_eq!(status_of(site, EMAIL), "pending");

    // 2. The confirmation link from the mail.
    let mail = wait_for_mail(site, "confirmation mail", |n| n.starts_with("confirm-"));
    let message = mail.parsed();
    let to = message.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or("");
    assert_eq!(to, EMAIL);
    let text = message.body_text(0).expect("a text part");
    let confirm = link_in(&text, &format!("{base}confirm?token="));
    client.goto(&confirm).await.expect("open the confirmation link");
    // Opening the link only shows a button (mail scanners fetch links).
    wait_for_h1(client, "Confirm your subscription").await;
    screenshot(client, "3-confirm-button").await;
    assert_eq!(status_of(site, EMAIL), "pending");
    let buttons = client.find_all(Locator::Css("main button")).await.unwrap();
    assert_eq!(buttons.len(), 1, "one button on the confirmation page");
    buttons[0].click().await.expect("press the button");
    wait_for_h1(client, "Subscription confirmed").await;
    let body = client.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    assert!(body.contains(&format!("{EMAIL} will get The Morning Digest")), "{body}");
    screenshot(client, "3b-subscription-confirmed").await;
    assert_eq!(status_of(site, EMAIL), "confirmed");

    // 3. A digest, with the unsubscribe link in its header.
    let out = site.herald_env(&["run"], &[("HERALD_SITE_BASE_URL", &base)]);
    assert!(
        out.status.success(),
        "herald run failed:\n{}\n{}\nherald serve said:\n{}",
        stdout(&out),
        stderr(&out),
        server.log()
    );
    let digests: Vec<Mail> = site
        .outbox()
        .iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("confirm-"))
        .map(|p| Mail::read(p))
        .collect();
    let digest = digests
        .iter()
        .find(|m| {
            let parsed = m.parsed();
            let to = parsed.to().and_then(|a| a.first()).and_then(|a| a.address());
            to == Some(EMAIL)
        })
        .unwrap_or_else(|| panic!("no digest to {EMAIL} among {} digest(s)", digests.len()));
    let parsed = digest.parsed();
    let header =
        parsed.header_raw("List-Unsubscribe").expect("a List-Unsubscribe header").to_owned();
    let unsubscribe = link_in(&header, &format!("{base}unsubscribe?token=daily."));

    // 4. The unsubscribe page: one button.
    client.goto(&unsubscribe).await.expect("open the unsubscribe link");
    wait_for_h1(client, "Leave The Morning Digest?").await;
    screenshot(client, "4-unsubscribe").await;
    let buttons = client.find_all(Locator::Css("button[type=submit]")).await.unwrap();
    assert_eq!(buttons.len(), 1, "one button on the unsubscribe page");
    assert_eq!(buttons[0].text().await.unwrap().trim(), "Unsubscribe");
    assert_eq!(status_of(site, EMAIL), "confirmed", "opening the page changes nothing");
    buttons[0].click().await.expect("press Unsubscribe");

    wait_for_h1(client, "You are unsubscribed").await;
    let body = client.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    assert!(body.contains(&format!("{EMAIL} will get no more mail")), "{body}");
    screenshot(client, "5-unsubscribed").await;
    assert_eq!(status_of(site, EMAIL), "unsubscribed");
}

#[tokio::test]
async fn scripts_in_a_sources_files_do_not_run_and_pages_keep_their_styles() {
    let Some(driver) = Chromedriver::start() else { return };
    let site = Site::init();
    // Files a source's folder may hold, with a script each.
    site.write(
        "content/images/chart.svg",
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"200\" height=\"40\">\
         <text id=\"said\" x=\"0\" y=\"20\">quiet</text>\
         <script>document.getElementById('said').textContent = 'script ran'</script></svg>\n",
    );
    site.write(
        "content/images/note.html",
        "<!doctype html><title>note</title><h1 id=\"said\">quiet</h1>\
         <script>document.getElementById('said').textContent = 'script ran'</script>\n",
    );
    let server = Server::start_linked(&site, &[]);
    let base = server.base();
    let out = site.herald_env(&["run"], &[("HERALD_SITE_BASE_URL", &base)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let client = driver.connect().await;
    let check = async {
        for file in ["chart.svg", "note.html"] {
            client.goto(&format!("{base}blog/images/{file}")).await.expect("open the file");
            client.find(Locator::Id("said")).await.expect("the element");
            let text = client
                .execute("return document.getElementById('said').textContent", vec![])
                .await
                .expect("read the page");
            assert_eq!(text, json!("quiet"), "the script in {file} ran");
        }
        // herald's own page under the same policy: its styles and image apply.
        client.goto(&format!("{base}blog/harbour-lights/")).await.expect("open the article");
        let style = client
            .execute(
                "const s = getComputedStyle(document.body); \
                 const img = document.querySelector('article img'); \
                 return [s.fontFamily, s.backgroundColor, img ? img.naturalWidth : -1]",
                vec![],
            )
            .await
            .expect("read the styles");
        assert!(style[0].as_str().unwrap_or("").contains("Georgia"), "{style}");
        assert_eq!(style[1], json!("rgb(251, 251, 248)"), "{style}");
        assert!(style[2].as_i64().unwrap_or(0) > 0, "the article's image loads: {style}");
        screenshot(&client, "6-article-under-the-policy").await;
    };
    tokio::time::timeout(TEST_LIMIT, check)
        .await
        .unwrap_or_else(|_| panic!("the browser test took over {TEST_LIMIT:?}"));
    client.close().await.expect("end the browser session");
    drop(driver);
    server.stop();
}

/// A Chrome DevTools Protocol command, through chromedriver's
/// `goog/cdp/execute` endpoint (WebDriver has no media emulation).
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/goog/cdp/execute", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({ "cmd": self.cmd, "params": self.params }).to_string()))
    }
}

async fn cdp(client: &Client, cmd: &'static str, params: serde_json::Value) {
    client
        .issue_cmd(Cdp { cmd, params })
        .await
        .unwrap_or_else(|e| panic!("the DevTools command {cmd} failed: {e}"));
}

/// What the page shows, measured in the browser: the WCAG contrast ratio of
/// every visible piece of text against the first opaque background behind
/// it (the lowest, and those under 4.5:1), the widths, the colour scheme in
/// force, the direction, and the first article image.
const MEASURE: &str = r#"
const parse = (c) => {
  const m = c.match(/rgba?\(([^)]+)\)/);
  if (!m) return null;
  const p = m[1].split(',').map(parseFloat);
  return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
};
const lum = (c) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
};
const background = (el) => {
  for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c && c.a > 0) return c;
  }
  return { r: 255, g: 255, b: 255, a: 1 };
};
let lowest = 99, checked = 0;
const poor = [];
for (const el of document.querySelectorAll('body *')) {
  const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
  if (!own) continue;
  const r = el.getBoundingClientRect();
  const s = getComputedStyle(el);
  if (r.width === 0 || r.height === 0 || s.visibility === 'hidden' || parseFloat(s.opacity) === 0) continue;
  const fg = parse(s.color), bg = background(el);
  const a = lum(fg), b = lum(bg);
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  checked += 1;
  lowest = Math.min(lowest, ratio);
  if (ratio < 4.5) poor.push(`${el.tagName}.${el.className} "${el.textContent.trim().slice(0, 30)}": ${s.color} on rgb(${bg.r}, ${bg.g}, ${bg.b}) = ${ratio.toFixed(2)}`);
}
const text = document.querySelector('.card .body p');
const img = document.querySelector('.card img');
return {
  checked, lowest, poor,
  scrollWidth: document.documentElement.scrollWidth,
  innerWidth: window.innerWidth,
  dark: matchMedia('(prefers-color-scheme: dark)').matches,
  dir: document.documentElement.dir,
  direction: getComputedStyle(document.querySelector('h1')).direction,
  textColor: text ? getComputedStyle(text).color : null,
  image: img ? { loaded: img.complete && img.naturalWidth > 0, alt: img.getAttribute('alt'),
                 right: img.getBoundingClientRect().right, left: img.getBoundingClientRect().left } : null,
};
"#;

/// The digest's HTML part as a reader of `site` gets it, put where
/// `server` serves it (its images load from the same server).
fn digest_on_the_web(site: &Site, server: &Server, language: &str) -> String {
    let base = server.base();
    let config = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    site.write(
        "herald.toml",
        &config.replacen("language = \"en\"", &format!("language = \"{language}\""), 1),
    );
    // The whole articles, so the image is in the mail too.
    let config = std::fs::read_to_string(site.file("herald.toml")).unwrap();
    site.write(
        "herald.toml",
        &config.replacen("min_articles = 1\n", "min_articles = 1\nfull_text = true\n", 1),
    );
    let out = site.herald_env(&["run"], &[("HERALD_SITE_BASE_URL", &base)]);
    assert!(out.status.success(), "herald run failed:\n{}\n{}", stdout(&out), stderr(&out));
    let path = site.outbox().into_iter().next().expect("a digest in the outbox");
    let mail = Mail::read(&path);
    let html = mail.parsed().body_html(0).expect("an HTML part").into_owned();
    site.write("public/digest-as-mailed.html", &html);
    format!("{base}digest-as-mailed.html")
}

/// The example site's digest (four whole articles, one with an image) at a
/// phone's width and a desktop's, light and dark, and an Arabic site's
/// digest right to left: no sideways scrolling on the phone, every visible
/// text at WCAG AA contrast (4.5:1) against its background in both colour
/// schemes, images within the column, `dir="rtl"` for the Arabic site.
/// Screenshots of each go to `target/browser-artifacts/digest-*.png`.
#[tokio::test]
async fn the_digest_reads_on_a_phone_and_a_desktop_light_and_dark_and_right_to_left() {
    let Some(driver) = Chromedriver::start() else { return };
    let ltr = Site::init();
    let ltr_server = Server::start_linked(&ltr, &[]);
    let rtl = Site::init();
    let rtl_server = Server::start_linked(&rtl, &[]);
    let pages = [
        ("ltr", digest_on_the_web(&ltr, &ltr_server, "en")),
        ("rtl", digest_on_the_web(&rtl, &rtl_server, "ar")),
    ];
    let client = driver.connect().await;
    let check = async {
        for (direction, url) in &pages {
            client.goto(url).await.expect("open the digest");
            client.find(Locator::Css("h1")).await.expect("the digest's heading");
            for width in [375u32, 1200] {
                for scheme in ["light", "dark"] {
                    let what = format!("{direction} digest at {width} px, {scheme}");
                    cdp(
                        &client,
                        "Emulation.setDeviceMetricsOverride",
                        json!({ "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600 }),
                    )
                    .await;
                    cdp(
                        &client,
                        "Emulation.setEmulatedMedia",
                        json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
                    )
                    .await;
                    let seen = client.execute(MEASURE, vec![]).await.expect("measure the page");
                    screenshot(&client, &format!("digest-{direction}-{width}-{scheme}")).await;
                    assert_eq!(seen["innerWidth"], json!(width), "{what}: {seen}");
                    assert_eq!(seen["dark"], json!(scheme == "dark"), "{what}: {seen}");
                    assert!(
                        seen["scrollWidth"].as_u64() <= seen["innerWidth"].as_u64(),
                        "{what} scrolls sideways: {seen}"
                    );
                    assert!(seen["checked"].as_u64().unwrap_or(0) > 10, "{what}: {seen}");
                    assert_eq!(seen["poor"], json!([]), "{what}: text under 4.5:1 contrast");
                    assert!(seen["lowest"].as_f64().unwrap_or(0.0) >= 4.5, "{what}: {seen}");
                    let light_text = seen["textColor"] == json!("rgb(29, 29, 27)");
                    assert_eq!(
                        light_text,
                        scheme == "light",
                        "{what}: the body text's colour: {seen}"
                    );
                    let image = &seen["image"];
                    assert_eq!(image["loaded"], json!(true), "{what}: the article's image: {seen}");
                    assert!(image["alt"].is_string(), "{what}: the image has an alt: {seen}");
                    let right = image["right"].as_f64().unwrap_or(f64::MAX);
                    assert!(right <= f64::from(width), "{what}: the image overflows: {seen}");
                    let expected = if *direction == "rtl" { "rtl" } else { "ltr" };
                    assert_eq!(seen["dir"], json!(expected), "{what}: {seen}");
                    assert_eq!(seen["direction"], json!(expected), "{what}: {seen}");
                }
            }
        }
    };
    tokio::time::timeout(TEST_LIMIT, check)
        .await
        .unwrap_or_else(|_| panic!("the browser test took over {TEST_LIMIT:?}"));
    client.close().await.expect("end the browser session");
    drop(driver);
    ltr_server.stop();
    rtl_server.stop();
}
