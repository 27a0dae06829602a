//! The control API: HTTP + WebSocket with JSON, on axum.
//!
//! Log in with the SIP credentials (`POST /api/login`) to get a bearer token; every
//! other call carries it (`Authorization: Bearer …`, or `?token=` for the WebSocket).
//! Tokens are stateless: `extension.expiry.mac` with an HMAC-SHA-256 under a key made
//! at start, so the API holds no session table; a restart logs everyone out. The
//! role is looked up on every request, so a changed role applies at once.
//!
//! Errors are `{ "code": "...", "message": "..." }` with the HTTP status saying
//! whose fault it is (4xx the client's, 5xx ours). The OpenAPI document is served at
//! `/openapi.json`.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::db::UserRow;
use crate::engine::{CommandError, EngineHandle};
use crate::office::{Inbound, Role, Trunk, User};

mod flows;
mod presence;

/// Lifetime of a token.
const TOKEN_SECS: u64 = 12 * 3600;

#[derive(Clone)]
struct Api {
    engine: EngineHandle,
    key: [u8; 32],
}

/// An API error: HTTP status, a stable code and a message.
#[derive(Debug)]
struct ApiError(StatusCode, &'static str, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "code": self.1, "message": self.2 }))).into_response()
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Invalid(m) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m),
            CommandError::Db(e) => {
                tracing::warn!("API: database error: {e}");
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the engine could not store this".into(),
                )
            }
            CommandError::Stopped => ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "stopped",
                "the engine is stopping".into(),
            ),
        }
    }
}

fn unauthorized() -> ApiError {
    ApiError(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "log in with your SIP credentials".into(),
    )
}

fn forbidden() -> ApiError {
    ApiError(
        StatusCode::FORBIDDEN,
        "forbidden",
        "your role does not allow this".into(),
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

impl Api {
    fn mac(&self, payload: &str) -> String {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&self.key).expect("any key length");
        m.update(payload.as_bytes());
        m.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn token(&self, extension: &str) -> String {
        let payload = format!("{extension}.{}", now() + TOKEN_SECS);
        let mac = self.mac(&payload);
        format!("{payload}.{mac}")
    }

    /// The user a token stands for, if it is ours and not expired.
    async fn user(&self, token: &str) -> Result<UserRow, ApiError> {
        let (payload, mac) = token.rsplit_once('.').ok_or_else(unauthorized)?;
        let expected = self.mac(payload);
        let same = expected.len() == mac.len()
            && expected
                .bytes()
                .zip(mac.bytes())
                .fold(0u8, |a, (x, y)| a | (x ^ y))
                == 0;
        let (ext, expiry) = payload.split_once('.').ok_or_else(unauthorized)?;
        if !same || expiry.parse::<u64>().map_or(true, |e| e < now()) {
            return Err(unauthorized());
        }
        self.engine.user(ext).await?.ok_or_else(unauthorized)
    }

    async fn authed(&self, headers: &HeaderMap) -> Result<UserRow, ApiError> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(unauthorized)?;
        self.user(token.trim()).await
    }

    async fn admin(&self, headers: &HeaderMap) -> Result<UserRow, ApiError> {
        let u = self.authed(headers).await?;
        if u.role < Role::Administrator {
            return Err(forbidden());
        }
        Ok(u)
    }
}

/// Starts the API server on `addr` in the background; its bound address.
pub async fn serve(engine: EngineHandle, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    let app = router(Api { engine, key });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("control API stopped: {e}");
        }
    });
    Ok(local)
}

fn router(api: Api) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/api/login", post(login))
        .route("/api/me", get(me))
        .route("/api/me/calls", get(my_calls))
        .route("/api/directory", get(directory))
        .route("/api/events", get(events))
        .route(
            "/api/users/{extension}",
            axum::routing::put(put_user).delete(delete_user),
        )
        .route("/api/trunks", get(trunks))
        .route(
            "/api/trunks/{name}",
            axum::routing::put(put_trunk).delete(delete_trunk),
        )
        .route("/api/office", get(office))
        .route("/api/calls", get(all_calls))
        .merge(flows::routes())
        .merge(presence::routes())
        .with_state(api)
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

