//! The admin page in a real headless Chromium against the real service binary, qbittorrent-nox and a loopback
//! swarm: sign in (the catalog's token is refused), watch a `needs_approval` ticket appear in the queue live over
//! the WebSocket (no reload), open it, read the candidates side by side with their mapping tables, approve candidate
//! #1 and watch it download with a moving progress bar, cancel it, then reject another ticket with a reason. One
//! candidate's title carries `<script>` and an `<img onerror>`: it must show as text and nothing in it may run.
//! A second, lighter test decides a failed ticket (Retry) by keyboard only against the in-process service.
//! Screenshots of the queue and of the ticket view are saved under `target/tmp/admin-ui/`.

use std::time::Duration;

use fantoccini::Locator;
use serde_json::Value;

use downloader2::models::{StateKind, TicketState};

use crate::support::app::{move_to, sample_ticket, to_needs_approval, TestApp, ADMIN_TOKEN, CATALOG_TOKEN};
use crate::support::browser::Browser;
use crate::support::pipeline::{external_client, AlbumNames, AlbumStack, EventRecorder, ServiceProcess};
use crate::support::swarm::{QbittorrentUnderTest, Swarm};
use crate::support::torznab_server::{Download, Release};

const NAMES: AlbumNames = AlbumNames {
    artist: "Copper Lanterns",
    album: "Night Ferry",
    year: 2016,
    right_title: RIGHT_TITLE,
    live_title: "Copper Lanterns - Live in Bergen (2018) [FLAC]",
    tribute_title: "VA - Night Ferry Revisited - A Tribute to Copper Lanterns (2019) [MP3 320]",
};
const RIGHT_TITLE: &str = "Copper Lanterns - Night Ferry (2016) [FLAC 16-48]";
/// What the indexer calls the tribute release: markup that would run if the page ever wrote titles as HTML.
const HOSTILE_TITLE: &str = "VA - Night Ferry Revisited <script>window.__pwned = 'script'</script>\
     <img src=x onerror=\"window.__pwned = 'img'\"> A Tribute to Copper Lanterns (2019) [MP3 320]";
const TRACKS: &[(&str, f64)] = &[("Harbour Lights", 25.0), ("Across the Sound", 30.0), ("Last Crossing", 28.0)];
/// An MP3 320 release of the album whose second file is 24 s long by its size (40 000 bytes a second at 320 kbps)
/// where the catalog says 30 s, and which lacks the third track: its mapping table must flag those two rows.
const SHORT_TITLE: &str = "Copper Lanterns - Night Ferry (2016) [MP3 320]";
const SHORT_FILES: &[(&str, u64)] =
    &[("01 - Harbour Lights.mp3", 25 * 40_000 + 4_096), ("02 - Across the Sound.mp3", 24 * 40_000 + 4_096)];
const STAGE_TIMEOUT: Duration = Duration::from_secs(240);
const CUSTOM_QUERY: &str = "Copper Lanterns Night Ferry 2016 FLAC";
/// The WebDriver key code of Enter.
const ENTER: &str = "\u{E007}";

/// Presses a confirm-twice button (approve, cancel).
async fn press_twice(browser: &Browser, css: &str) {
    browser.element(css).await.click().await.unwrap();
    browser
        .wait_until(
            "the button to ask for confirmation",
            &format!("document.querySelector({css:?})?.classList.contains('armed')"),
        )
        .await;
    browser.element(css).await.click().await.unwrap();
}

/// Waits until the queue's pager says `expected` ("1–25 of 30").
async fn wait_for_page_info(browser: &Browser, expected: &str) {
    let script = format!("document.querySelector('#page-info')?.textContent === {expected:?}");
    browser.wait_until(&format!("the pager to say {expected}"), &script).await;
}

/// Saves a PNG of the viewport (a test artifact).
async fn save_screenshot(browser: &Browser, path: &std::path::Path) {
    let png = browser.client.screenshot().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG screenshot");
    std::fs::write(path, &png).unwrap();
    println!("screenshot: {}", path.display());
}

async fn shown_state(browser: &Browser) -> String {
    let value = browser.eval("return document.querySelector('#ticket-state .badge')?.dataset.state ?? null;").await;
    value.as_str().unwrap_or_default().to_string()
}

/// Waits until the ticket view's state badge shows `state`.
async fn wait_for_shown_state(browser: &Browser, state: &str) {
    browser
        .wait_until(
            &format!("the ticket view to show {state}"),
            &format!("document.querySelector('#ticket-state .badge')?.dataset.state === {state:?}"),
        )
        .await;
}

