//! Control API for call flows and voicemail.
//!
//! - `GET /api/voicemail/{mailbox}`: the box's messages (owner or shared-box member).
//! - `GET /api/voicemail/{mailbox}/{id}/audio`: the message as `audio/wav`.
//! - `POST /api/voicemail/{mailbox}/{id}/heard`: mark heard.
//! - `DELETE /api/voicemail/{mailbox}/{id}`: delete.
//! - `PUT /api/voicemail/{mailbox}/greeting/{standard|closed|profile-N}`: the box's
//!   own greeting (a WAV body; owner or member); `profile-N` plays while the owner's
//!   presence profile N (`*24*N`) runs.
//! - `PUT /api/prompts/{language}/{name}`: replace or add a prompt (WAV body;
//!   administrator).
//! - `GET /api/routing`: the `[routing]` section in force (administrator).
//! - `PUT /api/flows/{name}/versions/{version}`: add or replace a flow version,
//!   validated (`{"numbers": [...]?, "start": "...", "steps": {...}}`; administrator).
//! - `POST /api/flows/{name}/active`: `{"version": n}` activates it (administrator).
//! - `GET /api/calls/{id}/choices`: the IVR keys pressed in a call (administrator).
//! - `GET`/`PUT /api/forwarding/{extension}`: a user's forwarding (the user or an
//!   administrator): `{unconditional?, busy?, no_answer?: {target, after_secs},
//!   timed?: {week, target}}`, targets `{"internal": "4003"}` or
//!   `{"external": "0046…"}`.

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
        .route(
            "/api/voicemail/{mailbox}/greeting/{kind}",
            put(put_greeting),
        )
        .route("/api/prompts/{language}/{name}", put(put_prompt))
        .route("/api/routing", get(routing))
        .route("/api/flows/{name}/versions/{version}", put(put_version))
        .route("/api/flows/{name}/active", post(activate))
        .route("/api/calls/{id}/choices", get(choices))
        .route(
            "/api/forwarding/{extension}",
            get(forwarding).put(put_forwarding),
        )
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

async fn put_greeting(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((mailbox, kind)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    open_box(&api, &headers, &mailbox).await?;
    let Some(kind) = crate::engine::GreetingKind::parse(&kind) else {
        return Err(not_found("greeting kind (standard, closed or profile-N)"));
    };
    api.engine
        .put_greeting(&mailbox, kind, body.to_vec())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn put_prompt(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((language, name)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    api.admin(&headers).await?;
    api.engine
        .put_prompt(&language, &name, body.to_vec())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The call-flow and voicemail paths added to the OpenAPI document.
pub(super) fn with_paths(mut doc: Value) -> Value {
    let op = |summary: &str, ok: &str| {
        json!({ "summary": summary, "security": [{ "bearer": [] }],
            "responses": { ok: { "description": "done" },
                "403": { "description": "not the box's owner or member / not an administrator" },
                "404": { "description": "not found" },
                "422": { "description": "invalid; nothing changed" } } })
    };
    let paths = [
        (
            "/api/voicemail/{mailbox}",
            json!({ "get": op("A mailbox's messages", "200") }),
        ),
        (
            "/api/voicemail/{mailbox}/{id}/audio",
            json!({ "get": op("A message as audio/wav", "200") }),
        ),
        (
            "/api/voicemail/{mailbox}/{id}/heard",
            json!({ "post": op("Mark a message heard", "204") }),
        ),
        (
            "/api/voicemail/{mailbox}/{id}",
            json!({ "delete": op("Delete a message", "204") }),
        ),
        (
            "/api/voicemail/{mailbox}/greeting/{kind}",
            json!({ "put": op("Upload the box's standard, closed or profile-N (presence) greeting (WAV body)", "204") }),
        ),
        (
            "/api/prompts/{language}/{name}",
            json!({ "put": op("Replace or add a prompt (WAV body)", "204") }),
        ),
        (
            "/api/routing",
            json!({ "get": op("The [routing] section in force", "200") }),
        ),
        (
            "/api/flows/{name}/versions/{version}",
            json!({ "put": op("Add or replace a call-flow version {numbers?, start, steps} (validated)", "204") }),
        ),
        (
            "/api/flows/{name}/active",
            json!({ "post": op("Activate a version {version} (validated)", "204") }),
        ),
        (
            "/api/calls/{id}/choices",
            json!({ "get": op("The menu keys pressed in a call", "200") }),
        ),
        (
            "/api/forwarding/{extension}",
            json!({ "get": op("A user's forwarding", "200") }),
        ),
    ];
    if let Some(p) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths {
            p.insert(path.to_owned(), item);
        }
    }
    doc
}

async fn put_forwarding(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(extension): Path<String>,
    Json(f): Json<vaxel_routing::forwarding::Forwarding>,
) -> Result<StatusCode, ApiError> {
    let u = api.authed(&headers).await?;
    if u.extension != extension && u.role < Role::Administrator {
        return Err(forbidden());
    }
    api.engine.set_forwarding(&extension, f).await?;
    Ok(StatusCode::NO_CONTENT)
}