async fn login(State(api): State<Api>, Json(l): Json<Login>) -> Result<Json<Value>, ApiError> {
    match api.engine.login(&l.username, &l.password).await? {
        Some(u) => Ok(Json(json!({ "token": api.token(&u.extension), "user": u }))),
        // The same answer for an unknown user and a wrong password.
        None => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            "wrong username or password".into(),
        )),
    }
}

async fn me(State(api): State<Api>, headers: HeaderMap) -> Result<Json<UserRow>, ApiError> {
    Ok(Json(api.authed(&headers).await?))
}

async fn my_calls(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let u = api.authed(&headers).await?;
    Ok(Json(json!(api.engine.history(&u.extension).await?)))
}

async fn directory(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    api.authed(&headers).await?;
    Ok(Json(presence::directory(&api).await?))
}

async fn all_calls(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let u = api.authed(&headers).await?;
    if u.role < Role::Supervisor {
        return Err(forbidden());
    }
    Ok(Json(json!(api.engine.calls().await?)))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn events(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    match &q.token {
        Some(t) => api.user(t).await?,
        None => api.authed(&headers).await?,
    };
    let rx = api.engine.subscribe();
    Ok(ws.on_upgrade(move |socket| event_pump(socket, rx)))
}

async fn event_pump(
    mut socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<crate::engine::EngineEvent>,
) {
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    let text = serde_json::to_string(&ev).unwrap_or_default();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                // A slow client missed events: tell it to reload its snapshot.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let text = json!({ "type": "lagged", "missed": n }).to_string();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
        }
    }
}

/// A user as the API takes it (the office file's fields; `password` in clear, hashed
/// by the engine and never stored).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserInput {
    number: Option<String>,
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    department: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    mobile: String,
    password: Option<String>,
    #[serde(default)]
    role: Role,
    #[serde(default)]
    external_calls: bool,
    #[serde(default)]
    present_numbers: Vec<String>,
}

fn sp(s: String) -> toml::Spanned<String> {
    toml::Spanned::new(0..0, s)
}

async fn put_user(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(extension): Path<String>,
    Json(u): Json<UserInput>,
) -> Result<StatusCode, ApiError> {
    api.admin(&headers).await?;
    // Keep the stored hashes when no new password is given.
    let old = api.engine.user(&extension).await?;
    let (ha1_md5, ha1_sha256) = match (&u.password, &old) {
        (None, Some(o)) => (Some(o.ha1_md5.clone()), Some(o.ha1_sha256.clone())),
        _ => (None, None),
    };
    let user = User {
        extension: sp(extension),
        number: u.number.map(sp),
        name: u.name,
        email: u.email,
        department: u.department,
        title: u.title,
        mobile: u.mobile,
        password: u.password.map(sp),
        ha1_md5,
        ha1_sha256,
        role: u.role,
        external_calls: u.external_calls,
        present_numbers: u.present_numbers.into_iter().map(sp).collect(),
    };
    api.engine.put_user(user).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_user(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(extension): Path<String>,
) -> Result<StatusCode, ApiError> {
    api.admin(&headers).await?;
    if api.engine.delete_user(&extension).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such user".into(),
        ))
    }
}

async fn trunks(State(api): State<Api>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    api.admin(&headers).await?;
    let list: Vec<Value> = api.engine.trunks().await?.iter().map(trunk_json).collect();
    Ok(Json(json!(list)))
}

