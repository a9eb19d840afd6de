//! Container context: which container a process runs in, from its cgroup path, and what the
//! runtime's own state says about that container (image, Kubernetes pod and namespace).
//!
//! The cgroup path names the container for every runtime Ringfence knows, under systemd and
//! cgroupfs cgroup managers alike:
//!
//! | runtime    | systemd                        | cgroupfs                              |
//! |------------|--------------------------------|---------------------------------------|
//! | docker     | `docker-<id>.scope`            | `/docker/<id>`                        |
//! | containerd | `cri-containerd-<id>.scope`    | `.../cri-containerd-<id>`             |
//! | CRI-O      | `crio-<id>.scope`              | `.../crio-<id>`                       |
//! | podman     | `libpod-<id>.scope`            | `/libpod_parent/libpod-<id>`          |
//!
//! The runtimes' monitor processes (`libpod-conmon-<id>`, `crio-conmon-<id>`) are not in the
//! container and are not matched. Ids are 64 lower-case hex digits; anything else is refused.
//!
//! Two ways to a path: `/proc/PID/cgroup` ([`from_proc_cgroup`], both modes), and in eBPF mode
//! the cgroup id every record carries, which is the inode number of the cgroup's directory on
//! the cgroup2 mount ([`CgroupIds`] walks the mount, bounded, and caches what it found).
//!
//! Runtime state is read from disk once per container and cached ([`lookup`]); every read is
//! bounded and every parse is of untrusted bytes (a container's creator chooses its labels),
//! so a file that is missing, too big or malformed just leaves the image unknown.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringfence_event::Container;
use serde_json::Value as Json;

/// A container runtime recognised from a cgroup path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    Containerd,
    CriO,
    Podman,
}

impl Runtime {
    /// ECS `container.runtime`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
        }
    }
}

/// A container id: exactly 64 lower-case hex digits.
fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The container one cgroup path component names, given the component before it.
fn component<'a>(parent: Option<&str>, part: &'a str) -> Option<(Runtime, &'a str)> {
    let part = part.strip_suffix(".scope").unwrap_or(part);
    if is_container_id(part) {
        // A bare id is docker's cgroupfs layout (`/docker/<id>`); under anything else a bare id
        // names no runtime Ringfence can tell apart.
        return (parent == Some("docker")).then_some((Runtime::Docker, part));
    }
    const PREFIXES: [(&str, Runtime); 4] = [
        ("docker-", Runtime::Docker),
        ("cri-containerd-", Runtime::Containerd),
        ("crio-", Runtime::CriO),
        ("libpod-", Runtime::Podman),
    ];
    PREFIXES.iter().find_map(|(prefix, runtime)| {
        let id = part.strip_prefix(prefix)?;
        is_container_id(id).then_some((*runtime, id))
    })
}

/// The container a cgroup path (`/system.slice/docker-<id>.scope`) names: the deepest
/// component that names one, so a container nested in another is reported as itself.
pub fn from_cgroup_path(path: &str) -> Option<(Runtime, &str)> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).take(64).collect();
    (0..parts.len()).rev().find_map(|i| {
        let parent = i.checked_sub(1).and_then(|j| parts.get(j)).copied();
        component(parent, parts.get(i)?)
    })
}

/// The container named by the text of `/proc/PID/cgroup` (`ID:CONTROLLERS:PATH` lines): the
/// unified (`0::`) line first, then the v1 lines in order. At most 64 lines are looked at.
pub fn from_proc_cgroup(text: &[u8]) -> Option<(Runtime, String)> {
    let mut first_v1 = None;
    for line in text.split(|&b| b == b'\n').take(64) {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(_controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Some((runtime, cid)) = from_cgroup_path(path) else {
            continue;
        };
        if id == "0" {
            return Some((runtime, cid.to_owned()));
        }
        first_v1.get_or_insert((runtime, cid.to_owned()));
    }
    first_v1
}

/// What a runtime's state file says about a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateInfo {
    pub image_name: Option<String>,
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
}

/// The longest label value kept; a longer one is cut (at a character boundary).
const MAX_LABEL: usize = 512;

fn label(map: Option<&Json>, key: &str) -> Option<String> {
    let value = map?.get(key)?.as_str()?;
    if value.is_empty() {
        return None;
    }
    let mut end = value.len().min(MAX_LABEL);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Some(value[..end].to_owned())
}

