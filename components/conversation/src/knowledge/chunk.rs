//! Splitting a document's text into chunks of about a token budget,
//! counted with the embedding model's own tokenizer: sentences (a block
//! that fits is not split) are packed in order, a new heading or page
//! starts a new chunk, and each chunk after the first in a section begins
//! with the last sentences of the one before, up to the overlap. A chunk is
//! a range of the text, so its offsets are exact.

use super::extract::{Block, Extracted};

/// One chunk: byte offsets into the text, its page, its heading and its
/// tokens (the sum over its pieces).
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub start: usize,
    pub end: usize,
    pub page: Option<u32>,
    pub heading: Option<String>,
    pub tokens: u32,
}

/// A sentence (or a whole block) and what it counts.
struct Piece<'b> {
    start: usize,
    end: usize,
    block: &'b Block,
    tokens: u32,
}

/// Splits `doc` into chunks of at most `budget` tokens (a single sentence
/// longer than that is cut at whitespace) with up to `overlap` tokens
/// repeated from the chunk before. `count` is the tokenizer.
pub fn chunks<E>(
    doc: &Extracted,
    budget: u32,
    overlap: u32,
    count: &mut dyn FnMut(&str) -> Result<u32, E>,
) -> Result<Vec<Chunk>, E> {
    let pieces = pieces(doc, budget, count)?;
    let mut out = Vec::new();
    let mut first = 0;
    while first < pieces.len() {
        let mut last = first;
        let mut tokens = pieces[first].tokens;
        while last + 1 < pieces.len()
            && same_section(pieces[last].block, pieces[last + 1].block)
            && tokens + pieces[last + 1].tokens <= budget
        {
            last += 1;
            tokens += pieces[last].tokens;
        }
        out.push(Chunk {
            start: pieces[first].start,
            end: pieces[last].end,
            page: pieces[first].block.page,
            heading: pieces[first].block.heading.clone(),
            tokens,
        });
        let next = last + 1;
        if next >= pieces.len() {
            break;
        }
        // Back up over the overlap, within the section, always advancing,
        // and never so far that the next piece would not fit after it (a
        // chunk of nothing but overlap).
        let mut start = next;
        let mut carried = 0;
        if same_section(pieces[last].block, pieces[next].block) {
            while start > first + 1
                && carried + pieces[start - 1].tokens <= overlap
                && carried + pieces[start - 1].tokens + pieces[next].tokens <= budget
                && same_section(pieces[start - 1].block, pieces[next].block)
            {
                start -= 1;
                carried += pieces[start].tokens;
            }
        }
        first = start;
    }
    Ok(out)
}

/// Whether two blocks may share a chunk: same heading, same page (so a
/// chunk's page is the page its text is on).
fn same_section(a: &Block, b: &Block) -> bool {
    a.heading == b.heading && a.page == b.page
}

/// Bytes per budget token past which a text is taken to be over the budget
/// without counting it (wordpieces average about 4 bytes): the tokenizer
/// is never handed megabytes at once.
const SURELY_OVER: usize = 16;
/// Bytes per token assumed when cutting an uncounted overlong sentence.
const BYTES_PER_TOKEN: usize = 4;