/// A trunk without its provider password.
fn trunk_json(t: &Trunk) -> Value {
    json!({
        "name": t.name, "host": t.host, "port": t.port, "transport": t.transport,
        "register": t.register, "username": t.username,
        "inbound": t.inbound.iter().map(|i| json!({"number": i.number, "target": i.target.get_ref()})).collect::<Vec<_>>(),
        "outbound_prefixes": t.outbound_prefixes, "caller_id": t.caller_id,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrunkInput {
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default = "default_transport")]
    transport: String,
    #[serde(default)]
    register: bool,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    inbound: Vec<InboundInput>,
    #[serde(default)]
    outbound_prefixes: Vec<String>,
    #[serde(default)]
    caller_id: String,
}

#[derive(Deserialize)]
struct InboundInput {
    number: String,
    target: String,
}

fn default_port() -> u16 {
    5060
}

fn default_transport() -> String {
    "udp".into()
}

async fn put_trunk(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(t): Json<TrunkInput>,
) -> Result<StatusCode, ApiError> {
    api.admin(&headers).await?;
    let trunk = Trunk {
        name,
        host: t.host,
        port: t.port,
        transport: t.transport,
        register: t.register,
        username: t.username,
        password: t.password,
        inbound: t
            .inbound
            .into_iter()
            .map(|i| Inbound {
                number: i.number,
                target: sp(i.target),
            })
            .collect(),
        outbound_prefixes: t.outbound_prefixes,
        caller_id: t.caller_id,
    };
    api.engine.put_trunk(trunk).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_trunk(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    api.admin(&headers).await?;
    if api.engine.delete_trunk(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such trunk".into(),
        ))
    }
}

async fn office(State(api): State<Api>, headers: HeaderMap) -> Result<Response, ApiError> {
    api.admin(&headers).await?;
    let toml = api.engine.export().await?;
    Ok(([("content-type", "application/toml")], toml).into_response())
}

async fn openapi() -> Json<Value> {
    Json(presence::with_paths(flows::with_paths(openapi_document())))
}

