//! Text out of a document, per format, inside the component (each crate
//! compiles to wasm32-wasip2): PDF by `pdf-extract` (page by page), DOCX by
//! reading `word/document.xml` with `quick-xml` (paragraph styles give the
//! headings), HTML by `html2text` (as Markdown, so headings survive), CSV by
//! `csv` (a row a paragraph, each value labelled by its column), Markdown
//! and plain text as they are. The result is one text and its blocks
//! (paragraphs) with their page and the heading they sit under, which the
//! chunker splits along.

use std::io::{Cursor, Read};

use quick_xml::events::Event;

use super::sniff::Format;

/// A paragraph of the extracted text: byte offsets into
/// [`Extracted::text`], the page it is on and the heading above it.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub start: usize,
    pub end: usize,
    pub page: Option<u32>,
    pub heading: Option<String>,
}

/// A document's text, its blocks in order and its page count (PDF).
#[derive(Debug, Default)]
pub struct Extracted {
    pub text: String,
    pub blocks: Vec<Block>,
    pub pages: Option<u32>,
}

/// Longest heading kept with a chunk, in characters.
const MAX_HEADING: usize = 200;
/// Largest `word/document.xml` read from a DOCX (a zip bomb stops here).
const MAX_DOCX_XML: u64 = 64 << 20;

impl Extracted {
    /// Appends a paragraph (trimmed, without control characters other
    /// than line breaks and tabs, which PostgreSQL's text refuses or a
    /// prompt does not want; nothing if blank), separated from the
    /// previous one by a blank line.
    fn push(&mut self, paragraph: &str, page: Option<u32>, heading: Option<&str>) {
        let clean = |c: &char| !c.is_control() || matches!(c, '\n' | '\t');
        let paragraph: String = paragraph.trim().chars().filter(clean).collect();
        if paragraph.trim().is_empty() {
            return;
        }
        if !self.text.is_empty() {
            self.text.push_str("\n\n");
        }
        let start = self.text.len();
        self.text.push_str(paragraph.trim());
        self.blocks.push(Block {
            start,
            end: self.text.len(),
            page,
            heading: heading.map(|h| h.chars().filter(clean).take(MAX_HEADING).collect()),
        });
    }

    /// Appends Markdown-ish text: blank lines end paragraphs, `#` lines
    /// are headings (and paragraphs of their own).
    fn push_markdown(&mut self, text: &str, page: Option<u32>) {
        let mut heading: Option<String> = self.blocks.last().and_then(|b| b.heading.clone());
        let mut paragraph = String::new();
        let mut in_code = false;
        for line in text.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("```") {
                in_code = !in_code;
            }
            let title = (!in_code)
                .then(|| trimmed.strip_prefix('#'))
                .flatten()
                .map(|rest| rest.trim_start_matches('#'))
                .filter(|rest| rest.starts_with(' '));
            if let Some(title) = title {
                self.push(&paragraph, page, heading.as_deref());
                paragraph.clear();
                heading = Some(title.trim().to_owned());
                self.push(trimmed, page, heading.as_deref());
            } else if trimmed.is_empty() && !in_code {
                self.push(&paragraph, page, heading.as_deref());
                paragraph.clear();
            } else {
                paragraph.push_str(line);
                paragraph.push('\n');
            }
        }
        self.push(&paragraph, page, heading.as_deref());
    }
}

/// The text of `bytes`, which [`sniff`](super::sniff::sniff) found to be
/// `format`, or why it cannot be read.
pub fn extract(format: Format, bytes: &[u8]) -> Result<Extracted, String> {
    let text = || {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))
    };
    let mut out = Extracted::default();
    match format {
        Format::Text | Format::Markdown => out.push_markdown(text()?, None),
        Format::Html => {
            let markdown = html2text::from_read(text()?.as_bytes(), 10_000)
                .map_err(|e| format!("unreadable HTML: {e}"))?;
            out.push_markdown(&markdown, None);
        }
        Format::Csv => csv_rows(text()?, &mut out)?,
        Format::Docx => docx(bytes, &mut out)?,
        Format::Pdf => {
            let pages = pdf_extract::extract_text_from_mem_by_pages(bytes)
                .map_err(|e| format!("unreadable PDF: {e}"))?;
            out.pages = Some(pages.len() as u32);
            for (i, page) in pages.iter().enumerate() {
                out.push_markdown(page, Some(i as u32 + 1));
            }
        }
    }
    if out.blocks.is_empty() {
        return Err(match format {
            Format::Pdf => "the PDF has no text layer (a scan?); nothing to index".into(),
            _ => "the document holds no text".into(),
        });
    }
    Ok(out)
}

/// A row a paragraph: `column: value; column: value`.
fn csv_rows(text: &str, out: &mut Extracted) -> Result<(), String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("unreadable CSV: {e}"))?
        .iter()
        .map(str::to_owned)
        .collect();
    for (n, row) in reader.records().enumerate() {
        let row = row.map_err(|e| format!("unreadable CSV at row {}: {e}", n + 2))?;
        let line = row
            .iter()
            .enumerate()
            .filter(|(_, value)| !value.trim().is_empty())
            .map(
                |(i, value)| match headers.get(i).filter(|h| !h.is_empty()) {
                    Some(header) => format!("{header}: {value}"),
                    None => value.to_owned(),
                },
            )
            .collect::<Vec<_>>()
            .join("; ");
        out.push(&line, None, None);
    }
    Ok(())
}

