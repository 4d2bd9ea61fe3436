//! Freeze-window schedules: cron, duration and time zone parsing, then the
//! window state at an arbitrary instant. No input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::api::Schedule;
use tollgate::policy::window::Window;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let secs = i64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let Ok(text) = std::str::from_utf8(&data[8..]) else {
        return;
    };
    // cron | duration | zone
    let mut parts = text.splitn(3, '|');
    let schedule = Schedule {
        cron: parts.next().unwrap_or_default().to_string(),
        duration: parts.next().unwrap_or("1h").to_string(),
        time_zone: parts.next().unwrap_or("UTC").to_string(),
    };
    let Ok(window) = Window::parse(&schedule) else {
        return;
    };
    let min = jiff::Timestamp::MIN.as_second();
    let max = jiff::Timestamp::MAX.as_second();
    let t = jiff::Timestamp::from_second(min + secs.rem_euclid(max - min)).expect("in range");
    let w = window.at(t);
    if let Some((start, Some(end))) = w.current {
        assert!(start <= t && t < end, "{schedule:?} at {t}: {w:?}");
    }
    let _ = window.local(t);
});
