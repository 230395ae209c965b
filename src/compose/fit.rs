//! Gmail clips a message whose HTML is over about 102 KB: it shows the
//! start and hides the rest behind "[Message clipped]", the footer and its
//! unsubscribe link with it. `[[lists]] max_html_kb` keeps a digest's HTML
//! part under a cap: the oldest articles fall back to their summaries first
//! (the newest keep their whole text longest); when even every summary is
//! too much, the oldest are left out of the mail, which then links to the
//! edition's archive page for them ("N more in the archive"). The footer is
//! never cut, so the unsubscribe link always comes before the clip.
//!
//! The choice is a pure function of the edition's articles, the templates
//! and the cap, so compose (which reports it) and deliver (which builds the
//! messages) make the same one.

use crate::templates::escape_html;

/// Where Gmail clips (102 KB, as Gmail counts: 1024 bytes a KB).
pub const GMAIL_CLIP_BYTES: usize = 102 * 1024;
/// From this size on, compose and `herald check` warn that a digest's HTML
/// part nears Gmail's clip.
pub const NEAR_CLIP_BYTES: usize = 90 * 1024;

/// How an edition's mail fits its list's cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// The HTML part's size as mailed (for a reader with long values).
    pub bytes: usize,
    /// Its size with every article in full.
    pub full_bytes: usize,
    /// Articles shown by their summary, the oldest ones.
    pub shortened: usize,
    /// Articles left out of the mail (the oldest), for the archive page.
    pub omitted: usize,
    /// The cap, when the list sets one.
    pub cap: Option<usize>,
}

impl Fit {
    /// Over the cap even with every article left out.
    pub fn over_cap(&self) -> bool {
        self.cap.is_some_and(|cap| self.bytes > cap)
    }

    /// What an operator should hear about this edition's size, if anything:
    /// what was cut to fit the cap, and whether the result nears Gmail's clip.
    pub fn notes(&self, list: &str, date: &str) -> Vec<String> {
        let kb = |b: usize| b.div_ceil(1024);
        let mut notes = Vec::new();
        if let Some(cap) = self.cap {
            if self.shortened + self.omitted > 0 {
                notes.push(format!(
                    "list `{list}`, edition {date}: the HTML part would be {} KB with every article in full, over max_html_kb = {}: {} oldest article(s) shortened to their summary, {} left for the archive page; {} KB as mailed",
                    kb(self.full_bytes), cap / 1024, self.shortened, self.omitted, kb(self.bytes)
                ));
            }
            if self.over_cap() {
                notes.push(format!(
                    "list `{list}`, edition {date}: the HTML part is {} KB even without any article, over max_html_kb = {}: make the digest templates lighter",
                    kb(self.bytes), cap / 1024
                ));
            }
        }
        if self.bytes >= NEAR_CLIP_BYTES {
            notes.push(format!(
                "list `{list}`, edition {date}: the HTML part is {} KB; Gmail clips mail over 102 KB and hides the rest, the unsubscribe link with it{}",
                kb(self.bytes),
                if self.cap.is_some() { "" } else { ": set max_html_kb (e.g. 90) on the list" }
            ));
        }
        notes
    }
}

/// `articles` (newest first) as the mail shows them: the `shortened` oldest
/// of the first `articles.len() - omitted` with their summary for body.
pub fn arrange(
    articles: &[serde_json::Value],
    shortened: usize,
    omitted: usize,
) -> Vec<serde_json::Value> {
    let kept = articles.len().saturating_sub(omitted);
    let first_short = kept.saturating_sub(shortened);
    articles[..kept]
        .iter()
        .enumerate()
        .map(|(i, article)| if i >= first_short { summarised(article) } else { article.clone() })
        .collect()
}

/// An article whose body is its summary, as one paragraph.
fn summarised(article: &serde_json::Value) -> serde_json::Value {
    let mut article = article.clone();
    let summary = article.get("summary").and_then(|s| s.as_str()).unwrap_or("").to_owned();
    if let Some(map) = article.as_object_mut() {
        let body = if summary.is_empty() {
            String::new()
        } else {
            format!("<p>{}</p>", escape_html(&summary))
        };
        map.insert("content_html".into(), body.into());
        map.insert("shortened".into(), true.into());
    }
    article
}

/// The fewest articles shortened and left out for which `size` is within
/// `cap`: first with none left out (the oldest shortened one by one),
/// else the fewest left out with the rest shortened as few as need be.
/// `size(shortened, omitted)` shrinks as either grows.
pub fn choose<E>(
    count: usize,
    cap: usize,
    mut size: impl FnMut(usize, usize) -> Result<usize, E>,
) -> Result<(usize, usize, usize), E> {
    let mut fits = |k: usize, d: usize| -> Result<Option<usize>, E> {
        let bytes = size(k, d)?;
        Ok((bytes <= cap).then_some(bytes))
    };
    let omitted = if fits(count, 0)?.is_some() {
        0
    } else {
        // The fewest left out, the rest shortened.
        match first(1, count, |d| Ok(fits(count - d, d)?.is_some()))? {
            Some(d) => d,
            None => return Ok((0, count, size(0, count)?)),
        }
    };
    let kept = count - omitted;
    let shortened = first(0, kept, |k| Ok(fits(k, omitted)?.is_some()))?.unwrap_or(kept);
    Ok((shortened, omitted, size(shortened, omitted)?))
}

/// The smallest `x` in `lo..=hi` for which the monotone `pred` holds.
fn first<E>(
    lo: usize,
    hi: usize,
    mut pred: impl FnMut(usize) -> Result<bool, E>,
) -> Result<Option<usize>, E> {
    if lo > hi || !pred(hi)? {
        return Ok(None);
    }
    let (mut lo, mut hi) = (lo, hi);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid)? {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(Some(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each article is 10 bytes in full, 3 as a summary; the page 5.
    fn size(k: usize, d: usize, n: usize) -> usize {
        let kept = n - d;
        5 + (kept - k.min(kept)) * 10 + k.min(kept) * 3
    }

    #[test]
    fn the_oldest_are_shortened_first_then_left_out() {
        let n = 4;
        let choose = |cap| choose::<()>(n, cap, |k, d| Ok(size(k, d, n))).unwrap();
        assert_eq!(choose(100), (0, 0, 45));
        assert_eq!(choose(40), (1, 0, 38));
        assert_eq!(choose(17), (4, 0, 17));
        assert_eq!(choose(16), (3, 1, 14));
        assert_eq!(choose(4), (0, 4, 5), "nothing fits: everything left out");
    }

    #[test]
    fn arranging_summarises_the_oldest_and_drops_the_left_out() {
        let articles: Vec<serde_json::Value> = (0..4)
            .map(|i| serde_json::json!({"title": format!("a{i}"), "summary": "S & T", "content_html": "<p>long</p>", "shortened": false}))
            .collect();
        let out = arrange(&articles, 2, 1);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0]["content_html"], "<p>long</p>");
        assert_eq!(out[1]["content_html"], "<p>S &amp; T</p>");
        assert_eq!(out[1]["shortened"], true);
        assert_eq!(out[2]["title"], "a2");
        assert_eq!(out[2]["shortened"], true);
    }
}