/// DOCX paragraphs (`w:p`) and their runs' text (`w:t`); a paragraph whose
/// style (`w:pStyle`) is `Title` or `Heading…` is a heading.
fn docx(bytes: &[u8], out: &mut Extracted) -> Result<(), String> {
    let mut archive =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("unreadable DOCX: {e}"))?;
    let file = archive
        .by_name("word/document.xml")
        .map_err(|e| format!("unreadable DOCX: {e}"))?;
    let mut xml = String::new();
    file.take(MAX_DOCX_XML)
        .read_to_string(&mut xml)
        .map_err(|e| format!("unreadable DOCX: {e}"))?;
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut paragraph = String::new();
    let mut heading: Option<String> = None;
    let mut is_heading = false;
    let mut in_text = false;
    loop {
        match reader.read_event() {
            Err(e) => return Err(format!("unreadable DOCX: {e}")),
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => match e.name().as_ref() {
                b"w:p" => {
                    paragraph.clear();
                    is_heading = false;
                }
                b"w:t" => in_text = true,
                _ => {}
            },
            Ok(Event::Empty(e)) => match e.name().as_ref() {
                b"w:pStyle" => {
                    is_heading = e.attributes().flatten().any(|a| {
                        a.key.as_ref() == b"w:val"
                            && (a.value.starts_with(b"Heading") || a.value.as_ref() == b"Title")
                    });
                }
                b"w:tab" => paragraph.push('\t'),
                b"w:br" | b"w:cr" => paragraph.push('\n'),
                _ => {}
            },
            Ok(Event::Text(t)) if in_text => {
                paragraph.push_str(&t.decode().map_err(|e| format!("unreadable DOCX: {e}"))?);
            }
            // `&amp;`, `&#233;`…: the reader hands entities over apart.
            Ok(Event::GeneralRef(r)) if in_text => {
                let name = r.decode().map_err(|e| format!("unreadable DOCX: {e}"))?;
                let entity = format!("&{name};");
                paragraph.push_str(
                    &quick_xml::escape::unescape(&entity).unwrap_or(entity.as_str().into()),
                );
            }
            Ok(Event::End(e)) => match e.name().as_ref() {
                b"w:t" => in_text = false,
                b"w:p" => {
                    if is_heading && !paragraph.trim().is_empty() {
                        heading = Some(paragraph.trim().to_owned());
                    }
                    out.push(&paragraph, None, heading.as_deref());
                }
                _ => {}
            },
            Ok(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(e: &Extracted) -> Vec<(&str, Option<&str>)> {
        e.blocks
            .iter()
            .map(|b| (&e.text[b.start..b.end], b.heading.as_deref()))
            .collect()
    }

    #[test]
    fn markdown_blocks_carry_their_heading() {
        let e = extract(
            Format::Markdown,
            b"Intro line.\n\n# Setup\nInstall it.\nThen run.\n\n## Notes\n```\n# not a heading\n\ncode\n```\n",
        )
        .unwrap();
        assert_eq!(
            blocks(&e),
            [
                ("Intro line.", None),
                ("# Setup", Some("Setup")),
                ("Install it.\nThen run.", Some("Setup")),
                ("## Notes", Some("Notes")),
                ("```\n# not a heading\n\ncode\n```", Some("Notes")),
            ]
        );
    }

    #[test]
    fn csv_rows_are_labelled() {
        let e = extract(Format::Csv, b"code,city\nZX-41,Oslo\n,Lima\n").unwrap();
        assert_eq!(
            blocks(&e),
            [("code: ZX-41; city: Oslo", None), ("city: Lima", None)]
        );
    }

    #[test]
    fn html_keeps_headings_and_drops_scripts() {
        let e = extract(
            Format::Html,
            b"<html><head><script>alert(1)</script></head><body><h1>Fleet</h1><p>Ships &amp; boats.</p></body></html>",
        )
        .unwrap();
        assert!(e.text.contains("Ships & boats."), "{}", e.text);
        assert!(!e.text.contains("alert"), "{}", e.text);
        assert_eq!(e.blocks.last().unwrap().heading.as_deref(), Some("Fleet"));
    }

    #[test]
    fn docx_paragraphs_headings_and_entities() {
        use std::io::Write;
        let xml = r#"<w:document xmlns:w="x"><w:body>
            <w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Engines</w:t></w:r></w:p>
            <w:p><w:r><w:t>Peat &amp; coal</w:t></w:r><w:r><w:tab/><w:t xml:space="preserve"> burn.</w:t></w:r></w:p>
            </w:body></w:document>"#;
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file(
            "word/document.xml",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        zip.write_all(xml.as_bytes()).unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        let e = extract(Format::Docx, &bytes).unwrap();
        assert_eq!(
            blocks(&e),
            [
                ("Engines", Some("Engines")),
                ("Peat & coal\t burn.", Some("Engines"))
            ]
        );
    }

    #[test]
    fn empty_documents_are_refused() {
        assert!(extract(Format::Text, b"  \n\n ").is_err());
    }
}
