//! Small file-system changes the runtime has no call for (mkdir, rm, mv, chmod), as shell
//! commands in the VM.

use instavm_runtime::{ExecRequest, Language, Runtime, SandboxId};
use std::sync::Arc;

/// `text` as one single-quoted shell word.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Run `command` with bash in the VM; its stderr is the error.
pub async fn run(
    runtime: &Arc<dyn Runtime>,
    sandbox: &SandboxId,
    command: &str,
) -> Result<(), String> {
    let req = ExecRequest {
        language: Language::Bash,
        code: command.to_owned(),
        timeout: None,
    };
    match runtime.exec(sandbox, req).await {
        Ok(out) if out.exit_code == 0 => Ok(()),
        Ok(out) => Err(out.stderr.trim().to_string()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting() {
        assert_eq!(super::quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(super::quote("it's"), "'it'\\''s'");
    }
}
