//! `tel:` and `sip:` links: the app takes a link as its argument and places the
//! call; on Linux it can register itself as the links' handler.

/// The links among the program's arguments.
pub fn from_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .filter(|a| a.starts_with("tel:") || a.starts_with("sip:") || a.starts_with("sips:"))
        .collect()
}

/// Writes a desktop entry for this program with the `x-scheme-handler/tel` and `sip`
/// MIME types and makes it their default with `xdg-mime` (freedesktop.org: "Shared
/// MIME-info", "Desktop Entry"). Returns what was done, for the settings screen.
#[cfg(target_os = "linux")]
pub fn register() -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let dir = std::path::Path::new(&home).join(".local/share/applications");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let entry = format!(
        "[Desktop Entry]\nType=Application\nName=Vaxel\nComment=Softphone\nExec=\"{}\" %u\n\
         Terminal=false\nCategories=Network;Telephony;\n\
         MimeType=x-scheme-handler/tel;x-scheme-handler/sip;x-scheme-handler/sips;\n",
        exe.display()
    );
    let path = dir.join("vaxel.desktop");
    std::fs::write(&path, entry).map_err(|e| e.to_string())?;
    let status = std::process::Command::new("xdg-mime")
        .args([
            "default",
            "vaxel.desktop",
            "x-scheme-handler/tel",
            "x-scheme-handler/sip",
            "x-scheme-handler/sips",
        ])
        .status();
    match status {
        Ok(s) if s.success() => Ok(format!("{} registered for tel: and sip:", path.display())),
        _ => Ok(format!(
            "{} written; xdg-mime is missing, so the desktop may ask which program opens links",
            path.display()
        )),
    }
}

/// On macOS and Windows the installer registers the URL schemes.
#[cfg(not(target_os = "linux"))]
pub fn register() -> Result<String, String> {
    Err("the installer registers tel: and sip: links on this system".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn links_are_picked_from_the_arguments() {
        let args = ["vaxel-desktop", "--x", "tel:+4570104002", "sip:4002@x"].map(String::from);
        assert_eq!(
            super::from_args(args),
            vec!["tel:+4570104002", "sip:4002@x"]
        );
    }
}
