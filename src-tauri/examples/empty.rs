//! An empty Tauri window: the baseline that scripts/bench-desktop.sh measures next to
//! Vaxel (ARCHITECTURE.md §5a: report what Vaxel adds over an empty Tauri app).
fn main() {
    let started = std::time::Instant::now();
    let mut context = tauri::generate_context!();
    context.config_mut().app.windows.clear();
    let app = tauri::Builder::default()
        .on_page_load(move |_, payload| {
            if payload.event() == tauri::webview::PageLoadEvent::Finished {
                eprintln!(
                    "empty page loaded ms={:.0}",
                    started.elapsed().as_secs_f64() * 1000.0
                );
            }
        })
        .setup(|app| {
            tauri::WebviewWindowBuilder::new(
                app,
                "main",
                tauri::WebviewUrl::App("empty.html".into()),
            )
            .title("Empty")
            .inner_size(1000.0, 720.0)
            .build()?;
            Ok(())
        })
        .build(context);
    match app {
        Ok(app) => app.run(|_, _| {}),
        Err(e) => eprintln!("empty: {e}"),
    }
}
