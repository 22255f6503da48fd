//! A multi-node Docker Swarm on this one machine, for the cluster tests.
//!
//! Each node is a `dockerd` of its own in a network namespace of its own (own data root, exec
//! root, pidfile, socket and hostname, all under `$TMPDIR/dockhand-swarm/<pid>-<n>/`), the
//! namespaces joined by a bridge. What makes it work here, learned the hard way:
//! - the daemon is started with `nsenter --net=…` (not `ip netns exec`, which remounts `/sys`
//!   and hides the cgroups), and `unshare --uts` so each node has its own hostname;
//! - each daemon manages iptables inside its own namespace; the host's `FORWARD DROP` (the
//!   shared engine's) would drop what crosses the bridge (`br_netfilter`), so one rule accepts
//!   forwarding on that bridge (and only there), removed with the cluster;
//! - this kernel has no IPVS: no service VIPs, no routing mesh; services use
//!   `endpoint_mode: dnsrr` or task addresses, and a host process cannot reach an overlay
//!   address (a test reaches tasks from inside a container on the overlay).
//!
//! Each node can also be reached over real SSH ([`Cluster::start_ssh`]): the host's own
//! `sshd`, run in the node's network namespace on the node's address, with a host key and a
//! client key made for the cluster, and `SetEnv DOCKER_HOST=<the node's socket>` so what a
//! session runs (`docker`, `dockhand remote images|load`) reaches that node's Engine; an
//! ssh_config maps `m1.invalid`, `w1.invalid`, … to the nodes, for `$DOCKHAND_SSH_CONFIG`.
//!
//! Join tokens travel from the first manager's API to the others' through pipes, never a file
//! or a process argument. Everything is removed on drop, also when the test panics; what a
//! killed test process left behind is removed by the next [`Cluster::start`].

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::docker::{docker_ok, require_docker};

/// The first two octets of the nodes' addresses (shared address space, RFC 6598: neither the
/// host's networks nor Docker's default pools use it).
const NET_PREFIX: [u8; 2] = [100, 72];

/// The host's OpenSSH server, run per node by [`Cluster::start_ssh`].
const SSHD: &str = "/usr/sbin/sshd";

/// Whether a node manages the swarm or only runs tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Manager,
    Worker,
}

/// One node: a `dockerd` in its own network namespace.
pub struct Node {
    hostname: String,
    role: Role,
    addr: Ipv4Addr,
    dir: PathBuf,
    netns: String,
    dockerd: Option<Child>,
    sshd: Option<Child>,
}

/// A running swarm of namespaced `dockerd`s; removed on drop.
pub struct Cluster {
    names: Names,
    nodes: Vec<Node>,
}

/// The names one cluster's resources carry, all derived from the owning process and a
/// counter, so a later test can find and remove what a killed one left behind.
#[derive(Debug, Clone)]
struct Names {
    pid: u32,
    seq: u32,
}

impl Names {
    fn key(&self) -> String {
        format!("{}-{}", self.pid, self.seq)
    }
    fn dir(&self) -> PathBuf {
        base_dir().join(self.key())
    }
    /// At most 15 bytes (an interface name): `dhb` + hex pid (≤ 7) + hex seq.
    fn bridge(&self) -> String {
        format!("dhb{:x}{:x}", self.pid, self.seq)
    }
    fn veth(&self, index: usize) -> String {
        format!("dhv{:x}{:x}{:x}", self.pid, self.seq, index)
    }
    fn netns(&self, index: usize) -> String {
        format!("dhsw-{}-{index}", self.key())
    }
    fn netns_prefix(&self) -> String {
        format!("dhsw-{}-", self.key())
    }
    fn rule_comment(&self) -> String {
        format!("dockhand-swarm-{}", self.key())
    }
}

fn base_dir() -> PathBuf {
    std::env::temp_dir().join("dockhand-swarm")
}

