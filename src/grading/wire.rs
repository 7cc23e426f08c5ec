//! Grading connections: the PostgreSQL protocol spoken directly (its messages from
//! postgres-protocol), so that a run is one write answered with one flush. tokio-postgres ends
//! each request with a `Sync` of its own, which costs the server a flush and us a wakeup, and
//! closes each prepared statement with another: a run's transaction start, parse check and
//! statement took four. Administration stays on tokio-postgres.
use std::io;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::{self, sasl};
use postgres_protocol::message::backend::{ErrorFields, Header, Message};
use postgres_protocol::message::frontend;
use rustls::pki_types::ServerName;
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_postgres::error::SqlState;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An error the server reported.
#[derive(Debug, Clone)]
pub struct ServerError {
    pub severity: String,
    pub code: SqlState,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{}: {}", .0.severity, .0.message)]
    Server(ServerError),
    #[error("{0}")]
    Io(#[from] io::Error),
    /// What the server sent does not read as UTF-8 text where text belongs.
    #[error("{0}")]
    Unreadable(String),
    /// A message out of place, or an authentication this client does not do.
    #[error("{0}")]
    Protocol(String),
}

impl WireError {
    pub fn server(&self) -> Option<&ServerError> {
        match self {
            WireError::Server(e) => Some(e),
            _ => None,
        }
    }
}

/// Bytes that must be text.
pub fn text(bytes: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(bytes).map_err(|e| WireError::Unreadable(e.to_string()))
}

/// A message that does not read: its text not UTF-8 (the statement's doing, as any text it
/// returns), or its framing broken (the server's).
pub fn framing(e: io::Error) -> WireError {
    match e
        .get_ref()
        .is_some_and(|inner| inner.is::<std::str::Utf8Error>())
    {
        true => WireError::Unreadable(e.to_string()),
        false => WireError::Protocol(e.to_string()),
    }
}

pub fn server_error(mut fields: ErrorFields<'_>) -> WireError {
    let (mut severity, mut code, mut message) = (None, None, None);
    loop {
        let field = match fields.next() {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return framing(e),
        };
        let value = match text(field.value_bytes()) {
            Ok(value) => value.to_string(),
            Err(e) => return e,
        };
        match field.type_() {
            // 'V' is never translated; 'S' may be.
            b'V' => severity = Some(value),
            b'S' => severity = severity.or(Some(value)),
            b'C' => code = Some(SqlState::from_code(&value)),
            b'M' => message = Some(value),
            _ => {}
        }
    }
    match (severity, code, message) {
        (Some(severity), Some(code), Some(message)) => WireError::Server(ServerError {
            severity,
            code,
            message,
        }),
        _ => WireError::Protocol("an error response without its severity, code or message".into()),
    }
}

/// Asks the server for TLS and starts it on `stream`; the stream, and the hash of the server's
/// certificate for SCRAM's channel binding (`tls-server-end-point`, as libpq), if it has one.
pub async fn start_tls<S>(
    mut stream: S,
    tls: &tokio_rustls::TlsConnector,
    host: &str,
) -> Result<(Box<dyn Io>, Option<Vec<u8>>), WireError>
where
    S: Io + 'static,
{
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    stream.write_all(&request).await?;
    if stream.read_u8().await? != b'S' {
        return Err(WireError::Protocol("the server does not accept TLS".into()));
    }
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| WireError::Protocol(format!("TLS server name {host}: {e}")))?;
    let stream = tls.connect(name, stream).await?;
    let end_point = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certificates| certificates.first())
        .and_then(|certificate| end_point(certificate.as_ref()));
    Ok((Box::new(stream), end_point))
}