/// Waits until the queue lists `ticket` in `state`.
async fn wait_for_row_state(browser: &Browser, ticket: &str, state: &str) {
    browser
        .wait_until(
            &format!("{ticket} to be listed as {state}"),
            &format!("document.querySelector('tr[data-ticket-id=\"{ticket}\"] .badge')?.dataset.state === {state:?}"),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_signs_in_watches_the_queue_and_decides_tickets_in_a_real_browser() {
    let fixture = AlbumStack::new(NAMES, TRACKS).await;
    let mut releases = fixture.releases();
    let tribute = releases.iter_mut().find(|r| r.title == NAMES.tribute_title).unwrap();
    tribute.title = HOSTILE_TITLE.to_string();
    // Its .torrent is all the matcher needs (it is never downloaded).
    let short = Swarm::builder().album(SHORT_TITLE, SHORT_FILES).build().await;
    let short_size = SHORT_FILES.iter().map(|(_, size)| size).sum();
    releases.push(
        Release::new(SHORT_TITLE, "rutracker")
            .download(Download::TorrentFile(short.albums[0].torrent.to_vec()))
            .size(short_size)
            .seeders(3, 3),
    );
    fixture.torznab.set_results(releases);
    let qbt = QbittorrentUnderTest::start(|_| {}).await;
    // Slow enough that the download is seen in progress.
    qbt.limit_download_rate(48 * 1024).await;
    let mut setup = fixture.setup();
    setup.torrent_client = external_client(&qbt);
    // Nothing is sure enough: every ticket waits for the admin.
    setup.auto_approve_threshold = 1.0;
    let service = ServiceProcess::start(&setup).await;
    let events = EventRecorder::connect(&service, None).await;
    let browser = Browser::start().await;

    // Sign in: the catalog's token is refused, the admin's accepted (typed, then Enter).
    browser.client.goto(&service.url("/")).await.unwrap();
    browser.element("#token").await.send_keys(&format!("{CATALOG_TOKEN}{ENTER}")).await.unwrap();
    let refusal = browser
        .wait_until(
            "the catalog token to be refused",
            "document.querySelector('#signin [role=alert]:not([hidden])')?.textContent",
        )
        .await;
    assert!(refusal.as_str().unwrap().contains("admin token"), "{refusal}");
    let token_field = browser.element("#token").await;
    token_field.clear().await.unwrap();
    token_field.send_keys(&format!("{ADMIN_TOKEN}{ENTER}")).await.unwrap();
    browser.element("#tickets").await;
    let stored = browser.eval("return sessionStorage.getItem('downloader2.adminToken');").await;
    assert_eq!(stored, ADMIN_TOKEN, "the token is kept in the session storage");
    browser.wait_until("the WebSocket to connect", "document.querySelector('#live.connected')").await;
    // A page reload would clear this: the queue must update without one.
    browser.eval("window.__sameDocument = true; return null;").await;

    // A ticket arrives and reaches needs_approval: the queue shows it live.
    let ticket = fixture.ticket("ui-approve", &setup, 44_100);
    service.create(&ticket).await;
    let waiting = events.wait_for("ui-approve", "needs_approval", STAGE_TIMEOUT).await;
    wait_for_row_state(&browser, "ui-approve", "needs_approval").await;
    let counted = browser.text_of("#counts button[data-state=needs_approval] .n").await;
    assert_eq!(counted, "1", "the count per state follows");
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-ui");
    std::fs::create_dir_all(&artifacts).unwrap();
    save_screenshot(&browser, &artifacts.join("queue.png")).await;

    // Open it: every candidate side by side, in the state's order.
    browser.element("tr[data-ticket-id=\"ui-approve\"] a").await.click().await.unwrap();
    let candidates = service.ticket("ui-approve").await["state"]["candidates"].as_array().unwrap().clone();
    assert_eq!(waiting["details"]["candidate_count"].as_u64(), Some(candidates.len() as u64));
    browser
        .wait_until(
            "the candidates to be shown",
            &format!("document.querySelectorAll('#candidates .candidate').length === {}", candidates.len()),
        )
        .await;
    let shown_titles = browser
        .eval("return [...document.querySelectorAll('#candidates .candidate-title')].map(e => e.textContent);")
        .await;
    let expected_titles: Vec<Value> = candidates.iter().map(|c| c["candidate"]["title"].clone()).collect();
    assert_eq!(shown_titles, Value::Array(expected_titles));
    assert!(shown_titles.as_array().unwrap().iter().any(|t| t == HOSTILE_TITLE), "the hostile title shows as text");

    // Nothing of the hostile title ran or became markup.
    assert_eq!(browser.eval("return typeof window.__pwned;").await, "undefined", "a planted script ran");
    assert_eq!(browser.eval("return document.querySelectorAll('main img, main script').length;").await, 0);
    assert_eq!(browser.eval("return document.scripts.length;").await, 1, "only app.js");

    // Candidate #1 is the right release, recommended, and its mapping table has every track with a .flac file and
    // no flag.
    let recommended = &candidates[0];
    assert_eq!(recommended["candidate"]["title"], RIGHT_TITLE);
    assert_eq!(waiting["details"]["recommended_idx"], 0);
    let right_rows = browser
        .eval("return [...document.querySelectorAll('.candidate[data-idx=\"0\"] table.mapping tbody tr')].map(r => [r.className, r.children[3].textContent]);")
        .await;
    let right_rows = right_rows.as_array().unwrap();
    assert_eq!(right_rows.len(), TRACKS.len());
    for (row, (n, (name, _))) in right_rows.iter().zip(TRACKS.iter().enumerate()) {
        assert_eq!(row[0], "agrees", "{row}");
        assert_eq!(row[1], format!("{:02} - {name}.flac", n + 1), "track {} maps to its file", n + 1);
    }
    let short_idx = candidates.iter().position(|c| c["candidate"]["title"] == SHORT_TITLE).unwrap();
    let short_rows = browser
        .eval(&format!("return [...document.querySelectorAll('.candidate[data-idx=\"{short_idx}\"] table.mapping tbody tr')].map(r => [r.className, r.children[4].textContent, r.children[3].textContent]);"))
        .await;
    assert_eq!(
        short_rows,
        serde_json::json!([
            ["agrees", "0:25", "01 - Harbour Lights.mp3"],
            ["disagrees", "0:24 ≠", "02 - Across the Sound.mp3"],
            ["unmapped", "—", "no file"]
        ]),
        "the 24 s file is flagged against the catalog's 30 s, the missing track as missing"
    );
    let reason = browser.text_of("#approval-reason").await;
    assert!(!reason.is_empty(), "the reason it was not auto-approved is shown");

    // The screenshot of the ticket view (the acceptance's artifact).
    browser.client.set_window_size(1400, 1500).await.unwrap();
    browser.eval("window.scrollTo(0, 0); return null;").await;
    save_screenshot(&browser, &artifacts.join("ticket-view.png")).await;

    // Approve candidate #1 (press, then confirm) and watch it download.
    press_twice(&browser, "[data-approve=\"0\"]").await;
    wait_for_shown_state(&browser, "downloading").await;
    browser
        .wait_until(
            "the download progress bar to move",
            "Number(document.querySelector('#status progress')?.value) > 0",
        )
        .await;
    let approved = events.wait_for("ui-approve", "approved", Duration::from_secs(10)).await;
    assert_eq!(approved["details"]["selected"]["candidate"]["title"], RIGHT_TITLE);
    assert_eq!(approved["details"]["approved_by"], "admin-ui");

    // Cancel it from the page.
    press_twice(&browser, "#cancel").await;
    wait_for_shown_state(&browser, "cancelled").await;
    assert_eq!(service.ticket("ui-approve").await["state"]["state"], "cancelled");

    // Another ticket: back to the queue, open it when it waits, reject it with a reason.
    browser.client.find(Locator::LinkText("‹ Tickets")).await.unwrap().click().await.unwrap();
    browser.element("#tickets").await;
    service.create(&fixture.ticket("ui-reject", &setup, 44_100)).await;
    wait_for_row_state(&browser, "ui-reject", "needs_approval").await;
    browser.element("tr[data-ticket-id=\"ui-reject\"] a").await.click().await.unwrap();
    // First search again with the admin's own query: the indexer is asked it, and the ticket comes back.
    browser.element("#search-query").await.send_keys(&format!("{CUSTOM_QUERY}{ENTER}")).await.unwrap();
    browser
        .wait_until(
            "the custom search to show in the history",
            "document.querySelectorAll('#history li[data-to-state=\"searching\"]').length === 2",
        )
        .await;
    wait_for_shown_state(&browser, "needs_approval").await;
    let kept = browser.eval("return document.querySelector('#search-query').value;").await;
    assert_eq!(kept, CUSTOM_QUERY, "typed text survives the re-renders of the state changes");
    assert!(
        fixture.torznab.searches().iter().any(|search| search.param("q") == Some(CUSTOM_QUERY)),
        "the indexer was asked the admin's query"
    );
    browser.element("#reject-reason").await.send_keys("wrong pressing").await.unwrap();
    browser.element("#reject").await.click().await.unwrap();
    wait_for_shown_state(&browser, "rejected").await;
    let rejected = service.ticket("ui-reject").await;
    assert_eq!(rejected["state"]["reason"], "wrong pressing");
    assert_eq!(rejected["state"]["rejected_by"], "admin-ui");
    let timeline =
        browser.eval("return [...document.querySelectorAll('#history li')].map(li => li.dataset.toState);").await;
    assert_eq!(timeline[0], "rejected", "the history shows the newest event first: {timeline}");

    assert_eq!(shown_state(&browser).await, "rejected");

    // On a phone-sized window, the page fits its width (tables scroll inside their own box).
    browser.client.set_window_size(400, 860).await.unwrap();
    for view in ["#/ticket/ui-reject", "#/"] {
        browser.eval(&format!("location.hash = {view:?}; return null;")).await;
        browser.element(if view == "#/" { "#tickets" } else { "#history" }).await;
        let fits = browser
            .wait_until(
                &format!("{view} to fit a phone's width"),
                "document.documentElement.scrollWidth <= window.innerWidth",
            )
            .await;
        assert_eq!(fits, true);
    }
    save_screenshot(&browser, &artifacts.join("phone-queue.png")).await;
    assert_eq!(browser.eval("return window.__sameDocument === true;").await, true, "the page never reloaded");
    assert_eq!(browser.eval("return typeof window.__pwned;").await, "undefined");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_ticket_shows_its_error_and_is_retried_from_its_page() {
    // The in-process service with processing paused: the retried ticket stays pending for the page to show.
    let t = TestApp::start().await;
    t.create(&sample_ticket("ui-failed", &t.media_root())).await;
    let failed = TicketState::Failed {
        failed_at_state: StateKind::Searching,
        error: "every indexer refused the API key".into(),
        retryable: true,
        retry_count: 5,
        failed_at: chrono::Utc::now(),
    };
    move_to(&t, "ui-failed", failed).await;
    let browser = Browser::start().await;
    browser.client.goto(&format!("{}/#/ticket/ui-failed", t.url)).await.unwrap();
    browser.element("#token").await.send_keys(&format!("{ADMIN_TOKEN}{ENTER}")).await.unwrap();
    browser.element("#failure").await;
    assert_eq!(browser.text_of("#failure").await, "every indexer refused the API key");
    // Keyboard only: focus the Retry button and press Enter.
    browser.element("#retry").await.send_keys(ENTER).await.unwrap();
    wait_for_shown_state(&browser, "pending").await;
    let shown: Value = t.get("/ticket/ui-failed", ADMIN_TOKEN).await.json().await.unwrap();
    assert_eq!(shown["state"]["state"], "pending");
    let last = shown["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["from_state"].as_str(), last["details"]["actor"].as_str()), (Some("failed"), Some("admin-ui")));
    browser.close().await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_pages_and_filters_by_state_and_by_text() {
    let t = TestApp::start().await;
    for n in 0..30 {
        let mut ticket = sample_ticket(&format!("q-{n:02}"), &t.media_root());
        if n % 10 == 0 {
            ticket["search"]["artist"] = serde_json::json!("Zither Quartet");
        }
        t.create(&ticket).await;
    }
    to_needs_approval(&t, "q-05", &["A", "B"], Some(0)).await;
    let browser = Browser::start().await;
    browser.client.goto(&format!("{}/", t.url)).await.unwrap();
    browser.element("#token").await.send_keys(&format!("{ADMIN_TOKEN}{ENTER}")).await.unwrap();
    wait_for_page_info(&browser, "1–25 of 30").await;
    assert_eq!(browser.eval("return document.querySelectorAll('#tickets tbody tr').length;").await, 25);
    browser.client.find(Locator::XPath("//button[contains(., 'Next')]")).await.unwrap().click().await.unwrap();
    wait_for_page_info(&browser, "26–30 of 30").await;

    // The count of a state filters by it.
    browser.element("#counts button[data-state=needs_approval]").await.click().await.unwrap();
    wait_for_page_info(&browser, "1–1 of 1").await;
    assert_eq!(browser.text_of("#tickets tbody tr .badge").await, "needs approval");
    assert_eq!(browser.eval("return document.querySelector('#tickets tbody tr').dataset.ticketId;").await, "q-05");
    browser.element("#counts button[data-state=\"\"]").await.click().await.unwrap();
    wait_for_page_info(&browser, "1–25 of 30").await;

    // Text search over artist and album.
    browser.element("#text-filter").await.send_keys("zither").await.unwrap();
    wait_for_page_info(&browser, "1–3 of 3").await;
    let artists = browser
        .eval("return [...document.querySelectorAll('#tickets tbody tr td:first-child')].map(td => td.textContent);")
        .await;
    assert_eq!(artists, serde_json::json!(["Zither Quartet", "Zither Quartet", "Zither Quartet"]));
    browser.close().await;
    t.stop().await;
}
