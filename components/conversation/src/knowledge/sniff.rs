//! What an uploaded file is, from its bytes: a PDF by its `%PDF-` header, a
//! DOCX by the `word/document.xml` inside its zip, text by being UTF-8
//! without NULs (then HTML by its markup, CSV and Markdown by the name's
//! extension, which only chooses among text kinds). Anything else, an
//! executable dressed as `notes.txt` included, is refused. And what an
//! uploaded file is called, made safe to show and to send back in a
//! `Content-Disposition`.

use std::io::Cursor;

/// A format the service extracts text from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pdf,
    Docx,
    Markdown,
    Text,
    Html,
    Csv,
}

impl Format {
    /// The name stored and shown (`conv_documents.format`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Pdf => "pdf",
            Format::Docx => "docx",
            Format::Markdown => "markdown",
            Format::Text => "text",
            Format::Html => "html",
            Format::Csv => "csv",
        }
    }

    /// The stored name read back.
    pub fn parse(name: &str) -> Option<Format> {
        [
            Format::Pdf,
            Format::Docx,
            Format::Markdown,
            Format::Text,
            Format::Html,
            Format::Csv,
        ]
        .into_iter()
        .find(|f| f.name() == name)
    }

    /// The media type a download is served as.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Pdf => "application/pdf",
            Format::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            Format::Markdown => "text/markdown; charset=utf-8",
            Format::Text => "text/plain; charset=utf-8",
            // Served as text: an uploaded page never runs in the app's origin.
            Format::Html => "text/plain; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// The format of `bytes` uploaded as `name`, or why it is refused.
pub fn sniff(name: &str, bytes: &[u8]) -> Result<Format, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    if bytes.starts_with(b"%PDF-") {
        return Ok(Format::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        let archive = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| format!("a damaged zip archive: {e}"))?;
        return if archive.index_for_name("word/document.xml").is_some() {
            Ok(Format::Docx)
        } else {
            Err("a zip archive that is not a Word (DOCX) document".into())
        };
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(text) = std::str::from_utf8(text)
        && !text.contains('\0')
    {
        return Ok(text_kind(name, text));
    }
    Err(match infer::get(bytes) {
        Some(kind) => format!(
            "{} ({}) is not a supported document; upload PDF, DOCX, Markdown, text, HTML or CSV",
            kind.mime_type(),
            kind.extension()
        ),
        None => "binary content that is not a supported document; upload PDF, DOCX, Markdown, text (UTF-8), HTML or CSV".into(),
    })
}

/// Which kind of text: HTML if it starts as markup does, else by extension.
fn text_kind(name: &str, text: &str) -> Format {
    let head: String = text
        .trim_start()
        .chars()
        .take(64)
        .collect::<String>()
        .to_ascii_lowercase();
    if head.starts_with("<!doctype html") || head.starts_with("<html") {
        return Format::Html;
    }
    let extension = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "md" | "markdown" => Format::Markdown,
        "csv" => Format::Csv,
        "html" | "htm" => Format::Html,
        _ => Format::Text,
    }
}

/// Longest stored file name, in characters.
pub const MAX_NAME: usize = 200;

/// `name` as stored: its last path segment (no `..`, `/` or `\` survives),
/// control characters and quotes dropped, no leading dots, at most
/// [`MAX_NAME`] characters; `document` when nothing is left.
pub fn file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | ':' | '|' | '?' | '*'))
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').trim();
    let short: String = trimmed.chars().take(MAX_NAME).collect();
    if short.is_empty() {
        "document".into()
    } else {
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_the_bytes() {
        assert_eq!(sniff("a.txt", b"%PDF-1.7\n..."), Ok(Format::Pdf));
        assert_eq!(sniff("a.pdf", b"# Title\n"), Ok(Format::Text));
        assert_eq!(sniff("a.md", b"# Title\n"), Ok(Format::Markdown));
        assert_eq!(sniff("a.csv", b"a,b\n1,2\n"), Ok(Format::Csv));
        assert_eq!(sniff("a.txt", b"  <!DOCTYPE html><p>x"), Ok(Format::Html));
        let exe = sniff(
            "notes.txt",
            b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff",
        );
        assert!(exe.unwrap_err().contains("not a supported"));
        assert!(sniff("a.txt", b"\x7fELF\x02\x01\x01\0\0\0").is_err());
        assert!(sniff("a.txt", b"").is_err());
        assert!(sniff("a.docx", b"PK\x03\x04garbage").is_err());
    }

    #[test]
    fn names_cannot_escape() {
        assert_eq!(file_name("../../etc/passwd"), "passwd");
        assert_eq!(file_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(file_name(".."), "document");
        assert_eq!(file_name(".env"), "env");
        assert_eq!(file_name("a\"b\r\n.txt"), "ab.txt");
        assert_eq!(file_name(&"x".repeat(500)).len(), MAX_NAME);
    }
}