/// The state of one container from the runtime's file about it:
/// - docker `config.v2.json`: `Config.Image`, and the pod labels in `Config.Labels`;
/// - an OCI bundle's `config.json` (CRI-O, containerd): the CRI annotations;
/// - podman's `containers.json` (all containers in one array): the entry with `id`, whose
///   `metadata` is itself JSON text holding `image-name`.
pub fn parse_state(runtime: Runtime, id: &str, bytes: &[u8]) -> StateInfo {
    let Ok(json) = serde_json::from_slice::<Json>(bytes) else {
        return StateInfo::default();
    };
    match runtime {
        Runtime::Docker => {
            let config = json.get("Config");
            let labels = config.and_then(|c| c.get("Labels"));
            StateInfo {
                image_name: label(config, "Image"),
                pod_name: label(labels, "io.kubernetes.pod.name"),
                pod_namespace: label(labels, "io.kubernetes.pod.namespace"),
            }
        }
        Runtime::CriO | Runtime::Containerd => {
            let notes = json.get("annotations");
            StateInfo {
                image_name: label(notes, "io.kubernetes.cri-o.ImageName")
                    .or_else(|| label(notes, "io.kubernetes.cri.image-name")),
                pod_name: label(notes, "io.kubernetes.pod.name")
                    .or_else(|| label(notes, "io.kubernetes.cri.sandbox-name")),
                pod_namespace: label(notes, "io.kubernetes.pod.namespace")
                    .or_else(|| label(notes, "io.kubernetes.cri.sandbox-namespace")),
            }
        }
        Runtime::Podman => {
            let entry = json.as_array().and_then(|all| {
                all.iter()
                    .find(|c| c.get("id").and_then(Json::as_str) == Some(id))
            });
            let metadata = entry
                .and_then(|c| c.get("metadata"))
                .and_then(Json::as_str)
                .and_then(|m| serde_json::from_str::<Json>(m).ok());
            StateInfo {
                image_name: label(metadata.as_ref(), "image-name"),
                ..StateInfo::default()
            }
        }
    }
}

/// Where each runtime keeps the state of container `id`, in the order tried.
fn state_paths(runtime: Runtime, id: &str) -> Vec<String> {
    match runtime {
        Runtime::Docker => vec![format!("/var/lib/docker/containers/{id}/config.v2.json")],
        Runtime::CriO => vec![format!(
            "/var/lib/containers/storage/overlay-containers/{id}/userdata/config.json"
        )],
        Runtime::Containerd => ["k8s.io", "moby", "default"]
            .iter()
            .map(|ns| {
                format!("/run/containerd/io.containerd.runtime.v2.task/{ns}/{id}/config.json")
            })
            .collect(),
        Runtime::Podman => {
            vec!["/var/lib/containers/storage/overlay-containers/containers.json".to_owned()]
        }
    }
}

/// The most read of one state file (podman's holds every container on the host).
const STATE_LIMIT: u64 = 8 << 20;

fn read_bounded(path: &str, limit: u64) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .ok()?;
    // A file past the limit is not parsed: a cut JSON text would not parse anyway.
    (buf.len() as u64 <= limit).then_some(buf)
}

/// Containers looked up so far, by id. Bounded: past this the cache starts over.
const CACHE_LIMIT: usize = 4096;

/// How long a container whose state was not found waits before its state is read again (the
/// runtime may write it just after starting the first process).
const RETRY_MISSING_STATE: Duration = Duration::from_secs(2);

struct Cached {
    container: Arc<Container>,
    /// When the state was read and found no image, for the retry.
    missing_since: Option<Instant>,
}

static CACHE: Mutex<Option<HashMap<String, Cached>>> = Mutex::new(None);

/// The container `id` run by `runtime`, with what its state on disk says. Cached per id.
pub fn lookup(runtime: Runtime, id: &str) -> Arc<Container> {
    let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = guard.get_or_insert_with(HashMap::new);
    if let Some(c) = cache.get(id)
        && c.missing_since
            .is_none_or(|since| since.elapsed() < RETRY_MISSING_STATE)
    {
        return c.container.clone();
    }
    let state = state_paths(runtime, id)
        .iter()
        .find_map(|p| read_bounded(p, STATE_LIMIT))
        .map(|bytes| parse_state(runtime, id, &bytes))
        .unwrap_or_default();
    let container = Arc::new(Container {
        id: id.to_owned(),
        runtime: Cow::Borrowed(runtime.as_str()),
        image_name: state.image_name,
        pod_name: state.pod_name,
        pod_namespace: state.pod_namespace,
    });
    if cache.len() >= CACHE_LIMIT {
        cache.clear();
    }
    let missing_since = container.image_name.is_none().then(Instant::now);
    cache.insert(
        id.to_owned(),
        Cached {
            container: container.clone(),
            missing_since,
        },
    );
    container
}

