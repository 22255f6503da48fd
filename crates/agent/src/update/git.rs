//! The git commands of the update watcher, each under a timeout, run with the system `git`
//! (so credentials, SSH keys and `insteadOf` rules of the agent's user apply). `ls-remote`
//! reads the branch's head without writing anything; only a new commit is fetched.

use std::path::Path;
use std::time::Duration;

use crate::error::{AgentError, Result};

/// The longest a network git command may take.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest a local git command may take.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `git -C dir ARGS`; its stdout, or an error with what git said.
pub async fn run(dir: &Path, args: &[&str], timeout: Duration) -> Result<String> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let what = format!("git {}", args.first().copied().unwrap_or(""));
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => {
            return Err(AgentError::runtime(format!(
                "{what} did not finish within {}s",
                timeout.as_secs()
            )))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AgentError::environment(
                "git is not installed; install it (apt install git) for [update]",
            ))
        }
        Ok(Err(e)) => {
            return Err(AgentError::environment(format!(
                "{what} could not run: {e}"
            )))
        }
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = stderr.trim().lines().last().unwrap_or("").to_string();
        return Err(AgentError::runtime(format!("{what} failed: {said}")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The commit `branch` of `remote` points at.
pub async fn remote_head(dir: &Path, remote: &str, branch: &str) -> Result<String> {
    let refname = format!("refs/heads/{branch}");
    let out = run(
        dir,
        &["ls-remote", "--heads", "--", remote, &refname],
        NETWORK_TIMEOUT,
    )
    .await?;
    parse_ls_remote(&out, &refname).ok_or_else(|| {
        AgentError::runtime(format!(
            "the remote {remote} has no branch `{branch}`; check [update] git"
        ))
    })
}

/// Fetches `branch` of `remote` into the project's objects (nothing else changes).
pub async fn fetch(dir: &Path, remote: &str, branch: &str) -> Result<()> {
    run(
        dir,
        &["fetch", "--no-tags", "--quiet", "--", remote, branch],
        NETWORK_TIMEOUT,
    )
    .await
    .map(|_| ())
}

/// The commit the work tree is at.
pub async fn head(dir: &Path) -> Result<String> {
    Ok(run(dir, &["rev-parse", "HEAD"], LOCAL_TIMEOUT)
        .await?
        .trim()
        .to_string())
}

/// Resolves a revision (a commit, tag or branch) to its commit.
pub async fn resolve(dir: &Path, rev: &str) -> Result<String> {
    let spec = format!("{rev}^{{commit}}");
    Ok(run(
        dir,
        &["rev-parse", "--verify", "--quiet", &spec],
        LOCAL_TIMEOUT,
    )
    .await
    .map_err(|_| {
        AgentError::not_found(format!(
            "`{rev}` is not a commit, tag or branch of the project's repository"
        ))
    })?
    .trim()
    .to_string())
}

/// Moves the work tree (and its branch) to `commit`, keeping uncommitted changes that do not
/// conflict (`git reset --keep`; it refuses instead of losing one).
pub async fn move_to(dir: &Path, commit: &str) -> Result<()> {
    run(dir, &["reset", "--quiet", "--keep", commit], LOCAL_TIMEOUT)
        .await
        .map(|_| ())
}

/// The commit's author and subject.
pub async fn describe(dir: &Path, commit: &str) -> (String, String) {
    match run(
        dir,
        &["log", "-1", "--format=%an <%ae>%x00%s", commit],
        LOCAL_TIMEOUT,
    )
    .await
    {
        Ok(out) => {
            let (a, s) = out.trim_end().split_once('\0').unwrap_or(("", ""));
            (a.to_string(), s.to_string())
        }
        Err(_) => (String::new(), String::new()),
    }
}

/// The commit of `refname` in `git ls-remote` output.
pub fn parse_ls_remote(out: &str, refname: &str) -> Option<String> {
    out.lines().find_map(|line| {
        let (sha, name) = line.split_once('\t')?;
        (name.trim() == refname && sha.len() >= 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| sha.to_string())
    })
}

/// The commit of a release's revision (`git:<commit>[+dirty]`), when it is a git one.
pub fn revision_commit(revision: &str) -> Option<&str> {
    let rest = revision.strip_prefix("git:")?;
    Some(rest.strip_suffix("+dirty").unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_remote_output_gives_the_branch_head() {
        let out = "0123456789abcdef0123456789abcdef01234567\trefs/heads/main\n\
                   89abcdef0123456789abcdef0123456789abcdef\trefs/heads/main-old\n";
        assert_eq!(
            parse_ls_remote(out, "refs/heads/main").as_deref(),
            Some("0123456789abcdef0123456789abcdef01234567")
        );
        assert_eq!(parse_ls_remote(out, "refs/heads/dev"), None);
        assert_eq!(parse_ls_remote("", "refs/heads/main"), None);
    }

    #[test]
    fn a_release_revision_names_its_commit() {
        assert_eq!(revision_commit("git:abc+dirty"), Some("abc"));
        assert_eq!(revision_commit("git:abc"), Some("abc"));
        assert_eq!(revision_commit("sha256:abc"), None);
    }
}
