//! `vaxel-desktop`: the Vaxel desktop app. A `tel:` or `sip:` argument places a call.
#![cfg_attr(all(not(debug_assertions), windows), windows_subsystem = "windows")]

fn main() {
    vaxel_desktop::run();
}