/// The most read of `/proc/PID/cgroup` (a v1 host lists one line per hierarchy).
pub const CGROUP_FILE_LIMIT: u64 = 64 << 10;

/// The container `pid` runs in, from `/proc/PID/cgroup`; `None` outside one or when the
/// process is gone.
pub fn of_pid(pid: u32) -> Option<Arc<Container>> {
    let text = read_bounded(&format!("/proc/{pid}/cgroup"), CGROUP_FILE_LIMIT)?;
    of_cgroup_text(&text)
}

/// The container named by the text of a `/proc/PID/cgroup`, looked up.
pub fn of_cgroup_text(text: &[u8]) -> Option<Arc<Container>> {
    let (runtime, id) = from_proc_cgroup(text)?;
    Some(lookup(runtime, &id))
}

/// Cgroup ids (the inode numbers of cgroup2 directories, as eBPF's `bpf_get_current_cgroup_id`
/// reports them) resolved to containers by walking the cgroup2 mount.
///
/// A walk records every directory it sees: those in a container (one that names it by id, and
/// every directory below it), and the rest in a set of ids known to name none. An id seen in
/// neither starts a new walk, at most one per [`CgroupIds::RESCAN_EVERY`]; between walks it is
/// [`Placement::Unknown`] (the eBPF source then reads `/proc/PID/cgroup` for execs). Walks stop
/// at [`CgroupIds::MAX_DIRS`] directories and [`CgroupIds::MAX_DEPTH`] levels.
///
/// Only a unified host's tree is the whole truth: on a hybrid host runtimes may place their
/// containers in the v1 hierarchies, so an id outside every container there is still
/// [`Placement::Unknown`], never [`Placement::Host`].
#[derive(Debug)]
pub struct CgroupIds {
    /// The cgroup2 mount, if the host has one.
    root: Option<std::path::PathBuf>,
    /// The cgroup2 tree is the host's only one (a unified host): an id it shows outside every
    /// container is no container's.
    authoritative: bool,
    containers: HashMap<u64, (Runtime, String)>,
    others: HashSet<u64>,
    last_walk: Option<Instant>,
    /// Walks that stopped at the directory limit.
    pub truncated_walks: u64,
}

impl CgroupIds {
    pub const MAX_DIRS: usize = 50_000;
    pub const MAX_DEPTH: usize = 16;
    pub const RESCAN_EVERY: Duration = Duration::from_millis(250);

    /// Resolve against the host's cgroup2 mount: `/sys/fs/cgroup` on a unified host,
    /// `/sys/fs/cgroup/unified` on a hybrid one.
    pub fn new() -> CgroupIds {
        const UNIFIED: &str = "/sys/fs/cgroup";
        let root = [UNIFIED, "/sys/fs/cgroup/unified"]
            .into_iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.join("cgroup.controllers").exists());
        let unified = root.as_deref() == Some(std::path::Path::new(UNIFIED));
        let mut ids = CgroupIds::at(root);
        ids.authoritative = unified;
        ids
    }

    /// Resolve against the cgroup2 tree at `root`, taken as the host's only tree (tests use a
    /// plain directory tree).
    pub fn at(root: Option<std::path::PathBuf>) -> CgroupIds {
        CgroupIds {
            authoritative: root.is_some(),
            root,
            containers: HashMap::new(),
            others: HashSet::new(),
            last_walk: None,
            truncated_walks: 0,
        }
    }

    /// Where cgroup `id` puts a process: in a container, surely in none, or not known here.
    pub fn place(&mut self, id: u64) -> Placement {
        let authoritative = self.authoritative;
        let outside = || {
            if authoritative {
                Placement::Host
            } else {
                Placement::Unknown
            }
        };
        // An unset id (0) says nothing; the root cgroup (1) is no container's.
        if id == 0 {
            return Placement::Unknown;
        }
        if id == 1 || self.others.contains(&id) {
            return outside();
        }
        if !self.containers.contains_key(&id) {
            if self
                .last_walk
                .is_some_and(|t| t.elapsed() < Self::RESCAN_EVERY)
            {
                return Placement::Unknown;
            }
            self.walk();
            if self.others.contains(&id) {
                return outside();
            }
        }
        match self.containers.get(&id) {
            Some((runtime, cid)) => Placement::Container(lookup(*runtime, cid)),
            None => Placement::Unknown,
        }
    }

    fn walk(&mut self) {
        use std::os::unix::fs::MetadataExt;
        self.last_walk = Some(Instant::now());
        let Some(root) = self.root.clone() else {
            return;
        };
        self.containers.clear();
        self.others.clear();
        // Each directory to read, its name, its depth, and the container it is in (if any).
        type Pending = (std::path::PathBuf, String, usize, Option<(Runtime, String)>);
        let mut stack: Vec<Pending> = vec![(root, String::new(), 0, None)];
        let mut seen = 0usize;
        while let Some((dir, parent_name, depth, inside)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                if !meta.is_dir() {
                    continue;
                }
                seen += 1;
                if seen > Self::MAX_DIRS {
                    self.truncated_walks += 1;
                    return;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let parent = (!parent_name.is_empty()).then_some(parent_name.as_str());
                // The deepest directory that names a container wins, as in a cgroup path.
                let container = component(parent, &name)
                    .map(|(runtime, cid)| (runtime, cid.to_owned()))
                    .or_else(|| inside.clone());
                match &container {
                    Some(c) => {
                        self.containers.insert(meta.ino(), c.clone());
                    }
                    None => {
                        self.others.insert(meta.ino());
                    }
                }
                if depth + 1 < Self::MAX_DEPTH {
                    stack.push((entry.path(), name, depth + 1, container));
                }
            }
        }
    }
}

