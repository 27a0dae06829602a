//! Control API for call flows and voicemail.
//!
//! - `GET /api/voicemail/{mailbox}`: the box's messages (owner or shared-box member).
//! - `GET /api/voicemail/{mailbox}/{id}/audio`: the message as `audio/wav`.
//! - `POST /api/voicemail/{mailbox}/{id}/heard`: mark heard.
//! - `DELETE /api/voicemail/{mailbox}/{id}`: delete.
//! - `GET /api/routing`: the `[routing]` section in force (administrator).
//! - `PUT /api/flows/{name}/versions/{version}`: add or replace a flow version,
//!   validated (`{"numbers": [...]?, "start": "...", "steps": {...}}`; administrator).
//! - `POST /api/flows/{name}/active`: `{"version": n}` activates it (administrator).
//! - `GET /api/calls/{id}/choices`: the IVR keys pressed in a call (administrator).
//! - `GET /api/forwarding/{extension}`: a user's forwarding (the user or an
//!   administrator).

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, ApiError, forbidden};
use crate::office::Role;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/voicemail/{mailbox}", get(list))
        .route("/api/voicemail/{mailbox}/{id}/audio", get(audio))
        .route("/api/voicemail/{mailbox}/{id}/heard", post(heard))
        .route(
            "/api/voicemail/{mailbox}/{id}",
            axum::routing::delete(delete),
        )
        .route("/api/routing", get(routing))
        .route("/api/flows/{name}/versions/{version}", put(put_version))
        .route("/api/flows/{name}/active", post(activate))
        .route("/api/calls/{id}/choices", get(choices))
        .route("/api/forwarding/{extension}", get(forwarding))
}

fn not_found(what: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such {what}"),
    )
}

/// The owner or a member only; others (administrators included) are refused.
async fn open_box(api: &Api, headers: &HeaderMap, mailbox: &str) -> Result<(), ApiError> {
    let u = api.authed(headers).await?;
    if api.engine.may_open_mailbox(&u.extension, mailbox).await? {
        Ok(())
    } else {
        Err(forbidden())
    }
}

async fn list(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(mailbox): Path<String>,
) -> Result<Json<Value>, ApiError> {
    open_box(&api, &headers, &mailbox).await?;
    Ok(Json(
        json!({ "messages": api.engine.voicemail(&mailbox).await? }),
    ))
}

async fn audio(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((mailbox, id)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    open_box(&api, &headers, &mailbox).await?;
    let path = api
        .engine
        .voicemail_file(&mailbox, id)
        .await?
        .ok_or_else(|| not_found("message"))?;
    let data = tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| not_found("message file"))?;
    Ok(([(header::CONTENT_TYPE, "audio/wav")], data).into_response())
}

async fn heard(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((mailbox, id)): Path<(String, i64)>,
) -> Result<StatusCode, ApiError> {
    open_box(&api, &headers, &mailbox).await?;
    if api.engine.voicemail_heard(&mailbox, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found("message"))
    }
}

async fn delete(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((mailbox, id)): Path<(String, i64)>,
) -> Result<StatusCode, ApiError> {
    open_box(&api, &headers, &mailbox).await?;
    if api.engine.voicemail_delete(&mailbox, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found("message"))
    }
}

async fn routing(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    api.admin(&headers).await?;
    Ok(Json(
        serde_json::to_value(api.engine.routing().await?).unwrap_or_default(),
    ))
}

#[derive(Deserialize)]
struct NewVersion {
    #[serde(default)]
    numbers: Option<Vec<String>>,
    start: String,
    steps: std::collections::BTreeMap<String, vaxel_routing::Step>,
}

async fn put_version(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((name, version)): Path<(String, u32)>,
    Json(v): Json<NewVersion>,
) -> Result<StatusCode, ApiError> {
    api.admin(&headers).await?;
    api.engine
        .put_flow_version(
            &name,
            v.numbers,
            vaxel_routing::FlowVersion {
                version,
                start: v.start,
                steps: v.steps,
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Activate {
    version: u32,
}

async fn activate(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(a): Json<Activate>,
) -> Result<StatusCode, ApiError> {
    api.admin(&headers).await?;
    api.engine.activate_flow(&name, a.version).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn choices(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    api.admin(&headers).await?;
    Ok(Json(
        json!({ "choices": api.engine.ivr_choices(id).await? }),
    ))
}

async fn forwarding(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(extension): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let u = api.authed(&headers).await?;
    if u.extension != extension && u.role < Role::Administrator {
        return Err(forbidden());
    }
    Ok(Json(
        serde_json::to_value(api.engine.forwarding(&extension).await?).unwrap_or_default(),
    ))
}