/// The OpenAPI 3.1 description of this API.
pub fn openapi_document() -> Value {
    let bearer = json!([{ "bearer": [] }]);
    let err = json!({ "$ref": "#/components/schemas/Error" });
    let op = |summary: &str, ok: Value| {
        json!({
            "summary": summary, "security": bearer,
            "responses": {
                "200": { "description": "OK", "content": { "application/json": { "schema": ok } } },
                "401": { "description": "not logged in", "content": { "application/json": { "schema": err } } },
                "403": { "description": "role too low", "content": { "application/json": { "schema": err } } }
            }
        })
    };
    let change = |summary: &str, body: &str| {
        json!({
            "summary": summary, "security": bearer,
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{body}") } } } },
            "responses": {
                "204": { "description": "stored" },
                "422": { "description": "invalid; nothing changed", "content": { "application/json": { "schema": err } } },
                "403": { "description": "administrators only", "content": { "application/json": { "schema": err } } }
            }
        })
    };
    let delete = |summary: &str| {
        json!({ "summary": summary, "security": bearer,
            "responses": { "204": { "description": "removed" }, "404": { "description": "not found" } } })
    };
    let list = |name: &str| json!({ "type": "array", "items": { "$ref": format!("#/components/schemas/{name}") } });
    let user_ref = json!({ "$ref": "#/components/schemas/User" });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Vaxel engine control API", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Log in with SIP credentials for a bearer token. Roles: user < attendant < supervisor < administrator." },
        "paths": {
            "/api/login": { "post": {
                "summary": "Log in with SIP username (extension) and password",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["username", "password"],
                    "properties": { "username": { "type": "string" }, "password": { "type": "string" } } } } } },
                "responses": {
                    "200": { "description": "token", "content": { "application/json": { "schema": {
                        "type": "object", "properties": { "token": { "type": "string" }, "user": user_ref } } } } },
                    "401": { "description": "wrong username or password", "content": { "application/json": { "schema": err } } }
                } } },
            "/api/me": { "get": op("The logged-in user", user_ref.clone()) },
            "/api/me/calls": { "get": op("My call history, newest first", list("Call")) },
            "/api/directory": { "get": op("Every user with registered devices and phone state", list("DirectoryEntry")) },
            "/api/calls": { "get": op("Every call (supervisor and up)", list("Call")) },
            "/api/events": { "get": {
                "summary": "WebSocket of live events (JSON text messages: Event); token in ?token= or Authorization",
                "security": bearer,
                "parameters": [{ "name": "token", "in": "query", "schema": { "type": "string" } }],
                "responses": { "101": { "description": "switching to WebSocket" }, "401": { "description": "not logged in" } } } },
            "/api/users/{extension}": {
                "parameters": [{ "name": "extension", "in": "path", "required": true, "schema": { "type": "string" } }],
                "put": change("Add or replace a user (administrator)", "UserInput"),
                "delete": delete("Remove a user (administrator)") },
            "/api/trunks": { "get": op("Trunks without provider passwords (administrator)", list("Trunk")) },
            "/api/trunks/{name}": {
                "parameters": [{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }],
                "put": change("Add or replace a trunk (administrator)", "Trunk"),
                "delete": delete("Remove a trunk (administrator)") },
            "/api/office": { "get": {
                "summary": "The office as TOML, HA1s instead of passwords (administrator)", "security": bearer,
                "responses": { "200": { "description": "office file", "content": { "application/toml": {} } } } } },
            "/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI" } } } }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["code", "message"],
                    "properties": { "code": { "type": "string" }, "message": { "type": "string" } } },
                "Role": { "type": "string", "enum": ["user", "attendant", "supervisor", "administrator"] },
                "User": { "type": "object", "properties": {
                    "extension": { "type": "string" }, "number": { "type": ["string", "null"] },
                    "name": { "type": "string" }, "email": { "type": "string" },
                    "department": { "type": "string" }, "title": { "type": "string" },
                    "mobile": { "type": "string" }, "role": { "$ref": "#/components/schemas/Role" },
                    "external_calls": { "type": "boolean" },
                    "present_numbers": { "type": "array", "items": { "type": "string" } } } },
                "UserInput": { "type": "object", "required": ["name"], "properties": {
                    "number": { "type": "string" }, "name": { "type": "string" }, "email": { "type": "string" },
                    "department": { "type": "string" }, "title": { "type": "string" }, "mobile": { "type": "string" },
                    "password": { "type": "string", "description": "hashed by the engine; kept unchanged when absent" },
                    "role": { "$ref": "#/components/schemas/Role" }, "external_calls": { "type": "boolean" },
                    "present_numbers": { "type": "array", "items": { "type": "string" } } } },
                "DirectoryEntry": { "allOf": [ { "$ref": "#/components/schemas/User" }, { "type": "object", "properties": {
                    "devices": { "type": "integer" }, "phone": { "type": "string", "enum": ["idle", "ringing", "busy"] } } } ] },
                "Call": { "type": "object", "properties": {
                    "id": { "type": "integer" }, "caller": { "type": "string" }, "callee": { "type": "string" },
                    "direction": { "type": "string", "enum": ["internal", "inbound", "outbound"] },
                    "started_at": { "type": "integer" }, "answered_at": { "type": ["integer", "null"] },
                    "ended_at": { "type": ["integer", "null"] }, "outcome": { "type": "string" },
                    "answered_by": { "type": ["string", "null"] },
                    "packets_a_to_b": { "type": "integer" }, "packets_b_to_a": { "type": "integer" } } },
                "Trunk": { "type": "object", "required": ["host"], "properties": {
                    "host": { "type": "string" }, "port": { "type": "integer" },
                    "transport": { "type": "string", "enum": ["udp", "tcp"] }, "register": { "type": "boolean" },
                    "username": { "type": "string" }, "password": { "type": "string", "writeOnly": true },
                    "inbound": { "type": "array", "items": { "type": "object", "properties": {
                        "number": { "type": "string" }, "target": { "type": "string" } } } },
                    "outbound_prefixes": { "type": "array", "items": { "type": "string" } },
                    "caller_id": { "type": "string" } } },
                "Event": { "oneOf": [
                    { "type": "object", "properties": { "type": { "const": "registration" },
                        "extension": { "type": "string" }, "devices": { "type": "integer" } } },
                    { "type": "object", "properties": { "type": { "const": "call" }, "call": { "type": "integer" },
                        "caller": { "type": "string" }, "callee": { "type": "string" },
                        "state": { "type": "string", "enum": ["ringing", "answered", "ended"] } } } ] }
            }
        }
    })
}
