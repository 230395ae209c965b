//! The file cache: its budget, what it reads and compresses, and when.

use super::*;

/// Runs `f` on a runtime like the server's (two workers).
fn on_runtime<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Text that compresses like a page does (words, not one repeated byte).
fn page(seed: usize, len: usize) -> String {
    let words = ["harbour", "ferry", "quay", "market", "tide", "lamp", "council", "bakery"];
    let mut text = format!("<p>page {seed}</p>");
    let mut i = seed;
    while text.len() < len {
        i = i.wrapping_mul(31).wrapping_add(7);
        text.push_str(words[i % words.len()]);
        text.push(if i.is_multiple_of(11) { '\n' } else { ' ' });
    }
    text.truncate(len);
    text
}

async fn bytes_of(cache: &FileCache, entry: &Arc<Entry>, encoding: Encoding) -> Vec<u8> {
    match cache.content(entry, encoding).await.unwrap().expect("that encoding") {
        Content::Memory(bytes) => bytes.to_vec(),
        Content::Disk(mut file) => {
            use tokio::io::AsyncReadExt;
            let mut out = Vec::new();
            file.read_to_end(&mut out).await.unwrap();
            out
        }
        Content::Changed => panic!("the file did not change"),
    }
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::BrotliDecompress(&mut &bytes[..], &mut out).unwrap();
    out
}

#[test]
fn a_changed_file_is_read_again() {
    on_runtime(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.xml");
        let cache = FileCache::new(1 << 20);
        std::fs::write(&path, "<rss>one</rss>").unwrap();
        let first = cache.get(&path).await.unwrap().unwrap();
        assert_eq!(bytes_of(&cache, &first, Encoding::Identity).await, b"<rss>one</rss>");
        std::fs::write(&path, "<rss>two, longer</rss>").unwrap();
        let second = cache.get(&path).await.unwrap().unwrap();
        assert_eq!(bytes_of(&cache, &second, Encoding::Identity).await, b"<rss>two, longer</rss>");
        assert_ne!(first.etag, second.etag);
        assert!(cache.get(&dir.path().join("missing")).await.unwrap().is_none());
        assert!(cache.get(dir.path()).await.unwrap().is_none(), "a folder is not a file");
    })
}

#[test]
fn the_cache_stays_within_its_budget_and_evicts_the_least_used() {
    on_runtime(async {
        let dir = tempfile::tempdir().unwrap();
        let budget = 256 * 1024;
        let cache = FileCache::new(budget);
        let mut files = Vec::new();
        for i in 0..100 {
            let path = dir.path().join(format!("page-{i}.html"));
            std::fs::write(&path, page(i, 8 * 1024)).unwrap();
            files.push(path);
        }
        for (i, path) in files.iter().enumerate() {
            let entry = cache.get(path).await.unwrap().unwrap();
            let br = bytes_of(&cache, &entry, Encoding::Brotli).await;
            assert_eq!(unbrotli(&br), page(i, 8 * 1024).as_bytes());
            // The front page is read over and over: it stays.
            let front = cache.get(&files[0]).await.unwrap().unwrap();
            bytes_of(&cache, &front, Encoding::Brotli).await;
            assert!(cache.cached_bytes() <= budget, "{} > {budget}", cache.cached_bytes());
        }
        let before = cache.compressions();
        let front = cache.get(&files[0]).await.unwrap().unwrap();
        bytes_of(&cache, &front, Encoding::Brotli).await;
        assert_eq!(cache.compressions(), before, "the most used file was kept");
        // An evicted file is simply read again.
        let old = cache.get(&files[1]).await.unwrap().unwrap();
        assert_eq!(bytes_of(&cache, &old, Encoding::Identity).await, page(1, 8 * 1024).as_bytes());
    })
}

#[test]
fn a_file_too_big_for_the_cache_is_served_from_disk() {
    on_runtime(async {
        let dir = tempfile::tempdir().unwrap();
        let budget = 256 * 1024;
        let cache = FileCache::new(budget);
        let path = dir.path().join("podcast.xml");
        let text = page(3, 200 * 1024);
        std::fs::write(&path, &text).unwrap();
        let entry = cache.get(&path).await.unwrap().unwrap();
        assert!(
            matches!(cache.content(&entry, Encoding::Identity).await, Ok(Some(Content::Disk(_)))),
            "a file over a sixteenth of the budget is not kept in memory"
        );
        assert_eq!(bytes_of(&cache, &entry, Encoding::Identity).await, text.as_bytes());
        assert!(cache.cached_bytes() < 4096, "{}", cache.cached_bytes());
        let again = cache.get(&path).await.unwrap().unwrap();
        assert_eq!(again.etag, entry.etag, "the same strong ETag from the same bytes");
    })
}

#[test]
fn concurrent_first_requests_for_a_file_compress_it_once() {
    on_runtime(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.xml");
        let text = page(5, 256 * 1024);
        std::fs::write(&path, &text).unwrap();
        let cache = Arc::new(FileCache::new(64 << 20));
        let readers: Vec<_> = (0..16)
            .map(|_| {
                let (cache, path) = (Arc::clone(&cache), path.clone());
                tokio::spawn(async move {
                    let entry = cache.get(&path).await.unwrap().unwrap();
                    bytes_of(&cache, &entry, Encoding::Brotli).await
                })
            })
            .collect();
        for reader in readers {
            assert_eq!(unbrotli(&reader.await.unwrap()), text.as_bytes());
        }
        assert_eq!(cache.compressions(), 1, "one brotli copy, made once");
    })
}

#[test]
fn compressing_leaves_the_request_thread_free() {
    // One worker thread: if compressing ran on it, nothing else could
    // run until the copy was made.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive.html");
        std::fs::write(&path, page(9, 2 << 20)).unwrap();
        let cache = Arc::new(FileCache::new(256 << 20));
        let first = {
            let (cache, path) = (Arc::clone(&cache), path.clone());
            tokio::spawn(async move {
                let entry = cache.get(&path).await.unwrap().unwrap();
                bytes_of(&cache, &entry, Encoding::Brotli).await.len()
            })
        };
        let mut other_work = 0;
        while !first.is_finished() {
            tokio::task::yield_now().await;
            other_work += 1;
        }
        assert!(first.await.unwrap() > 0);
        assert!(other_work > 1, "the worker was blocked while the file was compressed");
    })
}

#[test]
fn paths_that_cannot_name_a_file_are_missing_files() {
    on_runtime(async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("feed.xml"), "<rss/>").unwrap();
        let cache = FileCache::new(1 << 20);
        let under_a_file = dir.path().join("feed.xml").join("index.html");
        assert!(cache.get(&under_a_file).await.unwrap().is_none(), "not a directory");
        let long_name = dir.path().join("a".repeat(300));
        assert!(cache.get(&long_name).await.unwrap().is_none(), "a name too long");
        let long_path = dir.path().join(vec!["b".repeat(250); 20].join("/"));
        assert!(cache.get(&long_path).await.unwrap().is_none(), "a path too long");
    });
    let root = Path::new("/srv/public");
    assert_eq!(super::super::paths::resolve(root, &format!("/{}", "c".repeat(256))), None);
    assert_eq!(
        super::super::paths::resolve(root, &format!("/{}", vec!["d".repeat(200); 12].join("/"))),
        None
    );
}