/// Blocks that fit the budget whole, the others as sentences (cut at
/// whitespace when a sentence alone is over the budget).
fn pieces<'d, E>(
    doc: &'d Extracted,
    budget: u32,
    count: &mut dyn FnMut(&str) -> Result<u32, E>,
) -> Result<Vec<Piece<'d>>, E> {
    let huge = budget as usize * SURELY_OVER;
    let mut count_small = |text: &str| -> Result<Option<u32>, E> {
        if text.len() > huge {
            Ok(None)
        } else {
            count(text).map(Some)
        }
    };
    let mut out = Vec::new();
    for block in &doc.blocks {
        let text = &doc.text[block.start..block.end];
        if let Some(tokens) = count_small(text)?
            && tokens <= budget
        {
            out.push(Piece {
                start: block.start,
                end: block.end,
                block,
                tokens,
            });
            continue;
        }
        for (start, end) in sentences(text) {
            let sentence = &text[start..end];
            let tokens = count_small(sentence)?;
            if let Some(tokens) = tokens
                && tokens <= budget
            {
                out.push(Piece {
                    start: block.start + start,
                    end: block.start + end,
                    block,
                    tokens,
                });
                continue;
            }
            // About `budget` tokens a cut: the sentence's characters split
            // evenly, each cut moved back to whitespace.
            let parts = match tokens {
                Some(tokens) => tokens.div_ceil(budget).max(2) as usize,
                None => sentence.len().div_ceil(budget as usize * BYTES_PER_TOKEN),
            };
            let step = sentence.len().div_ceil(parts);
            let mut at = 0;
            while at < sentence.len() {
                let mut cut = (at + step).min(sentence.len());
                while !sentence.is_char_boundary(cut) {
                    cut += 1;
                }
                if cut < sentence.len()
                    && let Some(space) = sentence[at..cut].rfind(char::is_whitespace)
                    && space > 0
                {
                    cut = at + space;
                }
                let base = block.start + start;
                fit(
                    &doc.text,
                    base + at,
                    base + cut,
                    block,
                    budget,
                    &mut count_small,
                    &mut out,
                )?;
                at = cut;
                while at < sentence.len() && sentence[at..].starts_with(char::is_whitespace) {
                    at += sentence[at..].chars().next().map_or(1, char::len_utf8);
                }
            }
        }
    }
    Ok(out)
}

/// Pushes `text[start..end]` as one piece if it fits the budget, else its
/// halves (cut at the whitespace nearest the middle, or at any character
/// where there is none, as in Chinese), each checked again.
fn fit<'d, E>(
    text: &str,
    start: usize,
    end: usize,
    block: &'d Block,
    budget: u32,
    count: &mut dyn FnMut(&str) -> Result<Option<u32>, E>,
    out: &mut Vec<Piece<'d>>,
) -> Result<(), E> {
    let part = &text[start..end];
    if part.trim().is_empty() {
        return Ok(());
    }
    let tokens = count(part)?;
    if let Some(tokens) = tokens
        && (tokens <= budget || part.chars().nth(1).is_none())
    {
        out.push(Piece {
            start,
            end,
            block,
            tokens,
        });
        return Ok(());
    }
    let mut middle = part.len() / 2;
    while !part.is_char_boundary(middle) {
        middle += 1;
    }
    let cut = match part[..middle].rfind(char::is_whitespace) {
        Some(space) if space > 0 => space,
        _ => middle,
    };
    if cut >= part.len() {
        out.push(Piece {
            start,
            end,
            block,
            tokens: tokens.unwrap_or(budget),
        });
        return Ok(());
    }
    let rest = part[cut..].len() - part[cut..].trim_start().len();
    fit(text, start, start + cut, block, budget, count, out)?;
    fit(text, start + cut + rest, end, block, budget, count, out)
}

/// Sentence ranges of `text`: ending after `.`, `!` or `?` followed by
/// whitespace, or at a line break; leading whitespace skipped.
fn sentences(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if start.is_none() {
            if c.is_whitespace() {
                continue;
            }
            start = Some(i);
        }
        let next_is_space = chars.peek().is_none_or(|(_, n)| n.is_whitespace());
        if c == '\n' || (matches!(c, '.' | '!' | '?') && next_is_space) {
            let end = if c == '\n' { i } else { i + c.len_utf8() };
            if let Some(s) = start.take()
                && end > s
            {
                out.push((s, end));
            }
        }
    }
    if let Some(s) = start {
        let end = text.trim_end().len();
        if end > s {
            out.push((s, end));
        }
    }
    out
}

/// Byte offsets of a text as character offsets, for offsets asked in
/// ascending order (one pass over the text, however many are asked).
pub struct CharOffsets<'t> {
    text: &'t str,
    byte: usize,
    chars: usize,
}

impl<'t> CharOffsets<'t> {
    pub fn new(text: &'t str) -> Self {
        CharOffsets {
            text,
            byte: 0,
            chars: 0,
        }
    }

