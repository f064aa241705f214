//! The `mail` capability: plain-text mail through an SMTP server named in
//! runtime-config `[mail]` (lettre, async, rustls). Without one the
//! capability reports `configured() == false` and `send` is `unavailable`,
//! so a component can fall back (the outbox keeps a dev mailbox instead).
//! The SMTP password comes from `LAMINA_SMTP_PASSWORD`, never a file.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use super::CapabilityView;
use super::bindings::lamina::platform::mail as wit;

/// Environment variable holding the SMTP password.
pub const PASSWORD_ENV: &str = "LAMINA_SMTP_PASSWORD";
/// Largest subject in bytes.
pub const MAX_SUBJECT: usize = 998;
/// Largest body in bytes.
pub const MAX_BODY: usize = 1 << 20;

/// `[mail]` in runtime-config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub enum MailConfig {
    /// No mail server (the default).
    #[default]
    None,
    /// An SMTP server.
    Smtp(SmtpConfig),
}

/// How to reach the SMTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub port: Option<u16>,
    /// `starttls` (default), `tls` (SMTPS), or `none` (plain text: only for
    /// a relay on this machine).
    #[serde(default)]
    pub security: Security,
    /// Login name, if the server wants one (password: `LAMINA_SMTP_PASSWORD`).
    pub username: Option<String>,
    /// The sender, e.g. `"Lamina <no-reply@example.com>"`.
    pub from: String,
    /// Longest one send may take.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Transport security.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    #[default]
    Starttls,
    Tls,
    None,
}

/// The configured mail server, if any.
pub struct Mailer {
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
}

impl Mailer {
    /// Builds the transport (it connects on first send); `Err` names the
    /// bad key.
    pub fn open(config: &MailConfig, password: Option<String>) -> anyhow::Result<Mailer> {
        let MailConfig::Smtp(smtp) = config else {
            return Ok(Mailer { smtp: None });
        };
        let from: Mailbox = smtp
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("runtime config: mail.from: {e}"))?;
        let builder = match smtp.security {
            Security::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)?,
            Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)?,
            Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
        };
        let port = smtp.port.unwrap_or(match smtp.security {
            Security::Starttls => 587,
            Security::Tls => 465,
            Security::None => 25,
        });
        let mut builder = builder.port(port).timeout(Some(smtp.timeout));
        if let Some(username) = &smtp.username {
            let Some(password) = password else {
                anyhow::bail!("runtime config: mail.username is set but {PASSWORD_ENV} is not");
            };
            builder = builder.credentials(Credentials::new(username.clone(), password));
        }
        Ok(Mailer {
            smtp: Some((builder.build(), from)),
        })
    }

    /// Whether there is a server to send through.
    pub fn configured(&self) -> bool {
        self.smtp.is_some()
    }

    /// Sends one plain-text message.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), wit::Error> {
        let Some((transport, from)) = &self.smtp else {
            return Err(wit::Error::Unavailable(
                "no mail server is configured (runtime-config [mail])".to_owned(),
            ));
        };
        if subject.len() > MAX_SUBJECT || body.len() > MAX_BODY {
            return Err(wit::Error::Invalid(format!(
                "the subject may have {MAX_SUBJECT} bytes and the body {MAX_BODY}"
            )));
        }
        let to: Mailbox = to.parse().map_err(|e| {
            wit::Error::Invalid(format!("bad recipient `{}`: {e}", to.escape_debug()))
        })?;
        let message = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(subject)
            .body(body.to_owned())
            .map_err(|e| wit::Error::Invalid(e.to_string()))?;
        transport.send(message).await.map(drop).map_err(|e| {
            tracing::warn!("mail not sent: {e}");
            wit::Error::Unavailable(format!("the mail server did not take the message: {e}"))
        })
    }
}

impl wit::Host for CapabilityView<'_> {
    async fn configured(&mut self) -> wasmtime::Result<bool> {
        Ok(self.ctx.grants.mail && self.ctx.shared.mail.configured())
    }

    async fn send(&mut self, message: wit::Message) -> wasmtime::Result<Result<(), wit::Error>> {
        if !self.ctx.grants.mail {
            return Ok(Err(wit::Error::AccessDenied(
                "sending mail is not granted to this component (set `mail = true` in spin.toml)"
                    .to_owned(),
            )));
        }
        Ok(self
            .ctx
            .shared
            .mail
            .send(&message.to, &message.subject, &message.body)
            .await)
    }
}
