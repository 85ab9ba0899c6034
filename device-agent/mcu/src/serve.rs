//! The request loop: bytes from the link into the shared `FrameDecoder`,
//! requests to the [`Agent`], replies back as frames. Damaged input is
//! answered with an error frame (garbage is not: answering bytes that were
//! never a request would put every later reply one off) and the loop goes
//! on, so noise on the line never stops the firmware.

use alloc::string::ToString;

use padnas_proto::{FrameDecoder, ProtoError, Request, Response, Step};

use crate::agent::{Agent, MAX_PAYLOAD, Next, PRE_HELLO_MAX_PAYLOAD};
use crate::clock::{Clock, Deadline};
use crate::link::Link;

/// How long the line may go quiet in the middle of a frame before the
/// partial frame is dropped (the host's serial transport waits as long).
const STALL_US: u64 = 2_000_000;

/// Serves hosts, one after another, forever.
pub fn serve(link: &mut impl Link, clock: &Clock, agent: &mut Agent) -> ! {
    // Small refills: the whole heap is a few hundred KiB.
    let mut decoder = FrameDecoder::with_max_payload(PRE_HELLO_MAX_PAYLOAD).with_chunk(64, 1024);
    loop {
        match decoder.step(false) {
            Step::Frame(frame) => {
                let (response, next) = match Request::from_frame(frame) {
                    Ok(request) => agent.handle(request),
                    Err(e) => (Response::error(e.code(), e.to_string()), Next::Continue),
                };
                send(link, response);
                if matches!(next, Next::EndSession) {
                    decoder.set_max_payload(PRE_HELLO_MAX_PAYLOAD);
                } else if agent.greeted() {
                    decoder.set_max_payload(MAX_PAYLOAD);
                }
            }
            Step::Damaged(ProtoError::Garbage { .. }) => {}
            Step::Damaged(e) => send(link, Response::error(e.code(), e.to_string())),
            // Only reported when told the stream ended, which a UART never does.
            Step::End => {}
            Step::Need(want) => {
                let deadline = if decoder.in_frame() {
                    clock.deadline_in_us(STALL_US)
                } else {
                    Deadline::NEVER
                };
                let got = link.read(decoder.spare(want), deadline);
                decoder.commit(got);
                if got == 0
                    && let Some(e) = decoder.abandon_partial()
                {
                    send(link, Response::error(e.code(), e.to_string()));
                }
            }
        }
    }
}

fn send(link: &mut impl Link, response: Response) {
    let bytes = response
        .into_frame()
        .and_then(|frame| frame.encode())
        .or_else(|e| {
            Response::error(e.code(), e.to_string())
                .into_frame()
                .and_then(|frame| frame.encode())
        });
    if let Ok(bytes) = bytes {
        link.write_all(&bytes);
        link.flush();
    }
}