/// Where a cgroup id puts a process ([`CgroupIds::place`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    Container(Arc<Container>),
    /// In no container: the unified tree shows the id outside all of them.
    Host,
    /// Not known from the tree (a hybrid host, a cgroup newer than the last walk, past the
    /// walk's limits): `/proc/PID/cgroup` tells.
    Unknown,
}

impl Default for CgroupIds {
    fn default() -> Self {
        CgroupIds::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3b4411529b6deff2e31b43d45fbf19a886844a97b8a4c04493894e9063b6df2b";

    #[test]
    fn every_runtime_layout_names_its_container() {
        let cases = [
            (format!("/system.slice/docker-{ID}.scope"), Runtime::Docker),
            (format!("/docker/{ID}"), Runtime::Docker),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-{ID}.scope"
                ),
                Runtime::Containerd,
            ),
            (
                format!("/kubepods/besteffort/pod1/crio-{ID}"),
                Runtime::CriO,
            ),
            (format!("/kubepods.slice/crio-{ID}.scope"), Runtime::CriO),
            (format!("/machine.slice/libpod-{ID}.scope"), Runtime::Podman),
            (format!("/libpod_parent/libpod-{ID}"), Runtime::Podman),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                Runtime::Podman,
            ),
        ];
        for (path, runtime) in cases {
            assert_eq!(from_cgroup_path(&path), Some((runtime, ID)), "{path}");
        }
    }

    #[test]
    fn monitors_hosts_and_bad_ids_name_no_container() {
        for path in [
            "/".to_owned(),
            "/user.slice/user-0.slice/session-1.scope".to_owned(),
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            format!("/kubepods.slice/crio-conmon-{ID}.scope"),
            format!("/system.slice/{ID}"),
            format!("/docker/{}", ID.to_uppercase()),
            format!("/docker/{}", &ID[1..]),
            format!("/system.slice/docker-{ID}x.scope"),
        ] {
            assert_eq!(from_cgroup_path(&path), None, "{path}");
        }
    }

    #[test]
    fn proc_cgroup_prefers_the_unified_line_and_reads_v1_hosts() {
        let other = "a".repeat(64);
        let hybrid = format!(
            "9:name=systemd:/libpod_parent/libpod-{other}\n4:memory:/x\n0::/libpod_parent/libpod-{ID}\n"
        );
        assert_eq!(
            from_proc_cgroup(hybrid.as_bytes()),
            Some((Runtime::Podman, ID.to_owned()))
        );
        let v1 = format!("4:memory:/docker/{ID}\n3:cpuset:/docker/{ID}\n0::/\n");
        assert_eq!(
            from_proc_cgroup(v1.as_bytes()),
            Some((Runtime::Docker, ID.to_owned()))
        );
        assert_eq!(from_proc_cgroup(b"0::/\n"), None);
        assert_eq!(from_proc_cgroup(b"\xff\xfe::\n:::\n\n"), None);
    }

    #[test]
    fn state_files_give_image_and_pod() {
        let docker = br#"{"Config":{"Image":"nginx:1.27","Labels":{"io.kubernetes.pod.name":"web-0","io.kubernetes.pod.namespace":"shop"}}}"#;
        assert_eq!(
            parse_state(Runtime::Docker, ID, docker),
            StateInfo {
                image_name: Some("nginx:1.27".into()),
                pod_name: Some("web-0".into()),
                pod_namespace: Some("shop".into()),
            }
        );
        let crio = br#"{"annotations":{"io.kubernetes.cri-o.ImageName":"quay.io/a/b:1","io.kubernetes.pod.name":"p","io.kubernetes.pod.namespace":"n"}}"#;
        assert_eq!(
            parse_state(Runtime::CriO, ID, crio).image_name.as_deref(),
            Some("quay.io/a/b:1")
        );
        let containerd = br#"{"annotations":{"io.kubernetes.cri.image-name":"registry.k8s.io/pause:3.9","io.kubernetes.cri.sandbox-name":"p","io.kubernetes.cri.sandbox-namespace":"kube-system"}}"#;
        let st = parse_state(Runtime::Containerd, ID, containerd);
        assert_eq!(st.pod_namespace.as_deref(), Some("kube-system"));
        let podman = format!(
            r#"[{{"id":"{}","metadata":"{{}}"}},{{"id":"{ID}","metadata":"{{\"image-name\":\"localhost/rf:latest\"}}"}}]"#,
            "b".repeat(64)
        );
        assert_eq!(
            parse_state(Runtime::Podman, ID, podman.as_bytes())
                .image_name
                .as_deref(),
            Some("localhost/rf:latest")
        );
        // Malformed or hostile state leaves everything unknown, and long labels are cut.
        for junk in [&b"{"[..], b"[]", b"{\"Config\":7}", b"\"x\""] {
            for runtime in [Runtime::Docker, Runtime::CriO, Runtime::Podman] {
                assert_eq!(parse_state(runtime, ID, junk), StateInfo::default());
            }
        }
        let long = format!(r#"{{"Config":{{"Image":"{}"}}}}"#, "é".repeat(600));
        let cut = parse_state(Runtime::Docker, ID, long.as_bytes()).image_name;
        assert!(cut.is_some_and(|c| c.len() <= MAX_LABEL));
    }

    #[test]
    fn cgroup_ids_resolve_by_directory_inode() {
        use std::os::unix::fs::MetadataExt;
        let root = std::env::temp_dir().join(format!("rf-cgroup-ids-{}", std::process::id()));
        let container = root
            .join("machine.slice")
            .join(format!("libpod-{ID}.scope"));
        let conmon = root
            .join("machine.slice")
            .join(format!("libpod-conmon-{ID}.scope"));
        std::fs::create_dir_all(&container).unwrap();
        std::fs::create_dir_all(&conmon).unwrap();
        let ino = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
        // systemd inside the container makes cgroups of its own below the container's.
        let nested = container.join("system.slice").join("cron.service");
        std::fs::create_dir_all(&nested).unwrap();
        let mut ids = CgroupIds::at(Some(root.clone()));
        let container_of = |ids: &mut CgroupIds, id| match ids.place(id) {
            Placement::Container(c) => Some(c),
            Placement::Host | Placement::Unknown => None,
        };
        let found = container_of(&mut ids, ino(&container)).unwrap();
        assert_eq!((found.id.as_str(), &*found.runtime), (ID, "podman"));
        assert!(container_of(&mut ids, ino(&nested)).is_some_and(|c| c.id == ID));
        assert!(container_of(&mut ids, ino(&conmon)).is_none());
        assert!(container_of(&mut ids, 1).is_none());
        // The tree is the whole truth here: conmon's cgroup is surely no container's, an id
        // the walk never saw is not known.
        assert_eq!(ids.place(ino(&conmon)), Placement::Host);
        assert_eq!(ids.place(1), Placement::Host);
        assert_eq!(ids.place(0), Placement::Unknown);
        assert_eq!(ids.place(u64::MAX), Placement::Unknown);
        // On a hybrid host a container may live in the v1 hierarchies only.
        let mut hybrid = CgroupIds::at(Some(root.clone()));
        hybrid.authoritative = false;
        assert_eq!(hybrid.place(ino(&conmon)), Placement::Unknown);
        assert_eq!(hybrid.place(1), Placement::Unknown);
        assert!(matches!(
            hybrid.place(ino(&container)),
            Placement::Container(_)
        ));
        // A cgroup made after the walk is found by the next one, not before RESCAN_EVERY.
        let later = root.join(format!("libpod-{}", "c".repeat(64)));
        std::fs::create_dir_all(&later).unwrap();
        ids.last_walk = Some(Instant::now() - CgroupIds::RESCAN_EVERY);
        assert!(container_of(&mut ids, ino(&later)).is_some());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
