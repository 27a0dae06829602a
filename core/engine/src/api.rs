//! The control API: HTTP + WebSocket with JSON, on axum.

use std::net::SocketAddr;

use crate::engine::EngineHandle;

/// Starts the API server on `addr`; its bound address.
pub async fn serve(_engine: EngineHandle, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    listener.local_addr()
}