impl Cluster {
    /// Starts `managers` managers (hostnames `m1`…) and `workers` workers (`w1`…), inits the
    /// swarm on `m1`, joins the others, and waits until every node is ready.
    pub fn start(managers: usize, workers: usize) -> Cluster {
        let cluster = Cluster::engines(managers, workers);
        let first = &cluster.nodes[0];
        let addr = first.addr.to_string();
        first.docker_ok(&[
            "swarm",
            "init",
            "--advertise-addr",
            &addr,
            "--listen-addr",
            &format!("{addr}:2377"),
        ]);
        let manager_token = first.docker_ok(&["swarm", "join-token", "-q", "manager"]);
        let worker_token = first.docker_ok(&["swarm", "join-token", "-q", "worker"]);
        for node in &cluster.nodes[1..] {
            let token = match node.role {
                Role::Manager => &manager_token,
                Role::Worker => &worker_token,
            };
            node.join(token, &format!("{addr}:2377"));
        }
        cluster.wait_all_ready();
        cluster
    }

    /// Starts the engines of `managers` managers (`m1`…) and `workers` workers (`w1`…), each
    /// answering on its socket, without a swarm: what `dockhand setup` forms one from. The
    /// roles are only the hostnames' (and [`Node::role`]) until a swarm is formed.
    pub fn engines(managers: usize, workers: usize) -> Cluster {
        assert!(managers >= 1, "a swarm needs a manager");
        assert!(managers + workers <= 15, "at most 15 nodes");
        require_docker();
        for tool in ["ip", "iptables", "nsenter", "unshare", "dockerd", "curl"] {
            require_tool(tool);
        }
        std::fs::create_dir_all(base_dir()).expect("create the swarm base directory");
        let lock = lock_base_dir();
        remove_leftovers();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let names = Names {
            pid: std::process::id(),
            seq: SEQ.fetch_add(1, Ordering::SeqCst),
        };
        assert!(names.seq < 16, "at most 16 clusters per test process");
        let third = free_subnet();
        let mut cluster = Cluster {
            names: names.clone(),
            nodes: Vec::new(),
        };
        std::fs::create_dir_all(names.dir()).expect("create the cluster directory");
        let bridge = names.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}.{}.{third}.1/24", NET_PREFIX[0], NET_PREFIX[1]),
            "dev",
            &bridge,
        ]);
        ip(&["link", "set", &bridge, "up"]);
        drop(lock);
        run_ok(
            "iptables",
            &[
                "-I",
                "FORWARD",
                "-i",
                &bridge,
                "-o",
                &bridge,
                "-m",
                "comment",
                "--comment",
                &names.rule_comment(),
                "-j",
                "ACCEPT",
            ],
        );

        let roles = std::iter::repeat_n(Role::Manager, managers)
            .chain(std::iter::repeat_n(Role::Worker, workers));
        let (mut m, mut w) = (0, 0);
        for (index, role) in roles.enumerate() {
            let hostname = match role {
                Role::Manager => {
                    m += 1;
                    format!("m{m}")
                }
                Role::Worker => {
                    w += 1;
                    format!("w{w}")
                }
            };
            let addr = Ipv4Addr::new(NET_PREFIX[0], NET_PREFIX[1], third, 2 + index as u8);
            let node = Node::create(&names, index, hostname, role, addr);
            cluster.nodes.push(node);
        }
        for node in &mut cluster.nodes {
            node.start_dockerd();
        }
        for node in &cluster.nodes {
            node.wait_answering();
        }
        cluster
    }

    /// Every node, managers first.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node with `hostname` (`m1`, `w2`, …).
    pub fn node(&self, hostname: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.hostname == hostname)
            .unwrap_or_else(|| panic!("no node {hostname} in the cluster"))
    }

    /// Mutable access to the node with `hostname`.
    pub fn node_mut(&mut self, hostname: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.hostname == hostname)
            .unwrap_or_else(|| panic!("no node {hostname} in the cluster"))
    }

    /// The host's own address on the bridge joining the nodes: what a task reaches a server
    /// of the test on (its traffic leaves through its node's address).
    pub fn bridge_addr(&self) -> Ipv4Addr {
        let o = self.nodes[0].addr.octets();
        Ipv4Addr::new(o[0], o[1], o[2], 1)
    }

    /// The first manager (the one that created the swarm).
    pub fn manager(&self) -> &Node {
        &self.nodes[0]
    }

    /// Copies `images` from the shared engine into every node (`docker save` once, `docker
    /// load` on each node, in parallel).
    pub fn load_images(&self, images: &[&str]) {
        let all: Vec<&str> = self.nodes.iter().map(|n| n.hostname.as_str()).collect();
        self.load_images_into(&all, images);
    }

    /// Copies `images` from the shared engine into the nodes `hostnames` only.
    pub fn load_images_into(&self, hostnames: &[&str], images: &[&str]) {
        let dir = self.names.dir().join("images");
        std::fs::create_dir_all(&dir).expect("create the image directory");
        let tar = dir.join("images.tar");
        let tar_arg = tar.to_str().expect("utf-8 temp path");
        let mut args = vec!["save", "-o", tar_arg];
        args.extend_from_slice(images);
        docker_ok(&args);
        std::thread::scope(|s| {
            for hostname in hostnames {
                let node = self.node(hostname);
                let tar = tar_arg;
                s.spawn(move || {
                    node.docker_ok(&["load", "-i", tar]);
                });
            }
        });
        let _ = std::fs::remove_file(&tar);
    }

    /// Makes every node reachable over SSH as root: the host's `sshd` in each node's network
    /// namespace, listening on the node's address, its sessions' `DOCKER_HOST` the node's
    /// Engine and their `PATH` starting with a directory holding `dockhand` (a link to
    /// `dockhand_bin`, the binary under test, as `dockhand setup` would have installed it).
    /// Returns the ssh_config file ([`Cluster::ssh_config`]) once every node lets root in.
    pub fn start_ssh(&mut self, dockhand_bin: &Path) -> PathBuf {
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} is missing: the swarm tests reach the nodes over SSH (apt-get install openssh-server openssh-client; no system sshd needs to run)"
        );
        require_tool("ssh-keygen");
        // sshd refuses to start without its privilege separation directory, which only a
        // running system service creates.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = self.names.dir().join("ssh");
        std::fs::create_dir_all(&dir).expect("create the ssh directory");
        crate::target::keygen(&dir.join("id"));
        crate::target::keygen(&dir.join("host_ed25519"));
        let bin = self.names.dir().join("bin");
        std::fs::create_dir_all(&bin).expect("create the bin directory");
        let _ = std::fs::remove_file(bin.join("dockhand"));
        std::os::unix::fs::symlink(dockhand_bin, bin.join("dockhand")).expect("link dockhand");
        std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).expect("authorized_keys");
        let host_key = std::fs::read_to_string(dir.join("host_ed25519.pub")).expect("host key");
        let mut known = String::new();
        let mut config = String::new();
        for node in &self.nodes {
            known += &format!("{} {}\n", node.addr, host_key.trim());
            config += &format!(
                "Host {host}.invalid\n  HostName {addr}\n  Port 22\n  IdentityFile {id}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n  ConnectTimeout 5\n  LogLevel ERROR\n\n",
                host = node.hostname,
                addr = node.addr,
                id = dir.join("id").display(),
                known = dir.join("known_hosts").display(),
            );
        }
        std::fs::write(dir.join("known_hosts"), known).expect("write known_hosts");
        std::fs::write(self.ssh_config(), config).expect("write ssh_config");
        for node in &mut self.nodes {
            node.start_sshd(&dir, &bin);
        }
        for node in &self.nodes {
            node.wait_ssh(&self.ssh_config());
        }
        self.ssh_config()
    }

    /// The ssh_config file of [`Cluster::start_ssh`]: host `<hostname>.invalid` for each node.
    pub fn ssh_config(&self) -> PathBuf {
        self.names.dir().join("ssh").join("ssh_config")
    }

    /// Adds the node label `key=value` to the node `hostname` (through the first manager).
    pub fn label(&self, hostname: &str, key: &str, value: &str) {
        self.manager().docker_ok(&[
            "node",
            "update",
            "--label-add",
            &format!("{key}={value}"),
            hostname,
        ]);
    }

    /// Polls the first manager until every node is `Ready` (at most 90 s).
    pub fn wait_all_ready(&self) {
        let want = self.nodes.len();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let out =
                self.manager()
                    .docker(&["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
            let text = String::from_utf8_lossy(&out.stdout);
            let ready = text.lines().filter(|l| l.ends_with(" Ready")).count();
            if out.status.success() && ready == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the swarm's {want} nodes were not all ready within 90s:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop_sshd();
            node.stop_dockerd();
        }
        teardown(&self.names);
    }
}

