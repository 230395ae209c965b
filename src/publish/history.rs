//! RFC 5005 §4 archived feeds: which articles go in which document, and how
//! the documents link to each other. Pure arithmetic, no I/O.
//!
//! The subscription document (`feed.xml`, `atom.xml`, `feed.json`) holds
//! the newest `per_page` articles. The older ones are cut into archive pages
//! of `per_page` articles counted from the oldest: page 1 holds the oldest
//! `per_page`, page 2 the next, and only the newest page can be partly
//! filled. So a page, once full, keeps its entries for good; it is written
//! once more only when its successor first appears and it gains its
//! `next-archive` link (RFC 5005 §4: archive documents SHOULD NOT change,
//! the link is the one exception the layout needs).

use std::ops::Range;

use super::Format;

/// The links of one feed document, as paths relative to the site root.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct History {
    /// An archive document: `<fh:archive/>` (RFC 5005 §4.2).
    pub archive: bool,
    /// `rel="current"`: the subscription document (in archives only).
    pub current: Option<String>,
    /// `rel="prev-archive"`: the archive just older than this document.
    pub prev_archive: Option<String>,
    /// `rel="next-archive"`: the archive just newer (absent on the newest).
    pub next_archive: Option<String>,
}

/// How many archive pages `total` articles need beside a subscription
/// document of `per_page`.
pub(super) fn archive_pages(total: usize, per_page: usize) -> usize {
    total.saturating_sub(per_page).div_ceil(per_page.max(1))
}

/// The articles of archive page `page` (1 = oldest) as a range of the
/// newest-first list of all `total` articles.
pub(super) fn page_range(total: usize, per_page: usize, page: usize) -> Range<usize> {
    let older = total.saturating_sub(per_page);
    let oldest_first_end = (page * per_page).min(older);
    let oldest_first_start = (page - 1) * per_page;
    // Index i counted from the oldest is index total-1-i counted from the newest.
    (total - oldest_first_end)..(total - oldest_first_start)
}

/// The path of archive page `page` in `format`, e.g. `archive/atom-3.xml`.
pub(super) fn archive_path(format: Format, page: usize) -> String {
    let (stem, extension) = format.file().split_once('.').unwrap_or((format.file(), ""));
    format!("archive/{stem}-{page}.{extension}")
}

/// The links of the subscription document when there are `pages` archives.
pub(super) fn subscription(format: Format, pages: usize) -> History {
    History { prev_archive: (pages > 0).then(|| archive_path(format, pages)), ..History::default() }
}

/// The links of archive page `page` of `pages`.
pub(super) fn archive(format: Format, page: usize, pages: usize) -> History {
    History {
        archive: true,
        current: Some(format.file().to_owned()),
        prev_archive: (page > 1).then(|| archive_path(format, page - 1)),
        next_archive: (page < pages).then(|| archive_path(format, page + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_count_from_the_oldest() {
        assert_eq!(archive_pages(0, 50), 0);
        assert_eq!(archive_pages(50, 50), 0);
        assert_eq!(archive_pages(51, 50), 1);
        assert_eq!(archive_pages(250, 50), 4);
        assert_eq!(archive_pages(251, 50), 5);
        // 250 newest first: 0..50 is the subscription, 200..250 the oldest.
        assert_eq!(page_range(250, 50, 1), 200..250);
        assert_eq!(page_range(250, 50, 4), 50..100);
        // One more article: the old pages keep their articles, a new page
        // holds the one that fell out of the subscription document.
        assert_eq!(page_range(251, 50, 1), 201..251);
        assert_eq!(page_range(251, 50, 4), 51..101);
        assert_eq!(page_range(251, 50, 5), 50..51);
    }

    #[test]
    fn archives_link_both_ways() {
        assert_eq!(archive_path(Format::Rss, 2), "archive/feed-2.xml");
        assert_eq!(archive_path(Format::Atom, 2), "archive/atom-2.xml");
        assert_eq!(archive_path(Format::Json, 2), "archive/feed-2.json");
        assert_eq!(subscription(Format::Atom, 0), History::default());
        assert_eq!(
            subscription(Format::Atom, 4).prev_archive.as_deref(),
            Some("archive/atom-4.xml")
        );
        let first = archive(Format::Rss, 1, 4);
        assert_eq!(
            (first.prev_archive, first.next_archive.as_deref()),
            (None, Some("archive/feed-2.xml"))
        );
        let last = archive(Format::Rss, 4, 4);
        assert_eq!(last.prev_archive.as_deref(), Some("archive/feed-3.xml"));
        assert_eq!(last.next_archive, None);
        assert_eq!(last.current.as_deref(), Some("feed.xml"));
        assert!(last.archive);
    }
}
