//! Serving: one session over a transport until it ends, and a TCP
//! listener that serves one host after another.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use super::session::{Next, Session};
use super::{PRE_HELLO_MAX_PAYLOAD, ServerConfig, ServerError, SessionEnd};
use crate::proto::{ErrorCode, MAX_PAYLOAD_BYTES, ProtoError, Request, Response};
use crate::transport::tcp::TcpServer;
use crate::transport::{Transport, TransportError};

fn send(transport: &mut dyn Transport, response: Response) -> Result<(), ServerError> {
    let frame = match response.into_frame() {
        Ok(frame) => frame,
        // An output too large for a frame still gets an answer.
        Err(e) => Response::error(ErrorCode::Internal, format!("cannot encode the reply: {e}"))
            .into_frame()?,
    };
    transport.send(&frame)?;
    Ok(())
}

/// Serves one host over `transport` until it closes, is refused, times out
/// or asks for shutdown.
pub fn serve_session(
    transport: &mut dyn Transport,
    config: &ServerConfig,
) -> Result<SessionEnd, ServerError> {
    let peer = transport.peer();
    let mut session = Session::new(config.clone(), peer.clone());
    // Until Hello: small frames only, and one deadline for the whole
    // handshake. Not every transport can time out (stdio, whose peer is the
    // process that started the agent); that is fine.
    transport.set_max_payload(PRE_HELLO_MAX_PAYLOAD);
    if let Some(t) = config.hello_timeout {
        let _ = transport.set_deadline(Some(Instant::now() + t));
    }
    loop {
        let frame = match transport.recv() {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                tracing::info!("{peer}: closed the link");
                return Ok(SessionEnd::Closed);
            }
            Err(TransportError::TimedOut) => {
                if session.greeted() {
                    tracing::info!("{peer}: silent too long; closing");
                } else {
                    tracing::info!("{peer}: no accepted Hello within the hello timeout; closing");
                }
                return Ok(SessionEnd::TimedOut);
            }
            // Bytes that were never a frame are not a request: answering
            // them would put every later reply one off. Log and go on.
            Err(TransportError::Proto(e @ ProtoError::Garbage { .. })) => {
                tracing::warn!("{peer}: {e}");
                continue;
            }
            Err(TransportError::Proto(e)) => {
                tracing::warn!("{peer}: {e}");
                // The peer may be gone already (a frame cut by a hang-up);
                // the next recv says so, so a failed reply is not fatal.
                if let Err(send_err) = send(transport, Response::error(e.code(), e.to_string())) {
                    tracing::debug!("{peer}: cannot report the bad frame: {send_err}");
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let kind = frame.kind;
        let request = match Request::from_frame(frame) {
            Ok(request) => request,
            Err(e) => {
                tracing::warn!("{peer}: kind {kind:#04x}: {e}");
                send(transport, Response::error(e.code(), e.to_string()))?;
                continue;
            }
        };
        tracing::debug!("{peer}: {}", request.kind().name());
        let was_greeted = session.greeted();
        let (response, next) = session.handle(request);
        // Logged after the reply is on its way: writing the line (and the
        // host relaying it) used to sit inside the host's round trip.
        let done = match &response {
            Response::Stats(s) => Some(format!(
                "{} runs, median {:.3} ms (p10 {:.3}, p90 {:.3}), {} thread(s){}",
                s.runs,
                s.median_ms,
                s.p10_ms,
                s.p90_ms,
                s.threads,
                s.ratio_median
                    .map_or(String::new(), |r| format!(", {r:.3}× the reference"))
            )),
            _ => None,
        };
        send(transport, response)?;
        if let Some(done) = done {
            tracing::info!("{peer}: bench: {done}");
        }
        if !was_greeted && session.greeted() {
            transport.set_max_payload(MAX_PAYLOAD_BYTES);
            let _ = transport.set_deadline(None);
            let _ = transport.set_read_timeout(config.idle_timeout);
        }
        if let Next::Close(end) = next {
            return Ok(end);
        }
    }
}

/// Serves hosts one after another until one asks for shutdown. A host that
/// misbehaves, drops or even makes a session panic is logged and the next
/// one is served.
pub fn serve_tcp(server: &TcpServer, config: &ServerConfig) -> Result<(), ServerError> {
    loop {
        let mut transport = match server.accept() {
            Ok(transport) => transport,
            Err(e) => {
                // Transient (ECONNABORTED, EMFILE): back off a little, go on.
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let peer = transport.peer();
        tracing::info!("{peer}: connected");
        // A host that stops reading must not wedge the agent either.
        if let Err(e) = transport.set_write_timeout(config.idle_timeout) {
            tracing::warn!("{peer}: {e}");
        }
        match catch_unwind(AssertUnwindSafe(|| serve_session(&mut transport, config))) {
            Ok(Ok(SessionEnd::Shutdown)) => return Ok(()),
            Ok(Ok(end)) => tracing::info!("{peer}: session ended ({end:?})"),
            Ok(Err(e)) => tracing::warn!("{peer}: session failed: {e}"),
            Err(_) => tracing::error!("{peer}: session panicked; serving the next host"),
        }
    }
}
