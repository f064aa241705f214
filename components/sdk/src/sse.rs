//! Server-Sent Events: numbered `event:`/`data:` frames and comment
//! heartbeats on a streamed response, as browsers' `EventSource` and
//! fetch-based readers expect them. A failed write means the client is
//! gone; the stream remembers it, so a producer can go on to its end
//! (storing what it made) without writing any more.

use wasip2::http::types::ResponseOutparam;

use crate::BodyWriter;

/// A `text/event-stream` response in progress.
pub struct EventStream {
    body: BodyWriter,
    next_id: u64,
    connected: bool,
}

impl EventStream {
    /// Sends 200 with the event-stream headers.
    pub fn start(out: ResponseOutparam) -> EventStream {
        let body = BodyWriter::start(
            out,
            200,
            &[
                ("content-type", "text/event-stream"),
                ("cache-control", "no-cache"),
                // Tells proxies such as nginx not to buffer the stream.
                ("x-accel-buffering", "no"),
            ],
        );
        EventStream {
            body,
            next_id: 1,
            connected: true,
        }
    }

    /// Sends `event: name` with `data` (one line of JSON) and the next
    /// `id:`; false once the client is gone.
    pub fn event(&mut self, name: &str, data: &serde_json::Value) -> bool {
        let frame = format!("id: {}\nevent: {name}\ndata: {data}\n\n", self.next_id);
        self.next_id += 1;
        self.write(frame.as_bytes())
    }

    /// Sends a comment line, which keeps the connection (and proxies'
    /// idle timers) alive without an event.
    pub fn heartbeat(&mut self) -> bool {
        self.write(b": heartbeat\n\n")
    }

    /// Whether every write so far reached the client.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Ends the stream.
    pub fn finish(self) {
        self.body.finish();
    }

    fn write(&mut self, bytes: &[u8]) -> bool {
        if self.connected && self.body.send(bytes).is_err() {
            self.connected = false;
        }
        self.connected
    }
}
