//! `instavm-agent`: PID 1 of a sandbox.
//!
//! The host starts it with `clone(2)` in fresh pid, mount, network, UTS and IPC namespaces, puts
//! it in the sandbox's cgroups, then hands it its [`AgentConfig`] on fd 3. The agent builds the
//! sandbox's root filesystem, enters the sandbox's user namespace (fd 5), locks itself down (capabilities, no_new_privs, seccomp), starts the
//! persistent Python interpreter, and serves host requests on the listening socket at fd 4: one
//! thread per connection, each connection a sequence of request/response exchanges.

mod bash;
mod cpus;
mod deadline;
mod env;
mod files;
mod output;
mod pty;
mod python;
mod reaper;
mod security;
mod setup;
mod sys;
mod user_command;

use instavm_protocol::{
    parse_json, read_frame, write_json, AgentConfig, ErrorKind, Lang, Request, Response, CONFIG_FD,
    LISTEN_FD, USERNS_FD, VERSION,
};
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};

fn main() {
    if let Err(e) = run() {
        eprintln!("instavm-agent: {e}");
        std::process::exit(1);
    }
}

fn read_config() -> io::Result<AgentConfig> {
    // SAFETY: the host passes the read end of the config pipe as fd 3 and nothing else in this
    // process owns it.
    let mut f = unsafe { std::fs::File::from_raw_fd(CONFIG_FD) };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    serde_json::from_slice(&buf)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad config: {e}")))
}

fn run() -> io::Result<()> {
    // Leave the server's session and process group: a signal to the server's group (Ctrl-C, a
    // test harness) must not reach sandboxes, which outlive server restarts.
    sys::setsid();
    // Whatever else the server process had open must not reach the sandbox.
    sys::close_fds_from(USERNS_FD + 1);
    // SAFETY: the host passes the sandbox's user namespace as fd 5; nothing else owns it.
    let userns = unsafe { OwnedFd::from_raw_fd(USERNS_FD) };
    sys::set_cloexec(&userns)?;
    // Before any thread exists, so every thread inherits the mask and only the reaper sees it.
    sys::block_sigchld()?;
    let cfg = read_config()?;
    // Before any thread or child exists, so they all inherit it.
    cpus::init(cfg.cpu);
    setup::enter_sandbox(&cfg, &userns)?;
    drop(userns);
    security::lock_down()?;
    // Stdout and stderr are a pipe the host reads start-up errors from; from here on nothing
    // of the host stays open in the sandbox.
    sys::silence_stdio()?;
    reaper::start()?;
    // SAFETY: the host passes a listening unix socket as fd 4; nothing else owns it.
    let listener = unsafe { UnixListener::from_raw_fd(LISTEN_FD) };
    // Inherited without close-on-exec; executed code must never get hold of it.
    sys::set_cloexec(&listener)?;
    env::init(&cfg);
    python::start_eagerly();
    deadline::start(cfg.deadline_unix_secs)?;

    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let spawned = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || serve(conn));
        if let Err(e) = spawned {
            eprintln!("instavm-agent: cannot start a connection thread: {e}");
        }
    }
    Ok(())
}

/// Serve one host connection until it closes or breaks the protocol.
fn serve(mut conn: UnixStream) {
    loop {
        let frame = match read_frame(&mut conn) {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                let _ = write_json(
                    &mut conn,
                    &files::error(ErrorKind::BadRequest, e.to_string()),
                );
                return;
            }
        };
        let request: Request = match parse_json(&frame) {
            Ok(r) => r,
            Err(e) => {
                let _ = write_json(
                    &mut conn,
                    &files::error(ErrorKind::BadRequest, e.to_string()),
                );
                return;
            }
        };
        if handle(&mut conn, request).is_err() {
            return;
        }
    }
}

fn handle(conn: &mut UnixStream, request: Request) -> io::Result<()> {
    let response = match request {
        Request::Ping => Response::Pong {
            version: VERSION,
            python_ready: python::is_ready(),
        },
        Request::Exec(spec) => {
            let result = match spec.lang {
                Lang::Python => python::run(&spec),
                Lang::Bash => bash::run(&spec),
            };
            match result {
                Ok(output) => return output.send(conn),
                Err(e) => files::error(ErrorKind::Other, format!("execution failed: {e}")),
            }
        }
        Request::WriteFile {
            path,
            create_parents,
            mode,
        } => return files::write_file(conn, &path, create_parents, mode),
        Request::ReadFile { path } => return files::read_file(conn, &path),
        Request::PtyOpen(spec) => pty::open(spec),
        Request::PtyList => pty::list(),
        Request::PtyGet { id } => pty::get(&id),
        Request::PtyResize { id, cols, rows } => pty::resize(&id, cols, rows),
        Request::PtyKill { id } => pty::kill(&id),
        Request::PtyAttach { id } => {
            // The connection becomes the terminal's stream and ends with it.
            pty::attach(conn.try_clone()?, &id)?;
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        Request::Stat { path } => files::stat(&path),
        Request::ListDir { path, recursive } => files::list_dir(&path, recursive),
        Request::SetDeadline { unix_secs } => {
            deadline::set(unix_secs);
            Response::Ok
        }
        Request::Configure {
            env: vars,
            deadline_unix_secs,
            cpu,
        } => {
            deadline::set(deadline_unix_secs);
            cpus::set(cpu, python::pid());
            match python::apply_env(env::extend(vars)) {
                Ok(()) => Response::Ok,
                Err(e) => files::error(ErrorKind::Other, format!("configure: {e}")),
            }
        }
    };
    write_json(conn, &response)
}
