//! GitHub's `Link` header, paging the App's webhook deliveries: any header
//! gives no cursor or one that keeps the next request on the same path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::github::next_cursor;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    if let Some(cursor) = next_cursor(Some(&value)) {
        assert!(!cursor.is_empty());
        let next: http::Uri = format!("/app/hook/deliveries?per_page=100&cursor={cursor}")
            .parse()
            .unwrap_or_else(|e| panic!("{cursor:?} breaks the next URL: {e}"));
        assert_eq!(next.path(), "/app/hook/deliveries", "{cursor:?}");
    }
});
