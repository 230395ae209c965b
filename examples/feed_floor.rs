//! The floor for collecting feeds: parse every feed file in a folder from
//! memory, in one loop, with feed-rs alone and then with herald's own
//! parse-and-normalise (feed-rs plus ids, URL resolution and sanitising).
//! Used by `python3 bench/run.py --only collect`.
//!
//!     cargo run --release --example feed_floor -- FOLDER

use std::time::Instant;

fn main() {
    let Some(folder) = std::env::args().nth(1) else {
        eprintln!("usage: feed_floor FOLDER");
        std::process::exit(2);
    };
    let mut files: Vec<Vec<u8>> = Vec::new();
    for entry in std::fs::read_dir(&folder).expect("read the folder") {
        let path = entry.expect("a folder entry").path();
        files.push(std::fs::read(path).expect("read a feed"));
    }
    let start = Instant::now();
    let mut entries = 0;
    for bytes in &files {
        entries += feed_rs::parser::parse(&bytes[..]).map(|f| f.entries.len()).unwrap_or(0);
    }
    let feed_rs = start.elapsed();
    let url = url::Url::parse("http://127.0.0.1/feed.xml").expect("a constant URL");
    let now = chrono::Utc::now();
    let base = herald::types::BaseUrl::parse("http://127.0.0.1/").expect("a constant URL");
    let start = Instant::now();
    let mut articles = 0;
    for bytes in &files {
        let options = herald::collect::feed::ParseOptions {
            source: "bench",
            feed_url: &url,
            source_tags: &[],
            base_url: &base,
            now,
        };
        articles +=
            herald::collect::feed::parse_feed(bytes, &options).map(|a| a.len()).unwrap_or(0);
    }
    let herald = start.elapsed();
    println!(
        "{} feeds, {entries} entries: feed-rs {:.3} s; herald parse_feed {:.3} s ({articles} articles)",
        files.len(),
        feed_rs.as_secs_f64(),
        herald.as_secs_f64()
    );
}
