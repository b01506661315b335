//! `/events`: the console's live feed, as server-sent events. Every tick, one `lines` event
//! with the transcript's newest lines (at most [`LINES_PER_TICK`]; those before them counted
//! as skipped),
//! and every second a `connections` event. A browser that reads slowly is simply polled less:
//! the sink's broadcast runs ahead of it and it is told how many lines it missed, so no client
//! of the server ever waits for a browser.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::TryRecvError;
use tokio::time::{Interval, MissedTickBehavior};

use super::{App, connections_json};
use crate::output::Written;

/// How often the feed sends what arrived.
const TICK: Duration = Duration::from_millis(200);
/// Most transcript lines a browser gets per tick (250 lines a second): a page can show that.
pub(super) const LINES_PER_TICK: usize = 50;
/// Ticks between connection lists.
const TICKS_PER_LIST: u32 = 5;
/// Most rows of the connection list sent to a browser.
const LIST_ROWS: usize = 500;
/// Longest line shown; the rest is cut (the transcript on stdout has it whole).
const MAX_SHOWN_LINE: usize = 2000;

/// A line as the page shows it: cut to [`MAX_SHOWN_LINE`]; raw records (`--format raw`) are
/// escaped here as the text formats are (the page only ever inserts text, but a bidi
/// override could still make a line read wrong).
fn shown(line: &[u8], raw: bool) -> String {
    let line = &line[..line.len().min(MAX_SHOWN_LINE)];
    if raw {
        let mut escaped = Vec::with_capacity(line.len());
        crate::output::escape_into(&mut escaped, line);
        return String::from_utf8_lossy(&escaped).into_owned();
    }
    String::from_utf8_lossy(line).into_owned()
}

/// One browser's feed.
struct Feed {
    app: App,
    records: Receiver<Written>,
    tick: Interval,
    ticks: u32,
    /// The record number the next one should have; a gap is what this browser missed.
    expected: Option<u64>,
}

pub(super) async fn stream(State(app): State<App>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut tick = tokio::time::interval(TICK);
    // A browser that was slow gets the latest, not a burst of old ticks.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let feed = Feed { records: app.watch.subscribe(), app, tick, ticks: 0, expected: None };
    let events = futures_util::stream::unfold(feed, |mut feed| async move {
        feed.tick.tick().await;
        let events = feed.next_events();
        Some((futures_util::stream::iter(events.into_iter().map(Ok)), feed))
    });
    Sse::new(futures_util::StreamExt::flatten(events)).keep_alive(KeepAlive::default())
}

impl Feed {
    fn next_events(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        if self.ticks % TICKS_PER_LIST == 0 {
            let list = connections_json(&self.app.console.connections(), LIST_ROWS);
            events.push(Event::default().event("connections").data(list.to_string()));
        }
        self.ticks = self.ticks.wrapping_add(1);
        let (lines, skipped) = self.take_lines();
        if !lines.is_empty() || skipped > 0 {
            let body = json!({ "lines": lines, "skipped": skipped });
            events.push(Event::default().event("lines").data(body.to_string()));
        }
        events
    }

    /// The newest lines that arrived since the last tick, up to the budget, and how many
    /// before them were skipped. Lines are only counted (SIMD) until the last writes, which
    /// are the only ones cut into strings: a flood costs the feed a scan, not an allocation
    /// per line.
    fn take_lines(&mut self) -> (Vec<String>, u64) {
        let mut recent: VecDeque<Written> = VecDeque::new();
        let mut held = 0u64;
        let mut skipped = 0u64;
        loop {
            let written = match self.records.try_recv() {
                Ok(written) => written,
                // Skipped writes show up as a gap in the record numbers of the next one.
                Err(TryRecvError::Lagged(_)) => continue,
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            };
            if let Some(expected) = self.expected {
                skipped += written.first.saturating_sub(expected);
            }
            self.expected = Some(written.first + written.count);
            held += written.count;
            recent.push_back(written);
            // Older writes go once the newer ones hold the whole budget.
            while recent.front().is_some_and(|front| held - front.count >= LINES_PER_TICK as u64) {
                let front = recent.pop_front().map_or(0, |front| front.count);
                held -= front;
                skipped += front;
            }
        }
        // From the end: only the lines shown are cut out and made into strings.
        let raw = self.app.console.records_are_raw();
        let mut lines: Vec<String> = recent
            .iter()
            .rev()
            .flat_map(|written| written.buffers.iter().rev())
            .flat_map(|records| records.strip_suffix(b"\n").unwrap_or(records).rsplit(|&b| b == b'\n'))
            .take(LINES_PER_TICK)
            .map(|line| shown(line, raw))
            .collect();
        lines.reverse();
        skipped += held.saturating_sub(lines.len() as u64);
        (lines, skipped)
    }
}
