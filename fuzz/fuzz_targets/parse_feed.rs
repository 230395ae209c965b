//! Fuzzes the parse-and-normalise path of upstream feeds: any bytes must
//! give articles or an error, never a panic, a hang or unbounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let url = url::Url::parse("https://feeds.example.org/news/feed.xml").expect("a constant URL");
    let now = chrono::DateTime::from_timestamp(1_795_000_000, 0).expect("a constant time");
    let base = herald::types::BaseUrl::parse("https://news.example.com/").expect("a constant URL");
    let options = herald::collect::feed::ParseOptions {
        source: "fuzz",
        feed_url: &url,
        source_tags: &[],
        base_url: &base,
        now,
    };
    if let Ok(articles) = herald::collect::feed::parse_feed(bytes, &options) {
        for a in articles {
            // What the rest of herald relies on.
            assert!(!a.guid.is_empty());
            assert!(!a.title.is_empty());
            assert!(a.url.starts_with("http://") || a.url.starts_with("https://"), "{}", a.url);
        }
    }
});
