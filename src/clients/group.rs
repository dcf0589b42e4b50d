//! The in-process group coordinator: which consumers of this process belong to which group, and
//! which partitions each owns in which generation.
//!
//! Kafka's protocol, on one machine. A change (a member joins or leaves, a member stops polling
//! for `max.poll.interval.ms`, a subscribed topic gains partitions or a pattern matches a new
//! topic) starts a rebalance. Each member notices it in its next `poll`, revokes (everything
//! under an eager strategy; nothing yet under the cooperative one) and rejoins, reporting what it
//! still owns. When every member has rejoined, the last one computes the assignment and the group
//! moves to the next generation; each member then adopts its share in its own `poll`. Under the
//! cooperative strategy a partition that must move is withheld from its new owner for one
//! generation, while the old owner revokes it, and a follow-up rebalance hands it over: no
//! partition is ever owned by two members at once.
//!
//! Commits are checked against the generation: a member may commit only partitions of its
//! current assignment, so a member that lost a partition cannot overwrite its new owner's
//! progress ([`Error::CommitFailed`]).
//!
//! In shared mode ([`crate::Log::open_shared`]) the groups of a directory span processes: the
//! state lives in `.groups.state`, a blob every process reads and replaces under its robust lock
//! (each call decodes it, changes it, encodes it back), and waiting members sleep on its futex
//! word. A member records its process; a member whose process died is dropped at the next
//! heartbeat of any member of the group, so its partitions move to the survivors at once rather
//! than after `max.poll.interval.ms`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use super::TopicPartition;
use super::assignor::{AssignmentStrategy, MemberInput, assign};
use crate::{Error, Result};

/// What a member subscribes to, resolved against the topics that exist.
#[derive(Clone, Debug)]
pub enum Interest {
    Topics(BTreeSet<String>),
    Pattern(regex::Regex),
}

impl Interest {
    /// The existing topics this subscription covers.
    pub fn resolve(&self, metadata: &BTreeMap<String, u32>) -> BTreeSet<String> {
        match self {
            Interest::Topics(t) => t.iter().filter(|t| metadata.contains_key(*t)).cloned().collect(),
            Interest::Pattern(re) => metadata.keys().filter(|t| !t.starts_with("__") && re.is_match(t)).cloned().collect(),
        }
    }
}

struct Member {
    interest: Interest,
    /// CLOCK_MONOTONIC nanoseconds (one clock for every process of the machine).
    last_poll: u64,
    max_poll_interval: Duration,
    /// What it reported owning when it last rejoined.
    owned: Vec<TopicPartition>,
    /// Its process: id and start time (clock ticks after boot), so a reused id is not taken for
    /// the member's process.
    process: (u32, u64),
}

