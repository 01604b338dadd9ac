//! The HTML report (`harness run --html`) rendered by a real browser:
//! headless Chromium takes a screenshot and dumps the DOM of a page made from
//! a scenario file and a failed report (reachability grid, diagnostics, a
//! `<script>` in a step name). The page must not be blank (the PNG has
//! colours and ink) and must raise no script error (Chromium's console log,
//! and a `window.onerror` probe put in front of the page's own script).
//!
//! Two more trials break a page on purpose (a script error, an empty body)
//! and require the same check to fail, so it cannot pass vacuously.
//!
//! No Chromium here: every trial shows as ignored with the reason; under
//! `CI=true` that is a failure (ci/install.sh installs it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::report::{ReachCell, Report, StepReport};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// `$CHROMIUM`, else the first of the usual names on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
    .find(|p| p.is_file())
}

/// A failed run of two-hosts.toml with everything the page can show.
fn report() -> Report {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/two-hosts.toml");
    let cell = |from: &str, to: &str, ok| ReachCell {
        from: from.into(),
        to: to.into(),
        ok,
    };
    Report {
        scenario: "two-hosts".into(),
        file: file.into(),
        description: "two Docker hosts <b>not bold</b>".into(),
        engine: "emulator".into(),
        elapsed_ms: 9000,
        steps: vec![
            StepReport {
                name: "wait-bgp <script>alert(1)</script>".into(),
                line: 44,
                passed: true,
                started_ms: 200,
                elapsed_ms: 4900,
                convergence_ms: Some(4900),
                ..Default::default()
            },
            StepReport {
                name: "containers reach each other".into(),
                line: 82,
                passed: false,
                started_ms: 5200,
                elapsed_ms: 3000,
                resolution_ms: 2,
                convergence_ms: None,
                detail: Some("1 of 4 pairs unreachable: c2 -> h1 (192.0.2.1)".into()),
                reach: vec![
                    cell("c1", "c2", true),
                    cell("c1", "h1", true),
                    cell("c2", "c1", true),
                    cell("c2", "h1", false),
                ],
            },
        ],
        error: Some("scenarios/two-hosts.toml:82: step 2 failed".into()),
        diagnostics: Some(
            "\n===== host h1 (192.0.2.1/24, namespace x) =====\n$ ip route show table main\n10.1.2.2 via 192.0.2.2 proto 253\n$ gobgp neighbor\nPeer AS Up/Down State\n192.0.2.2 65000 00:00:09 Establ\n--- driver log (tail) /tmp/d.log ---\n</pre><script>nosuch()</script>\n"
                .into(),
        ),
        ..Default::default()
    }
}

/// What the browser made of a page.
struct Rendered {
    png: Vec<u8>,
    dom: String,
    log: String,
}

