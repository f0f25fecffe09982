//! `POST /v1/responses`: a model with remote MCP tools, streamed or not.

pub mod builder;
pub mod events;
pub mod memory;
pub mod request;
pub mod run;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::mpsc;

use crate::api::{check_model, AppState};
use crate::api_error::ApiError;
use crate::ids::{new_id, now};
use crate::mcp::McpClient;
use events::Event;
use run::{Discard, EventSink};

pub async fn create<C: McpClient>(
    State(state): State<Arc<AppState<C>>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = request::parse(&body)?;
    check_model(&request.model)?;
    let mut known = request.listed_in_input.clone();
    if let Some(previous) = &request.previous_response_id {
        let stored = state
            .memory
            .lock()
            .map_err(|_| ApiError::previous_response_not_found(previous))?
            .get(previous)
            .ok_or_else(|| ApiError::previous_response_not_found(previous))?;
        known = memory::merge(stored, known);
    }
    let started = events::Response::started(
        new_id("resp_"),
        now(),
        request.model.clone(),
        request.instructions.clone(),
        request.previous_response_id.clone(),
        request.echoed_tools.clone(),
    );

    if !request.stream {
        let finished = run::run(&state.client, &request, known, started, &mut Discard).await;
        remember(&state, &finished);
        return Ok(Json(finished.response).into_response());
    }

    let (tx, rx) = mpsc::channel::<Event>(64);
    let delta_delay = state.delta_delay;
    tokio::spawn(async move {
        let mut sink = ChannelSink { tx, delta_delay };
        let finished = run::run(&state.client, &request, known, started, &mut sink).await;
        remember(&state, &finished);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let (kind, data) = event.to_sse();
        Some((
            Ok::<_, Infallible>(SseEvent::default().event(kind).data(data)),
            rx,
        ))
    });
    Ok(Sse::new(stream).into_response())
}

fn remember<C>(state: &AppState<C>, finished: &run::Finished) {
    if let Ok(mut memory) = state.memory.lock() {
        memory.remember(finished.response.id.clone(), finished.listings.clone());
    }
}

/// Streams events to the client as they happen, pausing after each piece of text so the answer
/// visibly streams. A client that went away does not stop the turn (OpenAI finishes it too).
struct ChannelSink {
    tx: mpsc::Sender<Event>,
    delta_delay: Duration,
}

impl EventSink for ChannelSink {
    async fn emit(&mut self, events: Vec<Event>) {
        for event in events {
            let pause = event.is_text_delta() && !self.delta_delay.is_zero();
            if self.tx.send(event).await.is_err() {
                return;
            }
            if pause {
                tokio::time::sleep(self.delta_delay).await;
            }
        }
    }
}
