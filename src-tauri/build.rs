//! Tauri's build step: embeds tauri.conf.json, the capabilities, the icons and the built
//! UI (`ui/dist`, made by `npm run build -w ui`).
fn main() {
    // The workspace must build for everyone, also before the UI was built (e.g. `cargo
    // clippy --workspace` in a fresh clone): then the app embeds a page that says so.
    // scripts/start.sh and scripts/test.sh build the real UI first.
    let dist = std::path::Path::new("../ui/dist");
    if !dist.join("index.html").exists() {
        let _ = std::fs::create_dir_all(dist);
        let _ = std::fs::write(
            dist.join("index.html"),
            "<!doctype html><title>Vaxel</title><p>The UI was not built: run \
             <code>npm run build -w ui</code>, then build the app again.</p>",
        );
    }
    tauri_build::build()
}
