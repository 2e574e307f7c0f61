//! A run's timeline as a Chrome trace-event file (`run --trace FILE`; Perfetto and
//! chrome://tracing open it): a [`tracing`] layer that turns the harness's own spans (scenario,
//! vm, boot, step, request, kexec) into complete events, and the phases the host only learns
//! after the fact (a boot's firmware, kernel and agent time, from the guest's clock at its hello)
//! into complete events placed back in time.
//!
//! Each scenario is a process of the trace with two threads: `host`, where the spans nest (a
//! step holds its requests, a kexec its requests and the boot it waits for), and `guest`, where a
//! boot's phases follow one another. They are apart because a boot's phases start when QEMU does,
//! before the host's `vm` span has ended.
//!
//! tracing-chrome writes the same format from spans, but cannot place an event in the past,
//! which is what a boot's phases need.

use serde::Serialize;
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The target of the events that carry a phase (see [`phase`]).
pub const PHASE_TARGET: &str = "luo_harness::timeline";

/// The instant phases are told from (an event's fields cannot hold an `Instant`).
static ANCHOR: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// Records a phase that began at `start` and lasted `dur`: the timeline shows it on the guest's
/// track of the current scenario.
pub fn phase(name: &str, start: Instant, dur: Duration) {
    let anchor = *ANCHOR;
    let (after, before) = match start.checked_duration_since(anchor) {
        Some(d) => (d.as_nanos() as u64, 0),
        None => (0, anchor.duration_since(start).as_nanos() as u64),
    };
    tracing::info!(
        target: PHASE_TARGET,
        phase = name,
        ns_after_anchor = after,
        ns_before_anchor = before,
        dur_ns = dur.as_nanos() as u64,
    );
}

const HOST: u64 = 1;
const GUEST: u64 = 2;

/// One trace event of the Chrome trace-event format (`ph` "X": complete, "M": metadata).
#[derive(Debug, Clone, Serialize)]
struct TraceEvent {
    name: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    cat: String,
    ph: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<f64>,
    pid: u64,
    tid: u64,
    #[serde(skip_serializing_if = "Map::is_empty")]
    args: Map<String, Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TraceFile<'a> {
    trace_events: &'a [TraceEvent],
    display_time_unit: &'static str,
}

/// What the layer keeps of a span while it is open.
struct Open {
    start: Instant,
    fields: Map<String, Value>,
}

/// The trace process a root span and everything under it belong to.
#[derive(Clone, Copy)]
struct Track(u64);

#[derive(Default)]
struct State {
    events: Vec<TraceEvent>,
    tracks: u64,
}

/// The layer, and the handle that writes what it recorded: clones share one record.
#[derive(Clone)]
pub struct Timeline {
    epoch: Instant,
    state: Arc<Mutex<State>>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new()
    }
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline {
            epoch: Instant::now(),
            state: Arc::default(),
        }
    }

    /// A slice from `start` to `end`, as the format's `ts` and `dur` in microseconds (to the ns).
    fn ts_dur(&self, start: Instant, end: Instant) -> (Option<f64>, Option<f64>) {
        let ns = |d: Duration| d.as_nanos() as f64 / 1000.0;
        let ts = ns(start.saturating_duration_since(self.epoch));
        (Some(ts), Some(ns(end.saturating_duration_since(start))))
    }

    fn push(&self, e: TraceEvent) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .push(e);
    }

    /// The JSON of the trace: every span closed so far, ordered by start.
    pub fn to_json(&self) -> String {
        let mut events = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .clone();
        events.sort_by(|a, b| {
            (a.ph != "M", a.ts.unwrap_or(0.0))
                .partial_cmp(&(b.ph != "M", b.ts.unwrap_or(0.0)))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let file = TraceFile {
            trace_events: &events,
            display_time_unit: "ms",
        };
        serde_json::to_string_pretty(&file).expect("trace events always serialize")
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_json())
    }

    fn new_track(&self, name: String) -> Track {
        let pid = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.tracks += 1;
            s.tracks
        };
        let meta = |name: &str, tid: u64, value: String| TraceEvent {
            name: name.into(),
            cat: String::new(),
            ph: "M",
            ts: None,
            dur: None,
            pid,
            tid,
            args: Map::from_iter([("name".to_string(), Value::String(value))]),
        };
        self.push(meta("process_name", 0, name));
        self.push(meta("thread_name", HOST, "host".into()));
        self.push(meta("thread_name", GUEST, "guest".into()));
        Track(pid)
    }
}

/// A slice's name: what a reader looks for first (`L12 kexec`, `create_session`, `boot 1`).
fn slice_name(span: &str, f: &Map<String, Value>) -> String {
    let text = |k: &str| match f.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    match span {
        "scenario" => format!("scenario {}", text("name")),
        "step" => format!("L{} {}", text("line"), text("keyword")),
        "request" => text("op"),
        "boot" => match text("expected").as_str() {
            "0" => "boot 0".into(),
            n => format!("kexec into boot {n}"),
        },
        "vm" if f.contains_key("restore") => format!("restore VM {}", text("name")),
        "vm" => format!("start VM {}", text("name")),
        other => other.to_string(),
    }
}

