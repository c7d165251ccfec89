//! Zero-config detection and the plan output without Python: expected JSON recorded from the
//! reference CLI (`instavm deploy DIR --plan --json`, instavm 0.26.1) on the same projects.

use std::path::Path;

use instavm_manifest::{detect_project, resolve_plan, DeployOptions, DetectError, Plan};

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let full = root.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }
    root
}

/// The plan JSON for a project directory named `name`.
fn plan_json(name: &str, files: &[(&str, &str)]) -> String {
    let root = project(&[]);
    let dir = root.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    for (path, content) in files {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }
    let plan = resolve_plan(&dir, &DeployOptions::default()).unwrap();
    assert!(matches!(plan, Plan::Detected(_)));
    plan.to_json_line().unwrap()
}

#[test]
fn node_project() {
    let json = plan_json(
        "node-app",
        &[
            (
                "package.json",
                r#"{"name": "Node App", "scripts": {"build": "tsc", "start": "node dist/server.js"}, "dependencies": {"openai": "4"}}"#,
            ),
            ("package-lock.json", "{}"),
            (
                "server.js",
                r#"const port = process.env.PORT || 4000; const k = process.env.API_TOKEN; app.get("/healthz")"#,
            ),
        ],
    );
    assert_eq!(
        json,
        r#"{"slug": "node-app", "runtime": "node", "package_manager": "npm", "install_command": "npm ci", "build_command": "npm run build", "start_command": "npm start", "port": 4000, "health_path": "/healthz", "secrets": ["OPENAI_API_KEY", "API_TOKEN"]}"#
    );
}

#[test]
fn python_project() {
    let json = plan_json(
        "py-app",
        &[
            ("requirements.txt", "fastapi\nuvicorn\n"),
            (
                "main.py",
                "import os\nos.getenv(\"DB_URL\")\n@app.get(\"/api/health\")\n",
            ),
        ],
    );
    assert_eq!(
        json,
        r#"{"slug": "py-app", "runtime": "python", "package_manager": "pip", "install_command": "pip install -r requirements.txt", "build_command": null, "start_command": "python -m uvicorn main:app --host 0.0.0.0 --port 8000", "port": 8000, "health_path": "/api/health", "secrets": ["DB_URL"]}"#
    );
}

#[test]
fn go_project() {
    let json = plan_json(
        "go-app",
        &[
            ("go.mod", "module x\n\ngo 1.22\n"),
            (
                "main.go",
                "package main\nhttp.ListenAndServe(\":9090\", nil)\n",
            ),
        ],
    );
    assert!(json.starts_with(r#"{"slug": "go-app", "runtime": "go", "package_manager": "go", "install_command": "GO_VERSION=\"1.22\" && "#));
    assert!(json.ends_with(
        r#"-o app .", "start_command": "./app", "port": 9090, "health_path": "/", "secrets": []}"#
    ));
}

#[test]
fn static_site() {
    let json = plan_json("site", &[("public/index.html", "hi")]);
    assert_eq!(
        json,
        r#"{"slug": "site", "runtime": "static", "package_manager": "none", "install_command": "echo 'No dependencies'", "build_command": null, "start_command": "python3 -m http.server 3000 --directory public --bind 0.0.0.0", "port": 3000, "health_path": "/", "secrets": []}"#
    );
}

#[test]
fn refusals() {
    let empty = project(&[("README.md", "x")]);
    assert_eq!(
        detect_project(empty.path()).unwrap_err().to_string(),
        "Could not detect project type. Expected package.json, requirements.txt, pyproject.toml, Pipfile, go.mod, deno.json, or index.html."
    );
    let broken = project(&[("package.json", "{\"name\": 1,}")]);
    assert_eq!(
        detect_project(broken.path()).unwrap_err().to_string(),
        "Cannot read package.json: Expecting property name enclosed in double quotes: line 1 column 12 (char 11)"
    );
    let odd = project(&[("package.json", r#"{"scripts": ["start"]}"#)]);
    let err = detect_project(odd.path()).unwrap_err();
    assert!(matches!(err, DetectError::Python(_)));
    assert_eq!(
        err.to_string(),
        "AttributeError: 'list' object has no attribute 'get'"
    );
}

#[test]
fn overrides_apply_like_the_cli() {
    let dir = project(&[("index.html", "hi")]);
    let options = DeployOptions {
        port: Some(8080.into()),
        build_command: Some(String::new()),
        snapshot_id: Some("snap-1".into()),
        ..DeployOptions::default()
    };
    let Plan::Detected(plan) = resolve_plan(dir.path(), &options).unwrap() else {
        panic!("detected plan expected");
    };
    assert_eq!(plan.plan.port, 8080.into());
    assert_eq!(plan.plan.build_command.as_deref(), Some(""));
    let manifest = instavm_manifest::detect::plan_to_manifest(&plan.plan, &plan.path).unwrap();
    assert_eq!(
        manifest.source.unwrap().setup_command,
        "echo 'No dependencies'"
    );
    assert!(Path::new(&plan.path).is_dir());
}
