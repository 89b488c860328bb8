//! The service's log output (stderr): text or one JSON object per line, with every field value escaped so that
//! text from the network (release titles, torrent file names, error messages quoting them) can never start a line
//! of its own or drive the terminal.
//!
//! Escaping happens in the formatters, not at call sites, so every field of every line is covered, including
//! fields nobody remembered to be untrusted: the text format's field formatter ([`EscapedFields`]) writes control
//! characters (newlines, carriage returns, tabs, ESC, DEL, C1) and the Unicode line and paragraph separators as
//! visible escapes (`\n`, `\u{1b}`); the JSON format escapes control characters as JSON requires, and its writer
//! ([`JsonLineWriter`]) also escapes DEL, C1 and the separators, which JSON allows raw but some line readers split
//! on. ANSI colours are used only when stderr is a terminal (and `NO_COLOR` is not set).

use std::fmt::{self, Write as _};
use std::io::{self, IsTerminal};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (`2026-01-01T00:00:00Z  INFO target: message key=value`).
    Text,
    /// One JSON object per line, with the spans.
    Json,
}

/// Installs the global subscriber: `RUST_LOG` sets the filter (default `info`), output to stderr.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .fmt_fields(EscapedFields)
            .with_ansi(colours_wanted(io::stderr().is_terminal(), std::env::var_os("NO_COLOR")))
            .with_writer(io::stderr)
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).with_writer(JsonLineWriter::stderr).init(),
    }
}

/// Colours only on a terminal, and never when `NO_COLOR` is set to something (<https://no-color.org>).
fn colours_wanted(is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// Whether `c` must not appear raw in a log line: it could end the line (`\n`, `\r`, NEL, the Unicode separators)
/// or drive a terminal (ESC, the other C0 and C1 controls, DEL).
pub fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// `text` with every character of [`needs_escape`] written as a visible escape (`\n`, `\r`, `\t`, `\u{1b}`).
pub fn escape_control(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let _ = Escaping(&mut out).write_str(text);
    out
}

/// A `fmt::Write` that escapes what it is given before passing it on.
struct Escaping<W>(W);

impl<W: fmt::Write> fmt::Write for Escaping<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some((at, c)) = rest.char_indices().find(|(_, c)| needs_escape(*c)) {
            self.0.write_str(rest.get(..at).unwrap_or_default())?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                other => write!(self.0, "\\u{{{:x}}}", u32::from(other))?,
            }
            rest = rest.get(at + c.len_utf8()..).unwrap_or_default();
        }
        self.0.write_str(rest)
    }
}

/// The text format's field formatter: `message key=value ...` like tracing-subscriber's default, with every value
/// (and the message) escaped by [`escape_control`]. String values are quoted as the default does.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor { writer, result: Ok(()), empty: true };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'writer> {
    writer: Writer<'writer>,
    result: fmt::Result,
    empty: bool,
}

impl EscapingVisitor<'_> {
    fn write_field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        let name = field.name();
        // `log` crate records bridged by tracing-log carry their metadata as fields; it is already on the line.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let separator = if self.empty { "" } else { " " };
        self.empty = false;
        let writer = &mut self.writer;
        self.result = (|| {
            writer.write_str(separator)?;
            if name != "message" {
                writer.write_str(name.strip_prefix("r#").unwrap_or(name))?;
                writer.write_char('=')?;
            }
            Escaping(&mut *writer).write_fmt(value)
        })();
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write_field(field, format_args!("{value}"));
        } else {
            self.write_field(field, format_args!("{value:?}"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.write_field(field, format_args!("{text}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write_field(field, format_args!("{value:?}"));
    }
}

/// The JSON format's writer: passes each line to `inner`, with DEL, C1 controls and U+2028/U+2029 (which JSON
/// strings may hold raw) written as `\uXXXX` escapes. In a JSON line these characters can only be inside strings,
/// so the line stays the same JSON value.
pub struct JsonLineWriter<W> {
    inner: W,
}

impl JsonLineWriter<io::Stderr> {
    /// A writer to stderr (the [`MakeWriter`] of the JSON format).
    pub fn stderr() -> Self {
        JsonLineWriter { inner: io::stderr() }
    }
}

impl<W: io::Write> JsonLineWriter<W> {
    pub fn new(inner: W) -> Self {
        JsonLineWriter { inner }
    }
}

impl<W: io::Write> io::Write for JsonLineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // JSON itself escapes C0 controls; the trailing newline is the line's end.
        let raw_in_json = |c: char| c == '\u{7f}' || (needs_escape(c) && !c.is_ascii_control());
        let text = String::from_utf8_lossy(buf);
        if !text.chars().any(raw_in_json) {
            self.inner.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut escaped = String::with_capacity(text.len() + 16);
        for c in text.chars() {
            if raw_in_json(c) {
                let _ = write!(escaped, "\\u{:04x}", u32::from(c));
            } else {
                escaped.push(c);
            }
        }
        self.inner.write_all(escaped.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<'a> MakeWriter<'a> for JsonLineWriter<io::Stderr> {
    type Writer = JsonLineWriter<io::StderrLock<'a>>;

    fn make_writer(&'a self) -> Self::Writer {
        JsonLineWriter { inner: self.inner.lock() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn control_characters_and_separators_become_visible_escapes() {
        assert_eq!(
            escape_control("a\nb\r\tc\u{1b}[31m\u{7f}\u{85}\u{2028}é"),
            "a\\nb\\r\\tc\\u{1b}[31m\\u{7f}\\u{85}\\u{2028}é"
        );
        assert_eq!(escape_control("plain text"), "plain text");
    }

    #[test]
    fn colours_follow_the_terminal_and_no_color() {
        assert!(colours_wanted(true, None));
        assert!(!colours_wanted(false, None));
        assert!(!colours_wanted(true, Some("1".into())));
        assert!(colours_wanted(true, Some("".into())));
    }

    /// Collects what the text formatter writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_field_of_a_text_line_is_escaped() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        let forged = "x\n2026-01-01T00:00:00Z ERROR forged";
        let error = std::io::Error::other(forged.to_string());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("ticket", name = %forged);
            let _entered = span.enter();
            tracing::warn!(title = %forged, quoted = forged, error = &error as &dyn std::error::Error, "got {forged}");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(text.matches("\\n2026-01-01T00:00:00Z ERROR forged").count(), 5, "{text}");
        assert!(text.contains("title=x\\n2026"), "{text}");
        assert!(text.contains("quoted=\"x\\n2026"), "{text}");
    }

    #[test]
    fn json_lines_escape_what_json_allows_raw() {
        let mut out = Vec::new();
        let mut writer = JsonLineWriter::new(&mut out);
        io::Write::write_all(&mut writer, "{\"t\":\"a\u{2028}b\u{85}c\u{7f}\"}\n".as_bytes()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "{\"t\":\"a\\u2028b\\u0085c\\u007f\"}\n");
        let value: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(value["t"], "a\u{2028}b\u{85}c\u{7f}");
    }
}
