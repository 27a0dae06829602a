//! Voicemail e-mail notification: one message per new voicemail, with the
//! WAV attached, sent through the office's SMTP server (RFC 5321) with `lettre`.

use std::path::Path;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::callflow::Smtp;

/// Why a notification was not sent: the configuration (an address that does not
/// parse) or the SMTP server (unreachable, refused).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// A bad address in the office file.
    #[error("bad address {0:?} in the office file")]
    Address(String),
    /// The WAV file could not be read.
    #[error("cannot read the message: {0}")]
    File(#[from] std::io::Error),
    /// Building the message failed.
    #[error("cannot build the e-mail: {0}")]
    Build(String),
    /// The SMTP server did not take it.
    #[error("SMTP server {0}: {1}")]
    Smtp(String, String),
}

/// Sends "new voicemail in `mailbox` from `caller`" to `to` with `wav` attached.
pub async fn send_voicemail(
    smtp: &Smtp,
    to: &[String],
    mailbox: &str,
    caller: &str,
    secs: f64,
    wav: &Path,
) -> Result<(), MailError> {
    let parse = |a: &str| -> Result<Mailbox, MailError> {
        a.parse().map_err(|_| MailError::Address(a.to_owned()))
    };
    let mut b = Message::builder()
        .from(parse(&smtp.from)?)
        .subject(format!("New voicemail for {mailbox} from {caller}"));
    for t in to {
        b = b.to(parse(t)?);
    }
    let data = std::fs::read(wav)?;
    let name = wav
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "message.wav".into());
    let wav_type = ContentType::parse("audio/wav").map_err(|e| MailError::Build(e.to_string()))?;
    let email = b
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(format!(
                    "{caller} left a message of {secs:.0} seconds in mailbox {mailbox}.\n\
                     The recording is attached.\n"
                )))
                .singlepart(Attachment::new(name).body(data, wav_type)),
        )
        .map_err(|e| MailError::Build(e.to_string()))?;
    let server = format!("{}:{}", smtp.host, smtp.port);
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        .port(smtp.port)
        .timeout(Some(std::time::Duration::from_secs(20)))
        .build();
    transport
        .send(email)
        .await
        .map_err(|e| MailError::Smtp(server, e.to_string()))?;
    Ok(())
}