/// RFC 5929's `tls-server-end-point`: the certificate hashed with its signature's hash, SHA-256
/// at least. None for a signature with no hash of its own (Ed25519, RSA-PSS), as libpq.
fn end_point(certificate: &[u8]) -> Option<Vec<u8>> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE { OID, .. }, .. }
    let (_, contents) = der(certificate, 0x30)?;
    let (rest, _) = der(contents, 0x30)?; // tbsCertificate
    let (_, algorithm) = der(rest, 0x30)?;
    let (_, oid) = der(algorithm, 0x06)?;
    // 1.2.840.113549.1.1.{5,11,12,13}: RSA with SHA-1/256/384/512;
    // 1.2.840.10045.4.3.{2,3,4}: ECDSA with SHA-256/384/512.
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    let bits = match oid.split_last()? {
        (5 | 11, prefix) if prefix == RSA => 256,
        (12, prefix) if prefix == RSA => 384,
        (13, prefix) if prefix == RSA => 512,
        (2, prefix) if prefix == ECDSA => 256,
        (3, prefix) if prefix == ECDSA => 384,
        (4, prefix) if prefix == ECDSA => 512,
        _ => return None,
    };
    Some(match bits {
        256 => sha2::Sha256::digest(certificate).to_vec(),
        384 => sha2::Sha384::digest(certificate).to_vec(),
        _ => sha2::Sha512::digest(certificate).to_vec(),
    })
}

/// One DER element of type `tag` at the start of `input`: (what follows it, its contents).
fn der(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&length, mut rest) = rest.split_first()?;
    let length = match length {
        n if n < 0x80 => n as usize,
        n => {
            let count = (n & 0x7f) as usize;
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes.iter().fold(0usize, |n, b| n << 8 | *b as usize)
        }
    };
    (rest.len() >= length).then(|| (&rest[length..], &rest[..length]))
}

/// A logged-in session.
pub struct Conn {
    io: Box<dyn Io>,
    input: BytesMut,
    /// Messages queued for the next `send`.
    pub output: BytesMut,
    pid: i32,
}

