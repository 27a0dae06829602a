//! Control API for presence:
//!
//! - `GET /api/presence`: every user's presence, by extension.
//! - `PUT /api/me/presence`: set my presence `{activity, note?, until?}` (the newest
//!   word, like a PUBLISH from one of my phones; SIP watchers are notified).
//! - `PUT /api/presence/{extension}`: the same for a colleague (attendant and up,
//!
//! - `GET /api/directory` carries each user's `presence`, and the WebSocket
//!   `/api/events` sends `{"type": "presence", "extension", "presence"}` on change.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, put};
use serde_json::{Value, json};

use super::{Api, ApiError, forbidden};
use crate::engine::SetPresence;
use crate::office::Role;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/presence", get(all))
        .route("/api/me/presence", put(set_mine))
        .route("/api/presence/{extension}", put(set_theirs))
}

async fn all(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    api.authed(&headers).await?;
    let map: serde_json::Map<String, Value> = api
        .engine
        .presence()
        .await?
        .into_iter()
        .map(|(e, v)| (e, json!(v)))
        .collect();
    Ok(Json(Value::Object(map)))
}

async fn set_mine(
    State(api): State<Api>,
    headers: HeaderMap,
    Json(set): Json<SetPresence>,
) -> Result<Json<Value>, ApiError> {
    let u = api.authed(&headers).await?;
    Ok(Json(json!(
        api.engine.set_presence(&u.extension, set).await?
    )))
}

async fn set_theirs(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(extension): Path<String>,
    Json(set): Json<SetPresence>,
) -> Result<Json<Value>, ApiError> {
    let u = api.authed(&headers).await?;
    if u.extension != extension && u.role < Role::Attendant {
        return Err(forbidden());
    }
    Ok(Json(json!(api.engine.set_presence(&extension, set).await?)))
}

/// The directory with each user's presence added.
pub(super) async fn directory(api: &Api) -> Result<Value, ApiError> {
    let dir = api.engine.directory().await?;
    let presence: std::collections::HashMap<String, crate::presence::View> =
        api.engine.presence().await?.into_iter().collect();
    Ok(Value::Array(
        dir.into_iter()
            .map(|d| {
                let mut v = json!(d);
                if let Some(p) = presence.get(&d.user.extension) {
                    v["presence"] = json!(p);
                }
                v
            })
            .collect(),
    ))
}

/// Adds the presence paths and schemas to the OpenAPI document.
pub(super) fn with_paths(mut doc: Value) -> Value {
    let bearer = json!([{ "bearer": [] }]);
    let presence = json!({ "$ref": "#/components/schemas/Presence" });
    let set = json!({
        "security": bearer,
        "requestBody": { "required": true, "content": { "application/json": { "schema": {
            "$ref": "#/components/schemas/SetPresence" } } } },
        "responses": {
            "200": { "description": "the presence now", "content": { "application/json": { "schema": presence } } },
            "401": { "description": "not logged in" },
            "403": { "description": "another user's presence, below attendant" },
            "422": { "description": "invalid activity or time; nothing changed" } }
    });
    let mut mine = set.clone();
    mine["summary"] = json!("Set my presence (SIP watchers are notified)");
    let mut theirs = set;
    theirs["summary"] = json!("Set a colleague's presence (attendant and up)");
    let paths = &mut doc["paths"];
    paths["/api/presence"] = json!({ "get": {
        "summary": "Every user's presence, by extension", "security": bearer,
        "responses": { "200": { "description": "extension → presence", "content": { "application/json": { "schema": {
            "type": "object", "additionalProperties": presence } } } },
            "401": { "description": "not logged in" } } } });
    paths["/api/me/presence"] = json!({ "put": mine });
    paths["/api/presence/{extension}"] = json!({
        "parameters": [{ "name": "extension", "in": "path", "required": true, "schema": { "type": "string" } }],
        "put": theirs });
    let schemas = &mut doc["components"]["schemas"];
    schemas["Presence"] = json!({ "type": "object", "properties": {
        "state": { "type": "string", "enum": ["available", "away", "busy", "offline"],
                   "description": "green, yellow, red, grey" },
        "open": { "type": "boolean", "description": "PIDF basic status" },
        "activity": { "type": ["string", "null"], "description": "RPID activity or the office's word; null is available" },
        "note": { "type": ["string", "null"] },
        "until": { "type": ["string", "null"], "description": "RFC 3339" },
        "phone": { "type": "string", "enum": ["idle", "ringing", "busy"] },
        "devices": { "type": "integer" } } });
    schemas["SetPresence"] = json!({ "type": "object", "required": ["activity"], "properties": {
        "activity": { "type": "string", "description": "available, offline, or one word (meeting, lunch, busy…)" },
        "note": { "type": "string" },
        "until": { "type": "string", "description": "RFC 3339; the activity lapses then" } } });
    if let Some(all) = schemas["DirectoryEntry"]["allOf"].as_array_mut()
        && let Some(extra) = all.get_mut(1)
    {
        extra["properties"]["presence"] = presence.clone();
    }
    if let Some(events) = schemas["Event"]["oneOf"].as_array_mut() {
        events.push(
            json!({ "type": "object", "properties": { "type": { "const": "presence" },
            "extension": { "type": "string" }, "presence": presence } }),
        );
    }
    doc
}