    /// The character offset of `byte` (a char boundary); starts over if
    /// asked for one before the last.
    pub fn at(&mut self, byte: usize) -> usize {
        if byte < self.byte {
            (self.byte, self.chars) = (0, 0);
        }
        self.chars += self.text[self.byte..byte].chars().count();
        self.byte = byte;
        self.chars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word a token.
    fn words(text: &str) -> Result<u32, ()> {
        Ok(text.split_whitespace().count() as u32)
    }

    fn doc(text: &str) -> Extracted {
        let mut e = Extracted::default();
        e.text = text.to_owned();
        let mut at = 0;
        for paragraph in text.split("\n\n") {
            let heading = paragraph.strip_prefix("# ").map(str::to_owned);
            let heading =
                heading.or_else(|| e.blocks.last().and_then(|b: &Block| b.heading.clone()));
            e.blocks.push(Block {
                start: at,
                end: at + paragraph.len(),
                page: None,
                heading,
            });
            at += paragraph.len() + 2;
        }
        e
    }

    fn texts<'a>(d: &'a Extracted, c: &[Chunk]) -> Vec<&'a str> {
        c.iter().map(|c| &d.text[c.start..c.end]).collect()
    }

    #[test]
    fn small_blocks_pack_together() {
        let d = doc("one two\n\nthree four\n\nfive six");
        let c = chunks(&d, 4, 0, &mut words).unwrap();
        assert_eq!(texts(&d, &c), ["one two\n\nthree four", "five six"]);
        assert_eq!(c[0].tokens, 4);
    }

    #[test]
    fn long_blocks_split_into_sentences_with_overlap() {
        let d = doc("A b c. D e f. G h i. J k l.");
        let c = chunks(&d, 6, 3, &mut words).unwrap();
        assert_eq!(
            texts(&d, &c),
            ["A b c. D e f.", "D e f. G h i.", "G h i. J k l."]
        );
    }

    #[test]
    fn headings_start_chunks_and_overlap_stays_inside_a_section() {
        let d = doc("# Alpha\n\nx y\n\n# Beta\n\nz w");
        let c = chunks(&d, 50, 10, &mut words).unwrap();
        assert_eq!(texts(&d, &c), ["# Alpha\n\nx y", "# Beta\n\nz w"]);
        assert_eq!(c[1].heading.as_deref(), Some("Beta"));
    }

    #[test]
    fn overlap_never_makes_a_chunk_of_overlap_alone() {
        // 3 + 1 fit; the next sentence (4) fits only without the carried 1.
        let d = doc("a b c. d. e f g h.");
        let c = chunks(&d, 4, 2, &mut words).unwrap();
        assert_eq!(texts(&d, &c), ["a b c. d.", "e f g h."]);
    }

    #[test]
    fn pages_start_chunks() {
        let mut d = doc("one\n\ntwo");
        d.blocks[1].page = Some(2);
        let c = chunks(&d, 50, 10, &mut words).unwrap();
        assert_eq!(texts(&d, &c), ["one", "two"]);
        assert_eq!(c[1].page, Some(2));
    }

    #[test]
    fn huge_texts_are_cut_without_counting_them_whole() {
        let text = "word ".repeat(10_000);
        let d = doc(text.trim_end());
        let mut longest = 0;
        let c = chunks(&d, 50, 0, &mut |t: &str| {
            longest = longest.max(t.len());
            words(t)
        })
        .unwrap();
        assert!(
            longest <= 50 * SURELY_OVER,
            "counted {longest} bytes at once"
        );
        assert!(c.len() >= 200, "{}", c.len());
    }

    #[test]
    fn overlong_sentences_are_cut_at_whitespace() {
        let d = doc("aa bb cc dd ee ff gg hh");
        let c = chunks(&d, 3, 0, &mut words).unwrap();
        assert!(c.iter().all(|c| c.tokens <= 3), "{c:?}");
        assert_eq!(texts(&d, &c).join(" "), "aa bb cc dd ee ff gg hh");
    }

    #[test]
    fn parts_denser_than_expected_are_cut_again() {
        // A character a token and no spaces (as in Chinese): every part
        // within the budget all the same.
        let text = "字".repeat(3000);
        let d = doc(&text);
        let c = chunks(&d, 50, 0, &mut |t: &str| {
            Ok::<_, ()>(t.chars().count() as u32)
        })
        .unwrap();
        assert!(
            c.iter().all(|c| c.tokens <= 50),
            "{:?}",
            c.iter().map(|c| c.tokens).max()
        );
        assert_eq!(c.iter().map(|c| c.end - c.start).sum::<usize>(), text.len());
    }

    #[test]
    fn offsets_count_characters() {
        let mut offsets = CharOffsets::new("héllo wörld");
        assert_eq!((offsets.at(3), offsets.at(10), offsets.at(1)), (2, 8, 1));
    }
}
