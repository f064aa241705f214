//! Sending mail through the host's SMTP server, for a component granted
//! `mail = true`.

use crate::platform::mail;

pub use mail::{Error, Message, configured, send};