impl Node {
    fn create(names: &Names, index: usize, hostname: String, role: Role, addr: Ipv4Addr) -> Node {
        let netns = names.netns(index);
        let veth = names.veth(index);
        let dir = names.dir().join(&hostname);
        std::fs::create_dir_all(&dir).expect("create the node directory");
        std::fs::write(dir.join("daemon.json"), "{}\n").expect("write daemon.json");
        ip(&["netns", "add", &netns]);
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]);
        ip(&["link", "set", &veth, "master", &names.bridge(), "up"]);
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &netns, "link", "set", "eth0", "up"]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        Node {
            hostname,
            role,
            addr,
            dir,
            netns,
            dockerd: None,
            sshd: None,
        }
    }

    /// The node's hostname (`m1`, `w1`, …), which is its Swarm node name.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Manager or worker.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The node's address on the bridge (what it advertises to the swarm).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The node's Docker socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// Runs `program ARGS` in the node's network namespace (`nsenter --net`), e.g. `nft list
    /// ruleset` to read the firewall the node's sessions loaded.
    pub fn in_netns(&self, program: &str, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "failed to run {program} in node {}'s namespace: {e}",
                    self.hostname
                )
            })
    }

    /// The node's directory: its data root (`data/`), exec root, socket, log and config.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `unix:///…/docker.sock`, for `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The node's network namespace (`/run/netns/NAME`).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The node's engine processes by pid: every process whose command line names the node's
    /// directory (its `dockerd`, the `containerd` that one started, their shims, and the
    /// node's `sshd` once [`Cluster::start_ssh`] ran), for their memory and CPU time.
    pub fn engine_pids(&self) -> Vec<i32> {
        processes_mentioning(&self.dir)
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// Runs the docker CLI against this node.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.docker_host())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("failed to run docker {args:?}: {e}"))
    }

    /// Like [`Node::docker`]; panics unless it succeeds, returns stdout trimmed.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} on node {} failed: {}",
            self.hostname,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Kills the node's `dockerd` with SIGKILL (a node lost; its containers keep running
    /// until the cluster is dropped, as on a machine whose engine crashed).
    pub fn kill_dockerd(&mut self) {
        if let Some(mut child) = self.dockerd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Loses the node the way a machine goes: its `dockerd` killed (SIGKILL) and every
    /// process of its containers with it, so nothing it ran answers any more (its address and
    /// the overlay's tunnel endpoint stay up: what was sent to its tasks goes unanswered).
    pub fn lose(&mut self) {
        self.kill_dockerd();
        for _ in 0..3 {
            let pids = cgroup_processes(&self.netns);
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts the node's `dockerd` again after [`Node::kill_dockerd`], on the same data root,
    /// and waits until it answers: the node rejoins the swarm by itself (its swarm state is
    /// in the data root), as a server whose engine came back does.
    pub fn restart_dockerd(&mut self) {
        assert!(
            self.dockerd.is_none(),
            "the dockerd of node {} still runs",
            self.hostname
        );
        self.start_dockerd();
        self.wait_answering();
    }

    fn start_dockerd(&mut self) {
        // Appended to: a restarted daemon's log follows the killed one's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .expect("open the dockerd log");
        let dir = &self.dir;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .args(["--", "unshare", "--uts", "--", "sh", "-c"])
            .arg(r#"hostname "$0" && exec dockerd "$@""#)
            .arg(&self.hostname)
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(self.docker_host())
            // The containers' cgroups under one parent per node, so a teardown after a
            // killed daemon finds every process left.
            .arg("--cgroup-parent")
            .arg(&self.netns)
            .args(["--shutdown-timeout", "3"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start dockerd for node {}: {e}", self.hostname));
        self.dockerd = Some(child);
    }

    /// Starts the host's sshd in the node's network namespace (see [`Cluster::start_ssh`]).
    fn start_sshd(&mut self, ssh_dir: &Path, bin: &Path) {
        let config = self.dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {addr}:22\n\
                 HostKey {host_key}\n\
                 PidFile {pid}\n\
                 AuthorizedKeysFile {keys}\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 PermitRootLogin prohibit-password\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 MaxStartups 64\n\
                 MaxSessions 64\n\
                 SetEnv DOCKER_HOST={docker_host} PATH={bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
                addr = self.addr,
                host_key = ssh_dir.join("host_ed25519").display(),
                pid = self.dir.join("sshd.pid").display(),
                keys = ssh_dir.join("authorized_keys").display(),
                docker_host = self.docker_host(),
                bin = bin.display(),
            ),
        )
        .expect("write sshd_config");
        let log = File::create(self.dir.join("sshd.log")).expect("create the sshd log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .args(["--", SSHD, "-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start sshd for node {}: {e}", self.hostname));
        self.sshd = Some(child);
    }

    /// Waits until root logs in over SSH and the session reaches the node's own Engine.
    fn wait_ssh(&self, ssh_config: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new("ssh")
                .arg("-F")
                .arg(ssh_config)
                .args(["-o", "BatchMode=yes"])
                .arg(format!("root@{}.invalid", self.hostname))
                .arg("printf %s \"$DOCKER_HOST\"")
                .stdin(Stdio::null())
                .output()
                .expect("ssh is missing: apt-get install openssh-client");
            if out.status.success() {
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout),
                    self.docker_host(),
                    "node {}'s SSH sessions must reach its own Engine",
                    self.hostname
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {}'s sshd did not let root in within 30s: {}\nits log:\n{}",
                self.hostname,
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn stop_sshd(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn wait_answering(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.docker(&["version"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {}'s dockerd did not answer within 60s; its log:\n{}",
                self.hostname,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Joins the swarm through the Engine API (`POST /swarm/join`), the token in the
    /// request body on curl's stdin: never a file, never a process argument.
    fn join(&self, token: &str, remote: &str) {
        let addr = self.addr.to_string();
        let body = serde_json::json!({
            "ListenAddr": format!("{addr}:2377"),
            "AdvertiseAddr": addr,
            "RemoteAddrs": [remote],
            "JoinToken": token,
        });
        let mut child = Command::new("curl")
            .args(["-sS", "--fail-with-body", "--unix-socket"])
            .arg(self.socket())
            .args([
                "-H",
                "Content-Type: application/json",
                "-X",
                "POST",
                "--data-binary",
                "@-",
                "http://docker/swarm/join",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run curl");
        child
            .stdin
            .take()
            .expect("curl's stdin")
            .write_all(body.to_string().as_bytes())
            .expect("send the join request");
        let out = child.wait_with_output().expect("wait for curl");
        assert!(
            out.status.success(),
            "node {} could not join the swarm: {}{}",
            self.hostname,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stop_dockerd(&mut self) {
        let Some(mut child) = self.dockerd.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Removes everything of cluster `names`: processes (daemons, containerd, shims, containers),
/// mounts, the directory, the namespaces with their veths, the bridge and the forward rule.
/// Idempotent; each step is best effort so one failure does not leave the rest behind.
fn teardown(names: &Names) {
    let dir = names.dir();
    let netns: Vec<String> = list_netns()
        .into_iter()
        .filter(|n| n.starts_with(&names.netns_prefix()))
        .collect();
    // Every process still running from the cluster's directory (a daemon killed by a test,
    // its containerd and shims) or in a node's container cgroups.
    for _ in 0..3 {
        let mut pids = processes_mentioning(&dir);
        for ns in &netns {
            pids.extend(cgroup_processes(ns));
        }
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    for ns in &netns {
        remove_cgroups(ns);
    }
    for mount in mounts_under(&dir) {
        let _ = Command::new("umount")
            .args(["-l"])
            .arg(&mount)
            .stderr(Stdio::null())
            .status();
    }
    let _ = std::fs::remove_dir_all(&dir);
    for ns in &netns {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
    let _ = Command::new("ip")
        .args(["link", "del", &names.bridge()])
        .stderr(Stdio::null())
        .status();
    let comment = names.rule_comment();
    while Command::new("iptables")
        .args([
            "-D",
            "FORWARD",
            "-i",
            &names.bridge(),
            "-o",
            &names.bridge(),
        ])
        .args(["-m", "comment", "--comment", &comment, "-j", "ACCEPT"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {}
}

/// Removes the clusters of test processes that no longer run (killed before their drop).
fn remove_leftovers() {
    let mut stale: Vec<Names> = Vec::new();
    let mut consider = |key: &str| {
        let mut parts = key.splitn(2, '-');
        let (Some(pid), Some(seq)) = (parts.next(), parts.next()) else {
            return;
        };
        let (Ok(pid), Ok(seq)) = (pid.parse::<u32>(), seq.parse::<u32>()) else {
            return;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        if !stale.iter().any(|n| n.pid == pid && n.seq == seq) {
            stale.push(Names { pid, seq });
        }
    };
    if let Ok(entries) = std::fs::read_dir(base_dir()) {
        for entry in entries.flatten() {
            consider(&entry.file_name().to_string_lossy());
        }
    }
    for ns in list_netns() {
        // dhsw-<pid>-<seq>-<index>
        if let Some(rest) = ns.strip_prefix("dhsw-") {
            if let Some((key, _index)) = rest.rsplit_once('-') {
                consider(key);
            }
        }
    }
    for names in stale {
        teardown(&names);
    }
}

/// Takes the base directory's lock (held while subnets are chosen and bridges created, so
/// parallel test processes pick different ones).
fn lock_base_dir() -> nix::fcntl::Flock<File> {
    let file = File::create(base_dir().join(".lock")).expect("create the swarm lock file");
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the swarm base directory")
}

/// A third octet for `100.72.X.0/24` that no interface of the host uses yet.
fn free_subnet() -> u8 {
    let out = run_ok("ip", &["-4", "-o", "addr", "show"]);
    (1..=254u8)
        .find(|x| !out.contains(&format!(" {}.{}.{x}.", NET_PREFIX[0], NET_PREFIX[1])))
        .expect("a free 100.72.X.0/24 subnet")
}

fn list_netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Pids whose command line mentions `dir`.
fn processes_mentioning(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(&needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The cgroup (v1 `pids` hierarchy, else v2) directories named `parent` and everything below.
fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for root in [
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup",
    ] {
        let top = Path::new(root).join(parent);
        if top.is_dir() {
            collect_dirs(&top, &mut out);
        }
    }
    out
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

fn cgroup_processes(parent: &str) -> Vec<i32> {
    cgroup_dirs(parent)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Removes the node's container cgroups in every v1 hierarchy (deepest first).
fn remove_cgroups(parent: &str) {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut dirs = Vec::new();
    for e in entries.flatten() {
        let top = e.path().join(parent);
        if top.is_dir() {
            collect_dirs(&top, &mut dirs);
        }
    }
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
}

/// Mount points at or below `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&needle))
        .map(str::to_string)
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    mounts.dedup();
    mounts
}

fn require_tool(tool: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()));
    assert!(
        found,
        "`{tool}` is missing: the swarm tests need it (apt-get install iproute2 iptables util-linux docker.io curl)"
    );
}

fn ip(args: &[&str]) {
    run_ok("ip", args);
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("failed to run {program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `[destinations.NAME]` of a `dockhand.toml` for each of `nodes`, reached over SSH by the
/// names [`Cluster::ssh_config`] maps (`m1.invalid`, …).
pub fn destinations_toml(nodes: &[&str]) -> String {
    nodes
        .iter()
        .map(|n| format!("[destinations.{n}]\nhost = \"ssh://root@{n}.invalid\"\n"))
        .collect()
}

/// A service's `health` line for the test app on port 8080, run by Swarm in the task. nc's
/// input stays open a second: hyper drops an HTTP/1.0 request whose client half-closed
/// before the request was read.
pub const TESTAPP_SWARM_HEALTH: &str = "health = { command = \"(printf 'GET /health HTTP/1.0\\\\r\\\\n\\\\r\\\\n'; sleep 1) | nc -w 2 127.0.0.1 8080 | grep -q ' 200 '\", interval = \"2s\", timeout = \"10s\", unhealthy_threshold = 3 }";
