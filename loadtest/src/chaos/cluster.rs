//! Private instances for the chaos run: a RabbitMQ node with its own node
//! name and ports, a `redis-server` on a free port and an `initdb` cluster,
//! all in one temporary directory, plus Herald's own processes. Nothing here
//! touches the machine's shared services; everything stops on drop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// The directory of this program, or of the one a test runs from (a
/// test's executable lives one level deeper, in `deps/`): where cargo put
/// the workspace's binaries.
pub fn bin_dir_of_this_build() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .context("the program has no directory")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free port")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until something accepts connections on `port`.
pub async fn wait_port(port: u16, timeout: Duration, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not listen on port {port} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args…`, as `user` when we are root (RabbitMQ and PostgreSQL
/// refuse to run as root).
fn command_as(user: &str, program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", user, "--", program]);
        c
    } else {
        Command::new(program)
    }
}

fn chown(user: &str, path: &Path) -> anyhow::Result<()> {
    if is_root() {
        let status = std::process::Command::new("chown")
            .args(["-R", user])
            .arg(path)
            .status()?;
        anyhow::ensure!(status.success(), "chown {user} {} failed", path.display());
    }
    Ok(())
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<(Stdio, Stdio)> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .with_context(|| format!("cannot open {name}.log in {}", dir.display()))?;
    Ok((Stdio::from(file.try_clone()?), Stdio::from(file)))
}

fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn alive(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Sends `sig` to `pid` and waits up to `patience` for it to exit; then
/// kills it.
async fn stop_pid(pid: u32, sig: &str, patience: Duration) {
    signal(pid, sig);
    let deadline = Instant::now() + patience;
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if alive(pid) {
        signal(pid, "KILL");
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// A RabbitMQ node of our own: node name `herald-chaos-<port>@localhost`,
/// its own AMQP and distribution ports, data and logs under `dir`.
pub struct PrivateRabbit {
    dir: PathBuf,
    pub port: u16,
    dist_port: u16,
    /// Its own port mapper (epmd), stopped with the node.
    epmd_port: u16,
    node: String,
    child: Option<Child>,
}

impl PrivateRabbit {
    pub fn new(root: &Path) -> anyhow::Result<PrivateRabbit> {
        let dir = root.join("rabbitmq");
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let dist_port = free_port()?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\nloopback_users = none\n"),
        )?;
        chown("rabbitmq", &dir)?;
        Ok(PrivateRabbit {
            dir,
            port,
            dist_port,
            epmd_port: free_port()?,
            node: format!("herald-chaos-{port}@localhost"),
            child: None,
        })
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Adds a line to the node's `rabbitmq.conf` (read when it starts).
    pub fn configure(&self, line: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("rabbitmq.conf"))?;
        writeln!(conf, "{line}")?;
        Ok(())
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("node.pid")
    }

    pub async fn start(&mut self) -> anyhow::Result<()> {
        let (out, err) = log_file(&self.dir, "stdout")?;
        let mut cmd = command_as("rabbitmq", "rabbitmq-server");
        cmd.env("HOME", if is_root() { "/var/lib/rabbitmq" } else { "" })
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq.conf"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.dir.join("enabled_plugins"),
            )
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_PID_FILE", self.pid_file())
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: the VM runs under runuser and a shell,
            // and the whole group is killed on drop.
            .process_group(0)
            .kill_on_drop(true);
        if !is_root() {
            cmd.env_remove("HOME");
        }
        self.child = Some(cmd.spawn().context("cannot run rabbitmq-server")?);
        wait_port(self.port, Duration::from_secs(90), "the private RabbitMQ").await
    }

    /// A clean stop (SIGTERM to the Erlang VM), as a restart does.
    pub async fn stop(&mut self) {
        if let Some(pid) = read_pid(&self.pid_file()) {
            stop_pid(pid, "TERM", Duration::from_secs(30)).await;
        }
        if let Some(mut child) = self.child.take() {
            kill_group(&child);
            let _ = child.kill().await;
        }
        let _ = std::fs::remove_file(self.pid_file());
    }

    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.start().await
    }

    /// Runs `rabbitmqctl -n <node> args…` against this node (as the
    /// rabbitmq user when we are root, so that the Erlang cookie matches).
    pub async fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = command_as("rabbitmq", "rabbitmqctl");
        if is_root() {
            cmd.env("HOME", "/var/lib/rabbitmq");
        }
        let out = cmd
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .args(["-n", &self.node])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .context("cannot run rabbitmqctl")?;
        anyhow::ensure!(
            out.status.success(),
            "rabbitmqctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        if let Some(pid) = read_pid(&self.pid_file()) {
            signal(pid, "KILL");
        }
        if let Some(child) = &self.child {
            kill_group(child);
        }
        let _ = std::process::Command::new("epmd")
            .args(["-port", &self.epmd_port.to_string(), "-kill"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Kills the process group `child` leads (started with `process_group(0)`).
fn kill_group(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
    }
}

/// A `redis-server` on a free port, with an append-only file under `dir`.
pub struct PrivateRedis {
    dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn new(root: &Path) -> anyhow::Result<PrivateRedis> {
        let dir = root.join("redis");
        std::fs::create_dir_all(&dir)?;
        Ok(PrivateRedis {
            dir,
            port: free_port()?,
            child: None,
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn start(&mut self) -> anyhow::Result<()> {
        let (out, err) = log_file(&self.dir, "redis")?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--appendonly", "yes", "--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .context("cannot run redis-server")?;
        self.child = Some(child);
        wait_port(self.port, Duration::from_secs(30), "the private Redis").await
    }

    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Our own child: wait on it (a zombie still answers `kill -0`).
            if let Some(pid) = child.id() {
                signal(pid, "TERM");
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }

    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.start().await
    }

    /// Restarts with nothing kept: the append-only file is deleted while
    /// the server is down (as a Redis without persistence restarts).
    pub async fn restart_empty(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with("appendonly") {
                let path = entry.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            }
        }
        self.start().await
    }
}

/// A PostgreSQL cluster made by `initdb` in `dir`, trust authentication,
/// listening on 127.0.0.1 and a free port.
pub struct PrivatePostgres {
    data: PathBuf,
    bin: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl PrivatePostgres {
    pub async fn init(root: &Path) -> anyhow::Result<PrivatePostgres> {
        let data = root.join("postgres");
        std::fs::create_dir_all(&data)?;
        chown("postgres", root.join("postgres").as_path())?;
        let bin = postgres_bin_dir()?;
        let out = command_as("postgres", &bin.join("initdb").display().to_string())
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-D"])
            .arg(&data)
            .stdin(Stdio::null())
            .output()
            .await
            .context("cannot run initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(PrivatePostgres {
            data,
            bin,
            port: free_port()?,
            child: None,
        })
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub async fn start(&mut self) -> anyhow::Result<()> {
        let (out, err) = log_file(self.data.parent().unwrap_or(&self.data), "postgres")?;
        let child = command_as("postgres", &self.bin.join("postgres").display().to_string())
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.data)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("cannot run postgres")?;
        self.child = Some(child);
        wait_port(self.port, Duration::from_secs(60), "the private PostgreSQL").await?;
        // Accepting TCP comes slightly before accepting sessions.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }

    /// A fast shutdown (SIGINT to the postmaster): sessions end, nothing
    /// committed is lost.
    pub async fn stop(&mut self) {
        if let Some(pid) = read_pid(&self.data.join("postmaster.pid")) {
            stop_pid(pid, "INT", Duration::from_secs(30)).await;
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.start().await
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(pid) = read_pid(&self.data.join("postmaster.pid")) {
            signal(pid, "QUIT");
        }
        if let Some(child) = &self.child {
            kill_group(child);
        }
    }
}

/// The directory holding `initdb` and `postgres` (Debian keeps them out of
/// `PATH`, under /usr/lib/postgresql/<version>/bin).
fn postgres_bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .context("initdb not found (install postgresql: deploy/local/services.sh)")
}

/// One of Herald's processes, run from its binary with the given
/// environment; stdout and stderr go to `<dir>/<name>.log`.
pub struct Process {
    pub name: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
    child: Option<Child>,
}

impl Process {
    pub fn new(name: &str, binary: PathBuf, env: Vec<(String, String)>, dir: &Path) -> Process {
        Process {
            name: name.to_owned(),
            binary,
            env,
            dir: dir.to_owned(),
            child: None,
        }
    }

    /// Sets `key` for the next [`Process::start`]; an empty value removes it.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        if !value.is_empty() {
            self.env.push((key.to_owned(), value.to_owned()));
        }
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let (out, err) = log_file(&self.dir, &self.name)?;
        let child = Command::new(&self.binary)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// `kill -9`: no chance to finish anything.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM, and how long the process took to exit (killed after 40 s).
    pub async fn terminate(&mut self) -> Option<Duration> {
        let mut child = self.child.take()?;
        let began = Instant::now();
        let pid = child.id()?;
        signal(pid, "TERM");
        match tokio::time::timeout(Duration::from_secs(40), child.wait()).await {
            Ok(_) => Some(began.elapsed()),
            Err(_) => {
                let _ = child.kill().await;
                None
            }
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether it exited by itself (a crash).
    pub fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_some(),
            None => false,
        }
    }
}