fn render(chromium: &Path, html: &str, dir: &Path) -> Result<Rendered, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    // A probe in front of the page's own script: any error lands in the DOM.
    let probe = "<script>window.onerror=function(m){document.documentElement.setAttribute('data-script-error',String(m));};</script>";
    let page = match html.find("<head>") {
        Some(i) => format!("{}{probe}{}", &html[..i + 6], &html[i + 6..]),
        None => format!("{probe}{html}"),
    };
    // ...and a call of the page's own function, so that it has to work.
    let page = page.replace("</body>", "<script>setAll(true);</script></body>");
    let file = dir.join("page.html");
    std::fs::write(&file, page).map_err(|e| e.to_string())?;
    let url = format!("file://{}", file.display());
    let shot = dir.join("shot.png");
    let common = |extra: &[String]| {
        let mut a = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--hide-scrollbars".into(),
            "--enable-logging=stderr".into(),
            "--v=0".into(),
            format!("--user-data-dir={}", dir.join("profile").display()),
            "--window-size=1280,1600".into(),
        ];
        a.extend_from_slice(extra);
        a.push(url.clone());
        a
    };
    let run = |args: Vec<String>| {
        let bin = chromium.to_string_lossy();
        let out = harness::util::run_output(&bin, &args, Duration::from_secs(90))
            .map_err(|e| format!("{e:#}"))?;
        if !out.status.success() {
            return Err(format!(
                "{bin} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(out)
    };
    let a = run(common(&[format!("--screenshot={}", shot.display())]))?;
    let b = run(common(&["--dump-dom".to_string()]))?;
    Ok(Rendered {
        png: std::fs::read(&shot).map_err(|e| format!("no screenshot: {e}"))?,
        dom: String::from_utf8_lossy(&b.stdout).into_owned(),
        log: format!(
            "{}{}",
            String::from_utf8_lossy(&a.stderr),
            String::from_utf8_lossy(&b.stderr)
        ),
    })
}

/// Not blank: enough non-white pixels and more than a handful of colours.
fn ink(png: &[u8]) -> Result<(f64, usize), String> {
    let mut dec = png::Decoder::new(std::io::Cursor::new(png));
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = dec.read_info().map_err(|e| e.to_string())?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    let px = info.color_type.samples();
    let data = &buf[..info.buffer_size()];
    let mut colours = std::collections::HashSet::new();
    let mut inked = 0usize;
    for p in data.chunks(px) {
        let rgb = [p[0], p[1 % px], p[2 % px]];
        colours.insert(rgb);
        if rgb.iter().any(|c| *c < 240) {
            inked += 1;
        }
    }
    Ok((inked as f64 / (data.len() / px) as f64, colours.len()))
}

/// The checks every good page passes.
fn check(r: &Rendered) -> Result<(), String> {
    let (share, colours) = ink(&r.png)?;
    if share < 0.01 || colours < 16 {
        return Err(format!(
            "the screenshot is blank: {:.2}% of its pixels inked, {colours} colours",
            share * 100.0
        ));
    }
    let console: Vec<&str> = r
        .log
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect();
    if !console.is_empty() {
        return Err(format!(
            "script errors or console output:\n{}",
            console.join("\n")
        ));
    }
    if let Some(i) = r.dom.find("data-script-error=\"") {
        let end = (i + 200).min(r.dom.len());
        return Err(format!("script error: {}", &r.dom[i..end]));
    }
    Ok(())
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("harness-html-page-{}-{name}", std::process::id()))
}

fn good_page(chromium: &Path) -> Result<(), Failed> {
    let html = harness::report::html::render(&report());
    let dir = tmp("good");
    let r = render(chromium, &html, &dir)?;
    check(&r)?;
    // What a reader must find: the drawing, the grid, the diagnostics per
    // host, and the step name's <script> as text, never as an element.
    for want in [
        "<svg class=\"topo\"",
        "<svg class=\"tl\"",
        "<td class=\"no\"",
        "host h1 (192.0.2.1/24, namespace x)",
        "wait-bgp &lt;script&gt;alert(1)&lt;/script&gt;",
        "&lt;/pre&gt;&lt;script&gt;nosuch()",
    ] {
        if !r.dom.contains(want) {
            return Err(format!("the rendered page lacks {want:?}").into());
        }
    }
    // The probe, the page's own script and the test's call: nothing else.
    if r.dom.matches("<script>").count() != 3 {
        return Err("a <script> from the report became an element".into());
    }
    // Kept for a look: the screenshot of the last good run.
    let keep = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/html-page.png");
    std::fs::copy(dir.join("shot.png"), keep).ok();
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// A page broken on purpose must fail [`check`] with `want` in the message.
fn broken(chromium: &Path, name: &str, html: &str, want: &str) -> Result<(), Failed> {
    let dir = tmp(name);
    let r = render(chromium, html, &dir)?;
    std::fs::remove_dir_all(&dir).ok();
    match check(&r) {
        Ok(()) => Err(format!("the check passed a broken page ({name})").into()),
        Err(e) if e.contains(want) => Ok(()),
        Err(e) => Err(format!("the check failed for another reason: {e}").into()),
    }
}

fn main() {
    let args = Arguments::from_args();
    let found = chromium();
    let mut trials = Vec::new();
    let mut add = |name: &str, f: fn(&Path) -> Result<(), Failed>| {
        let c = found.clone();
        trials.push(Trial::ignorable_test(name.to_string(), move || match &c {
            Some(c) => f(c).map(|()| Completion::Completed),
            None if harness::machine::under_ci() => {
                Err("no Chromium under CI: ci/install.sh should have installed it".into())
            }
            // Outside CI a missing browser is a visible skip, never a pass.
            None => Ok(Completion::ignored_with(
                "no Chromium on PATH (apt-get install chromium, or set CHROMIUM)",
            )),
        }));
    };
    add("page_renders_in_chromium", good_page);
    add("a_page_with_a_script_error_fails_the_check", |c: &Path| {
        let html = harness::report::html::render(&report())
            .replace("</body>", "<script>undefinedFunction();</script></body>");
        broken(c, "script-error", &html, "script error")
    });
    add("a_blank_page_fails_the_check", |c: &Path| {
        let html = "<!DOCTYPE html><html><head><script>function setAll(){}</script></head><body></body></html>";
        broken(c, "blank", html, "blank")
    });
    libtest_mimic::run(&args, trials).exit();
}