#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

impl<S> Layer<S> for Timeline
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let start = Instant::now();
        if span.parent().is_none() {
            let name = slice_name(span.name(), &fields.0);
            span.extensions_mut().insert(self.new_track(name));
        }
        span.extensions_mut().insert(Open {
            start,
            fields: fields.0,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(open) = span.extensions_mut().get_mut::<Open>() {
            let mut fields = Fields(std::mem::take(&mut open.fields));
            values.record(&mut fields);
            open.fields = fields.0;
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != PHASE_TARGET {
            return;
        }
        let Some(root) = ctx.event_scope(event).and_then(|s| s.from_root().next()) else {
            return;
        };
        let Some(Track(pid)) = root.extensions().get::<Track>().copied() else {
            return;
        };
        let mut f = Fields::default();
        event.record(&mut f);
        let ns = |k: &str| Duration::from_nanos(f.0.get(k).and_then(Value::as_u64).unwrap_or(0));
        let anchor = *ANCHOR;
        let start = (anchor + ns("ns_after_anchor"))
            .checked_sub(ns("ns_before_anchor"))
            .unwrap_or(anchor);
        let end = start + ns("dur_ns");
        let (ts, dur) = self.ts_dur(start, end);
        let name = f.0.get("phase").and_then(Value::as_str).unwrap_or("phase");
        self.push(TraceEvent {
            name: name.to_string(),
            cat: "phase".into(),
            ph: "X",
            ts,
            dur,
            pid,
            tid: GUEST,
            args: Map::new(),
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(Track(pid)) = span
            .scope()
            .from_root()
            .next()
            .and_then(|root| root.extensions().get::<Track>().copied())
        else {
            return;
        };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        let (ts, dur) = self.ts_dur(open.start, Instant::now());
        self.push(TraceEvent {
            name: slice_name(span.name(), &open.fields),
            cat: span.name().into(),
            ph: "X",
            ts,
            dur,
            pid,
            tid: HOST,
            args: open.fields,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn events(json: &str) -> Vec<Value> {
        let v: Value = serde_json::from_str(json).unwrap();
        v["traceEvents"].as_array().unwrap().clone()
    }

    #[test]
    fn spans_nest_on_the_host_track_and_phases_go_back_in_time_on_the_guest_track() {
        let timeline = Timeline::new();
        let subscriber = tracing_subscriber::registry().with(timeline.clone());
        tracing::subscriber::with_default(subscriber, || {
            let scenario = tracing::info_span!("scenario", name = "demo");
            let _s = scenario.enter();
            std::thread::sleep(Duration::from_millis(2));
            let step = tracing::info_span!("step", line = 7u64, keyword = "kexec");
            let _st = step.enter();
            {
                let _r = tracing::info_span!("request", op = "kexec_reboot").entered();
            }
            std::thread::sleep(Duration::from_millis(2));
            let boot = tracing::info_span!("boot", expected = 1u32);
            let _b = boot.enter();
            let start = Instant::now() - Duration::from_micros(800);
            phase("kernel", start, Duration::from_micros(500));
            phase(
                "agent",
                start + Duration::from_micros(500),
                Duration::from_micros(200),
            );
        });
        let ev = events(&timeline.to_json());
        let by_name = |n: &str| {
            ev.iter()
                .find(|e| e["name"] == n && e["ph"] == "X")
                .unwrap_or_else(|| panic!("no {n} in {ev:#?}"))
                .clone()
        };
        let span = |e: &Value| {
            let ts = e["ts"].as_f64().unwrap();
            (ts, ts + e["dur"].as_f64().unwrap())
        };
        let (scenario, step) = (by_name("scenario demo"), by_name("L7 kexec"));
        let (request, boot) = (by_name("kexec_reboot"), by_name("kexec into boot 1"));
        let kernel = by_name("kernel");
        for inner in [&step, &request, &boot] {
            let (a, b) = (span(&scenario), span(inner));
            assert!(a.0 <= b.0 && b.1 <= a.1, "{inner} not inside {scenario}");
            assert_eq!(inner["tid"], HOST);
            assert_eq!(inner["pid"], scenario["pid"]);
        }
        let (s, r, b) = (span(&step), span(&request), span(&boot));
        assert!(s.0 <= r.0 && r.1 <= s.1 && s.0 <= b.0 && b.1 <= s.1);
        assert!(
            r.1 <= b.0,
            "the request {r:?} ended before the boot {b:?} began"
        );
        let k = span(&kernel);
        assert_eq!(kernel["tid"], GUEST);
        assert!((k.1 - k.0 - 500.0).abs() < 1.0);
        assert!(
            k.1 <= b.1,
            "the phase ended 0.3 ms before the boot span closed"
        );
        let a = span(&by_name("agent"));
        assert!(
            (a.0 - k.1).abs() < 0.01,
            "one phase starts where the last ended: {k:?} {a:?}"
        );
        let meta: Vec<_> = ev.iter().filter(|e| e["ph"] == "M").collect();
        assert!(meta.iter().any(|e| e["args"]["name"] == "scenario demo"));
    }
}
