//! A plain HTTP/1.1 client for the benchmarks, so they measure the server
//! rather than a client library: one connection per request, the body
//! handed over line by line as it arrives (NDJSON, Server-Sent Events).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use serde_json::Value;

use crate::Result;

/// Sends `method path` (with a bearer token and a body if given) and
/// calls `line` for each line of a 2xx response as it arrives (the last
/// one too, without its newline); an error for any other status.
pub fn request_lines(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<(&str, &[u8])>,
    mut line: impl FnMut(&str) -> Result,
) -> Result {
    let authorization = bearer.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let (content_type, body) = body.unwrap_or(("application/json", b""));
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {content_type}\r\n\
         {authorization}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .map_err(|e| e.to_string())?;
    stream.write_all(body).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).map_err(|e| e.to_string())?;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).map_err(|e| e.to_string())?;
        if header.trim().is_empty() {
            break;
        }
        chunked |= header
            .to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked");
    }
    if !status
        .split(' ')
        .nth(1)
        .is_some_and(|code| code.starts_with('2'))
    {
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        return Err(format!("{method} {path}: {} {rest}", status.trim()));
    }
    let mut pending = Vec::new();
    let mut feed = |bytes: &[u8], pending: &mut Vec<u8>| -> Result {
        pending.extend_from_slice(bytes);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let text = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..=end);
            line(&text)?;
        }
        Ok(())
    };
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).map_err(|e| e.to_string())?;
            let size = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
            if size == 0 {
                break;
            }
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk).map_err(|e| e.to_string())?;
            feed(&chunk[..size], &mut pending)?;
        }
    } else {
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).map_err(|e| e.to_string())?;
        feed(&rest, &mut pending)?;
    }
    if !pending.is_empty() {
        line(&String::from_utf8_lossy(&pending))?;
    }
    Ok(())
}

/// POSTs JSON and calls `line` for each JSON line of the response.
pub fn post_ndjson(
    port: u16,
    path: &str,
    bearer: Option<&str>,
    body: &Value,
    mut line: impl FnMut(&Value) -> Result,
) -> Result {
    let body = body.to_string();
    request_lines(
        port,
        "POST",
        path,
        bearer,
        Some(("application/json", body.as_bytes())),
        |text| {
            if text.trim().is_empty() {
                return Ok(());
            }
            line(&serde_json::from_str(text).map_err(|e| e.to_string())?)
        },
    )
}

/// Sends a request and returns the whole body as JSON (`null` if empty).
pub fn call_json(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> Result<Value> {
    let mut text = String::new();
    request_lines(port, method, path, bearer, body, |line| {
        text.push_str(line);
        text.push('\n');
        Ok(())
    })?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| format!("{method} {path}: {e}"))
}
