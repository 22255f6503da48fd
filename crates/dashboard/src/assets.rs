//! The stylesheet and the script, embedded in the binary: no front-end build chain, nothing
//! fetched from elsewhere (the Content-Security-Policy allows only this origin).

/// The asset named `file`: its content type and bytes.
pub fn get(file: &str) -> Option<(&'static str, &'static str)> {
    match file {
        "app.css" => Some(("text/css; charset=utf-8", include_str!("../assets/app.css"))),
        "app.js" => Some((
            "text/javascript; charset=utf-8",
            include_str!("../assets/app.js"),
        )),
        _ => None,
    }
}
