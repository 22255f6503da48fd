//! Compose loading and conversion: any compose file (YAML) gives a conversion or an error,
//! never a panic. Each input is written as `compose.yaml` of a scratch project.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn project() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a scratch directory"))
}

fuzz_target!(|data: &[u8]| {
    let dir = project().path();
    let file = dir.join("compose.yaml");
    std::fs::write(&file, data).expect("write compose.yaml");
    let opts = dockhand_compose::ImportOptions {
        files: vec![file],
        dir: dir.to_path_buf(),
        env_file: None,
        profiles: Vec::new(),
        output: Default::default(),
        force: false,
        env: Default::default(),
        // Every other input also goes through the `--cluster` conversion (a stack's deploy:).
        cluster: (data.len() % 2 == 1).then(dockhand_compose::ClusterImport::default),
    };
    if let Ok(conversion) = dockhand_compose::convert(&opts) {
        // What the import would write must be a dockhand.toml the config crate reads
        // without panicking (it may still have errors to fix).
        let toml = conversion.toml.clone();
        let path = dir.join("dockhand.toml");
        let _ = dockhand_config::load_str(&path, &toml, &Default::default());
    }
});
