//! A temporary project directory to load configurations from.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use dockhand_config::{load_str, ConfigError, Diagnostic, LoadOptions, Loaded};

pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir().join("dockhand.toml")
    }

    pub fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.dir().join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    /// Writes the default secrets file with `mode`.
    pub fn secrets(&self, text: &str, mode: u32) {
        let path = self.write(".dockhand/secrets.env", text);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn load(&self, toml: &str) -> Result<Loaded, ConfigError> {
        self.load_with_env(toml, &[])
    }

    pub fn load_with_env(&self, toml: &str, env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
        let opts = LoadOptions {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        load_str(&self.config_path(), toml, &opts)
    }
}

pub fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n\n")
}
