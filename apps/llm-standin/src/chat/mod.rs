//! `POST /v1/chat/completions`: the app runs the tool loop; each round the stand-in either asks
//! for the playbook's next tool call or answers from the tool results it was given.

pub mod completion;
pub mod conversation;

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::{check_model, AppState};
use crate::api_error::ApiError;
use crate::ids::{new_id, now};
use crate::responses::builder::word_chunks;
use conversation::Reply;

pub async fn create<C>(
    State(state): State<Arc<AppState<C>>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = conversation::parse(&body)?;
    check_model(&request.model)?;
    let reply = conversation::reply(&request);
    match &reply {
        Reply::Call(call) => tracing::info!(tool = %call.tool, "chat round asks for a tool call"),
        Reply::Text(_) => tracing::info!(calls = request.done.len(), "chat round answers"),
    }
    let id = new_id("chatcmpl-");
    let call_id = new_id("call_");
    let head = completion::Head {
        id: &id,
        created: now(),
        model: &request.model,
        call_id: &call_id,
    };
    let (text_chunks, completion_chars) = match &reply {
        Reply::Text(text) => (word_chunks(text), text.len()),
        Reply::Call(call) => (
            Vec::new(),
            serde_json::Value::Object(call.arguments.clone())
                .to_string()
                .len(),
        ),
    };
    let usage = completion::usage(
        (request.prompt_chars as u64).div_ceil(4) + 8,
        (completion_chars as u64).div_ceil(4) + 1,
    );
    if !request.stream {
        return Ok(Json(completion::completion(&head, &reply, usage)).into_response());
    }

    let chunks = completion::chunks(
        &head,
        &reply,
        &text_chunks,
        request.include_usage.then_some(usage),
    );
    let delay = state.delta_delay;
    let events = chunks
        .into_iter()
        .map(|c| c.to_string())
        .chain(std::iter::once("[DONE]".to_owned()));
    let stream =
        futures_util::stream::unfold((events, true), move |(mut events, first)| async move {
            let data = events.next()?;
            // Pace the pieces so the answer visibly streams.
            if !first && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Some((
                Ok::<_, Infallible>(SseEvent::default().data(data)),
                (events, false),
            ))
        });
    Ok(Sse::new(stream).into_response())
}