impl Conn {
    /// Logs in: `params` are the startup parameters (user, database, options...);
    /// `end_point` is the TLS certificate's hash for channel binding, if any.
    pub async fn connect(
        io: Box<dyn Io>,
        params: &[(&str, &str)],
        password: Option<&[u8]>,
        end_point: Option<Vec<u8>>,
    ) -> Result<Conn, WireError> {
        let mut conn = Conn {
            io,
            input: BytesMut::with_capacity(8192),
            output: BytesMut::with_capacity(1024),
            pid: 0,
        };
        frontend::startup_message(params.iter().copied(), &mut conn.output)?;
        conn.send().await?;
        let user = params
            .iter()
            .find(|(name, _)| *name == "user")
            .map_or("", |(_, user)| user);
        let missing = || WireError::Protocol("the server asks for a password".into());
        loop {
            match conn.raw().await? {
                Message::AuthenticationOk => break,
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password.ok_or_else(missing)?, &mut conn.output)?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = authentication::md5_hash(
                        user.as_bytes(),
                        password.ok_or_else(missing)?,
                        body.salt(),
                    );
                    frontend::password_message(hash.as_bytes(), &mut conn.output)?;
                }
                Message::AuthenticationSasl(body) => {
                    let password = password.ok_or_else(missing)?;
                    let (mut scram, mut plus) = (false, false);
                    let mut mechanisms = body.mechanisms();
                    while let Some(mechanism) = mechanisms.next().map_err(framing)? {
                        match mechanism {
                            sasl::SCRAM_SHA_256 => scram = true,
                            sasl::SCRAM_SHA_256_PLUS => plus = true,
                            _ => {}
                        }
                    }
                    // As libpq's channel_binding=prefer.
                    let (binding, mechanism) = match (plus, end_point.clone()) {
                        (true, Some(hash)) => (
                            sasl::ChannelBinding::tls_server_end_point(hash),
                            sasl::SCRAM_SHA_256_PLUS,
                        ),
                        (_, Some(_)) if scram => {
                            (sasl::ChannelBinding::unrequested(), sasl::SCRAM_SHA_256)
                        }
                        (_, None) if scram || plus => {
                            (sasl::ChannelBinding::unsupported(), sasl::SCRAM_SHA_256)
                        }
                        _ => return Err(WireError::Protocol("unsupported SASL mechanism".into())),
                    };
                    conn.scram(password, binding, mechanism).await?;
                    continue;
                }
                Message::ErrorResponse(body) => return Err(server_error(body.fields())),
                _ => {
                    return Err(WireError::Protocol(
                        "unsupported authentication method".into(),
                    ))
                }
            }
            conn.send().await?;
        }
        loop {
            match conn.next().await? {
                Message::BackendKeyData(body) => conn.pid = body.process_id(),
                Message::ReadyForQuery(_) => return Ok(conn),
                Message::ErrorResponse(body) => return Err(server_error(body.fields())),
                _ => return Err(WireError::Protocol("unexpected message at start-up".into())),
            }
        }
    }

    async fn scram(
        &mut self,
        password: &[u8],
        binding: sasl::ChannelBinding,
        mechanism: &str,
    ) -> Result<(), WireError> {
        let mut scram = sasl::ScramSha256::new(password, binding);
        frontend::sasl_initial_response(mechanism, scram.message(), &mut self.output)?;
        self.send().await?;
        match self.raw().await? {
            Message::AuthenticationSaslContinue(body) => scram.update(body.data())?,
            Message::ErrorResponse(body) => return Err(server_error(body.fields())),
            _ => return Err(WireError::Protocol("unexpected message in SCRAM".into())),
        }
        frontend::sasl_response(scram.message(), &mut self.output)?;
        self.send().await?;
        match self.raw().await? {
            Message::AuthenticationSaslFinal(body) => scram.finish(body.data())?,
            Message::ErrorResponse(body) => return Err(server_error(body.fields())),
            _ => return Err(WireError::Protocol("unexpected message in SCRAM".into())),
        }
        Ok(())
    }

    /// The backend's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Writes the queued messages.
    pub async fn send(&mut self) -> io::Result<()> {
        self.io.write_all(&self.output).await?;
        self.output.clear();
        self.io.flush().await
    }

    /// The next message (notices, parameter changes and notifications passed over).
    pub async fn next(&mut self) -> Result<Message, WireError> {
        loop {
            match self.raw().await? {
                Message::NoticeResponse(_)
                | Message::ParameterStatus(_)
                | Message::NotificationResponse(_) => {}
                message => return Ok(message),
            }
        }
    }

    async fn raw(&mut self) -> Result<Message, WireError> {
        loop {
            // Parsed once whole: parsing reserves the length its header claims, and the byte
            // budget underneath bounds only what arrives.
            let header = Header::parse(&self.input).map_err(framing)?;
            if header.is_some_and(|h| self.input.len() > h.len() as usize) {
                if let Some(message) = Message::parse(&mut self.input).map_err(framing)? {
                    return Ok(message);
                }
            }
            if self.io.read_buf(&mut self.input).await? == 0 {
                return Err(WireError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Polls `io` once, without waiting.
    fn poll_now<T>(
        &mut self,
        poll: impl FnOnce(
            std::pin::Pin<&mut Box<dyn Io>>,
            &mut std::task::Context<'_>,
        ) -> std::task::Poll<T>,
    ) -> std::task::Poll<T> {
        let waker = futures_util::task::noop_waker();
        poll(
            std::pin::Pin::new(&mut self.io),
            &mut std::task::Context::from_waker(&waker),
        )
    }

    /// Whether the server closed the connection, or sent anything unasked (a termination's
    /// error): either way it is not to be used. Does not wait.
    pub fn closed(&mut self) -> bool {
        if !self.input.is_empty() {
            return true;
        }
        let mut byte = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        !self
            .poll_now(|io, cx| io.poll_read(cx, &mut buf))
            .is_pending()
    }
}

impl Drop for Conn {
    /// Says goodbye if the socket takes it at once: the server then ends the session without
    /// logging a lost client.
    fn drop(&mut self) {
        let mut terminate = BytesMut::new();
        frontend::terminate(&mut terminate);
        let _ = self.poll_now(|io, cx| io.poll_write(cx, &terminate));
        let _ = self.poll_now(|io, cx| io.poll_flush(cx));
    }
}