/// CLOCK_MONOTONIC in nanoseconds.
fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec.max(0) as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec.max(0) as u64)
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`), `None` if it is gone.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after it follow the
    // last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This process, as a member records it (looked up again after a `fork`).
fn this_process() -> (u32, u64) {
    static ME: Mutex<(u32, u64)> = Mutex::new((0, 0));
    let pid = std::process::id();
    let mut me = ME.lock().unwrap_or_else(|e| e.into_inner());
    if me.0 != pid {
        *me = (pid, process_start(pid).unwrap_or(0));
    }
    *me
}

#[derive(Default)]
struct Group {
    /// Starts at 0; the first completed rebalance makes it 1.
    generation: u32,
    strategy: Option<AssignmentStrategy>,
    members: BTreeMap<u64, Member>,
    rebalancing: bool,
    joined: BTreeSet<u64>,
    assignment: BTreeMap<u64, Vec<TopicPartition>>,
    /// The topics (with partition counts) the current assignment covers.
    covered: BTreeMap<String, u32>,
    /// The latest topic metadata a member brought, for completing a round when a heartbeat
    /// without fresh metadata removes a member.
    metadata: BTreeMap<String, u32>,
}

impl Group {
    fn start_rebalance(&mut self) {
        if !self.rebalancing {
            self.rebalancing = true;
            self.joined.clear();
        }
    }

    /// The topics the members' subscriptions cover now, with their partition counts.
    fn wanted(&self, metadata: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for m in self.members.values() {
            for t in m.interest.resolve(metadata) {
                out.insert(t.clone(), metadata[&t]);
            }
        }
        out
    }

    /// Completes the round if every member has rejoined.
    fn try_complete(&mut self, metadata: &BTreeMap<String, u32>) -> bool {
        if !self.rebalancing || self.members.keys().any(|m| !self.joined.contains(m)) {
            return false;
        }
        let strategy = self.strategy.unwrap_or_default();
        let topics = self.wanted(metadata);
        let resolved: BTreeMap<u64, BTreeSet<String>> = self.members.iter().map(|(&id, m)| (id, m.interest.resolve(metadata))).collect();
        let inputs: BTreeMap<u64, MemberInput<'_>> =
            self.members.iter().map(|(&id, m)| (id, MemberInput { topics: &resolved[&id], owned: &m.owned })).collect();
        let mut target = assign(strategy, &topics, &inputs);
        let mut follow_up = false;
        if strategy.is_cooperative() {
            // A partition another member still owns is withheld this generation.
            let owner: HashMap<&TopicPartition, u64> =
                self.members.iter().flat_map(|(&id, m)| m.owned.iter().map(move |tp| (tp, id))).collect();
            for (id, list) in target.iter_mut() {
                list.retain(|tp| match owner.get(tp) {
                    Some(o) if o != id => {
                        follow_up = true;
                        false
                    }
                    _ => true,
                });
            }
        }
        self.assignment = target;
        self.covered = topics;
        self.generation += 1;
        self.rebalancing = false;
        self.joined.clear();
        if follow_up {
            self.start_rebalance();
        }
        true
    }
}

/// Shared mode: how often a member's heartbeat is stored in the shared state (which bounds how
/// late an expiry of `max.poll.interval.ms` is noticed, and how soon a dead process is).
const HEARTBEAT_STORE: Duration = Duration::from_millis(100);

/// What a member must do next, as its `poll` learns from the coordinator.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Its assignment for its generation stands.
    Stable,
    /// A new generation: adopt this assignment.
    Assign { generation: u32, partitions: Vec<TopicPartition> },
    /// A rebalance started: revoke as the strategy says, then [`Coordinator::rejoin`].
    Rejoin,
    /// Rejoined; waiting for the others.
    Waiting,
    /// The group dropped it (it did not poll within `max.poll.interval.ms`): its partitions are
    /// lost; join again as a new member.
    Removed,
}

/// Every group of a directory, and the next member id.
#[derive(Default)]
struct Groups {
    groups: HashMap<String, Group>,
    next_member: u64,
}

/// The groups of one data directory in this process: held here, or (shared mode) in the
/// directory's `.groups.state` for every process.
pub struct Coordinator {
    local: Mutex<Groups>,
    changed: Condvar,
    /// Changes of the local groups so far (under `local`): a waiter compares it with the count it
    /// saw before it last looked, so a change in between is never slept through.
    changes: std::sync::atomic::AtomicU32,
    shared: Option<crate::storage::shared_state::SharedBlob>,
    /// Regexes of the patterns decoded from the shared state, compiled once.
    patterns: Mutex<HashMap<String, regex::Regex>>,
}

/// Each data directory's coordinator, while any consumer of it lives.
type Registry = Mutex<Vec<(PathBuf, Weak<Coordinator>)>>;

fn registry() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

impl Coordinator {
    /// The coordinator of `dir` in this process: every handle on the directory (the writer and
    /// read-only handles alike) shares it. `shared`: the directory is open in shared mode, and
    /// groups span its processes.
    pub fn for_dir(dir: &Path, shared: bool) -> Result<Arc<Coordinator>> {
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|(_, w)| w.strong_count() > 0);
        if let Some(c) = reg.iter().find(|(p, _)| *p == key).and_then(|(_, w)| w.upgrade()) {
            return Ok(c);
        }
        let blob = if shared {
            let path = dir.join(crate::storage::shared_state::GROUPS_STATE_FILE);
            Some(crate::storage::shared_state::SharedBlob::open(dir).map_err(|e| Error::io("map", path, e))?)
        } else {
            None
        };
        let c = Arc::new(Coordinator {
            local: Mutex::default(),
            changed: Condvar::new(),
            changes: Default::default(),
            shared: blob,
            patterns: Mutex::default(),
        });
        reg.push((key, Arc::downgrade(&c)));
        Ok(c)
    }

    /// Runs `f` on the groups (under the lock that covers every process using them) and wakes
    /// the members waiting for a change if `f` says it made one.
    fn with<R>(&self, f: impl FnOnce(&mut Groups) -> (R, bool)) -> Result<R> {
        let Some(blob) = &self.shared else {
            let mut g = self.local.lock().unwrap_or_else(|e| e.into_inner());
            let (r, changed) = f(&mut g);
            if changed {
                self.changes.fetch_add(1, std::sync::atomic::Ordering::Release);
            }
            drop(g);
            if changed {
                self.changed.notify_all();
            }
            return Ok(r);
        };
        let path = || std::path::PathBuf::from(crate::storage::shared_state::GROUPS_STATE_FILE);
        let guard = blob.lock().map_err(|e| Error::io("lock", path(), e))?;
        let mut groups = self.decode(&guard.read()).map_err(|r| Error::corrupt(path(), 0, r))?;
        let (r, changed) = f(&mut groups);
        if changed {
            guard.write(&encode(&groups)).map_err(|e| Error::io("write", path(), e))?;
        }
        Ok(r)
    }

    /// Adds a member to `group`; a rebalance starts. Returns its member id.
    pub fn join(&self, group: &str, interest: Interest, strategy: AssignmentStrategy, max_poll_interval: Duration) -> Result<u64> {
        self.with(|all| {
            let g = all.groups.entry(group.to_string()).or_default();
            match g.strategy {
                Some(s) if s != strategy && !g.members.is_empty() => {
                    return (
                        Err(Error::InvalidArgument(format!(
                            "group {group:?} assigns with {s:?}; a member using {strategy:?} cannot join it (Kafka's INCONSISTENT_GROUP_PROTOCOL)"
                        ))),
                        false,
                    );
                }
                _ => g.strategy = Some(strategy),
            }
            all.next_member += 1;
            let id = all.next_member;
            let process = this_process();
            g.members.insert(id, Member { interest, last_poll: now_ns(), max_poll_interval, owned: Vec::new(), process });
            g.start_rebalance();
            (Ok(id), true)
        })?
    }

    /// Changes what a member subscribes to; a rebalance starts.
    pub fn resubscribe(&self, group: &str, member: u64, interest: Interest) -> Result<()> {
        self.with(|all| {
            if let Some(g) = all.groups.get_mut(group)
                && let Some(m) = g.members.get_mut(&member)
            {
                m.interest = interest;
                g.start_rebalance();
                return ((), true);
            }
            ((), false)
        })
    }

    /// Removes a member (its consumer closed or unsubscribed); a rebalance starts for the others.
    pub fn leave(&self, group: &str, member: u64, metadata: &BTreeMap<String, u32>) {
        let left = self.with(|all| {
            if let Some(g) = all.groups.get_mut(group)
                && g.members.remove(&member).is_some()
            {
                g.assignment.remove(&member);
                g.joined.remove(&member);
                // An empty group keeps its generation, so that generations never repeat.
                if !g.members.is_empty() {
                    g.start_rebalance();
                    g.try_complete(metadata);
                }
                return ((), true);
            }
            ((), false)
        });
        if let Err(e) = left {
            log::error!("group {group}: member {member} could not leave: {e}");
        }
    }

    /// A member's heartbeat from `poll`: notes that it is alive, drops members that stopped
    /// polling, starts a rebalance when the topics it covers changed (`metadata`: every topic's
    /// partition count, when the caller refreshed it), and says what the member must do.
    pub fn heartbeat(&self, group: &str, member: u64, generation: u32, metadata: Option<&BTreeMap<String, u32>>) -> Step {
        let shared = self.shared.is_some();
        let step = self.with(|all| {
            let Some(g) = all.groups.get_mut(group) else { return (Step::Removed, false) };
            let now = now_ns();
            // In shared mode a heartbeat is stored (and the members' liveness looked at) at most
            // every HEARTBEAT_STORE: each store rewrites the state for every process.
            let due = match g.members.get_mut(&member) {
                Some(m) => {
                    let due = !shared || now.saturating_sub(m.last_poll) >= HEARTBEAT_STORE.as_nanos() as u64;
                    if due {
                        m.last_poll = now;
                    }
                    due
                }
                None => return (Step::Removed, false),
            };
            let me = this_process();
            let expired: Vec<(u64, &'static str)> = g
                .members
                .iter()
                .filter(|_| due)
                .filter_map(|(&id, m)| {
                    if now.saturating_sub(m.last_poll) > m.max_poll_interval.as_nanos() as u64 {
                        Some((id, "did not poll within max.poll.interval.ms"))
                    } else if shared && m.process.0 != me.0 && process_start(m.process.0) != Some(m.process.1) {
                        Some((id, "its process is gone"))
                    } else {
                        None
                    }
                })
                .collect();
            // The heartbeat itself is a change only in shared mode, where it must be stored.
            let mut changed = shared && due;
            for (id, why) in expired {
                log::warn!("group {group}: member {id} {why}; it leaves the group");
                g.members.remove(&id);
                g.assignment.remove(&id);
                g.joined.remove(&id);
                g.start_rebalance();
                changed = true;
            }
            let mut rebalanced = false;
            if let Some(md) = metadata
                && !g.rebalancing
                && g.wanted(md) != g.covered
            {
                g.start_rebalance();
                rebalanced = true;
            }
            if let Some(md) = metadata {
                g.metadata = md.clone();
            }
            if rebalanced || changed {
                let md = g.metadata.clone();
                g.try_complete(&md);
            }
            let step = if g.generation != generation && !g.joined.contains(&member) {
                if g.rebalancing && g.generation == 0 {
                    // The group has never completed a round: nothing to adopt yet.
                    Step::Rejoin
                } else {
                    Step::Assign { generation: g.generation, partitions: g.assignment.get(&member).cloned().unwrap_or_default() }
                }
            } else if g.rebalancing {
                if g.joined.contains(&member) { Step::Waiting } else { Step::Rejoin }
            } else {
                Step::Stable
            };
            (step, changed || rebalanced)
        });
        step.unwrap_or_else(|e| {
            log::error!("group {group}: heartbeat of member {member} failed: {e}");
            Step::Removed
        })
    }

    /// The member has revoked what the strategy asked and rejoins, still owning `owned`. The
    /// round completes if it was the last.
    pub fn rejoin(&self, group: &str, member: u64, owned: Vec<TopicPartition>, metadata: &BTreeMap<String, u32>) -> Step {
        let step = self.with(|all| {
            let Some(g) = all.groups.get_mut(group) else { return (Step::Removed, false) };
            let Some(m) = g.members.get_mut(&member) else { return (Step::Removed, false) };
            m.owned = owned;
            m.last_poll = now_ns();
            g.joined.insert(member);
            g.metadata = metadata.clone();
            let done = g.try_complete(metadata);
            (if done { Step::Stable } else { Step::Waiting }, true)
        });
        step.unwrap_or_else(|e| {
            log::error!("group {group}: member {member} could not rejoin: {e}");
            Step::Removed
        })
    }

    /// A token for [`Coordinator::wait`], taken before looking at the group.
    pub fn change_token(&self) -> u32 {
        match &self.shared {
            Some(blob) => blob.notify_value(),
            None => self.changes.load(std::sync::atomic::Ordering::Acquire),
        }
    }

    /// Sleeps until the groups change after `token` was taken, or `timeout` passes.
    pub fn wait(&self, token: u32, timeout: Duration) {
        match &self.shared {
            Some(blob) => blob.wait(token, timeout),
            None => {
                let groups = self.local.lock().unwrap_or_else(|e| e.into_inner());
                if self.changes.load(std::sync::atomic::Ordering::Acquire) == token {
                    let _ = self.changed.wait_timeout(groups, timeout);
                }
            }
        }
    }

    /// Whether `group` has a rebalance under way (or a generation `generation` is behind).
    pub fn needs_attention(&self, group: &str, member: u64, generation: u32) -> bool {
        self.with(|all| {
            let r = match all.groups.get(group) {
                Some(g) => g.rebalancing || g.generation != generation || !g.members.contains_key(&member),
                None => true,
            };
            (r, false)
        })
        .unwrap_or(true)
    }

    /// Checks that `member`, in `generation`, may commit offsets for `partitions`.
    /// and then runs `commit` while no rebalance can start (the check and the commit are one
    /// step, so a member that loses a partition cannot commit after its new owner).
    pub fn check_commit(
        &self,
        group: &str,
        member: u64,
        generation: u32,
        partitions: &[&TopicPartition],
        commit: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        self.with(|all| (Self::check_commit_in(all, group, member, generation, partitions).and_then(|()| commit()), false))?
    }

    fn check_commit_in(all: &Groups, group: &str, member: u64, generation: u32, partitions: &[&TopicPartition]) -> Result<()> {
        let g =
            all.groups.get(group).ok_or_else(|| Error::CommitFailed(format!("this consumer is no longer a member of group {group:?}")))?;
        if !g.members.contains_key(&member) {
            return Err(Error::CommitFailed(format!(
                "this consumer was removed from group {group:?} (it did not poll within max.poll.interval.ms)"
            )));
        }
        if g.generation != generation {
            return Err(Error::CommitFailed(format!(
                "group {group:?} rebalanced: this consumer is at generation {generation}, the group at {}",
                g.generation
            )));
        }
        let mine = g.assignment.get(&member).map(Vec::as_slice).unwrap_or_default();
        if let Some(tp) = partitions.iter().find(|tp| !mine.contains(tp)) {
            return Err(Error::CommitFailed(format!("partition {tp} is not assigned to this consumer in generation {generation}")));
        }
        Ok(())
    }
}

/// The encoding of the groups in `.groups.state` (shared mode): little-endian integers,
/// length-prefixed strings, in the order of the structs' fields. Only runnel's processes of the
/// same version read it, and the file is rebuilt empty by the first process in.
const STATE_VERSION: u8 = 1;

struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u32(n as u32);
    }
    fn tps(&mut self, tps: &[TopicPartition]) {
        self.len(tps.len());
        for tp in tps {
            self.str(&tp.topic);
            self.u32(tp.partition);
        }
    }
    fn counts(&mut self, m: &BTreeMap<String, u32>) {
        self.len(m.len());
        for (t, n) in m {
            self.str(t);
            self.u32(*n);
        }
    }
}

struct Dec<'a>(&'a [u8]);

impl Dec<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        if self.0.len() < n {
            return Err("the consumer groups' state is truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "u32")?))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| "u64")?))
    }
    fn str(&mut self) -> std::result::Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a name in the consumer groups' state is not UTF-8".to_string())
    }
    fn len(&mut self) -> std::result::Result<usize, String> {
        let n = self.u32()? as usize;
        // Every element takes at least a byte: a count larger than what is left is damage.
        if n > self.0.len() {
            return Err("a count in the consumer groups' state is larger than the state".into());
        }
        Ok(n)
    }
    fn tps(&mut self) -> std::result::Result<Vec<TopicPartition>, String> {
        (0..self.len()?).map(|_| Ok(TopicPartition::new(self.str()?, self.u32()?))).collect()
    }
    fn counts(&mut self) -> std::result::Result<BTreeMap<String, u32>, String> {
        (0..self.len()?).map(|_| Ok((self.str()?, self.u32()?))).collect()
    }
}

fn strategy_code(s: Option<AssignmentStrategy>) -> u8 {
    match s {
        None => 0,
        Some(AssignmentStrategy::Range) => 1,
        Some(AssignmentStrategy::RoundRobin) => 2,
        Some(AssignmentStrategy::CooperativeSticky) => 3,
    }
}

fn encode(all: &Groups) -> Vec<u8> {
    let mut e = Enc(Vec::new());
    e.u8(STATE_VERSION);
    e.u64(all.next_member);
    e.len(all.groups.len());
    for (name, g) in &all.groups {
        e.str(name);
        e.u32(g.generation);
        e.u8(strategy_code(g.strategy));
        e.u8(u8::from(g.rebalancing));
        e.len(g.members.len());
        for (id, m) in &g.members {
            e.u64(*id);
            match &m.interest {
                Interest::Topics(t) => {
                    e.u8(0);
                    e.len(t.len());
                    for t in t {
                        e.str(t);
                    }
                }
                Interest::Pattern(re) => {
                    e.u8(1);
                    e.str(re.as_str());
                }
            }
            e.u64(m.last_poll);
            e.u64(m.max_poll_interval.as_nanos() as u64);
            e.tps(&m.owned);
            e.u32(m.process.0);
            e.u64(m.process.1);
        }
        e.len(g.joined.len());
        for id in &g.joined {
            e.u64(*id);
        }
        e.len(g.assignment.len());
        for (id, tps) in &g.assignment {
            e.u64(*id);
            e.tps(tps);
        }
        e.counts(&g.covered);
        e.counts(&g.metadata);
    }
    e.0
}

impl Coordinator {
    fn decode(&self, bytes: &[u8]) -> std::result::Result<Groups, String> {
        let mut all = Groups::default();
        if bytes.is_empty() {
            return Ok(all);
        }
        let mut d = Dec(bytes);
        if d.u8()? != STATE_VERSION {
            return Err("the consumer groups' state was written by another version of runnel".into());
        }
        all.next_member = d.u64()?;
        for _ in 0..d.len()? {
            let name = d.str()?;
            let mut g = Group { generation: d.u32()?, ..Group::default() };
            g.strategy = match d.u8()? {
                0 => None,
                1 => Some(AssignmentStrategy::Range),
                2 => Some(AssignmentStrategy::RoundRobin),
                3 => Some(AssignmentStrategy::CooperativeSticky),
                n => return Err(format!("unknown assignment strategy {n} in the consumer groups' state")),
            };
            g.rebalancing = d.u8()? != 0;
            for _ in 0..d.len()? {
                let id = d.u64()?;
                let interest = match d.u8()? {
                    0 => Interest::Topics((0..d.len()?).map(|_| d.str()).collect::<std::result::Result<_, _>>()?),
                    _ => Interest::Pattern(self.pattern(&d.str()?)?),
                };
                let last_poll = d.u64()?;
                let max_poll_interval = Duration::from_nanos(d.u64()?);
                let owned = d.tps()?;
                let process = (d.u32()?, d.u64()?);
                g.members.insert(id, Member { interest, last_poll, max_poll_interval, owned, process });
            }
            for _ in 0..d.len()? {
                g.joined.insert(d.u64()?);
            }
            for _ in 0..d.len()? {
                let id = d.u64()?;
                g.assignment.insert(id, d.tps()?);
            }
            g.covered = d.counts()?;
            g.metadata = d.counts()?;
            all.groups.insert(name, g);
        }
        Ok(all)
    }

    /// A pattern from the shared state, compiled once per process.
    fn pattern(&self, source: &str) -> std::result::Result<regex::Regex, String> {
        let mut cache = self.patterns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(re) = cache.get(source) {
            return Ok(re.clone());
        }
        let re = regex::Regex::new(source).map_err(|e| format!("a topic pattern in the consumer groups' state: {e}"))?;
        cache.insert(source.to_string(), re.clone());
        Ok(re)
    }
}
